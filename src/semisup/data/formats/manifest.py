"""CSV manifests: one line per image, `path,label[,split]` (`read_csv`). The module is not named
csv.py so that it does not shadow the standard library's `csv`."""
from __future__ import annotations

import csv
import os
from pathlib import Path

from ...errors import Problems, UserError
from ..listing import Entry, decode_splits, one_entry_per_file
from ..types import IMAGE_EXTS, Format, Source


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


def read_csv(spec: str, problems: Problems, classes: list[str] | None = None,
             image_size: int | None = None) -> Source:
    """A manifest `path,label[,split]`, with or without a header line (`_columns`); an empty
    label means unlabeled; paths are relative to the CSV's folder; `split` is train (default),
    test or val. Read as UTF-8, with or without Excel's byte-order mark."""
    path = Path(spec)
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
        entries.append(Entry(SPLIT_NAMES[split], str(p), label, f"line {n}", os.path.realpath(p)))
    found = sorted({e.label for e in entries if e.label})
    if classes is None:
        classes = sorted(found, key=lambda c: (not c.isdigit(), int(c) if c.isdigit() else 0, c))
    index = {c: i for i, c in enumerate(classes)}
    for e in entries:
        if e.label and e.label not in index:
            problems.add(f"{path}, {e.where}: label '{e.label}' is not one of the classes "
                         f"{','.join(classes)}; fix the label or pass --classes")
    entries = one_entry_per_file([e for e in entries if not e.label or e.label in index],
                                  lambda e: f"{path}: {e.key}", problems)
    notes: list[str] = []
    splits, on_disk = decode_splits(entries, index, lambda k: Path(k).read_bytes, str, problems, notes, image_size)
    if "train" not in splits:
        raise UserError(f"{path}: no readable training images in the CSV")
    return Source(path.stem, "CSV manifest", classes, splits["train"], splits.get("test"),
                  splits.get("val"), flip=splits["train"].x.shape[1] == 3, notes=notes, size_on_disk=on_disk)


def detect(spec: str) -> bool:
    p = Path(spec)
    return p.is_file() and p.name.lower().endswith(".csv")


FORMAT = Format("csv", "classify", "a classification CSV manifest", detect, read_csv)
