"""`torchrun --nproc_per_node=2` on CPU (gloo): one run folder, the global batch split in two."""
import json
import shutil
import subprocess
import sys

import pytest


@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun not on PATH")
def test_torchrun_two_processes(tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517",
           "-m", "semisup", "train", "--steps", "30", "--batch-size", "16", "--unlabeled-ratio", "2",
           "--eval-every", "15", "--save-every", "15", "--quiet", "--out", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("run folder:") == 1  # only rank 0 reports
    s = json.loads((out / "summary.json").read_text())
    assert s["processes"] == 2 and s["steps"] == 30
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
    assert list(tmp_path.iterdir()) == [out]


def test_batch_must_split_evenly(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29518",
           "-m", "semisup", "train", "--steps", "5", "--batch-size", "15", "--quiet", "--out", str(tmp_path / "x")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "divisible by the 2 processes" in r.stderr
    assert not (tmp_path / "x").exists()
