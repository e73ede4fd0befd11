"""IDX folders, the MNIST / Fashion-MNIST layout: train-images-idx3-ubyte[.gz] beside
train-labels-idx1-ubyte[.gz], and optionally the t10k- (or test-) pair."""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import torch

from ...errors import Problems, UserError
from ..types import Format, Source, Split


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
        zero, dtype, ndim = struct.unpack(">HBB", data[:4])
        dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    except (OSError, EOFError, struct.error) as e:
        raise UserError(f"{path}: not a readable IDX file ({e}); replace it with the original file")
    if zero != 0 or dtype != 0x08:
        raise UserError(f"{path}: not an unsigned-byte IDX file (magic {zero:#x}, type {dtype:#x})")
    arr = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise UserError(f"{path}: truncated IDX file ({arr.size} of {int(np.prod(dims))} bytes)")
    return arr.reshape(dims)


def _idx_pair(root: Path, prefixes: tuple[str, ...]) -> tuple[Path, Path] | None:
    for p in prefixes:
        imgs = sorted(root.glob(f"{p}-images*idx3-ubyte*"))
        labs = sorted(root.glob(f"{p}-labels*idx1-ubyte*"))
        if imgs:
            if not labs:
                raise UserError(f"{imgs[0]}: no matching {p}-labels-idx1-ubyte file beside it")
            return imgs[0], labs[0]
    return None


def read_idx(spec: str, problems: Problems, classes: list[str] | None = None,
             image_size: int | None = None) -> Source:
    """The training pair, and the test pair where there is one; the classes are 0..the largest label."""
    root = Path(spec)
    splits = {}
    for name, prefixes in (("train", ("train",)), ("test", ("t10k", "test"))):
        pair = _idx_pair(root, prefixes)
        if pair is None:
            continue
        x, y = _read_idx(pair[0]), _read_idx(pair[1])
        if len(x) != len(y):
            raise UserError(f"{pair[0]}: {len(x)} images but {pair[1].name} has {len(y)} labels")
        splits[name] = Split(torch.from_numpy(x.copy()).unsqueeze(1), torch.from_numpy(y.astype(np.int64)))
    if "train" not in splits:
        raise UserError(f"{root}: no train-images-idx3-ubyte file found")
    k = int(max(s.y.max() for s in splits.values())) + 1
    return Source(root.name, "IDX directory", [str(i) for i in range(k)], splits["train"],
                  splits.get("test"), flip=False)


def detect(spec: str) -> bool:
    p = Path(spec)
    return p.is_dir() and any(p.glob("*idx3-ubyte*"))


FORMAT = Format("idx", "classify", "an IDX classification folder", detect, read_idx)
