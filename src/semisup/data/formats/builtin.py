"""The built-in data sets, read by name: `digits` (classification) and `shapes` (segmentation)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from ...errors import Problems
from ..shapes import CLASSES, PALETTE, SPLITS, make_shapes
from ..types import Format, Source, Split


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 x 8 x 8 images (0-16) and their digits, read from the file scikit-learn ships
    them in, as `load_digits` reads it: importing `sklearn.datasets` costs 1.5 s, the read 0.04 s."""
    spec = importlib.util.find_spec("sklearn")
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz" if spec and spec.origin else None
    if path is None or not path.is_file():  # another layout: scikit-learn's own reader
        from sklearn.datasets import load_digits

        d = load_digits()
        return d.images, d.target
    data = np.loadtxt(path, delimiter=",")
    return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(np.int64)


def read_digits(spec: str, problems: Problems, classes: list[str] | None = None,
                image_size: int | None = None) -> Source:
    """scikit-learn's bundled 8x8 digits, 1,797 images, split 80/20 by a fixed seed."""
    images, target = _digits_arrays()
    x = torch.from_numpy((images * (255.0 / 16.0)).round().astype(np.uint8)).unsqueeze(1)
    y = torch.from_numpy(target.astype(np.int64))
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    n_test = round(0.2 * len(y))
    te, tr = perm[:n_test], perm[n_test:]
    return Source("digits", "built-in", [str(i) for i in range(10)],
                  Split(x[tr], y[tr]), Split(x[te], y[te]), flip=False)


def read_shapes(spec: str, problems: Problems, classes: list[str] | None = None,
                image_size: int | None = None) -> Source:
    """The generated shapes (`shapes.make_shapes`), 1,000 train, 100 val and 200 test images."""
    x, m = make_shapes(sum(SPLITS.values()))
    x = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    m = torch.from_numpy(m)
    splits, start = {}, 0
    for name, n in SPLITS.items():
        sl = slice(start, start + n)
        splits[name] = Split(x[sl], torch.zeros(n, dtype=torch.long), masks=m[sl])
        start += n
    return Source("shapes", "built-in", CLASSES, splits["train"], splits["test"], splits["val"], flip=True,
                  task="segment", palette=PALETTE, ignore_index=None)


DIGITS = Format("digits", "classify", "a built-in classification data set", lambda spec: spec == "digits",
                read_digits)
SHAPES = Format("shapes", "segment", "segmentation data (images with masks)", lambda spec: spec == "shapes",
                read_shapes)
