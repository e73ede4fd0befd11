"""Dataset cards: a YAML file naming the folders of a segmentation data set, its classes, the
ignore value and a palette:

    classes: [background, road, car]
    ignore: 255                      # optional, default 255; or an [r, g, b] colour in colour masks
    palette: [[0, 0, 0], [128, 64, 128], [64, 0, 128]]  # optional; needed for RGB colour masks
    train: {images: imgs/train, masks: ann/train}       # paths relative to the card's folder
    unlabeled: imgs/extra            # optional: images without masks
    val: {images: imgs/val, masks: ann/val}             # optional
    test: {images: imgs/test, masks: ann/test}          # optional

The folders are read as a segmentation folder's are (`segfolder.read_plan`).
"""
from __future__ import annotations

from pathlib import Path

from ...errors import Problems, UserError
from ..types import IGNORE, Format, Source
from .segfolder import SPLITS, read_plan

CARD_KEYS = ("classes", "ignore", "palette", "train", "unlabeled", "val", "test")


def _card_error(card: Path, key: str, what: str) -> UserError:
    return UserError(f"{card}: '{key}' {what}")


def _colour(card: Path, key: str, v) -> tuple[int, int, int]:
    if not (isinstance(v, list) and len(v) == 3 and all(isinstance(c, int) and 0 <= c <= 255 for c in v)):
        raise _card_error(card, key, f"must be an [r, g, b] colour of 0..255 integers, not {v!r}")
    return tuple(v)


def _folder(card: Path, key: str, v) -> Path:
    if not isinstance(v, str):
        raise _card_error(card, key, f"must be a folder path, not {v!r}")
    d = card.parent / v
    if not d.is_dir():
        raise _card_error(card, key, f"folder {d} does not exist; fix the path (relative to the card's folder)")
    return d


def read_card(card: Path) -> dict:
    """The card, validated: classes, ignore (int or colour), palette, and plan (split -> images
    folder, masks folder, unlabeled folders, as `segfolder.read_plan` takes it)."""
    import yaml

    try:
        c = yaml.safe_load(card.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise UserError(f"{card}: not a readable YAML dataset card ({str(e).splitlines()[0]})")
    if not isinstance(c, dict):
        raise UserError(f"{card}: a dataset card is a mapping with keys {', '.join(CARD_KEYS)}")
    for k in c:
        if k not in CARD_KEYS:
            raise _card_error(card, k, f"is not a dataset card key; the keys are {', '.join(CARD_KEYS)}")
    for k in ("classes", "train"):
        if k not in c:
            raise _card_error(card, k, "is missing; a card needs at least classes and train")
    classes = c["classes"]
    if not (isinstance(classes, list) and classes and all(isinstance(n, (str, int)) for n in classes)):
        raise _card_error(card, "classes", "must be a list of class names")
    classes = [str(n) for n in classes]
    ignore = c.get("ignore", IGNORE)
    if isinstance(ignore, list):
        ignore = _colour(card, "ignore", ignore)
    elif not (isinstance(ignore, int) and 0 <= ignore <= 255):
        raise _card_error(card, "ignore", f"must be a mask value 0..255 or an [r, g, b] colour, not {ignore!r}")
    palette = c.get("palette")
    if palette is not None:
        if not isinstance(palette, list) or len(palette) != len(classes):
            raise _card_error(card, "palette", f"must list one [r, g, b] colour per class ({len(classes)})")
        palette = [_colour(card, f"palette[{i}]", v) for i, v in enumerate(palette)]
        if len(set(palette)) < len(palette) or ignore in palette:
            raise _card_error(card, "palette", "has a colour twice (or the ignore colour); make each distinct")
    plan = {}
    for s in SPLITS:
        if s not in c:
            continue
        v = c[s]
        if not (isinstance(v, dict) and set(v) == {"images", "masks"}):
            raise _card_error(card, s, f"must be {{images: FOLDER, masks: FOLDER}}, not {v!r}")
        plan[s] = (_folder(card, f"{s}.images", v["images"]), _folder(card, f"{s}.masks", v["masks"]), [])
    if "unlabeled" in c:
        plan["train"][2].append(_folder(card, "unlabeled", c["unlabeled"]))
    return {"classes": classes, "ignore": ignore, "palette": palette, "plan": plan}


def read_card_source(spec: str, problems: Problems, classes: list[str] | None = None,
                     image_size: int | None = None) -> Source:
    """The data set a card names; `image_size` is unused (segmentation keeps the images' size)."""
    path = Path(spec)
    card = read_card(path)
    return read_plan(path, card["plan"], problems, classes, card=card)


def detect(spec: str) -> bool:
    p = Path(spec)
    return p.is_file() and p.suffix.lower() in (".yaml", ".yml")


FORMAT = Format("card", "segment", "segmentation data (images with masks)", detect, read_card_source)
