"""What a run writes beside its results: config.yaml records the code that trained it (`code`:
the package version and the git commit of its source tree), and that record never fails a run, a
resume or a --config rerun; its plots are written whole or not at all."""
import errno
import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

import semisup
from semisup.engine import runfolder

SHORT = {"steps": 2, "eval_every": 1, "save_every": 1, "quiet": True, "batch_size": 8, "unlabeled_ratio": 1}
PACKAGE = Path(semisup.__file__).resolve().parent


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    from semisup.api import train

    summary, out = train(dict(SHORT), out=str(tmp_path_factory.mktemp("prov") / "run"))
    return summary, out


def _git(*args):
    try:
        r = subprocess.run(["git", "-C", str(PACKAGE), *args], capture_output=True, text=True, timeout=30)
    except OSError:
        return None
    return r.stdout.strip() if r.returncode == 0 else None


def test_config_yaml_records_the_version_and_the_commit(short_run):
    _, out = short_run
    code = yaml.safe_load((out / "config.yaml").read_text())["code"]
    assert set(code) == {"semisup", "commit"}
    assert code["semisup"] == semisup.__version__
    if _git("ls-files", "--", "__init__.py"):  # this package is a tracked part of a checkout
        head = _git("rev-parse", "HEAD")
        dirty = _git("status", "--porcelain", "--", ".") != ""
        assert code["commit"] == head + ("+dirty" if dirty else "")
        assert re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", code["commit"])
    else:
        assert code["commit"] is None


def test_config_of_a_run_reproduces_its_options(short_run, tmp_path, capsys):
    from semisup.cli import main

    summary, out = short_run
    again = tmp_path / "again"
    assert main(["train", "--config", str(out / "config.yaml"), "--out", str(again)]) in (None, 0)
    first, second = (yaml.safe_load((d / "config.yaml").read_text()) for d in (out, again))
    assert second.pop("code") == first.pop("code")
    assert second == first
    s2 = yaml.safe_load((again / "summary.json").read_text())
    assert s2["metrics"]["test_accuracy"] == summary["metrics"]["test_accuracy"]


def test_a_resumed_run_accepts_its_recorded_code(short_run, tmp_path):
    from semisup.api import train

    run = tmp_path / "run"
    shutil.copytree(short_run[1], run)
    (run / "summary.json").unlink()  # interrupted after its last checkpoint
    before = (run / "config.yaml").read_text()
    summary, _ = train({"quiet": True}, out=str(run), resume=True)
    assert summary["steps"] == SHORT["steps"]
    assert (run / "config.yaml").read_text() == before  # the code that started it stays recorded


def _fake_git(answers):
    """subprocess.run answering `git -C DIR <command> ...` from answers[command]: (status, stdout),
    or an exception to raise."""
    def run(cmd, **kw):
        a = answers[cmd[3]]
        if isinstance(a, BaseException):
            raise a
        return SimpleNamespace(returncode=a[0], stdout=a[1], stderr="")
    return run


@pytest.mark.parametrize("answers, commit", [
    ({"ls-files": FileNotFoundError("git")}, None),  # no git binary
    ({"ls-files": subprocess.TimeoutExpired("git", 10)}, None),  # a hung git
    ({"ls-files": (128, "")}, None),  # not a git checkout
    ({"ls-files": (0, "")}, None),  # a checkout, but the package is not part of it
    ({"ls-files": (0, "__init__.py\n"), "rev-parse": (128, "")}, None),  # a repository with no commit
    ({"ls-files": (0, "__init__.py\n"), "rev-parse": (0, "a" * 40 + "\n"), "status": (0, "")}, "a" * 40),
    ({"ls-files": (0, "__init__.py\n"), "rev-parse": (0, "a" * 40 + "\n"), "status": (0, " M run.py\n")},
     "a" * 40 + "+dirty"),
])
def test_code_version_never_fails(monkeypatch, answers, commit):
    monkeypatch.setattr(subprocess, "run", _fake_git(answers))
    assert runfolder.code_version() == {"semisup": semisup.__version__, "commit": commit}


def test_a_run_without_git_records_a_null_commit(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no git binary to be found
    folder = runfolder.RunFolder(tmp_path / "run")
    folder.start({"method": "fixmatch", "steps": 2}, fresh=True)
    folder.close()
    cfg = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert cfg == {"method": "fixmatch", "steps": 2, "code": {"semisup": semisup.__version__, "commit": None}}


def test_plots_are_written_whole_or_not_at_all(tmp_path, monkeypatch):
    """The report's PNGs go through `atomic_write`: a failed write leaves the previous file and no
    .tmp; a good one is a PNG although its temporary name does not end in .png."""
    from PIL import Image

    from semisup.errors import UserError
    from semisup.report import plot_curves, save_grid, save_seg_examples

    rows = [{"step": 1, "loss": 1.0, "test_accuracy": 0.5}, {"step": 2, "loss": 0.5, "test_accuracy": 0.6}]
    plot_curves(rows, tmp_path / "curves.png")
    save_grid(torch.rand(4, 1, 8, 8), tmp_path / "grid.png", nrow=2)
    x = torch.randint(0, 255, (2, 3, 8, 8), dtype=torch.uint8).numpy()
    m = torch.randint(0, 2, (2, 8, 8), dtype=torch.uint8).numpy()
    save_seg_examples(x, m, m, [(0, 0, 0), (255, 0, 0)], tmp_path / "seg.png")
    for name in ("curves.png", "grid.png", "seg.png"):
        assert Image.open(tmp_path / name).format == "PNG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.png", "grid.png", "seg.png"]

    def full(self, fp, *a, **k):
        Path(fp).write_bytes(b"\x89PNG half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full)
    before = (tmp_path / "grid.png").read_bytes()
    with pytest.raises(UserError, match="grid.png: no space left"):
        save_grid(torch.rand(4, 1, 8, 8), tmp_path / "grid.png", nrow=2)
    assert (tmp_path / "grid.png").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.png", "grid.png", "seg.png"]
