"""Generation (--task generate): every method runs on digits with finite losses, samples have
the right shape and range, state survives checkpoint and resume, the metrics are right where
the answer is known, and `semisup sample` writes one row per class."""
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import assert_resume_equal
from PIL import Image

from semisup.api import prepare, resolve, train
from semisup.engine.trainer import Trainer, TrainOptions
from semisup.tasks import get_task
from semisup.methods import METHODS
from semisup.metrics import feature_stats, frechet_distance


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SEMISUP_CACHE", str(tmp_path / "cache"))  # evaluators trained here, not in ~


def make(method, steps=10, **options):
    cfg = resolve({"task": "generate", "method": method, "steps": steps, "batch_size": 8, "eval_every": steps,
                   "save_every": steps, "log_every": 5, "quiet": True, **options})
    data, views, m = prepare(cfg)
    opts = TrainOptions(**{k: cfg[k] for k in TrainOptions.__dataclass_fields__})
    return Trainer(m, data, views, opts, None, torch.device("cpu"), task=get_task(m.task))


def test_generation_methods_are_listed():
    r = subprocess.run([sys.executable, "-m", "semisup", "methods"], capture_output=True, text=True)
    listed = {tuple(line.split()[:2]) for line in r.stdout.splitlines() if line.strip()}
    for m in ("ssvae", "cgan_pseudo", "triple_gan", "cgan_supervised"):
        assert (m, "generate") in listed, m


@pytest.mark.parametrize("method", sorted(METHODS["generate"]))
def test_steps_finite_and_samples_in_range(method):
    t = make(method)
    before = {k: v.clone() for k, v in t.m.state_dict().items() if "decoder" in k or "generator" in k}
    for _ in range(10):
        t.train_step()
    logs = t.read_logs()
    assert all(np.isfinite(v) for k, v in logs.items() if k.startswith("loss")), logs
    after = t.m.state_dict()
    assert any(not torch.equal(v, after[k]) for k, v in before.items()), "the generator did not train"
    y = torch.tensor([0, 3, 9, 9])
    x = t.m.generate(y)
    assert x.shape == (4, 1, 8, 8) and x.min() >= 0 and x.max() <= 1
    z = torch.randn(4, t.m.z_dim)
    assert torch.equal(t.m.generate(y, z), t.m.generate(y, z))  # eval mode: the same noise, the same images


@pytest.mark.parametrize("method", sorted(METHODS["generate"]))
def test_resumed_steps_equal_uninterrupted(method, tmp_path):
    assert_resume_equal(lambda: make(method), tmp_path, 6, 4)


def test_ssvae_stack_m1_trains_m1_first_then_m2_on_its_active_units(tmp_path):
    t = make("ssvae", stack_m1=True, m1_share=0.5)
    assert t.m.model.__class__.__name__ == "M1M2Classifier"
    head = {k: v.clone() for k, v in t.m.model.head.state_dict().items()}
    for _ in range(5):
        t.train_step()
    assert set(k for k in t.read_logs() if k.startswith("loss_")) == {"loss_m1"}
    assert all(torch.equal(v, t.m.model.head.state_dict()[k]) for k, v in head.items())  # M2 not started
    t.sums = {}
    m1 = {k: v.clone() for k, v in t.m.model.encoder.state_dict().items()}
    for _ in range(5):
        t.train_step()
    assert {"loss_labeled", "loss_unlabeled", "loss_cls"} <= set(t.read_logs())
    assert all(torch.equal(v, t.m.model.encoder.state_dict()[k]) for k, v in m1.items())  # M1 held fixed
    assert t.m.model.active.dtype == torch.bool and bool(t.m.m1_done)
    assert t.ema.module.active.dtype == torch.bool  # copied, not averaged, by the EMA
    assert_resume_equal(lambda: make("ssvae", stack_m1=True, m1_share=0.5), tmp_path, 4, 4)  # across the switch


def test_ssvae_stack_m1_has_its_own_defaults_below_the_command_line():
    m2 = resolve({"task": "generate", "method": "ssvae"})
    assert (m2["alpha"], m2["lr"], m2["unlabeled_ratio"]) == (0.1, 3e-4, 1)  # the paper's
    m1m2 = resolve({"task": "generate", "method": "ssvae", "stack_m1": True})
    assert (m1m2["alpha"], m1m2["lr"], m1m2["unlabeled_ratio"], m1m2["model"]) == (1.0, 1e-3, 3, None)
    given = resolve({"task": "generate", "method": "ssvae", "stack_m1": True, "alpha": 0.3, "lr": 0.01})
    assert (given["alpha"], given["lr"]) == (0.3, 0.01)
    assert resolve({"task": "generate", "method": "ssvae", "stack_m1": True},
                   {"unlabeled_ratio": 5})["unlabeled_ratio"] == 5  # a --config sits above them too


def test_ema_of_a_spectrally_normalised_discriminator_keeps_its_scale():
    """The EMA averages the weights, not spectral norm's power-iteration vectors u and v: any
    pair (u, v) or (-u, -v) is valid, but their average is not a unit vector, u.W v then
    underestimates the norm and the layer comes out too large (a 1,000-step MNIST run of
    cgan_pseudo had EMA test loss 1,211 at 95% accuracy)."""
    from semisup.engine.ema import EMA
    from semisup.models.cgan import ProjDiscriminator

    torch.manual_seed(0)
    d = ProjDiscriminator(1, 10, width=8)
    x = torch.randn(16, 1, 12, 12)
    for _ in range(20):
        d(x)  # training-mode forwards run the power iteration to convergence
    ema = EMA(d, 0.9)
    vectors = [b for k, b in d.named_buffers() if k.endswith(("_u", "_v"))]
    for _ in range(21):  # the weights stay, the vectors flip sign: equally valid states
        with torch.no_grad():
            torch._foreach_neg_(vectors)
        ema.update(d)
    d.eval(), ema.eval()
    assert torch.allclose(ema(x), d(x), rtol=1e-4, atol=1e-4)


def test_frechet_distance_known_answers():
    g = torch.Generator().manual_seed(0)
    f = torch.randn(500, 8, generator=g)
    assert frechet_distance(*feature_stats(f), *feature_stats(f)) == pytest.approx(0.0, abs=1e-8)
    # N(0, I) against N(m, 4 I) in d dimensions: |m|^2 + d (1 + 4 - 2 * 2) = |m|^2 + d
    mu, eye = torch.zeros(8, dtype=torch.float64), torch.eye(8, dtype=torch.float64)
    m = torch.full((8,), 0.5, dtype=torch.float64)
    assert frechet_distance(mu, eye, m, 4 * eye) == pytest.approx(8 * 0.25 + 8, rel=1e-9)


def test_train_reports_generation_metrics_and_sample_writes_rows_per_class(tmp_path):
    summary, out = train({"task": "generate", "method": "cgan_pseudo", "steps": 20, "eval_every": 10,
                          "quiet": True}, out=str(tmp_path / "g"))
    m = summary["metrics"]
    for k in ("test_accuracy", "conditional_accuracy", "local_fid", "local_fid_floor"):
        assert m[k] is not None and m[k] >= 0, k
    assert 0 <= m["conditional_accuracy"] <= 1 and m["local_fid"] > m["local_fid_floor"]
    assert summary["evaluator"]["test_accuracy"] > 0.9  # trained on every digits label
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["step0000010.png", "step0000020.png"]
    r = subprocess.run([sys.executable, "-m", "semisup", "sample", str(out), "--per-class", "4", "--seed", "3",
                        "--out", str(tmp_path / "grid.png")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    grid = Image.open(tmp_path / "grid.png")
    assert grid.size == (4 * 9 + 1, 10 * 9 + 1)  # 4 per row, one row per class, 8x8 digits, 1-px gaps
    subprocess.run([sys.executable, "-m", "semisup", "sample", str(out), "--per-class", "4", "--seed", "3",
                    "--out", str(tmp_path / "again.png")], check=True, capture_output=True)
    assert np.array_equal(np.asarray(grid), np.asarray(Image.open(tmp_path / "again.png")))  # --seed repeats
    r = subprocess.run([sys.executable, "-m", "semisup", "sample", str(out), "--per-class", "2",
                        "--out", str(tmp_path / "files")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "files").iterdir()) == [str(c) for c in range(10)]
    assert sorted(p.name for p in (tmp_path / "files" / "7").iterdir()) == ["0000.png", "0001.png"]
    # a folder of its own images is written again; a user's folder or a path under a file is refused
    from semisup.api import sample
    from semisup.errors import UserError

    assert sample(str(out), 2, str(tmp_path / "files"))[1] == 20
    mine = tmp_path / "photos"
    (mine / "7").mkdir(parents=True)
    (mine / "7" / "0000.png").write_bytes(b"my photo")
    (mine / "notes.txt").write_text("mine")
    for dest in (mine, tmp_path / "photos" / "notes.txt" / "grid.png", tmp_path / "photos" / "notes.txt"):
        with pytest.raises(UserError) as e:
            sample(str(out), 2, str(dest))
        assert "--out" in str(e.value) and "\n" not in str(e.value)
    assert (mine / "7" / "0000.png").read_bytes() == b"my photo" and sorted(p.name for p in mine.iterdir()) == [
        "7", "notes.txt"]


def test_metrics_unavailable_where_labels_are_unknown(image_folder, tmp_path):
    summary, _ = train({"task": "generate", "method": "cgan_pseudo", "data": str(image_folder), "steps": 4,
                        "eval_every": 4, "batch_size": 4, "unlabeled_ratio": 1, "quiet": True},
                       out=str(tmp_path / "g"))
    assert "unavailable" in summary["evaluator"] and "conditional_accuracy" not in summary["metrics"]


def test_sample_and_labeler_errors(tmp_path):
    _, clf = train({"steps": 4, "eval_every": 4, "method": "supervised", "quiet": True}, out=str(tmp_path / "c"))
    r = subprocess.run([sys.executable, "-m", "semisup", "sample", str(clf)], capture_output=True, text=True)
    assert r.returncode == 2 and "--task generate" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    gen = [sys.executable, "-m", "semisup", "train", "--task", "generate", "--method", "cgan_pseudo", "--steps", "2",
           "--eval-every", "2", "--quiet", "--labeler"]
    r = subprocess.run([*gen, str(tmp_path / "nope"), "--out", str(tmp_path / "g")], capture_output=True, text=True)
    assert r.returncode == 2 and "--labeler" in r.stderr and not (tmp_path / "g").exists()
    r = subprocess.run([*gen, str(clf), "--out", str(tmp_path / "g")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr  # a finished classification run on the same classes labels the pool
    r = subprocess.run([*gen, str(tmp_path / "g"), "--out", str(tmp_path / "g2")], capture_output=True, text=True)
    assert r.returncode == 2 and "classification run" in r.stderr  # a generation run is no labeler
