"""`semisup data SPEC`: what a data set holds and every problem found in it."""
from __future__ import annotations

import hashlib

import torch

from .sources import load_source


def _hashes(x: torch.Tensor) -> list[str]:
    return [hashlib.blake2b(img.numpy().tobytes(), digest_size=12).hexdigest() for img in x]


def report(spec: str, classes: list[str] | None = None) -> str:
    src = load_source(spec, strict=False, classes=classes)
    c, h, w = src.shape
    lines = [f"{spec}: {src.kind} (detected), {len(src.classes)} classes, {w}x{h} pixels, "
             f"{c} channel{'s' if c > 1 else ''}"]
    splits = [(n, s) for n, s in (("train", src.train), ("val", src.val), ("test", src.test)) if s is not None]
    width = max(len(n) for n in src.classes + ["class", "unlabeled"])
    lines.append(f"  {'class':{width}s} " + " ".join(f"{n:>8s}" for n, _ in splits))
    counts = {n: torch.bincount(s.y[s.y >= 0], minlength=len(src.classes)).tolist() for n, s in splits}
    for i, cls in enumerate(src.classes):
        lines.append(f"  {cls:{width}s} " + " ".join(f"{counts[n][i]:8d}" for n, _ in splits))
    lines.append(f"  {'unlabeled':{width}s} " + " ".join(f"{int((s.y < 0).sum()):8d}" for _, s in splits))
    lines.append(f"  {'total':{width}s} " + " ".join(f"{len(s.y):8d}" for _, s in splits))
    if src.test is None and src.val is None:
        lines.append("  no test or val split: training holds out 20% of each class's labeled images for testing")
    problems = list(src.problems)
    train_h = _hashes(src.train.x)
    for n, s in splits[1:]:
        seen = set(_hashes(s.x))
        dup = sum(hh in seen for hh in train_h)
        if dup:
            problems.append(f"{dup} training images are exact copies of {n} images; remove them from train")
    inner = len(train_h) - len(set(train_h))
    if inner:
        lines.append(f"  note: {inner} training images are exact duplicates of other training images")
    for note in src.notes:
        lines.append(f"  note: {note}")
    lines.append(f"problems: {len(problems) or 'none'}")
    lines += [f"  - {p}" for p in problems]
    return "\n".join(lines)
