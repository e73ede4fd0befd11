"""The data formats semisup reads, one module each, in detection order: the first whose
`detect(spec)` holds reads the spec (`sources.load_source`). Segmentation layouts come before the
classification ones, since a segmentation folder also has subfolders. Adding a format is a module
that defines a `Format` (`types.Format`: name, task, what it looks like, detector, reader) and one
line here."""
from __future__ import annotations

from ..types import Format
from . import builtin, card, folder, idx, manifest, npz, segfolder

FORMATS: list[Format] = [
    builtin.SHAPES,
    builtin.DIGITS,
    card.FORMAT,
    segfolder.FORMAT,
    idx.FORMAT,
    npz.FORMAT,
    manifest.FORMAT,
    folder.FORMAT,
]
