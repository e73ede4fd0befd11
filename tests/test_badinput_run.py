"""The run folder and the training lifecycle under bad conditions: a folder that is not a run, an --out
that cannot be written, a full disk, out of memory, divergence, signals, torn files, stale locks.
Each ends in one line and a known exit status, loses nothing of the user's, and leaves no folder that
needs --overwrite to be used again."""
import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import FAST, assert_user_error, cli

ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}


pytestmark = pytest.mark.usefixtures("one_thread")




def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None for p in sorted(folder.rglob("*"))}


def after_step(monkeypatch, n: int, action) -> None:
    """Call action(trainer) once training step n is done."""
    from semisup.engine.trainer import Trainer

    step = Trainer.train_step

    def train_step(self):
        step(self)
        if self.step_n == n:
            action(self)
    monkeypatch.setattr(Trainer, "train_step", train_step)


def raise_(e):
    raise e


@pytest.fixture(scope="module")
def made_run(tmp_path_factory):
    """A finished 6-step run (checkpoints at steps 3 and 6); tests copy it."""
    from semisup.cli import main

    out = tmp_path_factory.mktemp("made") / "run"
    main(["train", *FAST, "--out", str(out)])
    return out


def copy_run(made_run, dst: Path, finished: bool = True) -> Path:
    shutil.copytree(made_run, dst)
    if not finished:
        (dst / "summary.json").unlink()
    return dst


def ckpt(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


# ---------------------------------------------------------------------------- what is a run folder
@pytest.mark.parametrize("flag", [[], ["--overwrite"], ["--resume"]])
def test_a_folder_that_is_not_a_run_is_never_touched(tmp_path, capsys, flag):
    proj = tmp_path / "proj"
    (proj / "notes").mkdir(parents=True)
    (proj / "notes" / "thesis.txt").write_text("x")
    (proj / "config.yaml").write_text("steps: 20\n")
    before = snapshot(proj)
    r = cli(capsys, "train", "--config", proj / "config.yaml", "--out", proj, "--quiet", *flag)
    assert_user_error(r, f"--out {proj}", "not a semisup run folder", "notes")
    assert "--overwrite" not in r.stderr  # replacing it is never the advice
    assert snapshot(proj) == before


def test_overwrite_removes_only_the_files_a_run_writes(made_run, tmp_path, capsys):
    run = copy_run(made_run, tmp_path / "run")
    (run / "notes.txt").write_text("mine")
    (run / "data").mkdir()
    (run / "data" / "a.csv").write_text("a,b\n")
    r = cli(capsys, "train", *FAST, "--seed", "1", "--out", run, "--overwrite")
    assert r.returncode == 0, r.stderr
    assert (run / "notes.txt").read_text() == "mine" and (run / "data" / "a.csv").read_text() == "a,b\n"
    assert json.loads((run / "summary.json").read_text())["seed"] == 1
    assert not (run / "run.lock").exists()


def test_a_run_folder_from_before_the_marker(made_run, tmp_path, capsys):
    """config.yaml + checkpoints + summary.json and nothing else: still a run; with a file of the user's
    in it, it is not one, and --overwrite is refused."""
    from semisup.engine.runfolder import MARKER

    legacy = copy_run(made_run, tmp_path / "legacy")
    (legacy / MARKER).unlink()
    (legacy / "thesis.tex").write_text("mine")
    before = snapshot(legacy)
    r = cli(capsys, "train", *FAST, "--out", legacy, "--overwrite")
    assert_user_error(r, "not a semisup run folder", "thesis.tex")
    assert snapshot(legacy) == before
    (legacy / "thesis.tex").unlink()
    other = tmp_path / "other-tool"  # the same names, written by another tool
    (other / "checkpoints").mkdir(parents=True)
    (other / "checkpoints" / "last.pt").write_bytes(b"weights")
    (other / "config.yaml").write_text("lr: 0.1\nepochs: 3\n")
    assert_user_error(cli(capsys, "train", *FAST, "--out", other, "--overwrite"), "not a semisup run folder")
    assert (other / "checkpoints" / "last.pt").read_bytes() == b"weights"
    r = cli(capsys, "train", *FAST, "--seed", "1", "--out", legacy, "--overwrite")
    assert r.returncode == 0, r.stderr
    assert (legacy / MARKER).exists() and json.loads((legacy / "summary.json").read_text())["seed"] == 1


def test_a_run_killed_before_it_saved_anything_needs_no_overwrite(made_run, tmp_path, capsys):
    """SIGKILL before the first evaluation leaves the marker, config.yaml and a stale lock: nothing worth
    keeping, so the folder is used again as it is."""
    from semisup.engine.runfolder import MARKER

    run = tmp_path / "run"
    run.mkdir()
    for name in (MARKER, "config.yaml"):
        shutil.copy(made_run / name, run / name)
    (run / "run.lock").write_text("999999999\n")  # no such process
    r = cli(capsys, "train", *FAST, "--out", run)
    assert r.returncode == 0, r.stderr
    assert (run / "summary.json").exists()


def test_out_inside_the_data_folder(image_folder, capsys):
    """Its curves.png and samples would be read as images of the next run."""
    before = snapshot(image_folder)
    r = cli(capsys, "train", "--data", image_folder, *FAST, "--out", image_folder / "train" / "run")
    assert_user_error(r, "inside the data folder", "choose an --out outside it")
    assert snapshot(image_folder) == before


# ---------------------------------------------------------------------------- an --out that cannot be written
def test_out_under_a_regular_file(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("keep")
    assert_user_error(cli(capsys, "train", *FAST, "--out", afile / "run"), f"{afile} is a file", "--out")
    assert_user_error(cli(capsys, "train", *FAST, "--out", afile), f"--out {afile}", "file")
    assert afile.read_text() == "keep"


@pytest.mark.parametrize("base", ["/proc", "/sys"])
def test_out_under_proc_or_sys(capsys, base):
    if not Path(base).is_dir():
        pytest.skip(f"no {base} here")
    out = Path(base) / "semisup-test" / "run"
    assert_user_error(cli(capsys, "train", *FAST, "--out", out), f"--out {out}", "choose another --out")
    assert not out.parent.exists()


def _can_mount(tmp_path) -> bool:
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs tmpfs {tmp_path}"], capture_output=True)
    return probe.returncode == 0


def test_out_on_a_read_only_filesystem(tmp_path):
    """A read-only mount in a private mount namespace (chmod does not stop root, so it cannot stand in)."""
    if shutil.which("unshare") is None or not _can_mount(tmp_path):
        pytest.skip("cannot mount a file system here (needs unshare -m and CAP_SYS_ADMIN)")
    ro = tmp_path / "ro"
    ro.mkdir()
    script = 'mount -t tmpfs tmpfs "$1" && mount -o remount,ro "$1" && exec "$2" -m semisup train "${@:3}"'
    r = subprocess.run(["unshare", "-m", "bash", "-c", script, "sh", str(ro), sys.executable, *FAST,
                        "--out", str(ro / "run")], capture_output=True, text=True, env=ONE_THREAD, timeout=300)
    assert_user_error(r, f"--out {ro / 'run'}", "read-only", "choose another --out")


def test_a_full_disk_leaves_no_tmp_and_keeps_the_checkpoint(tmp_path):
    """torch.save into a file on a full disk (/dev/full): one UserError naming the file, no .tmp left,
    the previous checkpoint untouched."""
    from semisup.engine.runfolder import RunFolder
    from semisup.errors import UserError

    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    run = RunFolder(tmp_path / "run")
    run.ckpt_dir.mkdir(parents=True)
    run.save_checkpoint({"step": 1, "w": torch.ones(3)}, "last.pt")
    good = (run.ckpt_dir / "last.pt").read_bytes()
    (run.ckpt_dir / "last.pt.tmp").symlink_to("/dev/full")  # every write to it fails with ENOSPC
    with pytest.raises(UserError) as e:
        run.save_checkpoint({"step": 2, "w": torch.zeros(1_000_000)}, "last.pt")
    msg = str(e.value)
    assert "last.pt" in msg and "no space left" in msg and "\n" not in msg
    assert not os.path.lexists(run.ckpt_dir / "last.pt.tmp")
    assert (run.ckpt_dir / "last.pt").read_bytes() == good


@pytest.mark.parametrize("fail_at", [1, 2])
def test_a_full_disk_in_training(tmp_path, capsys, monkeypatch, fail_at):
    """The disk fills at the first save of last.pt (nothing to keep: the folder goes) or at the second
    (the folder stays, and --resume continues it)."""
    save, calls = torch.save, []

    def full_disk(obj, f, *a, **k):
        if "last.pt" in str(getattr(f, "name", f)):
            calls.append(1)
            if len(calls) == fail_at:
                if isinstance(f, (str, Path)):
                    Path(f).write_bytes(b"\0" * 1000)
                else:
                    f.write(b"\0" * 1000)
                raise OSError(errno.ENOSPC, "No space left on device")
        return save(obj, f, *a, **k)
    monkeypatch.setattr(torch, "save", full_disk)
    out = tmp_path / "run"
    r = cli(capsys, "train", *FAST, "--out", out)
    assert_user_error(r, "no space left", "last.pt")
    if fail_at == 1:
        assert not out.exists()
        return
    assert "--resume" in r.stderr and not list(out.rglob("*.tmp")) and not (out / "run.lock").exists()
    assert ckpt(out / "checkpoints" / "last.pt")["step"] == 3
    monkeypatch.setattr(torch, "save", save)
    r = cli(capsys, "train", *FAST, "--out", out, "--resume")
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "summary.json").read_text())["steps"] == 6


# ---------------------------------------------------------------------------- crashes inside training
@pytest.mark.parametrize("error", [
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 15.7 GiB total capacity)"),
    RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: not enough memory: "
                 "you tried to allocate 9663676416 bytes."),
    RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 9663676416 bytes. Error code 12"),
    MemoryError(),
], ids=["cuda", "cpu-not-enough", "cpu-cannot-allocate", "python"])
def test_out_of_memory_says_what_to_lower(tmp_path, capsys, monkeypatch, error):
    after_step(monkeypatch, 2, lambda t: raise_(error))
    out = tmp_path / "run"
    r = cli(capsys, "train", *FAST, "--out", out)
    assert_user_error(r, "out of memory", "--batch-size", "--unlabeled-ratio", "--image-size", "--eval-batch")
    assert not out.exists()  # no checkpoint yet: nothing left that would need --overwrite


def test_out_of_memory_after_a_checkpoint_keeps_it_resumable(tmp_path, capsys, monkeypatch):
    after_step(monkeypatch, 5, lambda t: raise_(MemoryError()))
    out = tmp_path / "run"
    r = cli(capsys, "train", *FAST, "--out", out)
    assert_user_error(r, "out of memory", "step 3", f"semisup train --out {out} --resume")
    assert not (out / "run.lock").exists() and ckpt(out / "checkpoints" / "last.pt")["step"] == 3
    monkeypatch.undo()
    assert cli(capsys, "train", *FAST, "--out", out, "--resume").returncode == 0


def test_a_crash_before_the_first_checkpoint_leaves_the_folder_reusable(tmp_path, capsys, monkeypatch):
    after_step(monkeypatch, 2, lambda t: raise_(RuntimeError("a bug")))
    new, empty = tmp_path / "a" / "new", tmp_path / "empty"
    empty.mkdir()
    for out in (new, empty):
        with pytest.raises(RuntimeError, match="a bug"):  # a bug keeps its traceback
            cli(capsys, "train", *FAST, "--out", out)
    assert not (tmp_path / "a").exists()  # the folders it made are gone
    assert empty.is_dir() and not any(empty.iterdir())  # a folder that was there stays, as it was
    monkeypatch.undo()
    assert cli(capsys, "train", *FAST, "--out", new).returncode == 0  # no --overwrite needed


# ---------------------------------------------------------------------------- divergence
def test_a_huge_lr_stops_with_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    r = cli(capsys, "train", *FAST, "--lr", "1e6", "--out", out)
    assert_user_error(r, "diverged at step 3", "nan", "lower --lr")
    assert not out.exists()  # diverged before any checkpoint: nothing kept, nothing to --overwrite


def test_divergence_keeps_the_last_good_checkpoint(tmp_path, capsys, monkeypatch):
    def poison(t):
        with torch.no_grad():
            for p in t.m.parameters():
                p.fill_(float("nan"))
    after_step(monkeypatch, 4, poison)
    out = tmp_path / "run"
    r = cli(capsys, "train", *FAST, "--out", out)
    assert_user_error(r, "diverged at step 6", "lower --lr", "step 3")
    last, best = ckpt(out / "checkpoints" / "last.pt"), ckpt(out / "checkpoints" / "best.pt")
    assert last["step"] == 3 and best["step"] == 3
    for state in (last["method"], best["ema"]):
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
    assert not (out / "run.lock").exists() and not (out / "summary.json").exists()


def test_a_non_finite_evaluation_is_never_the_best(tmp_path, capsys, monkeypatch):
    from semisup.tasks.classify import Classify

    monkeypatch.setattr(Classify, "evaluate", lambda *a, **k: {"accuracy": 0.1, "loss": float("nan")})
    out = tmp_path / "run"
    r = cli(capsys, "train", *FAST, "--out", out)
    assert_user_error(r, "diverged at step 3", "test_loss is nan")
    assert not out.exists()


# ---------------------------------------------------------------------------- signals
SIGTERM_RUN = ["train", "--steps", "60", "--batch-size", "16", "--unlabeled-ratio", "3", "--eval-every", "10",
               "--save-every", "1000", "--log-every", "7", "--quiet"]


def metrics(out: Path) -> list[dict]:
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "images_per_second"} for r in rows]


def test_sigterm_saves_and_resumes_to_the_same_metrics(tmp_path, capsys):
    """A `semisup train` process told to stop mid-run saves, unlocks and exits 143; --resume then ends
    with the metrics of a run never stopped (resumed and compared in this process, one thread as there)."""
    full, cut = tmp_path / "full", tmp_path / "cut"
    p = subprocess.Popen([sys.executable, "-m", "semisup", *SIGTERM_RUN, "--out", str(cut)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ONE_THREAD)
    deadline = time.time() + 300
    while not (cut / "metrics.jsonl").exists():  # the first evaluation (step 10) is written
        assert p.poll() is None and time.time() < deadline, p.stderr.read() if p.poll() is not None else "slow"
        time.sleep(0.01)
    p.send_signal(signal.SIGTERM)
    err = p.communicate(timeout=300)[1]
    assert p.returncode == 143, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "stopped by SIGTERM" in lines[0], err
    assert f"semisup train --out {cut} --resume" in lines[0]
    assert not (cut / "run.lock").exists() and not (cut / "summary.json").exists()
    stopped_at = ckpt(cut / "checkpoints" / "last.pt")["step"]
    assert 10 <= stopped_at < 60 and f"step {stopped_at}" in lines[0]

    r = cli(capsys, *SIGTERM_RUN, "--out", cut, "--resume")
    assert r.returncode == 0, r.stderr
    assert cli(capsys, *SIGTERM_RUN, "--out", full).returncode == 0
    assert metrics(cut) == metrics(full)
    a, b = (json.loads((d / "summary.json").read_text())["metrics"] for d in (full, cut))
    assert a == b


def test_ctrl_c_saves_at_the_step_boundary(tmp_path, capsys, monkeypatch):
    after_step(monkeypatch, 4, lambda t: os.kill(os.getpid(), signal.SIGINT))
    out = tmp_path / "run"
    r = cli(capsys, "train", *FAST, "--save-every", "1000", "--out", out)
    assert_user_error(r, "stopped by Ctrl-C at step 4", f"semisup train --out {out} --resume", status=130)
    assert ckpt(out / "checkpoints" / "last.pt")["step"] == 4 and not (out / "run.lock").exists()
    monkeypatch.undo()
    r = cli(capsys, "train", *FAST, "--save-every", "1000", "--out", out, "--resume")
    assert r.returncode == 0, r.stderr
    assert [row["step"] for row in metrics(out)] == [3, 6]


def test_a_second_ctrl_c_before_a_checkpoint_says_there_is_nothing_to_resume(tmp_path, capsys, monkeypatch):
    after_step(monkeypatch, 2, lambda t: raise_(KeyboardInterrupt()))
    out = tmp_path / "run"
    r = cli(capsys, "train", *FAST, "--save-every", "1000", "--out", out)
    assert_user_error(r, "interrupted at step 2", "nothing to resume", status=130)
    assert "--resume" not in r.stderr and not out.exists()


DDP_SIGTERM = """
import os, signal, sys
from semisup.cli import main
from semisup.engine.trainer import Trainer

step = Trainer.train_step
def train_step(self):
    step(self)
    if self.rank == 1 and self.step_n == 5:  # only one process is told to stop
        os.kill(os.getpid(), signal.SIGTERM)
Trainer.train_step = train_step
main(sys.argv[1:])
"""


@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun not on PATH")
def test_sigterm_to_one_torchrun_process_stops_all_at_the_same_step(tmp_path):
    script, out = tmp_path / "stop.py", tmp_path / "ddp"
    script.write_text(DDP_SIGTERM)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone", str(script),
           "train", "--steps", "30", "--batch-size", "16", "--unlabeled-ratio", "2", "--eval-every", "15",
           "--save-every", "15", "--log-every", "4", "--quiet", "--out", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=ONE_THREAD)
    assert r.returncode != 0 and r.stderr.count("stopped by SIGTERM at step 8") == 1, r.stderr[-3000:]
    assert ckpt(out / "checkpoints" / "last.pt")["step"] == 8  # the next log read, where they agree
    assert not (out / "run.lock").exists() and not (out / "summary.json").exists()


# ---------------------------------------------------------------------------- torn files, stale locks
def test_a_torn_metrics_line_does_not_stop_resume(made_run, tmp_path, capsys):
    run = copy_run(made_run, tmp_path / "run", finished=False)
    rows = metrics(run)
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 9, "test_accur')  # killed in mid-write
    r = cli(capsys, "train", *FAST, "--out", run, "--resume")
    assert r.returncode == 0, r.stderr
    assert metrics(run) == rows


@pytest.mark.parametrize("damage", ["torn", "garbage"])
def test_resume_from_a_torn_or_corrupt_checkpoint(made_run, tmp_path, capsys, damage):
    run = copy_run(made_run, tmp_path / "run", finished=False)
    last = run / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:100_000] if damage == "torn" else b"not a checkpoint\n" * 100)
    before = snapshot(run)
    r = cli(capsys, "train", *FAST, "--out", run, "--resume")
    assert_user_error(r, "--resume", str(last), "--overwrite")
    assert snapshot(run) == before  # nothing changed, no lock left


def test_a_stale_lock_does_not_block_resume(made_run, tmp_path, capsys):
    """A lock left by a killed process: its process is gone; its id is now this process's (a restarted
    container hands out the same ids); its id now names another process (started at another time)."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    host = socket.gethostname()
    with subprocess.Popen(["sleep", "60"]) as other:
        for name, lock in (("gone", f"{dead.pid}"), ("reused-here", f"{os.getpid()} {host} 1"),
                           ("reused-by-another", f"{other.pid} {host} 1")):
            run = copy_run(made_run, tmp_path / name, finished=False)
            (run / "run.lock").write_text(lock + "\n")
            r = cli(capsys, "train", *FAST, "--out", run, "--resume")
            assert r.returncode == 0, (name, r.stderr)
            assert not (run / "run.lock").exists()
        other.kill()


def test_a_live_lock_refuses_and_touches_nothing(made_run, tmp_path, capsys):
    from semisup.engine.runfolder import _started

    with subprocess.Popen(["sleep", "60"]) as live:
        for name, lock in (("old-format", f"{live.pid}"),
                           ("this-format", f"{live.pid} {socket.gethostname()} {_started(live.pid) or ''}")):
            run = copy_run(made_run, tmp_path / name, finished=False)
            (run / "run.lock").write_text(lock + "\n")
            before = snapshot(run)
            for flag in ("--resume", "--overwrite"):
                r = cli(capsys, "train", *FAST, "--out", run, flag)
                assert_user_error(r, "a run is being written there now", f"process {live.pid}")
            assert snapshot(run) == before
        live.kill()
