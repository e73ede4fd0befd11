"""Image files to uint8 tensors, the one way every reader and predict read them.

One decoder (`_decode`: EXIF orientation, 8 bits, L or RGB), one resize rule (`fit_image`), one
batch decoder on threads (`decode_images`: one size for all, memory near the result's) and one
folder walker (`walk_folder`: links followed, hidden files skipped). What they change or skip
goes into the caller's notes; what they cannot read is a problem (`Problems`).
"""
from __future__ import annotations

import io
import os
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from ..errors import Problems
from .types import IMAGE_EXTS

# an image above Pillow's warning size (89 Mpx) is read and noted (`_NOTES['large']`), not warned about on
# two lines of stderr; twice that size stays an error (`_decode`)
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

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


def channels_first(a: np.ndarray, channels: tuple[int, ...] = (1, 3)) -> np.ndarray | None:
    """An image array as (N, C, H, W), or None when its shape is not one of the layouts: 3-D is
    (N, H, W), gray; 4-D is channels first where axis 1 is 1 or 3, else channels last where the
    last axis is in `channels` (a 4th, alpha, channel is dropped). A shape that fits both, e.g.
    (N, 3, 8, 3), is read channels first, as torch lays images out."""
    if a.ndim == 3:
        return a[:, None]
    if a.ndim == 4 and a.shape[1] in (1, 3):
        return a
    if a.ndim == 4 and a.shape[-1] in channels:
        return a.transpose(0, 3, 1, 2)[:, :3]
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


def is_hidden(name: str) -> bool:
    """What a user does not see or mean as data: `.x` (`.DS_Store`, `.ipynb_checkpoints/`, the
    `._x.jpg` files of Mac archives) and `__MACOSX/`."""
    return name.startswith(".") or name == "__MACOSX"


def skip_notes(notes: list[str], hidden: set[str], hidden_files: int, loops: list[str], broken: list[str]) -> None:
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
    is in (that would loop); hidden files and folders (`is_hidden`) are skipped. What was skipped
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
            if is_hidden(e.name):
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
    skip_notes(notes, hidden, hidden_files, sorted(loops), sorted(broken))
    return dict(sorted(files.items())), dirs


def is_image(rel: str) -> bool:
    """Whether a relative path names an image file, by its extension (hidden files are not)."""
    name = rel.rsplit("/", 1)[-1]
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTS

