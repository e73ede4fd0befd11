"""`semisup data SPEC`: what a data set holds and every problem found in it."""
from __future__ import annotations

import torch

from .sources import load_source
from .types import Source


def _bytes(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} KB"


def _memory(src: Source, splits) -> str:
    """What the images take in memory as uint8 (N x C x H x W bytes), and at the size on disk
    where they were resized."""
    c, h, w = src.shape
    n = sum(len(s.x) for _, s in splits)
    line = f"  memory: {n} images x {c} x {h} x {w} = {_bytes(n * c * h * w)} as uint8"
    if src.train.masks is not None:
        line += f", masks {_bytes(n * h * w)}"
    if src.size_on_disk:
        dh, dw = src.size_on_disk
        line += f" (at the stored size {dw}x{dh}: {_bytes(n * c * dh * dw)})"
    return line


def report(spec: str, classes: list[str] | None = None, task: str | None = None,
           image_size: int | None = None) -> str:
    src = load_source(spec, strict=False, classes=classes, task=task, image_size=image_size)
    c, h, w = src.shape
    masks = src.train.masks is not None
    task = ", segmentation" if masks and "segmentation" not in src.kind else ""
    lines = [f"{spec}: {src.kind} (detected){task}, {len(src.classes)} classes, {w}x{h} pixels, "
             f"{c} channel{'s' if c > 1 else ''}"]
    splits = [(n, s) for n, s in (("train", src.train), ("val", src.val), ("test", src.test)) if s is not None]
    lines += (_segment_table if masks else _class_table)(src, splits)
    lines.append(_memory(src, splits))
    problems = src.problems
    for note in src.notes:
        lines.append(f"  note: {note}")
    lines.append(f"problems: {len(problems) or 'none'}")
    lines += [f"  - {p}" for p in problems]
    return "\n".join(lines)


def _class_table(src: Source, splits) -> list[str]:
    width = max(len(n) for n in src.classes + ["class", "unlabeled"])
    lines = [f"  {'class':{width}s} " + " ".join(f"{n:>8s}" for n, _ in splits)]
    counts = {n: torch.bincount(s.y[s.y >= 0], minlength=len(src.classes)).tolist() for n, s in splits}
    for i, cls in enumerate(src.classes):
        lines.append(f"  {cls:{width}s} " + " ".join(f"{counts[n][i]:8d}" for n, _ in splits))
    lines.append(f"  {'unlabeled':{width}s} " + " ".join(f"{int((s.y < 0).sum()):8d}" for _, s in splits))
    lines.append(f"  {'total':{width}s} " + " ".join(f"{len(s.y):8d}" for _, s in splits))
    if src.test is None and src.val is None:
        lines.append("  no test or val split: training holds out 20% of each class's labeled images for testing")
    return lines


def _segment_table(src: Source, splits) -> list[str]:
    """Images with and without masks per split; each class's share of the labeled pixels."""
    ignored = "ignored" + (f" (value {src.ignore_index})" if src.ignore_index is not None else "")
    width = max(len(n) for n in src.classes + ["without masks", ignored])

    def row(name: str, cells: list[str]) -> str:
        return f"  {name:{width}s} " + " ".join(cells)

    lines = [row("images", [f"{n:>8s}" for n, _ in splits]),
             row("with masks", [f"{int((s.y >= 0).sum()):8d}" for _, s in splits]),
             row("without masks", [f"{int((s.y < 0).sum()):8d}" for _, s in splits]),
             "  pixels per class, % of the labeled pixels (ignored: % of all pixels of images with masks)"]
    k = len(src.classes)
    counts = [sum((torch.bincount(m.flatten(), minlength=256) for m in s.masks[s.y >= 0]),  # a mask at a time
                  torch.zeros(256, dtype=torch.long)).double() for _, s in splits]
    for i, cls in enumerate(src.classes):
        lines.append(row(cls, [f"{float(100 * c[i] / c[:k].sum().clamp_min(1)):7.2f}%" for c in counts]))
    lines.append(row(ignored, [f"{float(100 * c[255] / c.sum().clamp_min(1)):7.2f}%" for c in counts]))
    if src.test is None and src.val is None:
        lines.append("  no test or val split: training holds out 20% of the images with masks for testing")
    return lines
