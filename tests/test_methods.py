"""Every method: a few steps on tiny data give finite, falling losses; its state (buffers)
is saved and restored by the checkpoint with no per-method code."""
import pytest
import torch
import yaml
from conftest import assert_resume_equal

from semisup.api import prepare, resolve
from semisup.engine.runfolder import load_checkpoint
from semisup.engine.trainer import Trainer, TrainOptions
from semisup.tasks import get_task
from semisup.methods import METHODS


def make(method, tmp_path=None, steps=30, **options):
    """Every method on digits' `cnn` (flexmatch's default run there takes `cnn_small`, whose 12
    steps here leave no prediction confident enough to move FlexMatch's table); `options` are
    further run options."""
    cfg = resolve({"method": method, "steps": steps, "batch_size": 16, "unlabeled_ratio": 2, "model": "cnn",
                   "eval_every": steps, "save_every": steps, "log_every": 5, "quiet": True, **options})
    data, views, m = prepare(cfg)
    opts = TrainOptions(**{k: cfg[k] for k in TrainOptions.__dataclass_fields__})
    return Trainer(m, data, views, opts, None, torch.device("cpu"), task=get_task(m.task)), data


@pytest.mark.parametrize("method", sorted(METHODS["classify"]))
def test_loss_finite_and_falls(method):
    """The total is checked finite; the labeled loss is checked to fall (unlabeled weights ramp
    up during a run, so the total may rise while the method learns)."""
    t, _ = make(method)
    logs = []
    for _ in range(30):
        t.train_step()
        if t.step_n % 5 == 0:
            logs.append(t.read_logs())
            t.sums = {}
    assert all(torch.isfinite(torch.tensor([v for r in logs for k, v in r.items() if k.startswith("loss")])))
    sup = [r["loss_sup"] for r in logs]
    assert min(sup[-2:]) < sup[0], sup


@pytest.mark.parametrize("method", sorted(METHODS["classify"]))
def test_resumed_steps_equal_uninterrupted(method, tmp_path):
    """Checkpoint after 6 steps; 4 more steps from the checkpoint in a fresh trainer give the same
    weights and state as 4 more steps in the original (RNG, optimiser and buffers all restored)."""
    assert_resume_equal(lambda: make(method, steps=10)[0], tmp_path, 6, 4)


@pytest.mark.parametrize("method", ["flexmatch", "freematch", "softmatch", "mean_teacher", "remixmatch", "sgan"])
def test_state_survives_checkpoint(method, tmp_path):
    t, _ = make(method)
    for _ in range(12):
        t.train_step()
    bufs = {k: v.clone() for k, v in t.m.named_buffers() if not k.startswith("model.")}
    assert bufs, "these methods keep state in buffers"
    torch.save(t.state(), tmp_path / "ck.pt")
    fresh, _ = make(method)
    changed = [k for k, v in fresh.m.named_buffers() if k in bufs and not torch.equal(v, bufs[k])]
    assert changed, "training moved the method state away from its initial value"
    fresh.load_state(load_checkpoint(tmp_path / "ck.pt"))
    for k, v in fresh.m.named_buffers():
        if k in bufs:
            assert torch.equal(v, bufs[k]), k


def test_flexmatch_thresholds_follow_learning_status():
    t, data = make("flexmatch")
    m = t.m
    assert torch.all(m.class_thresholds() == 0)  # nothing learned yet: warm-up lets all through
    m.selected[: len(m.selected) // 2] = 3  # half the pool confidently class 3
    th = m.class_thresholds()
    assert th[3] == pytest.approx(0.95) and torch.all(th[torch.arange(10) != 3] == 0)


def test_uda_tsa_schedules():
    t, _ = make("uda")
    m = t.m
    assert m.tsa_threshold(0.5) == 1.0  # off by default
    for schedule in ("linear", "exp", "log"):
        m.hp.tsa = schedule
        start, mid, end = (m.tsa_threshold(p) for p in (0.0, 0.5, 1.0))
        assert 0.1 <= start < mid < end and end >= 0.99
    m.hp.tsa = "linear"
    assert m.tsa_threshold(0.0) == pytest.approx(0.1)  # 1/K at the start


def test_sgan_saves_generator_samples_and_evaluates_the_discriminator(tmp_path):
    from PIL import Image

    from semisup.api import train

    summary, out = train({"method": "sgan", "steps": 10, "eval_every": 5, "batch_size": 20,
                          "quiet": True}, out=str(tmp_path / "gan"))
    assert summary["metrics"]["test_accuracy"] is not None
    grid = Image.open(out / "samples.png")
    assert grid.size == (10 * 9 + 1, 10 * 9 + 1)  # 100 samples of 8x8 digits, 10 per row, 1 px gaps
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["step0000005.png", "step0000010.png"]
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["lr"] == 0.003 and cfg["unlabeled_ratio"] == 1 and cfg["model"] == "cnn"  # its paper's optimiser; the project's backbone


def test_sgan_on_colour_images_uses_the_conv_generator_and_the_default_backbone(tmp_path):
    import numpy as np
    from PIL import Image

    from semisup.api import train

    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (60, 20, 20, 3)).astype(np.uint8)  # 1,200 values: above the MLP's range
    y = np.where(np.arange(60) < 30, np.arange(60) % 3, -1)
    np.savez(tmp_path / "c.npz", x=x, y=y)
    summary, out = train({"data": str(tmp_path / "c.npz"), "method": "sgan", "steps": 4, "eval_every": 4,
                          "batch_size": 6, "quiet": True}, out=str(tmp_path / "run"))
    assert summary["model"] == "cnn_small"  # the size rule's backbone as the discriminator
    grid = Image.open(out / "samples.png")
    assert grid.mode == "RGB" and grid.size == (10 * 21 + 1, 3 * 21 + 1)  # 30 samples of 20x20


@pytest.mark.parametrize("method", ["fixmatch", "flexmatch", "freematch", "softmatch", "uda"])
def test_separate_weak_pass(method):
    """--weak-pass separate: the weak logits are a no-grad forward of the weak views alone (their
    own BatchNorm batch statistics), the labeled and strong logits one forward of those two, and
    the backward reaches the network only through the labeled and strong images."""
    t, _ = make(method)
    t.m.hp.weak_pass = "separate"
    t.m.train()
    batch, _ = t.batch()
    model = t.m.model
    state = {k: v.clone() for k, v in model.state_dict().items()}
    lx, weak, strong = t.m.weak_strong_logits(batch)
    model.load_state_dict(state)  # the BatchNorm running statistics as they were before
    with torch.no_grad():
        ref_weak = model(batch.u["weak"])
        ref = model(torch.cat([batch.x["weak"], batch.u["strong"]]))
    n = len(batch.y)
    assert not weak.requires_grad and lx.requires_grad and strong.requires_grad
    torch.testing.assert_close(weak, ref_weak.float())
    torch.testing.assert_close(lx.detach(), ref[:n])
    torch.testing.assert_close(strong.detach(), ref[n:])
    # the joint pass (the default) differs: BatchNorm normalises the three groups together
    t.m.hp.weak_pass = "joint"
    model.load_state_dict(state)
    _, weak_joint, _ = t.m.weak_strong_logits(batch)
    assert not torch.allclose(weak_joint, weak, atol=1e-4)


def test_weak_pass_is_an_option_of_the_weak_strong_family():
    from semisup.errors import UserError
    assert resolve({"method": "fixmatch", "weak_pass": "separate"})["weak_pass"] == "separate"
    with pytest.raises(UserError, match="weak.pass"):
        resolve({"method": "fixmatch", "weak_pass": "both"})
    with pytest.raises(UserError, match="weak.pass"):
        resolve({"method": "mixmatch", "weak_pass": "separate"})


def test_compile_keeps_one_graph_through_the_batchnorm_warm_up():
    """The trainer's BatchNorm momentum warm-up changes every step; under --compile it is data, so
    the network compiles a handful of graphs (grad / no-grad, a batch size) instead of one a step
    until dynamo's limit runs it eagerly, and the running statistics move as in the eager run."""
    torch._dynamo.reset()
    runs = {}
    for comp in (False, True):
        cfg = resolve({"method": "fixmatch", "steps": 12, "batch_size": 16, "unlabeled_ratio": 2, "eval_every": 12,
                       "weak_pass": "separate", "amp": "off", "compile": comp, "quiet": True})
        data, views, m = prepare(cfg)
        t = Trainer(m, data, views, TrainOptions(**{k: cfg[k] for k in TrainOptions.__dataclass_fields__}), None,
                    torch.device("cpu"), task=get_task(m.task))
        t.train_step()  # the same weights and images: the statistics after it differ by rounding only
        runs[comp] = {k: v.clone() for k, v in m.model.state_dict().items() if "running" in k}
        for _ in range(11):  # momentum 9 / (10 + n) > 0.1 all along
            t.train_step()
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    assert 1 <= graphs <= 4, graphs
    for k, v in runs[False].items():
        torch.testing.assert_close(runs[True][k], v, rtol=2e-3, atol=2e-4)


def test_the_sgd_steps_as_torchs_and_a_run_never_imports_dynamo(tmp_path):
    """`methods.base.SGD` (torch's SGD without its first-call import of torch._dynamo, 1.5-2.6 s
    of a command) gives torch's weights bit for bit, fused (its default on a CPU) and not, with
    Nesterov and a decay group, and its state loads into torch's; the fused update is the
    per-tensor one to within float rounding, also where a layer gets its first gradient after the
    others (that step takes the per-tensor path); a short `semisup train` never imports
    torch._dynamo."""
    import copy
    import subprocess
    import sys

    from semisup.methods.base import SGD

    torch.manual_seed(0)
    nn = torch.nn
    a = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Flatten(), nn.Linear(288, 4))
    extra = nn.Linear(4, 2)  # trained from the third step on

    def groups(m, e):
        return [{"params": [p for p in m.parameters() if p.ndim > 1] + [e.weight], "weight_decay": 5e-4},
                {"params": [p for p in m.parameters() if p.ndim <= 1] + [e.bias], "weight_decay": 0.0}]

    runs = {}
    for name, make in (("torch", lambda g: torch.optim.SGD(g, lr=0.03, momentum=0.9, nesterov=True)),
                       ("torch fused", lambda g: torch.optim.SGD(g, lr=0.03, momentum=0.9, nesterov=True, fused=True)),
                       ("ours", lambda g: SGD(g, lr=0.03, momentum=0.9, nesterov=True)),
                       ("ours per tensor", lambda g: SGD(g, lr=0.03, momentum=0.9, nesterov=True, fused=False))):
        m, e = copy.deepcopy(a), copy.deepcopy(extra)
        o = make(groups(m, e))
        torch.manual_seed(1)
        for k in range(4):
            x = torch.randn(4, 3, 8, 8)
            o.zero_grad()
            out = m(x)
            (out.square().mean() + (e(out).square().mean() if k >= 2 or name == "torch fused" else 0)).backward()
            o.step()
        runs[name] = (m, e, o)
    assert runs["ours"][2].param_groups[0]["fused"]
    same = lambda u, v: all(torch.equal(p, q) for p, q in zip(u.state_dict().values(), v.state_dict().values()))  # noqa: E731
    assert same(runs["torch"][0], runs["ours per tensor"][0]) and same(runs["torch"][1], runs["ours per tensor"][1])
    for p, q in zip(runs["torch"][0].parameters(), runs["ours"][0].parameters()):
        torch.testing.assert_close(q, p, rtol=0, atol=1e-5)
    torch.testing.assert_close(runs["ours"][1].weight, runs["torch"][1].weight, rtol=0, atol=1e-5)
    assert not torch.equal(runs["ours"][1].weight, extra.weight)  # the late layer learned
    # fused from the first step, ours is torch's fused update bit for bit
    m, e = copy.deepcopy(a), copy.deepcopy(extra)
    o = SGD(groups(m, e), lr=0.03, momentum=0.9, nesterov=True)
    torch.manual_seed(1)
    for _ in range(4):
        x = torch.randn(4, 3, 8, 8)
        o.zero_grad()
        out = m(x)
        (out.square().mean() + e(out).square().mean()).backward()
        o.step()
    assert same(m, runs["torch fused"][0]) and same(e, runs["torch fused"][1])
    theirs, mine = runs["torch"][2], runs["ours per tensor"][2]
    again = torch.optim.SGD(groups(copy.deepcopy(a), copy.deepcopy(extra)), lr=0.03, momentum=0.9, nesterov=True)
    again.load_state_dict(mine.state_dict())
    assert all(torch.equal(u["momentum_buffer"], v["momentum_buffer"])
               for u, v in zip(again.state_dict()["state"].values(), theirs.state_dict()["state"].values()))
    code = ("import sys; from semisup.api import train; "
            f"train({{'steps': 3, 'eval_every': 3, 'quiet': True}}, out={str(tmp_path / 'r')!r}); "
            "print('torch._dynamo' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "False"


def test_the_unlabeled_batch_grows_in_equal_stages_and_a_resume_keeps_them(tmp_path):
    """--unlabeled-ratio-start 1 with --unlabeled-ratio 3 over 30 steps: the methods see 16, 32
    and 48 unlabeled images a step in three stages of 10 steps, and a run resumed inside the
    second stage takes the same batches as one that was not stopped."""
    def new():
        cfg = resolve({"method": "fixmatch", "steps": 30, "batch_size": 16, "unlabeled_ratio": 3,
                       "unlabeled_ratio_start": 1, "model": "cnn", "eval_every": 30, "save_every": 30,
                       "log_every": 5, "quiet": True})
        data, views, m = prepare(cfg)
        opts = TrainOptions(**{k: cfg[k] for k in TrainOptions.__dataclass_fields__})
        return Trainer(m, data, views, opts, None, torch.device("cpu"), task=get_task(m.task))

    t = new()
    seen = []
    step = t.m.step
    t.m.step = lambda b: (seen.append({k: len(v) for k, v in b.u.items()}), step(b))[1]
    for _ in range(30):
        t.train_step()
    assert seen == [{"weak": n, "strong": n} for n in [16] * 10 + [32] * 10 + [48] * 10]
    assert_resume_equal(new, tmp_path, 14, 8)


@pytest.mark.parametrize("draw", ["passes", "independent"])
def test_batches_draw_each_image_once_a_pass(draw):
    """--draw passes (as USB and TorchSSL sample): 5 batches of 16 from 40 labeled images are two
    passes, each image once in each, the order new in each, a batch ending one pass and beginning
    the next; the unlabeled pool's positions too. --draw independent (the default) repeats images
    within a pass. A resume inside a pass: test_resumed_steps_equal_uninterrupted_when_drawing_passes."""
    t, _ = make("fixmatch", steps=10, draw=draw)
    assert len(t.lab) == 40
    drawn = torch.cat([t._draw("lab", t.lab, 16, 16)[1] for _ in range(5)])
    first, second = drawn[:40], drawn[40:]
    if draw == "passes":
        assert torch.equal(first.sort().values, t.lab.sort().values)
        assert torch.equal(second.sort().values, t.lab.sort().values)
        assert not torch.equal(first, second)
        upos, ui = t._draw("ulb", t.ulb, 32, 32)
        assert len(set(upos.tolist())) == 32 and torch.equal(ui, t.ulb[upos])
    else:
        assert len(set(first.tolist())) < 40


def test_resumed_steps_equal_uninterrupted_when_drawing_passes(tmp_path):
    """The rest of each pass is in the checkpoint: 6 steps of 16 from 40 labeled images stop
    inside the third pass, and 4 more from the checkpoint equal 4 more without it."""
    assert_resume_equal(lambda: make("flexmatch", steps=10, draw="passes")[0], tmp_path, 6, 4)
