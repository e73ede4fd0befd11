"""Segmentation networks: (B, K, H, W) logits for any image size, the encode / decode / logits
split the methods use (UniMatch's feature perturbation, an autoencoder head), a U-Net that
learns, and `load_encoder` with its errors."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from semisup.errors import UserError
from semisup.models import SEG_MODELS, build_seg_model, load_encoder
from semisup.tasks import get_task

NAMES = ["unet", "unet8", "deeplabv3plus", "deeplabv3plus_r50"]


def build(name, c=3, k=5, seed=0):
    torch.manual_seed(seed)
    return build_seg_model(name, (c, 64, 64), k)


def first_conv(model):
    return next(m for m in model.encoder.modules() if isinstance(m, nn.Conv2d))


@pytest.mark.parametrize("name", NAMES)
def test_logits_have_the_image_size_and_split_equals_forward(name):
    m = build(name)
    m.train()
    for h, w in [(45, 61), (8, 8)]:  # odd, and smaller than the output stride
        assert m(torch.randn(2, 3, h, w)).shape == (2, 5, h, w)
    m.eval()
    x = torch.randn(2, 3, 45, 61)
    with torch.no_grad():
        feats = m.encode(x)
        dec = m.decode(feats)
        assert dec.shape[:2] == (2, m.decoder_channels)  # an autoencoder's head reads this
        assert torch.allclose(m.logits(feats, x.shape[-2:]), m(x), atol=1e-5)
        assert torch.allclose(F.interpolate(m.head(dec), (45, 61), mode="bilinear"), m(x), atol=1e-5)


def test_large_odd_image_and_channels_last():
    m = build("deeplabv3plus").eval()
    x = torch.randn(1, 3, 181, 241)
    with torch.no_grad():
        ref = m(x)
        m2 = m.to(memory_format=torch.channels_last)
        out = m2(x.contiguous(memory_format=torch.channels_last))
    assert ref.shape == (1, 5, 181, 241) and torch.allclose(ref, out, atol=1e-4)
    u = build("unet").to(memory_format=torch.channels_last).train()
    u(torch.randn(2, 3, 45, 61).contiguous(memory_format=torch.channels_last)).sum().backward()
    assert first_conv(u).weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["unet", "deeplabv3plus"])
def test_gradients_reach_the_first_conv_and_feature_dropout_perturbs(name):
    m = build(name).train()
    x = torch.randn(2, 3, 33, 47)
    feats = m.encode(x)
    dropped = [F.dropout2d(f, 0.5, True) for f in feats]  # UniMatch's feature perturbation
    both = m.logits([torch.cat([f, g]) for f, g in zip(feats, dropped)], x.shape[-2:])
    clean, pert = both.chunk(2)
    assert clean.shape == pert.shape == (2, 5, 33, 47)
    assert not torch.allclose(clean, pert)
    F.cross_entropy(both, torch.randint(0, 5, (4, 33, 47))).backward()
    g = first_conv(m).weight.grad
    assert g is not None and g.abs().sum() > 0


def test_unet_width_is_parsed_from_the_name():
    count = {n: sum(p.numel() for p in build(n).parameters()) for n in ["unet8", "unet", "unet16", "unet32"]}
    assert count["unet8"] < count["unet"] == count["unet16"] < count["unet32"]
    assert build("unet32").decoder_channels == 32 and build("unet").decoder_channels == 16
    assert get_task("segment").default_model((3, 180, 240)) == "unet" and "deeplabv3plus" in SEG_MODELS
    for bad in ["nope", "unet0", "unetx", "deeplabv3plus_r7"]:
        with pytest.raises(UserError, match=f"--model {bad}: .*unet<N>.*deeplabv3plus_r50"):
            build_seg_model(bad, (3, 8, 8), 2)


def test_tiny_unet_fits_a_synthetic_mask():
    """Pixels inside a random rectangle (about a quarter of the image) have a brighter mean in
    channel 0, under noise whose std is half that step: a pixel alone is right 84% of the time,
    all-background 77%; a network that uses the context gets over 95%."""
    g = torch.Generator().manual_seed(0)
    n, s = 8, 32
    y = torch.zeros(n, s, s, dtype=torch.long)
    for i in range(n):
        r, c = torch.randint(0, 12, (2,), generator=g)
        hh, ww = torch.randint(12, 20, (2,), generator=g)
        y[i, r:r + hh, c:c + ww] = 1
    x = torch.randn(n, 3, s, s, generator=g) * 0.5
    x[:, 0] += y.float() - 0.5
    assert ((x[:, 0] > 0).long() == y).float().mean() < 0.9 and y.float().mean() > 0.1
    torch.manual_seed(0)
    m = build_seg_model("unet8", (3, s, s), 2).train()
    opt = torch.optim.Adam(m.parameters(), 1e-2)
    for _ in range(40):
        opt.zero_grad()
        F.cross_entropy(m(x), y).backward()
        opt.step()
    with torch.no_grad():
        acc = (m.eval()(x).argmax(1) == y).float().mean().item()
    assert acc > 0.95


def _bn_stats(m, c=3):
    m.train()
    with torch.no_grad():
        m(torch.randn(4, c, 32, 32) * 2 + 1)  # non-default running statistics
    return m.eval()


@pytest.mark.parametrize("name,wrap", [("unet", "module"), ("deeplabv3plus", "module"),
                                        ("deeplabv3plus", "nested"), ("unet", "whole_model")])
def test_load_encoder_round_trip(tmp_path, name, wrap):
    src = _bn_stats(build(name, seed=1))
    if wrap == "whole_model":  # a whole segmentation model's state dict: "encoder.*" and the rest
        sd = {"state_dict": src.state_dict()}
    else:
        sd = {f"module.{k}": v for k, v in src.encoder.state_dict().items()}
        sd["module.fc.weight"] = torch.zeros(10, 512)  # a classifier's leftovers are ignored
        sd = {"model": sd, "epoch": 3} if wrap == "nested" else sd
    torch.save(sd, tmp_path / "enc.pt")
    dst = build(name, seed=2).eval()
    x = torch.randn(2, 3, 37, 29)
    with torch.no_grad():
        assert not torch.allclose(dst.encode(x)[-1], src.encode(x)[-1])
        n = load_encoder(dst, tmp_path / "enc.pt")
        assert n == len(src.encoder.state_dict())
        for a, b in zip(dst.encode(x), src.encode(x)):
            assert torch.equal(a, b)


def test_one_channel_input_takes_a_three_channel_encoder(tmp_path):
    rgb = _bn_stats(build("deeplabv3plus", seed=1))
    torch.save(rgb.encoder.state_dict(), tmp_path / "rgb.pt")
    gray = build("deeplabv3plus", c=1, seed=2).eval()
    load_encoder(gray, tmp_path / "rgb.pt")
    x = torch.randn(2, 1, 40, 40)
    with torch.no_grad():  # a gray image gets the response the RGB network gives it
        assert torch.allclose(gray.encode(x)[-1], rgb.encode(x.expand(-1, 3, -1, -1))[-1], atol=1e-4)


def test_load_encoder_errors_name_the_file(tmp_path):
    m = build("unet")
    cases = {"missing.pt": "no such file"}
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    cases["garbage.pt"] = "cannot be read as a PyTorch state dict"
    torch.save([1, 2, 3], tmp_path / "list.pt")
    cases["list.pt"] = "is not a state dict"
    torch.save(build("deeplabv3plus").encoder.state_dict(), tmp_path / "resnet.pt")
    cases["resnet.pt"] = r"none of its 122 keys match the encoder of unet; expected names like stages\.0\.0\.weight"
    torch.save(build("unet8").encoder.state_dict(), tmp_path / "narrow.pt")
    cases["narrow.pt"] = r"stages\.0\.0\.weight has shape \(8, 3, 3, 3\) but the encoder of unet has \(16, 3, 3, 3\)"
    sd = m.encoder.state_dict()
    sd.pop("stages.4.1.4.weight")
    torch.save(sd, tmp_path / "partial.pt")
    cases["partial.pt"] = "lacks 1 of .* the first stages.4.1.4.weight"
    for f, msg in cases.items():
        with pytest.raises(UserError, match=f"--init {tmp_path / f}: {msg}") as e:
            load_encoder(m, tmp_path / f)
        assert "\n" not in str(e.value)


TIMM_SEG = ["unet:resnet18", "deeplabv3plus:resnet18", "unet:efficientnet_b0"]


@pytest.mark.parametrize("name", TIMM_SEG)
def test_a_timm_encoder_under_either_decoder_keeps_the_segnet_split(name):
    pytest.importorskip("timm")
    m = build(name)
    m.eval()
    x = torch.randn(2, 3, 45, 61)
    with torch.no_grad():
        feats = m.encode(x)
        assert m(x).shape == (2, 5, 45, 61)
        assert m.decode(feats).shape[:2] == (2, m.decoder_channels)
        assert torch.allclose(m.logits(feats, x.shape[-2:]), m(x), atol=1e-5)
    if name.startswith("deeplabv3plus"):
        assert [f.shape[1] for f in feats] == [64, 512] and feats[-1].shape[-1] == 4  # layer4 at stride 16


def test_timm_segmentation_names_that_cannot_be_built_are_one_line():
    pytest.importorskip("timm")
    for name, words in [("fpn:resnet18", "the decoder is one of unet, deeplabv3plus"),
                        ("unet:no_such_net", "is not a timm architecture"),
                        ("unet:vit_tiny_patch16_224", "cannot build it for 64x64 images"),
                        ("resnet18", "put it under a decoder: --model unet:resnet18 or deeplabv3plus:resnet18")]:
        with pytest.raises(UserError, match=words):
            build(name)


def test_a_timm_encoder_trains_with_unimatch_and_cps_and_loads_another_runs_encoder(tmp_path, one_thread):
    """A segmentation run on unet:resnet18; its encoder (weights and input statistics) into a
    deeplabv3plus:resnet18 run by --pretrained RUN, for UniMatch and CPS."""
    pytest.importorskip("timm")
    from semisup.api import train
    from semisup.infer import load_run
    from semisup.models.norm import input_norm

    common = {"task": "segment", "steps": 3, "batch_size": 2, "eval_every": 3, "image_size": 32, "quiet": True}
    s, donor = train({**common, "model": "unet:resnet18", "method": "supervised"}, out=str(tmp_path / "donor"))
    assert 0 <= s["metrics"]["test_miou"] <= 1
    d, _, _ = load_run(donor)
    for method in ("unimatch", "cps"):
        s, out = train({**common, "model": "deeplabv3plus:resnet18", "method": method, "pretrained": str(donor),
                        "steps": 2, "eval_every": 2, "lr": 1e-9}, out=str(tmp_path / method))
        m, meta, _ = load_run(out)
        assert meta["model"] == "deeplabv3plus:resnet18"
        a, b = d.encoder.state_dict(), m.encoder.state_dict()
        assert torch.allclose(input_norm(m).mean, input_norm(d).mean)
        conv = "net.conv1.weight"
        assert torch.allclose(a[conv], b[conv], atol=1e-6), method  # lr 1e-9: still the donor's encoder
