"""A run killed with SIGKILL and resumed ends with the same metrics as one never interrupted."""
import json
import os
import signal
import subprocess
import sys
import time

ARGS = ["train", "--method", "fixmatch", "--steps", "120", "--batch-size", "16", "--unlabeled-ratio", "3",
        "--eval-every", "20", "--save-every", "20", "--log-every", "7", "--quiet"]


def run(*extra):
    return subprocess.run([sys.executable, "-m", "semisup", *ARGS, *map(str, extra)], capture_output=True, text=True)


def metrics(out):
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    drop = ("images_per_second",)
    return [{k: v for k, v in r.items() if k not in drop} for r in rows]


def test_sigkill_then_resume_equals_uninterrupted(tmp_path):
    full = tmp_path / "full"
    r = run("--out", full)
    assert r.returncode == 0, r.stderr

    cut = tmp_path / "cut"
    p = subprocess.Popen([sys.executable, "-m", "semisup", *ARGS, "--out", str(cut)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (cut / "checkpoints" / "last.pt").exists():
        assert p.poll() is None and time.time() < deadline, "run ended before its first checkpoint"
        time.sleep(0.05)
    time.sleep(0.5)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert not (cut / "summary.json").exists(), "the run finished before it could be killed"

    again = run("--out", cut)  # without --resume it refuses, and keeps the checkpoint
    assert again.returncode == 2 and "--resume" in again.stderr
    r = run("--out", cut, "--resume")
    assert r.returncode == 0, r.stderr
    assert metrics(cut) == metrics(full)
    a = json.loads((full / "summary.json").read_text())["metrics"]
    b = json.loads((cut / "summary.json").read_text())["metrics"]
    assert a == b
