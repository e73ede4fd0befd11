"""The data layer's entry: `load_source(spec)` takes a built-in name or a path, finds its format
in the registry (`formats.FORMATS`, one module per format, each with its detector) and reads it.

Readers report problems (unreadable files, empty classes, labels outside the classes, a file in
two splits) through `Problems`: an error when training, a list when checking with `semisup data`;
what they changed or skipped goes into `Source.notes`. Here the checks common to every format
follow: the task asked for against the task found, copies across splits, classes without images.
Every file goes through one decoder and one resize rule (`decode.py`), which predict uses too.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from ..errors import Problems, UserError
from .decode import decode_images, resize_images, walk_folder
from .formats import FORMATS
from .types import BUILTINS, KINDS, Format, Source, Split

# the names the rest of semisup imports from here (defined in types.py and decode.py)
__all__ = ["BUILTINS", "Source", "Split", "decode_images", "detect", "detect_task", "find_format", "load_source",
           "walk_folder"]


def find_format(spec: str) -> Format | None:
    """The first format in `FORMATS` whose detector holds for `spec`, or None."""
    return next((f for f in FORMATS if f.detect(spec)), None)


def _unknown(spec: str) -> UserError:
    """Why no format reads `spec`."""
    p = Path(spec)
    if not p.exists():
        return UserError(f"{spec}: no such file or folder; give a path or a built-in name "
                         f"({', '.join(BUILTINS)})")
    if p.is_file():
        return UserError(f"{spec}: unknown file type; expected .npz, .csv, .tar(.gz) or a folder")
    return UserError(f"{spec}: cannot tell the format of this folder; expected IDX files, "
                     "train/<class>/ image folders, a .csv or a .npz")


def detect(spec: str) -> str:
    """The name of `spec`'s format (`Format.name`); a one-line error where none reads it."""
    fmt = find_format(spec)
    if fmt is None:
        raise _unknown(spec)
    return fmt.name


def detect_task(spec: str) -> str:
    """The kind of data `spec` holds (`Format.task`): 'segment' for `shapes`, a dataset card or a
    segmentation folder; else 'classify'. The kinds are named as the tasks that read them first."""
    fmt = find_format(spec)
    return fmt.task if fmt else "classify"


def _check_kind(spec: str, kind: str, asked: str, fmt: Format | None) -> None:
    found = fmt.task if fmt else "classify"
    if kind == found:
        return
    if fmt is None and not Path(spec).exists():
        raise _unknown(spec)
    looks = f"looks like {fmt.looks}" if fmt else f"is not {KINDS[kind]['name']}"
    raise UserError(f"{asked}: {spec} {looks}; {KINDS[kind]['instead']}")


def image_hashes(x: torch.Tensor) -> list[str]:
    """A digest of each image's pixels: equal digests, equal images."""
    return [hashlib.blake2b(img.numpy().tobytes(), digest_size=12).hexdigest() for img in x]


def _check_copies(src: Source, spec: str, problems: Problems) -> None:
    """A val or test image with the pixels of a training image (labeled or not), or a test image
    with those of a val image, makes the score count an image trained (or selected) on. Where
    there are no files (arrays: built-in, IDX, NPZ) the pixels are all there is: a problem naming
    the first pair. Where there are files, one file in two splits is the problem (the readers'
    `one_entry_per_file`), and two files of equal pixels (a copied photo, or two blank frames) a
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
                task: str | None = None, image_size: int | None = None, asked: str | None = None) -> Source:
    """Read `spec`. `task` is the kind of data wanted (`Format.task`, a key of `types.KINDS`:
    what a task reads, `tasks.Task.data_kind`); None takes what is found, else data of another
    kind is an error that names `asked` (default "--task KIND"). `image_size` (images with class
    labels) fits every image to that square as it is read (`fit_image`); images with masks keep
    their own size (segmentation's --image-size is the training crop)."""
    problems = Problems(strict)
    fmt = find_format(spec)
    if task is not None:
        _check_kind(spec, task, asked or f"--task {task}", fmt)
    if fmt is None:
        raise _unknown(spec)
    src = fmt.read(spec, problems, classes, image_size)
    if src.train.masks is not None:
        if image_size:
            src.notes.append(f"--image-size {image_size} is the training crop for segmentation; "
                             "the images are kept at their size")
        _check_copies(src, spec, problems)
        src.problems += problems.items
        return src
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
        if n == 0:
            msg = f"{spec}: class '{c}' has no labeled training images; add some or drop the class"
            if strict:
                raise UserError(msg)
            src.problems.append(msg)
    return src
