"""Readers: one small function per format, each returning a `Source` of uint8 tensors.

`load_source(spec)` takes a built-in name or a path and detects the task and the format (the
segmentation readers are in `segsources.py`). Readers report problems (unreadable files, empty
classes, labels outside the classes) through `Problems`: an error when training, a list when
checking with `semisup data`.
"""
from __future__ import annotations

import csv
import gzip
import io
import os
import struct
import tarfile
import zlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..errors import Problems, UserError

BUILTINS = ("digits", "shapes")
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


@dataclass
class Split:
    x: torch.Tensor  # (N, C, H, W) uint8
    y: torch.Tensor  # (N,) int64, -1 = class unknown
    names: list[str] = field(default_factory=list)  # file names where there are files
    # segmentation: (N, H, W) uint8 class indices, 255 = ignore; y is then 0 (has a mask) or -1
    masks: torch.Tensor | None = None


@dataclass
class Source:
    name: str
    kind: str  # the detected format
    classes: list[str]
    train: Split
    test: Split | None = None
    val: Split | None = None
    flip: bool = False  # whether a horizontal flip keeps the class (natural images, not digits)
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    task: str = "classify"  # or "segment"
    palette: list[tuple[int, int, int]] | None = None  # segmentation: RGB per class, for overlays
    ignore_index: int | None = None  # segmentation: the files' own ignore value (255 in memory)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.train.x.shape[1:])


# ----------------------------------------------------------------------------- built-in
def read_digits(problems: Problems) -> Source:
    """scikit-learn's bundled 8x8 digits, 1,797 images, split 80/20 by a fixed seed."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy((d.images * (255.0 / 16.0)).round().astype(np.uint8)).unsqueeze(1)
    y = torch.from_numpy(d.target.astype(np.int64))
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    n_test = round(0.2 * len(y))
    te, tr = perm[:n_test], perm[n_test:]
    return Source("digits", "built-in", [str(i) for i in range(10)],
                  Split(x[tr], y[tr]), Split(x[te], y[te]), flip=False)


# ----------------------------------------------------------------------------- IDX
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


def read_idx(root: Path, problems: Problems) -> Source:
    """The MNIST / Fashion-MNIST layout: train-images-idx3-ubyte[.gz] and friends."""
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


# ----------------------------------------------------------------------------- images
def _decode(name: str, data: bytes, problems: Problems):
    from PIL import Image, UnidentifiedImageError

    if len(data) == 0:
        problems.add(f"{name}: empty file (0 bytes); remove or replace it")
        return None
    try:
        im = Image.open(io.BytesIO(data))
        im.load()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        problems.add(f"{name}: not a readable image ({type(e).__name__}); remove or replace it")
        return None
    return im


def decode_images(items: list[tuple[str, Callable[[], bytes]]], problems: Problems,
                  notes: list[str], size: tuple[int, int] | None = None, channels: int | None = None,
                  sizes: list | None = None):
    """Decode files to one uint8 tensor (N, C, H, W). Gray images stay one channel unless
    any image has colour. Images of other sizes are resized to the most common size.
    `sizes`, if given, receives each kept image's size (width, height) before resizing."""
    from PIL import Image

    def work(item):
        name, read = item
        im = _decode(name, read(), problems)
        if im is None:
            return None
        gray = im.mode in ("1", "L", "I", "I;16", "F", "LA") or (
            im.mode == "P" and all(r == g == b for r, g, b in zip(*[iter(im.getpalette() or [])] * 3)))
        return im, gray

    with ThreadPoolExecutor(max(2, os.cpu_count() or 2)) as ex:
        decoded = list(ex.map(work, items))
    keep = [i for i, d in enumerate(decoded) if d is not None]
    if not keep:
        return torch.zeros(0, channels or 1, *(size or (1, 1)), dtype=torch.uint8), keep
    if channels is None:
        channels = 1 if all(decoded[i][1] for i in keep) else 3
    if sizes is not None:
        sizes.extend(decoded[i][0].size for i in keep)
    if size is None:
        size = Counter(decoded[i][0].size for i in keep).most_common(1)[0][0]
    mode = "L" if channels == 1 else "RGB"
    resized = sum(decoded[i][0].size != size for i in keep)
    if resized:
        notes.append(f"resized {resized} of {len(keep)} images to {size[0]}x{size[1]}, the most common size")
    arr = np.empty((len(keep), size[1], size[0], channels), np.uint8)
    for j, i in enumerate(keep):
        im = decoded[i][0].convert(mode)
        if im.size != size:
            im = im.resize(size, Image.BILINEAR)
        arr[j] = np.asarray(im).reshape(size[1], size[0], channels)
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous(), keep


class _Files:
    """A directory or a tar archive seen as a flat list of relative file paths."""

    def __init__(self, root: Path):
        self.root = root
        if root.is_dir():
            self.paths = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
            self._bytes = None
        else:
            # one pass in archive order: a gzip stream cannot seek back, so reading members in
            # any other order decompresses the archive again for each file (hours for CIFAR-10)
            self._bytes = {}
            try:
                with tarfile.open(root) as tar:
                    for m in tar:
                        if m.isfile():
                            self._bytes[m.name.lstrip("./")] = tar.extractfile(m).read()
            except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
                raise UserError(f"{root}: not a readable tar archive ({e}); check the file is complete")
            names = sorted(self._bytes)
            top = {n.split("/")[0] for n in names}  # one top folder wrapping everything: strip it
            if len(top) == 1 and all("/" in n for n in names) and not {"train", "test"} & top:
                self._bytes = {n.split("/", 1)[1]: b for n, b in self._bytes.items()}
            self.paths = sorted(self._bytes)

    def reader(self, rel: str) -> Callable[[], bytes]:
        if self._bytes is None:
            return lambda: (self.root / rel).read_bytes()
        return lambda: self._bytes[rel]

    def display(self, rel: str) -> str:
        return str(self.root / rel)


def _is_image(rel: str) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTS


def read_image_folder(root: Path, problems: Problems, classes: list[str] | None = None) -> Source:
    """`train/<class>/*`, optional `test/<class>/*` and `val/<class>/*`, optional
    `unlabeled/**`; or just `<class>/*` at the top (then everything is training data)."""
    files = _Files(root)
    if root.is_dir():  # an empty class folder leaves no trace in the file list: look for it
        base = root / "train" if (root / "train").is_dir() else root
        for d in sorted(p for p in base.iterdir() if p.is_dir()):
            if d.name not in ("unlabeled", "test", "val") and not any(
                    _is_image(f.name) for f in d.rglob("*") if f.is_file()):
                problems.add(f"{d}: class folder has no images; add images or remove the folder")
    top = {p.split("/")[0] for p in files.paths}
    layout_root = "train/" if "train" in top else ""
    groups: dict[str, list[tuple[str, str]]] = {"train": [], "test": [], "val": []}
    skipped = 0
    for rel in files.paths:
        parts = rel.split("/")
        if not _is_image(rel):
            skipped += not parts[-1].startswith(".")
            continue
        if parts[0] == "unlabeled":
            groups["train"].append((rel, ""))
        elif layout_root and parts[0] in groups and len(parts) >= 3:
            groups[parts[0]].append((rel, parts[1]))
        elif not layout_root and len(parts) >= 2 and parts[0] not in ("test", "val"):
            groups["train"].append((rel, parts[0]))
        elif not layout_root and parts[0] in ("test", "val") and len(parts) >= 3:
            groups[parts[0]].append((rel, parts[1]))
    notes = []
    if skipped:
        notes.append(f"skipped {skipped} files that are not images (by extension)")
    found = sorted({c for items in groups.values() for _, c in items if c})
    if classes is None:
        classes = found
    else:
        for c in sorted(set(found) - set(classes)):
            problems.add(f"{root}: folder '{c}' is not one of --classes {','.join(classes)}")
    if not classes:
        raise UserError(f"{root}: no class folders with images found; expected train/<class>/*.png "
                        "(or <class>/*.png)")
    index = {c: i for i, c in enumerate(classes)}
    splits: dict[str, Split] = {}
    size = channels = None
    for name in ("train", "test", "val"):
        items = groups[name]
        if not items:
            continue
        x, keep = decode_images([(files.display(r), files.reader(r)) for r, _ in items], problems,
                                notes, size, channels)
        if size is None and len(x):
            channels, size = x.shape[1], (x.shape[3], x.shape[2])
        y = torch.tensor([index.get(items[i][1], -1) if items[i][1] else -1 for i in keep], dtype=torch.long)
        splits[name] = Split(x, y, [items[i][0] for i in keep])
    if "train" not in splits or len(splits["train"].x) == 0:
        raise UserError(f"{root}: no readable training images")
    return Source(root.name, "image folder" + (" (tar)" if not root.is_dir() else ""), classes,
                  splits["train"], splits.get("test"), splits.get("val"),
                  flip=splits["train"].x.shape[1] == 3, notes=notes)


# ----------------------------------------------------------------------------- CSV
def read_csv(path: Path, problems: Problems, classes: list[str] | None = None) -> Source:
    """A manifest `path,label[,split]`; an empty label means unlabeled; paths are relative
    to the CSV's folder; `split` is train (default), test or val."""
    try:
        with open(path, newline="") as f:
            rows = [(n, r) for n, r in enumerate(csv.reader(f), 1) if r and any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read the CSV ({e})")
    if rows and rows[0][1][0].strip().lower() in ("path", "file", "filename", "image"):
        rows = rows[1:]
    if not rows:
        raise UserError(f"{path}: the CSV lists no images; expected lines 'path,label'")
    entries = []
    for n, r in rows:
        rel = r[0].strip()
        label = r[1].strip() if len(r) > 1 else ""
        split = r[2].strip().lower() if len(r) > 2 and r[2].strip() else "train"
        if split not in ("train", "test", "val"):
            problems.add(f"{path}, line {n}: split '{split}' is not train, test or val")
            continue
        p = Path(rel) if os.path.isabs(rel) else path.parent / rel
        if not p.is_file():
            problems.add(f"{path}, line {n}: image file {p} does not exist; fix the path or remove the line")
            continue
        entries.append((p, label, split, n))
    found = sorted({e[1] for e in entries if e[1]})
    if classes is None:
        classes = sorted(found, key=lambda c: (not c.isdigit(), int(c) if c.isdigit() else 0, c))
    index = {c: i for i, c in enumerate(classes)}
    for p, label, split, n in entries:
        if label and label not in index:
            problems.add(f"{path}, line {n}: label '{label}' is not one of the classes "
                         f"{','.join(classes)}; fix the label or pass --classes")
    entries = [e for e in entries if not e[1] or e[1] in index]
    notes: list[str] = []
    splits = {}
    size = channels = None
    for name in ("train", "test", "val"):
        items = [e for e in entries if e[2] == name]
        if not items:
            continue
        x, keep = decode_images([(str(p), p.read_bytes) for p, *_ in items], problems, notes, size, channels)
        if size is None and len(x):
            channels, size = x.shape[1], (x.shape[3], x.shape[2])
        y = torch.tensor([index[items[i][1]] if items[i][1] else -1 for i in keep], dtype=torch.long)
        splits[name] = Split(x, y, [str(items[i][0]) for i in keep])
    if "train" not in splits:
        raise UserError(f"{path}: no readable training images in the CSV")
    return Source(path.stem, "CSV manifest", classes, splits["train"], splits.get("test"),
                  splits.get("val"), flip=splits["train"].x.shape[1] == 3, notes=notes)


# ----------------------------------------------------------------------------- NPZ
def _npz_images(path: Path, key: str, a: np.ndarray) -> torch.Tensor:
    if a.dtype != np.uint8:
        raise UserError(f"{path}: '{key}' has dtype {a.dtype}; save images as uint8 (0..255)")
    if a.ndim == 3:
        a = a[:, None]
    elif a.ndim == 4 and a.shape[-1] in (1, 3, 4) and a.shape[1] not in (1, 3):
        a = a.transpose(0, 3, 1, 2)[:, :3]
    elif not (a.ndim == 4 and a.shape[1] in (1, 3)):
        raise UserError(f"{path}: '{key}' has shape {a.shape}; expected (N,H,W) or (N,H,W,C) uint8")
    return torch.from_numpy(np.ascontiguousarray(a))


def read_npz(path: Path, problems: Problems, classes: list[str] | None = None) -> Source:
    """`x` (N,H,W[,C]) uint8 and `y` (N,) with -1 for unlabeled; optional `x_test`, `y_test`,
    `x_val`, `y_val` and `classes` (names)."""
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
        splits[name] = Split(x, torch.from_numpy(y.astype(np.int64)))
    k = len(classes) if classes is not None else int(max(int(s.y.max()) for s in splits.values())) + 1
    for name, s in splits.items():
        bad = ((s.y < -1) | (s.y >= k)).nonzero().flatten()
        if len(bad):
            problems.add(f"{path}: {len(bad)} labels in '{'y' if name == 'train' else 'y_' + name}' are outside "
                         f"the classes 0..{k - 1} (first at index {int(bad[0])}: {int(s.y[bad[0]])}); use -1 for unlabeled")
            s.y[bad] = -1
    classes = classes or [str(i) for i in range(k)]
    return Source(path.stem, "NPZ", classes, splits["train"], splits.get("test"), splits.get("val"),
                  flip=splits["train"].x.shape[1] == 3)


# ----------------------------------------------------------------------------- detect
def detect(spec: str) -> str:
    if spec in BUILTINS:
        return "built-in"
    p = Path(spec)
    if not p.exists():
        raise UserError(f"{spec}: no such file or folder; give a path or a built-in name "
                        f"({', '.join(BUILTINS)})")
    if p.is_file():
        name = p.name.lower()
        if name.endswith(".npz"):
            return "npz"
        if name.endswith(".csv"):
            return "csv"
        if name.endswith((".tar", ".tar.gz", ".tgz")):
            return "folder"
        raise UserError(f"{spec}: unknown file type; expected .npz, .csv, .tar(.gz) or a folder")
    if any(p.glob("*idx3-ubyte*")):
        return "idx"
    if (p / "train").is_dir() or any(d.is_dir() for d in p.iterdir()):
        return "folder"
    raise UserError(f"{spec}: cannot tell the format of this folder; expected IDX files, "
                    "train/<class>/ image folders, a .csv or a .npz")


_LOOKS = {"built-in": "a built-in classification data set", "idx": "an IDX classification folder",
          "folder": "a classification image folder (class subfolders)",
          "csv": "a classification CSV manifest", "npz": "a classification NPZ file"}


def detect_task(spec: str) -> str:
    """'segment' for `shapes`, a dataset card or a segmentation folder; else 'classify'."""
    from .segsources import seg_layout

    return "segment" if spec == "shapes" or seg_layout(Path(spec)) else "classify"


def _check_task(spec: str, task: str, found: str) -> None:
    want = "segment" if task == "segment" else "classify"
    if want == found:
        return
    if found == "segment":
        raise UserError(f"--task {task}: {spec} looks like segmentation data (images with masks); "
                        "use --task segment, or give classification data")
    try:
        looks = f"looks like {_LOOKS[detect(spec)]}"
    except UserError:
        if not Path(spec).exists():
            raise
        looks = "is not segmentation data"
    raise UserError(f"--task segment: {spec} {looks}; a segmentation source is a folder with images/ and "
                    "masks/ (or train/ beside trainannot/), a dataset card (.yaml), or 'shapes'")


def load_source(spec: str, strict: bool = True, classes: list[str] | None = None,
                task: str | None = None) -> Source:
    """Read `spec`; `task` None detects it, else data of the other task is an error."""
    problems = Problems(strict)
    found = detect_task(spec)
    if task is not None:
        _check_task(spec, task, found)
    if found == "segment":
        from .segsources import read_segmentation

        src = read_segmentation(spec, problems, classes)
        src.problems += problems.items
        return src
    kind = detect(spec)
    if kind == "built-in":
        src = read_digits(problems)
    elif kind == "idx":
        src = read_idx(Path(spec), problems)
    elif kind == "folder":
        src = read_image_folder(Path(spec), problems, classes)
    elif kind == "csv":
        src = read_csv(Path(spec), problems, classes)
    else:
        src = read_npz(Path(spec), problems, classes)
    src.problems += problems.items
    counts = torch.bincount(src.train.y[src.train.y >= 0], minlength=len(src.classes))
    for c, n in zip(src.classes, counts.tolist()):
        if n == 0 and kind != "built-in":
            msg = f"{spec}: class '{c}' has no labeled training images; add some or drop the class"
            if strict:
                raise UserError(msg)
            src.problems.append(msg)
    return src
