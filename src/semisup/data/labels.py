"""Labels given by hand, in CSV files (the picks.csv of `semisup suggest`, its label column
filled in), read back for `semisup train --add-labels`; and how a training image is named in
those files: its file, or SOURCE:train:INDEX where the data has no files."""
from __future__ import annotations

import csv
import os
from pathlib import Path

import torch

from ..errors import UserError
from .types import BUILTINS

PICKS = "picks.csv"


def file_keys(names: list[str], spec: str) -> list[str]:
    """File names as paths relative to the data's folder (a manifest's: the CSV's folder), so
    that they compare across working directories and a move of the data."""
    if spec in BUILTINS or not names:
        return list(names)
    base = Path(os.path.abspath(spec))
    base = base if base.is_dir() else base.parent
    keys = []
    for n in names:
        p = Path(n)
        if not p.is_absolute() and not (base / p).exists() and p.exists():  # relative to here
            p = Path(os.path.abspath(p))
        keys.append(Path(os.path.relpath(p, base)).as_posix() if p.is_absolute() else p.as_posix())
    return keys


def image_path(src, spec: str, i: int) -> str:
    """Training image `i` of `src` as picks.csv and labels.csv name it: its file (under the data's
    folder) where the data has files, else SOURCE:train:I ("digits:train:123")."""
    names = src.train.names
    if len(names) != len(src.train.y):
        return f"{src.name}:train:{i}"
    key = Path(names[i])
    if key.is_absolute():
        return key.as_posix()
    base = Path(spec) if Path(spec).is_dir() else Path(spec).parent
    return (base / key).as_posix() if (base / key).exists() else f"{spec}:{key.as_posix()}"


def _same_image(given: str, src, spec: str, i: int) -> bool:
    """Whether `given` (a path from a picks.csv) names training image `i`: the same file relative to
    the data's folder (`file_keys`), or a path ending in its name there (the data moved)."""
    names = src.train.names
    if len(names) != len(src.train.y):
        return given == image_path(src, spec, i) or given.endswith(f":train:{i}")
    key = file_keys([names[i]], spec)[0]
    return file_keys([given], spec)[0] == key or given.replace("\\", "/").endswith(("/" + key, ":" + key))


def read_rows(path: str) -> list[tuple[int, dict]]:
    """(line number, row) of a CSV with `index` and `label` columns."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            fields = reader.fieldnames or []
            if not fields:
                raise UserError(f"--add-labels {path}: an empty file; give the {PICKS} of `semisup suggest` with its "
                                "label column filled in")
            if not {"index", "label"} <= set(fields):
                raise UserError(f"--add-labels {path}: no {'index' if 'index' not in fields else 'label'} column; "
                                f"give a CSV with index,path,label columns (the {PICKS} of `semisup suggest`)")
            return [(reader.line_num, row) for row in reader]
    except FileNotFoundError:
        raise UserError(f"--add-labels {path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"--add-labels {path}: a folder; give the {PICKS} inside it") from None
    except (UnicodeDecodeError, csv.Error) as e:
        raise UserError(f"--add-labels {path}: not a readable CSV ({type(e).__name__}); give the {PICKS} of "
                        "`semisup suggest` with its label column filled in") from None
    except OSError as e:
        raise UserError(f"--add-labels {path}: cannot read it ({e.strerror or e})") from None


def added_labels(files: list[str], data, spec: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The rows of `files` with a label (a class name): (training image indices, their classes, the
    round of each: k for the k-th file). A row names its image by `index`, checked against its
    `path` where it has one; an image already labeled (drawn, or in an earlier row) with the same
    class is skipped, with another class it is an error, as are an unknown class, an index out
    of range or held out for testing, and a path that is not the image at that index."""
    src, classes = data.source, data.classes
    n = len(src.train.y)
    pool = torch.zeros(n, dtype=torch.bool)
    pool[data.labeled] = True
    pool[data.unlabeled] = True
    drawn = dict(zip(data.labeled.tolist(), src.train.y[data.labeled].tolist()))
    taken: dict[int, tuple[int, str, int]] = {}
    for k, f in enumerate(files, 1):
        for line, row in read_rows(f):
            label = (row.get("label") or "").strip()
            if not label:
                continue
            where = f"--add-labels {f}, line {line}"
            text = (row.get("index") or "").strip()
            try:
                i = int(text)
            except ValueError:
                raise UserError(f"{where}: index {text!r} is not a whole number; keep the index column that "
                                "`semisup suggest` wrote") from None
            if not 0 <= i < n:
                raise UserError(f"{where}: index {i} is not a training image of {spec} (it has {n}, 0 to {n - 1})")
            if label not in classes:
                shown = ", ".join(classes[:20]) + (", ..." if len(classes) > 20 else "")
                raise UserError(f"{where}: label {label!r} is not a class of {spec} ({shown}); write one of "
                                "the class names")
            path = (row.get("path") or "").strip()
            if path and not _same_image(path, src, spec, i):
                raise UserError(f"{where}: index {i} of {spec} is {image_path(src, spec, i)}, not {path}; the data "
                                "changed since the picks were made: run `semisup suggest` again")
            if not pool[i]:
                raise UserError(f"{where}: image {i} is held out as the run's test split; label another image")
            c = classes.index(label)
            had = (classes[drawn[i]], "the drawn labeled set") if i in drawn else \
                (classes[taken[i][0]], taken[i][1]) if i in taken else None
            if had is not None:
                if had[0] == label:
                    continue
                raise UserError(f"{where}: image {i} is labeled '{had[0]}' in {had[1]}, here '{label}'; give each "
                                "image one label")
            taken[i] = (c, where, k)
    index = torch.tensor(list(taken), dtype=torch.long)
    return (index, torch.tensor([t[0] for t in taken.values()], dtype=torch.long),
            torch.tensor([t[2] for t in taken.values()], dtype=torch.long))
