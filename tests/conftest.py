import gzip
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
# a run of a few seconds: for tests of the run folder and the command line, not of learning
FAST = ["--steps", "6", "--batch-size", "8", "--unlabeled-ratio", "2", "--eval-every", "3",
        "--save-every", "3", "--quiet"]


def write_idx(path: Path, arr: np.ndarray, gz: bool = True) -> None:
    data = struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def blobs(n: int, k: int, size: int = 12, channels: int = 3, seed: int = 0):
    """Tiny learnable images: class c is a bright square in quadrant c, with noise."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    x = rng.integers(0, 60, (n, size, size, channels)).astype(np.uint8)
    h = size // 2
    for i, c in enumerate(y):
        r, q = divmod(int(c) % 4, 2)
        x[i, r * h:(r + 1) * h, q * h:(q + 1) * h] = 220
    return x, y


def save_png(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr.squeeze() if arr.shape[-1] == 1 else arr).save(path)


@pytest.fixture
def image_folder(tmp_path):
    """train/<class>/*.png (3 classes x 8), test/<class>/*.png (3 x 3), unlabeled/*.png (6)."""
    classes = ["cat", "dog", "owl"]
    x, y = blobs(24 + 9 + 6, 3)
    root = tmp_path / "pets"
    for i in range(24):
        save_png(root / "train" / classes[y[i]] / f"{i}.png", x[i])
    for i in range(24, 33):
        save_png(root / "test" / classes[y[i]] / f"{i}.png", x[i])
    for i in range(33, 39):
        save_png(root / "unlabeled" / f"u{i}.png", x[i])
    return root


@pytest.fixture
def shared_mnist():
    d = SHARED / "mnist"
    if not (d / "train-images-idx3-ubyte.gz").exists():
        pytest.skip("../shared/data/mnist is absent")
    return d


def assert_resume_equal(new_trainer, tmp_path: Path, before: int, after: int) -> None:
    """Checkpoint a trainer after `before` steps; `after` more steps from the checkpoint in a
    fresh trainer give the same weights and state as `after` more in the original (RNG,
    optimiser, schedule and method buffers all restored). `new_trainer()` builds one."""
    import torch

    from semisup.engine.runfolder import load_checkpoint

    t = new_trainer()
    for _ in range(before):
        t.train_step()
    torch.save(t.state(), tmp_path / "ck.pt")
    for _ in range(after):
        t.train_step()
    fresh = new_trainer()
    fresh.load_state(load_checkpoint(tmp_path / "ck.pt"))
    for _ in range(after):
        fresh.train_step()
    a, b = t.m.state_dict(), fresh.m.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def semisup(*args, cwd=None, env=None, timeout=600):
    """Run the command line in a fresh process, as a user would."""
    return subprocess.run([sys.executable, "-m", "semisup", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=timeout)


def assert_user_error(r, *words, status=2):
    """One line on stderr, no traceback, the exit status, and each of `words` in the line."""
    assert r.returncode == status, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr  # one line, no traceback
    for w in words:
        assert w in lines[0], lines[0]


def cli(capsys, *args):
    """The command line in this process (no start-up cost): exit status, stdout and stderr."""
    from types import SimpleNamespace

    from semisup.cli import main

    code = 0
    try:
        main([str(a) for a in args])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return SimpleNamespace(returncode=code, stdout=out, stderr=err)


@pytest.fixture(scope="module")
def one_thread():
    """One thread: the runs of a test module that asks for it are tiny, and two threads on a shared
    2-core machine run them 10x slower."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
