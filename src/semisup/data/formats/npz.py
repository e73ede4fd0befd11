"""NPZ files: arrays of uint8 images and integer labels (`read_npz`)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...errors import Problems, UserError
from ..decode import channels_first
from ..types import Format, Source, Split


def _npz_images(path: Path, key: str, a: np.ndarray) -> torch.Tensor:
    if a.dtype != np.uint8:
        raise UserError(f"{path}: '{key}' has dtype {a.dtype}; save images as uint8 (0..255)")
    nchw = channels_first(a, channels=(1, 3, 4))
    if nchw is None:
        raise UserError(f"{path}: '{key}' has shape {a.shape}; expected (N,H,W) or (N,H,W,C) uint8")
    return torch.from_numpy(np.ascontiguousarray(nchw))


def _npz_labels(path: Path, key: str, y: np.ndarray, classes, problems: Problems) -> np.ndarray:
    """`y` as int64. A uint8 `y` that marks unlabeled images with 255 (it cannot hold -1) is
    one problem, and its 255s are read as -1, when no classes are given and the other labels
    are small (a data set of 256 classes uses the values up to 254)."""
    y64 = y.astype(np.int64)
    if y.dtype == np.uint8 and classes is None and (y == 255).any() and int(y[y != 255].max(initial=0)) < 128:
        problems.add(f"{path}: '{key}' is uint8 and holds 255 for {int((y == 255).sum())} images, but -1 marks "
                     f"unlabeled, which uint8 cannot hold; save it signed: {key} = {key}.astype(np.int64); "
                     f"{key}[{key} == 255] = -1")
        y64[y == 255] = -1
    return y64


def read_npz(spec: str, problems: Problems, classes: list[str] | None = None,
             image_size: int | None = None) -> Source:
    """`x` (N,H,W[,C]) uint8 and `y` (N,) with -1 for unlabeled; optional `x_test`, `y_test`,
    `x_val`, `y_val` (of the shape of `x`) and `classes` (names)."""
    path = Path(spec)
    try:
        z = np.load(path, allow_pickle=False)
        arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError) as e:
        raise UserError(f"{path}: not a readable NPZ file ({e})")
    if "x" not in arrays or "y" not in arrays:
        raise UserError(f"{path}: an NPZ needs arrays 'x' and 'y'; it has {', '.join(arrays) or 'none'}")
    if classes is None and "classes" in arrays:
        classes = [str(c) for c in arrays["classes"]]
    splits = {}
    for name, xk, yk in (("train", "x", "y"), ("test", "x_test", "y_test"), ("val", "x_val", "y_val")):
        if xk not in arrays:
            continue
        if yk not in arrays:
            raise UserError(f"{path}: has '{xk}' but no '{yk}'")
        x, y = _npz_images(path, xk, arrays[xk]), arrays[yk]
        if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
            raise UserError(f"{path}: '{yk}' must be integer labels of shape ({len(x)},); it is {y.dtype} {y.shape}")
        if name != "train" and x.shape[1:] != splits["train"].x.shape[1:]:
            problems.add(f"{path}: '{xk}' images are {tuple(x.shape[1:])} but 'x' images are "
                         f"{tuple(splits['train'].x.shape[1:])} (channels, height, width); save every split "
                         "at one size and channel count")
            continue
        splits[name] = Split(x, torch.from_numpy(_npz_labels(path, yk, y, classes, problems)))
    k = len(classes) if classes is not None else int(max(int(s.y.max()) for s in splits.values())) + 1
    for name, s in splits.items():
        bad = ((s.y < -1) | (s.y >= k)).nonzero().flatten()
        if len(bad):
            problems.add(f"{path}: {len(bad)} labels in '{'y' if name == 'train' else 'y_' + name}' are outside "
                         f"the classes 0..{k - 1} (first at index {int(bad[0])}: {int(s.y[bad[0]])}); use -1 for unlabeled")
            s.y[bad] = -1
    classes = classes if classes is not None else [str(i) for i in range(k)]
    return Source(path.stem, "NPZ", classes, splits["train"], splits.get("test"), splits.get("val"),
                  flip=splits["train"].x.shape[1] == 3)


def detect(spec: str) -> bool:
    p = Path(spec)
    return p.is_file() and p.name.lower().endswith(".npz")


FORMAT = Format("npz", "classify", "a classification NPZ file", detect, read_npz)
