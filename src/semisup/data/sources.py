"""Readers: one small function per format, each returning a `Source` of uint8 tensors.

`load_source(spec)` takes a built-in name or a path and detects the task and the format (the
segmentation readers are in `segsources.py`). Readers report problems (unreadable files, empty
classes, labels outside the classes, a file in two splits) through `Problems`: an error when
training, a list when checking with `semisup data`; what they changed or skipped goes into
`Source.notes`. Every file goes through one decoder (`_decode`: EXIF orientation, 8 bits, L or
RGB) and one resize rule (`fit_image`), which predict uses too; folders are walked by one
walker (`walk_folder`: links followed, hidden files skipped).
"""
from __future__ import annotations

import csv
import gzip
import hashlib
import io
import os
import struct
import tarfile
import warnings
import zlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from ..errors import Problems, UserError

# an image above Pillow's warning size (89 Mpx) is read and noted (`_NOTES['large']`), not warned about on
# two lines of stderr; twice that size stays an error (`_decode`)
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

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
    size_on_disk: tuple[int, int] | None = None  # (height, width): the most common size on disk, where resized
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
WORKERS = max(2, os.cpu_count() or 2)  # decoding threads (PIL decodes without the GIL)
MAX_SIDE = 256  # a most common size with a side above this is a photo: resized by default to
PHOTO_SIZE = 224  # the input size of the ImageNet models (timm's), 11x less memory than 640x480
_NOTES = {"orientation": "turned {n} images upright by their EXIF orientation (phones store photos unturned)",
          "16-bit": "scaled {n} 16-bit images to 8 bits by their bit depth (value >> 8)",
          "32-bit": "scaled {n} 32-bit images to 8 bits by their bit depth (value >> 24)",
          "float": "scaled {n} floating-point images of values 0..1 to 0..255",
          "transparency": "composited {n} images with transparency onto black (transparent pixels are 0)",
          "frames": "read the first frame of {n} animated images",
          "large": "read {n} images of over 89 million pixels (slow, and a lot of memory while decoded)"}


def _orientation(im) -> int:
    try:
        return int(im.getexif().get(0x0112, 1))
    except Exception:  # noqa: BLE001 (malformed EXIF: keep the pixels as stored)
        return 1


def _is_gray(im) -> bool:
    """Whether an image (opened, not necessarily loaded) has no colour, by its mode and palette."""
    if im.mode in ("P", "PA"):
        pal = im.getpalette() or []
        return all(r == g == b for r, g, b in zip(*[iter(pal)] * 3))
    return im.mode in ("1", "L", "LA", "La", "I", "F") or im.mode.startswith("I;16")


def _gray_8bit(im, done: list):
    """A 16-bit, 32-bit or float gray image as mode L, scaled by its bit depth: I;16 is 16-bit;
    mode I (a 32-bit container) is 8-bit if its values fit, else 16-bit or 32-bit by its largest
    value; mode F of values 0..1 is scaled by 255. Negative values become 0."""
    a = np.asarray(im)
    top = float(a.max()) if a.size else 0.0
    if im.mode == "F" and 0 < top <= 1:
        done.append("float")
        return Image.fromarray((np.clip(a, 0, 1) * 255).round().astype(np.uint8))
    depth = 16 if im.mode.startswith("I;16") else 8 if top <= 255 else 16 if top <= 65535 else 32
    if depth > 8:
        done.append(f"{depth}-bit")
    a = np.clip(np.rint(a) if im.mode == "F" else a, 0, None).astype(np.int64) >> (depth - 8)
    return Image.fromarray(a.astype(np.uint8))


def _ready(im, done: list):
    """`im` as mode L or RGB, 8 bits a channel: see `_decode`."""
    if im.mode in ("L", "RGB"):
        return im
    if im.mode.startswith("I") or im.mode == "F":
        return _gray_8bit(im, done)
    gray = _is_gray(im)
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        alpha = rgba.getchannel("A")
        if alpha.getextrema()[0] < 255:
            done.append("transparency")
            out = Image.new("RGB", im.size)
            out.paste(rgba.convert("RGB"), mask=alpha)
            return out.convert("L") if gray else out
        im = rgba
    return im.convert("L" if gray else "RGB")


def _decode(name: str, data: bytes, problems: Problems, mask: bool = False, done: list | None = None):
    """The image in `data` ready for use, or None (a problem) if it is unreadable. Its EXIF
    orientation is applied (a phone stores the photo unturned and the turn in EXIF), and an
    animated image gives its first frame. An image comes back as mode L or RGB, 8 bits a
    channel: 16-bit and 32-bit gray scaled by bit depth (`_gray_8bit`), transparency composited
    onto black, CMYK and other colour spaces converted to RGB. A mask (`mask`) keeps its mode and
    values: they are class indices. `done` receives a key of `_NOTES` for each change made."""
    from PIL import ImageOps, UnidentifiedImageError

    done = [] if done is None else done
    if len(data) == 0:
        problems.add(f"{name}: empty file (0 bytes); remove or replace it")
        return None
    try:
        im = Image.open(io.BytesIO(data))
        im.load()
        if Image.MAX_IMAGE_PIXELS and im.width * im.height > Image.MAX_IMAGE_PIXELS:
            done.append("large")
        if getattr(im, "n_frames", 1) > 1:
            done.append("frames")
        if ("exif" in im.info or im.format == "TIFF") and _orientation(im) not in (0, 1):
            ImageOps.exif_transpose(im, in_place=True)
            done.append("orientation")
        return im if mask else _ready(im, done)
    except Image.DecompressionBombError as e:
        problems.add(f"{name}: {str(e).split(',')[0]} (Pillow's guard against decompression bombs); "
                     "resize the image or remove it")
        return None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        problems.add(f"{name}: not a readable image ({type(e).__name__}); remove or replace it")
        return None


def fit_image(im, size: tuple[int, int], fit: str = "crop"):
    """`im` at `size` (width, height). "crop" keeps the aspect: the centred region of the target's
    aspect is scaled to `size` (the shorter side scaled to the size, the longer one centre-cropped:
    timm's eval transform); "stretch" scales to `size` ignoring the aspect (segmentation, whose
    masks are stretched alike). Bilinear, antialiased when shrinking."""
    if im.size == tuple(size):
        return im
    if fit == "stretch":
        return im.resize(size, Image.BILINEAR)
    (w, h), (tw, th) = im.size, size
    if w * th > h * tw:  # wider than the target: crop the sides
        cw = h * tw / th
        box = ((w - cw) / 2, 0, (w + cw) / 2, h)
    else:
        ch = w * th / tw
        box = (0, (h - ch) / 2, w, (h + ch) / 2)
    return im.resize(size, Image.BILINEAR, box=box)


def resize_images(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 images (N, C, H, W) fitted to `size` (width, height) by `fit_image`, as files are."""
    n, c = x.shape[:2]
    out = np.empty((n, c, size[1], size[0]), np.uint8)
    for i, img in enumerate(x.numpy()):
        im = Image.fromarray(img[0] if c == 1 else np.ascontiguousarray(img.transpose(1, 2, 0)))
        out[i] = np.asarray(fit_image(im, size)).reshape(size[1], size[0], c).transpose(2, 0, 1)
    return torch.from_numpy(out)


def in_threads(fn, items: list) -> list:
    """[fn(item) for item in items] on WORKERS threads; the first error stops the rest (training
    stops at the first bad file, not after decoding every other one)."""
    ex = ThreadPoolExecutor(WORKERS)
    try:
        return list(ex.map(fn, items))
    finally:
        ex.shutdown(cancel_futures=True)


def decode_images(items: list[tuple[str, Callable[[], bytes]]], problems: Problems,
                  notes: list[str], size: tuple[int, int] | None = None, channels: int | None = None,
                  sizes: list | None = None, fit: str = "crop"):
    """Decode files into one uint8 tensor (N, C, H, W). Gray images stay one channel unless any
    image has colour. `size` (width, height) is by default the most common size; where that has
    a side above MAX_SIDE and `fit` is "crop" (classification), PHOTO_SIZE square. Images of
    another size are fitted to it by `fit_image`. Memory stays near the result's, never the
    files' at full size: with `size` given each image is fitted as it is decoded; without, an
    image of at most MAX_SIDE a side is kept as decoded, and a larger one fitted to PHOTO_SIZE at
    once (decoded again in the rare case that most images are smaller). `sizes`, if given,
    receives each kept image's size (width, height) before fitting. Returns the tensor and the
    indices of the items kept."""
    done: list[str] = []
    given = tuple(size) if size else None
    photo = (PHOTO_SIZE, PHOTO_SIZE)

    def work(item):
        name, read = item
        im = _decode(name, read(), problems, done=done)
        if im is None:
            return None
        own = im.size
        if given is not None:
            im = fit_image(im, given, fit)
        elif fit == "crop" and max(own) > MAX_SIDE:
            im = fit_image(im, photo, fit)
        return own, np.asarray(im)

    results = in_threads(work, items)
    keep = [i for i, r in enumerate(results) if r is not None]
    notes += [_NOTES[k].format(n=n) for k, n in sorted(Counter(done).items())]
    if channels is None:
        channels = 1 if all(results[i][1].ndim == 2 for i in keep) else 3
    if not keep:
        return torch.zeros(0, channels, *(given[::-1] if given else (1, 1)), dtype=torch.uint8), keep
    if sizes is not None:
        sizes.extend(results[i][0] for i in keep)
    why = ""
    if given is None:
        size, why = Counter(results[i][0] for i in keep).most_common(1)[0][0], ", the most common size"
        if fit == "crop" and max(size) > MAX_SIDE:
            notes.append(f"the images are {size[0]}x{size[1]} (the most common size): resized to {photo[0]}x{photo[1]} "
                         f"(shorter side to {PHOTO_SIZE}, centre crop) to bound memory and compute; --image-size N "
                         "sets another size")
            size, why = photo, None
    w, h = size
    mode = "L" if channels == 1 else "RGB"
    arr = np.empty((len(keep), channels, h, w), np.uint8)
    resized = 0
    for j, i in enumerate(keep):
        (own, a), results[i] = results[i], None  # freed as copied
        resized += own != size
        if a.shape[:2] == (h, w) and (a.ndim == 3) == (channels == 3):  # as it is
            arr[j] = a.reshape(h, w, channels).transpose(2, 0, 1)
            continue
        if a.shape[:2] == (h, w):
            im = Image.fromarray(a)
        elif given is None and fit == "crop" and max(own) > MAX_SIDE:  # kept at PHOTO_SIZE: decode again
            im = fit_image(_decode(items[i][0], items[i][1](), problems), size, fit)
        else:
            im = fit_image(Image.fromarray(a), size, fit)
        arr[j] = np.asarray(im if im.mode == mode else im.convert(mode)).reshape(h, w, channels).transpose(2, 0, 1)
    if resized and why is not None:
        rule = " (shorter side scaled, centre crop)" if fit == "crop" else ""
        notes.append(f"resized {resized} of {len(keep)} images to {w}x{h}{why}{rule}")
    return torch.from_numpy(arr), keep


def _hidden(name: str) -> bool:
    """What a user does not see or mean as data: `.x` (`.DS_Store`, `.ipynb_checkpoints/`, the
    `._x.jpg` files of Mac archives) and `__MACOSX/`."""
    return name.startswith(".") or name == "__MACOSX"


def _skip_notes(notes: list[str], hidden: set[str], hidden_files: int, loops: list[str], broken: list[str]) -> None:
    what = []
    if hidden:
        names = sorted(hidden)
        shown = ", ".join(n + "/" for n in names[:3]) + (", ..." if len(names) > 3 else "")
        what.append(f"{len(names)} hidden folder{'s' if len(names) > 1 else ''} ({shown})")
    if hidden_files:
        what.append(f"{hidden_files} hidden file{'s' if hidden_files > 1 else ''} (names starting with '.')")
    if what:
        notes.append("skipped " + " and ".join(what))
    if loops:
        notes.append(f"did not follow {', '.join(loops[:3])}: a link to a folder it is in (a loop)")
    if broken:
        notes.append(f"skipped {len(broken)} broken links ({', '.join(broken[:3])}): their targets do not exist")


def walk_folder(root: Path, problems: Problems, notes: list[str]) -> tuple[dict[str, str], set[str]]:
    """The files under `root` (relative path -> real path, sorted by path) and the folders
    (relative paths). Links are followed, to files and to folders, except a link to a folder it
    is in (that would loop); hidden files and folders (`_hidden`) are skipped. What was skipped
    goes into `notes`."""
    files, dirs, hidden, loops, broken = {}, set(), set(), [], []
    hidden_files = 0
    stack = [(str(root), "", (os.path.realpath(root),))]
    while stack:
        d, rel, above = stack.pop()
        try:
            entries = list(os.scandir(d))
        except OSError as e:
            problems.add(f"{d}: cannot read this folder ({e.strerror}); fix its permissions or remove it")
            continue
        for e in entries:
            r = rel + e.name
            try:
                is_dir = e.is_dir()  # follows a link
            except OSError:
                is_dir = False
            if _hidden(e.name):
                if is_dir:
                    hidden.add(r)
                else:
                    hidden_files += 1
            elif is_dir:
                real = os.path.realpath(e.path)
                if real in above:
                    loops.append(r)
                else:
                    dirs.add(r)
                    stack.append((e.path, r + "/", above + (real,)))
            elif e.is_file():
                files[r] = os.path.realpath(e.path) if e.is_symlink() else os.path.join(above[-1], e.name)
            elif e.is_symlink():
                broken.append(r)
    _skip_notes(notes, hidden, hidden_files, sorted(loops), sorted(broken))
    return dict(sorted(files.items())), dirs


def _member_name(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name.lstrip("/")


class _Files:
    """A folder (`walk_folder`) or a tar archive seen as a flat list of relative file paths. In an
    archive, hidden members are skipped as in a folder, and links to files or folders inside it
    are followed."""

    def __init__(self, root: Path, problems: Problems, notes: list[str]):
        self.root = root
        self._targets: dict[str, str] = {}
        if root.is_dir():
            self._real, self.dirs = walk_folder(root, problems, notes)
            self.paths, self._bytes = list(self._real), None
            return
        # one pass in archive order: a gzip stream cannot seek back, so reading members in
        # any other order decompresses the archive again for each file (hours for CIFAR-10)
        data, links, dirs, hidden = {}, {}, set(), set()
        hidden_files = 0
        try:
            with tarfile.open(root) as tar:
                for m in tar:
                    name = _member_name(m.name).rstrip("/")
                    parts = name.split("/")
                    cut = next((k for k, p in enumerate(parts) if _hidden(p)), None)
                    if cut is not None:
                        if cut < len(parts) - 1 or m.isdir():
                            hidden.add("/".join(parts[:cut + 1]))
                        else:
                            hidden_files += 1
                    elif m.isfile():
                        data[name] = tar.extractfile(m).read()
                    elif m.issym():
                        links[name] = os.path.normpath(os.path.join(os.path.dirname(name), m.linkname))
                    elif m.islnk():
                        links[name] = _member_name(m.linkname)
                    elif m.isdir():
                        dirs.add(name)
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            raise UserError(f"{root}: not a readable tar archive ({e}); check the file is complete")
        broken = []
        for name, target in sorted(links.items()):
            for _ in range(8):  # a link to a link
                if target not in links:
                    break
                target = links[target]
            inside = [] if target in data else [n for n in data if n.startswith(target + "/")]
            if target in data:
                data[name], self._targets[name] = data[target], target
            elif inside:  # a link to a folder: its files under the link's name
                dirs.add(name)
                for n in inside:
                    data[name + n[len(target):]], self._targets[name + n[len(target):]] = data[n], n
            else:
                broken.append(name)
        _skip_notes(notes, hidden, hidden_files, [], broken)
        names = sorted(data)
        top = {n.split("/")[0] for n in names}  # one top folder wrapping everything: strip it
        if len(top) == 1 and all("/" in n for n in names) and not {"train", "test"} & top:
            cut = len(next(iter(top))) + 1
            data = {n[cut:]: b for n, b in data.items()}
            self._targets = {n[cut:]: t[cut:] for n, t in self._targets.items()}
            dirs = {d[cut:] for d in dirs if len(d) > cut}
        self._bytes, self.paths, self.dirs = data, sorted(data), dirs

    def reader(self, rel: str) -> Callable[[], bytes]:
        if self._bytes is None:
            return lambda: (self.root / rel).read_bytes()
        return lambda: self._bytes[rel]

    def display(self, rel: str) -> str:
        return str(self.root / rel)

    def identity(self, rel: str) -> str:
        """The file behind `rel`: its real path, or in an archive the member a link points to."""
        if self._bytes is None:
            return self._real[rel]
        return self._targets.get(rel, rel)


def _is_image(rel: str) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTS


@dataclass
class _Entry:
    """One image a listing names: its split, its key (what the reader reads), its label ("" =
    unlabeled), where it was named (a path, a CSV line) and the file behind it."""
    split: str
    key: str
    label: str
    where: str
    file: str


def _one_entry_per_file(entries: list[_Entry], name, problems: Problems) -> list[_Entry]:
    """A file in train and in test or val (or in val and test) makes the score count images it
    trained on (or selected on); a file with two labels has no ground truth. Both are problems;
    the entries kept are the test (then val) one and the first label. A file listed twice with
    one label is a duplicate, noted after decoding."""
    by_file: dict[str, list[_Entry]] = {}
    for e in entries:
        by_file.setdefault(e.file, []).append(e)
    drop = set()
    for group in (g for g in by_file.values() if len(g) > 1):
        splits = [s for s in ("test", "val", "train") if any(e.split == s for e in group)]
        if len(splits) > 1:
            where = " and ".join(f"{s} ({', '.join(e.where for e in group if e.split == s)})" for s in splits)
            on = "trained" if "train" in splits else "selected"
            problems.add(f"{name(group[0])}: in {where}; remove it from one split, or the {splits[0]} score "
                         f"counts an image it {on} on")
            drop |= {id(e) for e in group if e.split != splits[0]}
            group = [e for e in group if e.split == splits[0]]
        labels = list(dict.fromkeys(e.label for e in group if e.label))
        if len(labels) > 1:
            where = " and ".join(f"'{lab}' ({', '.join(e.where for e in group if e.label == lab)})" for lab in labels)
            problems.add(f"{name(group[0])}: labeled both {where}; give each image one label")
            drop |= {id(e) for e in group if e.label and e.label != labels[0]}
    return [e for e in entries if id(e) not in drop]


def _decode_splits(entries: list[_Entry], index: dict[str, int], read, show, problems: Problems,
                   notes: list[str], image_size: int | None):
    """Each split's images decoded at one size (`image_size` square if given, else as
    `decode_images` chooses for the training images), and the most common size on disk
    (height, width) where it differs from that size."""
    splits: dict[str, Split] = {}
    size = (image_size, image_size) if image_size else None
    channels, stored = None, []
    for name in ("train", "test", "val"):
        items = [e for e in entries if e.split == name]
        if not items:
            continue
        x, keep = decode_images([(show(e.key), read(e.key)) for e in items], problems, notes, size, channels,
                                stored if name == "train" else None)
        if channels is None and len(x):
            channels, size = x.shape[1], (x.shape[3], x.shape[2])
        y = torch.tensor([index.get(items[i].label, -1) if items[i].label else -1 for i in keep], dtype=torch.long)
        splits[name] = Split(x, y, [items[i].key for i in keep])
    common = Counter(stored).most_common(1)[0][0] if stored else None
    return splits, (common[1], common[0]) if common and size and tuple(common) != tuple(size) else None


def read_image_folder(root: Path, problems: Problems, classes: list[str] | None = None,
                      image_size: int | None = None) -> Source:
    """`train/<class>/*`, optional `test/<class>/*` and `val/<class>/*`, optional
    `unlabeled/**` or `train/unlabeled/**`; or just `<class>/*` at the top (then everything is
    training data). Links are followed and hidden files and folders skipped (`walk_folder`)."""
    notes: list[str] = []
    files = _Files(root, problems, notes)
    top = {p.split("/")[0] for p in files.paths}
    layout = "train" in top
    entries: list[_Entry] = []
    skipped, outside, unlabeled_in = 0, [], Counter()
    for rel in files.paths:
        parts = rel.split("/")
        if not _is_image(rel):
            skipped += 1
            continue
        split, label = "train", None
        if parts[0] == "unlabeled" and len(parts) >= 2:
            label = ""
        elif parts[0] in ("train", "test", "val") and len(parts) >= 3:
            split, label = parts[0], parts[1]
        elif not layout and len(parts) >= 2 and parts[0] not in ("test", "val"):
            label = parts[0]
        if label is None:
            outside.append(rel)
            continue
        if label == "unlabeled":
            unlabeled_in[split] += 1
            if split != "train":
                continue
            label = ""
        entries.append(_Entry(split, rel, label, files.display(rel), files.identity(rel)))
    for split in ("test", "val"):
        if unlabeled_in[split]:
            problems.add(f"{root / split / 'unlabeled'}: {unlabeled_in[split]} images without labels in the {split} "
                         "split, which cannot be scored; move them to unlabeled/ or into class folders")
    if unlabeled_in["train"]:
        notes.append(f"read train/unlabeled/ as {unlabeled_in['train']} unlabeled images (not a class)")
    if outside:
        notes.append(f"skipped {len(outside)} images outside the class folders (first: {outside[0]}); "
                     f"a class is a folder, {'train/' if layout else ''}<class>/")
    if skipped:
        notes.append(f"skipped {skipped} files that are not images (by extension)")
    base = "train/" if layout else ""
    with_images = {"/".join(e.key.split("/")[:2 if layout else 1]) for e in entries}
    for d in sorted(files.dirs):
        cls = d[len(base):] if d.startswith(base) else ""
        if cls and "/" not in cls and cls not in ("unlabeled", "test", "val") and d not in with_images:
            problems.add(f"{root / d}: class folder has no images; add images or remove the folder")
    found = sorted({e.label for e in entries if e.label})
    if classes is None:
        classes = found
    else:
        for c in sorted(set(found) - set(classes)):
            problems.add(f"{root}: folder '{c}' is not one of --classes {','.join(classes)}")
    if not classes:
        raise UserError(f"{root}: no class folders with images found; expected train/<class>/*.png "
                        "(or <class>/*.png)")
    entries = _one_entry_per_file(entries, lambda e: e.where, problems)
    splits, on_disk = _decode_splits(entries, {c: i for i, c in enumerate(classes)}, files.reader, files.display,
                                     problems, notes, image_size)
    if "train" not in splits or len(splits["train"].x) == 0:
        raise UserError(f"{root}: no readable training images")
    return Source(root.name, "image folder" + (" (tar)" if not root.is_dir() else ""), classes,
                  splits["train"], splits.get("test"), splits.get("val"),
                  flip=splits["train"].x.shape[1] == 3, notes=notes, size_on_disk=on_disk)


# ----------------------------------------------------------------------------- CSV
PATH_COLUMNS = ("path", "file", "filename", "file_name", "filepath", "file_path", "image", "image_path",
                "image_file", "img", "img_path", "name")
LABEL_COLUMNS = ("label", "class", "target", "category", "y", "class_name", "label_name")
SPLIT_COLUMNS = ("split", "set", "subset", "fold")
SPLIT_NAMES = {"train": "train", "training": "train", "test": "test", "testing": "test", "val": "val",
               "valid": "val", "validation": "val"}


def _columns(path: Path, first: list[str]) -> tuple[dict[str, int | None], bool]:
    """The column of the path, label and split, and whether line 1 is a header. A header names
    its columns (any order, `PATH_COLUMNS`, `LABEL_COLUMNS`, `SPLIT_COLUMNS`); without one the
    columns are path, label, split."""
    names = [c.strip().lower().replace(" ", "_").replace("-", "_") for c in first]

    def find(known):
        return next((i for i, n in enumerate(names) if n in known), None)

    if find(PATH_COLUMNS) is not None:
        cols = {"path": find(PATH_COLUMNS), "label": find(LABEL_COLUMNS), "split": find(SPLIT_COLUMNS)}
        other = [first[i].strip() for i in range(len(first)) if i not in cols.values()]
        if cols["label"] is None and other:
            raise UserError(f"{path}, line 1: no label column in the header; name it label (or class, target, "
                            f"category, y), not '{other[0]}'")
        return cols, True
    cell = first[0].strip()
    p = Path(cell) if os.path.isabs(cell) else path.parent / cell
    if os.path.splitext(cell)[1].lower() not in IMAGE_EXTS and not p.is_file():
        raise UserError(f"{path}, line 1: '{','.join(c.strip() for c in first)}' is neither a header semisup "
                        "knows nor an image path; the header must name the columns path,label[,split] (or "
                        "file/filename/filepath/image/img/name, class/target/category/y, set/subset/fold), in any "
                        "order; or leave it out and give lines path,label[,split]")
    return {"path": 0, "label": 1, "split": 2}, False


def read_csv(path: Path, problems: Problems, classes: list[str] | None = None,
             image_size: int | None = None) -> Source:
    """A manifest `path,label[,split]`, with or without a header line (`_columns`); an empty
    label means unlabeled; paths are relative to the CSV's folder; `split` is train (default),
    test or val. Read as UTF-8, with or without Excel's byte-order mark."""
    try:
        if path.stat().st_size == 0:
            raise UserError(f"{path}: empty file (0 bytes); a CSV manifest has lines 'path,label[,split]'")
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = [(n, r) for n, r in enumerate(csv.reader(f), 1) if r and any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise UserError(f"{path}: cannot read the CSV ({e}); save it as UTF-8 text")
    cols, header = _columns(path, rows[0][1]) if rows else ({}, False)
    if header:
        rows = rows[1:]
    if not rows:
        raise UserError(f"{path}: the CSV lists no images; expected lines 'path,label'")

    def cell(r, k):
        i = cols[k]
        return r[i].strip() if i is not None and i < len(r) else ""

    entries = []
    for n, r in rows:
        rel, label, split = cell(r, "path"), cell(r, "label"), cell(r, "split").lower() or "train"
        if split not in SPLIT_NAMES:
            problems.add(f"{path}, line {n}: split '{split}' is not train, test or val")
            continue
        p = Path(rel) if os.path.isabs(rel) else path.parent / rel
        if not p.is_file():
            problems.add(f"{path}, line {n}: image file {p} does not exist; fix the path or remove the line")
            continue
        entries.append(_Entry(SPLIT_NAMES[split], str(p), label, f"line {n}", os.path.realpath(p)))
    found = sorted({e.label for e in entries if e.label})
    if classes is None:
        classes = sorted(found, key=lambda c: (not c.isdigit(), int(c) if c.isdigit() else 0, c))
    index = {c: i for i, c in enumerate(classes)}
    for e in entries:
        if e.label and e.label not in index:
            problems.add(f"{path}, {e.where}: label '{e.label}' is not one of the classes "
                         f"{','.join(classes)}; fix the label or pass --classes")
    entries = _one_entry_per_file([e for e in entries if not e.label or e.label in index],
                                  lambda e: f"{path}: {e.key}", problems)
    notes: list[str] = []
    splits, on_disk = _decode_splits(entries, index, lambda k: Path(k).read_bytes, str, problems, notes, image_size)
    if "train" not in splits:
        raise UserError(f"{path}: no readable training images in the CSV")
    return Source(path.stem, "CSV manifest", classes, splits["train"], splits.get("test"),
                  splits.get("val"), flip=splits["train"].x.shape[1] == 3, notes=notes, size_on_disk=on_disk)


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


def read_npz(path: Path, problems: Problems, classes: list[str] | None = None) -> Source:
    """`x` (N,H,W[,C]) uint8 and `y` (N,) with -1 for unlabeled; optional `x_test`, `y_test`,
    `x_val`, `y_val` (of the shape of `x`) and `classes` (names)."""
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


def image_hashes(x: torch.Tensor) -> list[str]:
    """A digest of each image's pixels: equal digests, equal images."""
    return [hashlib.blake2b(img.numpy().tobytes(), digest_size=12).hexdigest() for img in x]


def _check_copies(src: Source, spec: str, problems: Problems) -> None:
    """A val or test image with the pixels of a training image (labeled or not), or a test image
    with those of a val image, makes the score count an image trained (or selected) on. Where
    there are no files (arrays: built-in, IDX, NPZ) the pixels are all there is: a problem naming
    the first pair. Where there are files, one file in two splits is the problem (the readers'
    `_one_entry_per_file`), and two files of equal pixels (a copied photo, or two blank frames) a
    note naming the first pair. Copies within train are a note."""
    keys = {"train": "x", "test": "x_test", "val": "x_val"}

    def name(s: Split, split: str, i: int) -> str:
        if s.names:
            return s.names[i]
        return f"'{keys[split]}' at index {i}" if src.kind == "NPZ" else f"{split} image {i}"

    seen: dict[str, dict[str, int]] = {}
    for split, s in (("train", src.train), ("val", src.val), ("test", src.test)):
        if s is None:
            continue
        hashes = image_hashes(s.x)
        for earlier, first in seen.items():
            hits = [(j, first[h]) for j, h in enumerate(hashes) if h in first]
            if hits:
                j, i = hits[0]
                e = src.train if earlier == "train" else src.val
                pair = f"{name(s, split, j)} = {name(e, earlier, i)}"
                on = "trained" if earlier == "train" else "selected"
                if s.names:
                    src.notes.append(f"{len(hits)} {split} images have the pixels of {earlier} images (first: "
                                     f"{pair}); if they are one picture, remove it from {earlier}, or the {split} "
                                     f"score counts an image it {on} on")
                else:
                    problems.add(f"{spec}: {len(hits)} {split} images are copies of {earlier} images (first: {pair}); "
                                 f"remove them from {earlier}, or the {split} score counts images it {on} on")
        first: dict[str, int] = {}
        for j, h in enumerate(hashes):
            first.setdefault(h, j)
        if split == "train" and len(first) < len(hashes):
            src.notes.append(f"{len(hashes) - len(first)} training images are exact duplicates of other "
                             "training images")
        seen[split] = first


def load_source(spec: str, strict: bool = True, classes: list[str] | None = None,
                task: str | None = None, image_size: int | None = None) -> Source:
    """Read `spec`; `task` None detects it, else data of the other task is an error.
    `image_size` (classification) fits every image to that square as it is read (`fit_image`);
    segmentation keeps the images' own size (its --image-size is the training crop)."""
    problems = Problems(strict)
    found = detect_task(spec)
    if task is not None:
        _check_task(spec, task, found)
    if found == "segment":
        from .segsources import read_segmentation

        src = read_segmentation(spec, problems, classes)
        if image_size:
            src.notes.append(f"--image-size {image_size} is the training crop for segmentation; "
                             "the images are kept at their size")
        _check_copies(src, spec, problems)
        src.problems += problems.items
        return src
    kind = detect(spec)
    if kind == "built-in":
        src = read_digits(problems)
    elif kind == "idx":
        src = read_idx(Path(spec), problems)
    elif kind == "folder":
        src = read_image_folder(Path(spec), problems, classes, image_size)
    elif kind == "csv":
        src = read_csv(Path(spec), problems, classes, image_size)
    else:
        src = read_npz(Path(spec), problems, classes)
    if not src.classes:
        problems.add(f"{spec}: no labeled images: no image has a label (every label is -1 or empty); "
                     "label some or pass --classes")
    _check_copies(src, spec, problems)
    if image_size and src.shape[1:] != (image_size, image_size):  # arrays: built-in, IDX, NPZ
        src.size_on_disk = src.shape[1:]
        for s in (src.train, src.test, src.val):
            if s is not None:
                s.x = resize_images(s.x, (image_size, image_size))
        h, w = src.size_on_disk
        src.notes.append(f"resized the images from {w}x{h} to {image_size}x{image_size} (--image-size; "
                         "shorter side scaled, centre crop)")
    src.problems += problems.items
    counts = torch.bincount(src.train.y[src.train.y >= 0], minlength=len(src.classes))
    for c, n in zip(src.classes, counts.tolist()):
        if n == 0 and kind != "built-in":
            msg = f"{spec}: class '{c}' has no labeled training images; add some or drop the class"
            if strict:
                raise UserError(msg)
            src.problems.append(msg)
    return src
