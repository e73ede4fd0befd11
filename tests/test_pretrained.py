"""timm backbones and --pretrained: any timm architecture trains, evaluates and predicts as a
semisup classifier; one donor's weights load identically from a file, a semisup run folder and
an offline Hugging Face cache, with the input statistics that belong to them; bad weights are
one line."""
import pytest
import torch

from conftest import assert_user_error, cli

timm = pytest.importorskip("timm")
from safetensors.torch import save_file  # noqa: E402  (timm brings safetensors)

from semisup.api import eval_run, train  # noqa: E402
from semisup.errors import UserError  # noqa: E402
from semisup.models import build_model  # noqa: E402
from semisup.models.norm import input_norm  # noqa: E402
from semisup.models.weights import load_pretrained  # noqa: E402

SHAPE = (3, 32, 32)
REV = "0123456789abcdef0123456789abcdef01234567"


def donor():
    torch.manual_seed(1)
    return timm.create_model("resnet18", pretrained=False)  # with its ImageNet classifier, as timm saves it


def same_backbone(model, net):
    theirs = {k: v for k, v in net.state_dict().items() if not k.startswith("fc.")}
    mine = model.features[1].state_dict()
    return mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)


def offline(monkeypatch, cache):
    """huggingface_hub with no network and `cache` as its cache (its constants are read at import)."""
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(cache))


def hub_cache(root, net):
    """The layout huggingface_hub reads offline: models--timm--NAME/{refs/main, snapshots/REV/}."""
    repo = root / "models--timm--resnet18.a1_in1k"
    (repo / "snapshots" / REV).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REV)
    save_file(net.state_dict(), str(repo / "snapshots" / REV / "model.safetensors"))


def test_a_timm_model_trains_evaluates_and_predicts(tmp_path, one_thread):
    summary, out = train({"model": "resnet18", "steps": 20, "batch_size": 16, "eval_every": 10, "quiet": True,
                          "amp": "bf16"}, out=str(tmp_path / "r"))  # bf16: digits' 1x1 maps (the test above)
    assert summary["metrics"]["test_accuracy"] > 0.3  # 20 steps on 40 labels: well above chance (0.1)
    assert eval_run(str(out))["accuracy"] == pytest.approx(summary["metrics"]["best_test_accuracy"], abs=1e-6)


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="oneDNN's bf16 kernels")
def test_a_strided_conv_on_a_map_smaller_than_its_stride_gets_its_true_bf16_gradient(one_thread):
    """oneDNN's bf16 weight gradient of a 3x3 stride-2 conv on a 1x1 map is random (inf, nan) in
    about half the calls, the shape timm's resnet18 meets on 8x8 digits. The trainer runs such a
    conv in float32; its gradient then equals the reference on every call."""
    from functools import partial

    from semisup.engine.trainer import _conv_small_input_forward

    torch.manual_seed(0)
    for _ in range(20):
        conv = torch.nn.Conv2d(64, 64, 3, 2, 1, bias=False)
        conv.forward = partial(_conv_small_input_forward, conv)
        x, w = torch.randn(8, 64, 1, 1), conv.weight.detach().clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = conv(x)
        gy = torch.randn(y.shape)
        y.float().backward(gy)
        torch.nn.functional.conv2d(x, w, None, 2, 1).backward(gy)
        assert torch.allclose(conv.weight.grad, w.grad, atol=1e-5)  # its off-centre taps: exactly 0


def test_one_donor_from_a_file_a_timm_tag_with_a_local_file_and_an_offline_hub_cache(tmp_path, monkeypatch):
    net = donor()
    cfg_mean = list(net.pretrained_cfg["mean"])
    save_file(net.state_dict(), str(tmp_path / "donor.safetensors"))
    torch.save({"state_dict": net.state_dict()}, tmp_path / "donor.pth")
    hub_cache(tmp_path / "hub", timm.create_model("resnet18"))  # other weights in the cache: TAG=FILE reads FILE
    offline(monkeypatch, tmp_path / "hub")
    for spec in (tmp_path / "donor.safetensors", tmp_path / "donor.pth",
                 f"resnet18.a1_in1k={tmp_path / 'donor.pth'}", f"resnet18.a1_in1k={tmp_path / 'donor.safetensors'}"):
        m = build_model("resnet18", SHAPE, 5)
        load_pretrained(m, str(spec))
        assert same_backbone(m, net), spec
        assert torch.allclose(input_norm(m).mean.flatten(), torch.tensor(cfg_mean)), spec  # the weights' statistics
    hub_cache(tmp_path / "hub2", net)
    offline(monkeypatch, tmp_path / "hub2")
    m = build_model("resnet18", SHAPE, 5)
    load_pretrained(m, "resnet18.a1_in1k")
    assert same_backbone(m, net)


def test_a_run_folder_brings_its_weights_and_its_input_statistics(tmp_path, one_thread):
    _, out = train({"model": "resnet18", "steps": 4, "batch_size": 8, "eval_every": 4, "quiet": True},
                   out=str(tmp_path / "donor"))
    saved = torch.load(out / "checkpoints" / "best.pt", weights_only=False)["model"]
    m = build_model("resnet18", (1, 8, 8), 10)
    assert load_pretrained(m, str(out)) == "the weights"
    mine = m.state_dict()
    assert all(torch.equal(mine[k], v) for k, v in saved.items() if not k.startswith("head."))
    assert not torch.equal(mine["head.weight"], saved["head.weight"])  # the head starts anew


def test_gray_images_take_rgb_weights(tmp_path):
    net = donor()
    save_file(net.state_dict(), str(tmp_path / "donor.safetensors"))
    m = build_model("resnet18", (1, 28, 28), 10)
    load_pretrained(m, str(tmp_path / "donor.safetensors"))
    conv = m.features[1].conv1.weight
    assert conv.shape[1] == 1 and torch.allclose(conv, net.conv1.weight.sum(1, keepdim=True), atol=1e-6)


def test_weights_that_cannot_be_had_are_one_line(tmp_path, monkeypatch, capsys):
    offline(monkeypatch, tmp_path / "empty")
    m = build_model("resnet18", SHAPE, 5)
    with pytest.raises(UserError, match=r"--pretrained resnet18.a1_in1k: cannot fetch the weights .*pass the file"):
        load_pretrained(m, "resnet18.a1_in1k")
    with pytest.raises(UserError, match="timm has no such weights"):
        load_pretrained(m, "resnet18.no_such_tag")
    with pytest.raises(UserError, match=r"nope.pth: no such file; TAG=FILE"):
        load_pretrained(m, f"resnet18.a1_in1k={tmp_path / 'nope.pth'}")
    torch.save(build_model("resnet18", SHAPE, 5).state_dict(), tmp_path / "wide.pt")
    with pytest.raises(UserError, match="lacks 80 of the 218 tensors of --model resnet34"):
        load_pretrained(build_model("resnet34", SHAPE, 5), str(tmp_path / "wide.pt"))
    with pytest.raises(UserError, match="needs a timm --model"):
        load_pretrained(build_model("cnn", SHAPE, 5), "resnet18.a1_in1k")
    assert_user_error(cli(capsys, "train", "--model", "no_such_net", "--steps", "2"), "--model no_such_net",
                      "semisup models")
    assert_user_error(cli(capsys, "train", "--task", "segment", "--pretrained", str(tmp_path / "wide.pt"),
                          "--steps", "2", "--out", str(tmp_path / "seg")), "--pretrained", "match the encoder of --model unet")
    assert not (tmp_path / "seg").exists()


def test_pretrained_weights_fine_tune_with_usb_defaults_and_each_one_can_be_changed(tmp_path):
    from semisup.api import prepare, resolve
    from semisup.engine.trainer import TrainOptions, Trainer
    from semisup.tasks import get_task

    save_file(donor().state_dict(), str(tmp_path / "donor.safetensors"))
    cfg = resolve({"model": "resnet18", "pretrained": str(tmp_path / "donor.safetensors"), "steps": 400})
    assert (cfg["optimizer"], cfg["lr"], cfg["layer_decay"], cfg["batch_size"], cfg["unlabeled_ratio"], cfg["ema"],
            cfg["lr_warmup"]) == ("adamw", 5e-4, 1.0, 8, 1, 0.0, 10)  # layer decay: USB's for ViTs only
    assert resolve({"model": "vit_tiny_patch16_224", "pretrained": "x"})["layer_decay"] == 0.5
    cfg["layer_decay"] = 0.5
    data, views, m = prepare(cfg)
    opts = TrainOptions(**{k: cfg[k] for k in TrainOptions.__dataclass_fields__})
    opt = m.configure_optimizer(opts)
    t = Trainer(m, data, views, opts, None, torch.device("cpu"), task=get_task("classify"))
    assert max(t.sched.get_last_lr()) == pytest.approx(5e-4 / 10)  # step 0 of the 10-step warm-up
    lr = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    assert isinstance(opt, torch.optim.AdamW)
    assert lr[id(m.model.head.weight)] == 5e-4 and lr[id(m.model.features[1].layer4[1].conv2.weight)] == 5e-4
    assert lr[id(m.model.features[1].conv1.weight)] == pytest.approx(5e-4 * 0.5 ** 8)  # the stem, 8 blocks down
    assert resolve({"model": "resnet18", "pretrained": "x", "lr": 0.01, "layer_decay": 1.0, "optimizer": "sgd",
                    "ema": 0.99, "lr_warmup": 0})["optimizer"] == "sgd"
    assert resolve({"model": "resnet18", "pretrained": "x", "method": "mixmatch"})["unlabeled_ratio"] == 1
    assert resolve({"model": "resnet18"})["optimizer"] == "sgd"  # random weights: the classic recipe
    with pytest.raises(UserError, match="--layer-decay 0.5: needs a timm classifier backbone"):
        resolve({"model": "cnn", "layer_decay": 0.5})
    with pytest.raises(UserError, match="--optimizer: method 'sgan' trains with its paper's own optimiser"):
        resolve({"method": "sgan", "optimizer": "adamw"})


def test_photos_are_read_at_the_size_the_pretrained_weights_were_trained_at(tmp_path, one_thread):
    """Photos (a side above 256 px) are resized by default to 224; with --pretrained weights of a
    timm architecture whose config says 160 px, to 160, and eval reads new photos the same way."""
    import numpy as np
    from PIL import Image

    from semisup.infer import load_run

    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("test", 2)):
        for c in ("a", "b"):
            (tmp_path / "photos" / split / c).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)).save(
                    tmp_path / "photos" / split / c / f"{i}.jpg")
    torch.manual_seed(0)
    save_file(timm.create_model("test_convnext", num_classes=0).state_dict(), str(tmp_path / "w.safetensors"))
    common = {"data": str(tmp_path / "photos"), "model": "test_convnext", "method": "supervised", "steps": 2,
              "batch_size": 4, "eval_every": 2, "quiet": True}
    sizes = {}
    for name, extra in (("plain", {}), ("pretrained", {"pretrained": str(tmp_path / "w.safetensors")})):
        summary, out = train({**common, **extra}, out=str(tmp_path / name))
        _, meta, _ = load_run(out)
        sizes[name] = meta["config"]["image_size"]
    assert sizes == {"plain": 224, "pretrained": 160}
    scored = eval_run(str(out))  # the test photos read again, at the run's 160 px
    assert scored["accuracy"] == pytest.approx(summary["metrics"]["best_test_accuracy"], abs=1e-6)


def test_a_segmentation_encoder_from_a_timm_tag_in_an_offline_cache(tmp_path, monkeypatch):
    """--pretrained TAG for deeplabv3plus:resnet18: timm builds the same dilated pyramid with the
    cached weights, and the encoder holds them with the tag's input statistics."""
    from semisup.models import build_seg_model
    from semisup.models.weights import load_seg_pretrained

    net = donor()
    hub_cache(tmp_path / "hub", net)
    offline(monkeypatch, tmp_path / "hub")
    m = build_seg_model("deeplabv3plus:resnet18", SHAPE, 4)
    assert load_seg_pretrained(m, "resnet18.a1_in1k") == "the weights' pretrained config"
    mine = m.encoder.net.state_dict()
    assert all(torch.equal(mine[k], v) for k, v in net.state_dict().items() if not k.startswith("fc."))
    assert torch.allclose(input_norm(m).mean.flatten(), torch.tensor(list(net.pretrained_cfg["mean"])))
    assert m.encode(torch.zeros(1, *SHAPE))[-1].shape[-1] == 2  # still output stride 16 on 32 px
