"""A listing of labeled image files (an image folder's, a CSV manifest's) to decoded splits: one
file in one split with one label (`one_entry_per_file`), each split decoded at one size
(`decode_splits`)."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch

from ..errors import Problems
from .decode import decode_images
from .types import Split


@dataclass
class Entry:
    """One image a listing names: its split, its key (what the reader reads), its label ("" =
    unlabeled), where it was named (a path, a CSV line) and the file behind it."""
    split: str
    key: str
    label: str
    where: str
    file: str


def one_entry_per_file(entries: list[Entry], name, problems: Problems) -> list[Entry]:
    """A file in train and in test or val (or in val and test) makes the score count images it
    trained on (or selected on); a file with two labels has no ground truth. Both are problems;
    the entries kept are the test (then val) one and the first label. A file listed twice with
    one label is a duplicate, noted after decoding."""
    by_file: dict[str, list[Entry]] = {}
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


def decode_splits(entries: list[Entry], index: dict[str, int], read, show, problems: Problems,
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
