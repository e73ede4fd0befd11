"""The data layer's shared types and constants: what every reader returns (`Source`, `Split`),
what a format registers (`Format`), the mask ignore value and the names semisup reads.

Everything downstream (splits, views, metrics, the trainer) imports these from here; this
module imports nothing else of semisup, so any module can depend on it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

IGNORE = 255  # the ignore value of masks in memory (readers remap a data set's own to it)
BUILTINS = ("digits", "shapes")
# the kinds of data (`Format.task`, `Source.task`): how each is named, and what to do when
# another kind was given (`sources.load_source`)
KINDS = {
    "classify": {"name": "classification data",
                 "instead": "use --task segment, or give classification data"},
    "segment": {"name": "segmentation data",
                "instead": "a segmentation source is a folder with images/ and masks/ (or train/ beside "
                           "trainannot/), a dataset card (.yaml), or 'shapes'"},
}
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


@dataclass(frozen=True)
class Format:
    """One data format, as `formats.FORMATS` lists it. `detect(spec)` says whether the spec (a
    built-in name or a path, which may not exist) is of this format; it never raises. `read(spec,
    problems, classes, image_size)` returns its `Source` (`classes`: names given by --classes, or
    None; `image_size`: the classification size to fit images to as they are read, or None).
    `looks` finishes "SPEC looks like ..." where --task asks for the other task."""
    name: str
    task: str  # "classify" or "segment"
    looks: str
    detect: Callable[[str], bool]
    read: Callable[..., Source]
