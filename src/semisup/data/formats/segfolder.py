"""Segmentation folders: images with per-pixel class masks, matched by file name (stem).

Two layouts: a folder with `images/` and `masks/` (optional `unlabeled/`), at the root or per
split under `train/`, `val/`, `test/`; and the CamVid (SegNet) layout, `train/` beside
`trainannot/`. A dataset card (`card.py`) names such folders and reads them with `read_plan`.

Masks may be index images (mode L or P), RGB colour masks mapped through a card's palette,
or binary 0/255 (then 255 is class 1). In memory, masks are uint8 class indices, 255 = ignore.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ...errors import Problems, UserError
from ..decode import _decode, decode_images, in_threads, is_image, walk_folder
from ..types import IGNORE, Format, Source, Split

SPLITS = ("train", "val", "test")
CAMVID_CLASSES = ["Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car",
                  "Pedestrian", "Bicyclist"]
CAMVID_PALETTE = [(128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222),
                  (128, 128, 0), (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192)]
RARE_PIXELS, RARE_MASKS = 0.001, 0.01  # shares of the labeled pixels and of the masks: see `_unnamed_values`


def distinct_palette(k: int) -> list[tuple[int, int, int]]:
    """The PASCAL VOC colour map: k distinct colours, class 0 black."""
    out = []
    for i in range(k):
        rgb = [0, 0, 0]
        for j in range(8):
            for c in range(3):
                rgb[c] |= ((i >> (3 * j + c)) & 1) << (7 - j)
        out.append(tuple(rgb))
    return out




def seg_layout(p: Path) -> str | None:
    """'camvid' or 'folder' where `p` is a folder of segmentation data, else None."""
    if not p.is_dir():
        return None
    if (p / "train").is_dir() and (p / "trainannot").is_dir():
        return "camvid"
    if any((d / "images").is_dir() and (d / "masks").is_dir() for d in (p, p / "train")):
        return "folder"
    return None


# ----------------------------------------------------------------------------- folders
def _plan(root: Path, layout: str, problems: Problems) -> dict[str, tuple[Path, Path, list[Path]]]:
    """split -> (images folder, masks folder, folders of unlabeled images)."""
    per_split = layout == "camvid" or (root / "train" / "images").is_dir()
    plan = {}
    for s in SPLITS if per_split else ("train",):  # one pool: the splitter holds out test images
        base = root / s if per_split else root
        img, msk = (base, root / f"{s}annot") if layout == "camvid" else (base / "images", base / "masks")
        if img.is_dir() and msk.is_dir():
            plan[s] = (img, msk, [])
        elif img.is_dir() or msk.is_dir():
            there, missing = (img, msk) if img.is_dir() else (msk, img)
            what = "masks" if missing == msk else "images"
            problems.add(f"{missing}: no such folder beside {there}; add the {what} there or remove {there}")
        elif (root / s).is_dir():
            problems.add(f"{root / s}: expected {img.relative_to(root)}/ and {msk.relative_to(root)}/ in it; "
                         "add them or remove the folder")
    if "train" in plan:  # unlabeled/ at the top or in train/ (in the CamVid layout, among the images)
        plan["train"][2].extend(d for d in (root / "unlabeled", root / "train" / "unlabeled") if d.is_dir())
    return plan


def _images(d: Path, problems: Problems, notes: list[str]) -> dict[str, Path]:
    """Image files under `d` by relative path without extension (`walk_folder`: links followed,
    hidden files and folders skipped)."""
    out: dict[str, Path] = {}
    for rel in walk_folder(d, problems, notes)[0]:
        if is_image(rel):
            p = d / rel
            key = os.path.splitext(rel)[0]
            if key in out:
                problems.add(f"{p}: same name as {out[key].name}; keep one file per name")
                continue
            out[key] = p
    if not out:
        problems.add(f"{d}: no image files in this folder; add them or remove the folder")
    return out


def _pairs(img: Path, msk: Path, unlabeled: list[Path], problems: Problems, notes: list[str]):
    """[(image, mask or None)]: images with masks first, then those of `unlabeled` (which may
    sit among the images, as train/unlabeled/ does in the CamVid layout)."""
    images, masks = _images(img, problems, notes), _images(msk, problems, notes)
    images = {k: p for k, p in images.items() if not any(u in p.parents for u in unlabeled)}
    pairs = []
    for key, p in images.items():
        if key in masks:
            pairs.append((p, masks[key]))
        else:
            problems.add(f"{p}: no mask with this name in {msk}; add its mask or move it to unlabeled/")
    for key, m in masks.items():
        if key not in images:
            problems.add(f"{m}: mask without an image of this name in {img}; add the image or remove the mask")
    for d in unlabeled:
        pairs += [(p, None) for p in _images(d, problems, notes).values()]
    return pairs


def _one_split_per_file(pairs: dict[str, list], problems: Problems) -> dict[str, list]:
    """An image file in two splits (a link, or a card naming one folder twice) makes the score
    count an image trained or selected on: a problem per pair of splits, naming the first file;
    the file stays in test, then val."""
    owner: dict[str, str] = {}
    shared: dict[tuple[str, str], list[Path]] = {}
    for s in ("test", "val", "train"):
        for img, _ in pairs.get(s, []):
            real = os.path.realpath(img)
            if owner.setdefault(real, s) != s:
                shared.setdefault((owner[real], s), []).append(img)
    for (kept, s), files in shared.items():
        problems.add(f"{files[0]}: in {s} and in {kept} ({len(files)} files in both); remove them from {s}, or "
                     f"the {kept} score counts images it {'trained' if s == 'train' else 'selected'} on")
    drop = {(s, f) for (_, s), files in shared.items() for f in files}
    return {s: [(img, m) for img, m in items if (s, img) not in drop] for s, items in pairs.items()}


# ----------------------------------------------------------------------------- masks
def _load_mask(path: Path, colours, problems: Problems, done: list):
    """(values (H, W) uint8, histogram of 256 values, mapped) or None if unreadable. With a
    palette, colour masks come back as class indices already (mapped). Turned upright by EXIF
    as its image is; never scaled: a 16-bit mask holds class indices."""
    im = _decode(str(path), path.read_bytes(), problems, mask=True, done=done)
    if im is None:
        return None
    mapped = False
    if im.mode == "P":
        a = np.array(im)
    elif im.mode in ("RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "HSV"):
        a = np.asarray(im.convert("RGB"))
        if colours is not None:
            a, mapped = _map_colours(path, a, colours, problems), True
        elif (a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all():
            a = a[..., 0].copy()  # gray values saved as RGB
        else:
            problems.add(f"{path}: a colour (RGB) mask, and no palette to map its colours to classes; "
                         "give a dataset card (.yaml) with classes and palette")
            return None
    else:
        a = np.array(im if im.mode.startswith("I") else im.convert("L"))
        if a.size and a.max() > 255:
            problems.add(f"{path}: mask values up to {a.max()}; masks hold class indices 0..255")
            return None
        a = a.astype(np.uint8)
    return a, np.bincount(a.ravel(), minlength=256), mapped


def _map_colours(path: Path, a: np.ndarray, colours, problems: Problems) -> np.ndarray:
    keys, vals = colours
    codes = (a[..., 0].astype(np.int32) << 16) | (a[..., 1].astype(np.int32) << 8) | a[..., 2]
    pos = np.searchsorted(keys, codes).clip(max=len(keys) - 1)
    hit = keys[pos] == codes
    if not hit.all():
        bad = ", ".join(str((c >> 16, (c >> 8) & 255, c & 255)) for c in np.unique(codes[~hit])[:3].tolist())
        problems.add(f"{path}: colour {bad} is not in the card's palette; add it to the palette "
                     "(or as ignore) or fix the mask")
    return np.where(hit, vals[pos], IGNORE).astype(np.uint8)


def _colour_table(palette, ignore):
    """Sorted colour codes and their class (255 for the ignore colour), for `_map_colours`."""
    table = {(r << 16) | (g << 8) | b: i for i, (r, g, b) in enumerate(palette)}
    if isinstance(ignore, tuple):
        table[(ignore[0] << 16) | (ignore[1] << 8) | ignore[2]] = IGNORE
    keys = np.array(sorted(table), np.int32)
    return keys, np.array([table[k] for k in keys.tolist()], np.uint8)


def _ranges(values: list[int]) -> str:
    """[0, 1, 2, 5, 7, 8] -> '0..2, 5, 7..8'."""
    runs: list[list[int]] = []
    for v in values:
        if runs and v == runs[-1][1] + 1:
            runs[-1][1] = v
        else:
            runs.append([v, v])
    return ", ".join(str(a) if a == b else f"{a}..{b}" for a, b in runs)


def _unnamed_values(root: Path, hist: np.ndarray, masks: list, problems: Problems, notes: list[str]) -> None:
    """Without a card or --classes the classes are the mask values 0..max: say where that looks
    wrong. Values missing between 0 and the max (a stray value, anti-aliased or JPEG edges, masks
    counted from 1) make classes that never occur, which then train and score as classes: a
    problem, naming the masks that hold the values above the gap. A value under RARE_PIXELS of
    the labeled pixels, or in under RARE_MASKS of the masks (fewer than 1 in 100: too few to learn
    it from), may be a stray label but also a small real class (a pole, a sign): a note."""
    values = [v for v in np.flatnonzero(hist).tolist() if v != IGNORE]
    if not values:
        return
    labeled = int(hist[values].sum())
    missing = sorted(set(range(values[-1] + 1)) - set(values))
    in_masks = (np.stack([h for _, h in masks]) > 0).sum(0)  # per value: how many masks hold it

    def where(v: int) -> str:
        files = [os.path.relpath(p, root) for p, h in masks if h[v]]
        shown = ", ".join(files[:3]) + (", ..." if len(files) > 3 else "")
        return f"{v} in {hist[v]} pixels of {len(files)} of {len(masks)} masks ({shown})"

    above = [v for v in values if missing and v > missing[0]]
    if missing:
        binary = hist[0] and hist[IGNORE] and hist[0] + hist[IGNORE] >= 0.99 * hist.sum()
        hint = ("; they look like binary masks (0 and 255) with some values in between (anti-aliased or JPEG "
                "edges): save them as PNG holding only 0 and 255" if binary else "")
        problems.add(f"{root}: mask values {_ranges(values)} leave out {_ranges(missing)}: with no list of classes "
                     f"they are read as classes 0..{values[-1]}, {len(missing)} of which never occur; values above "
                     f"the gap: {'; '.join(where(v) for v in sorted(above, key=lambda v: hist[v])[:3])}{hint}; "
                     "give a dataset card (.yaml) naming the classes, or --classes, or fix the masks")
    for v in values:
        if v not in above and (hist[v] < RARE_PIXELS * labeled or in_masks[v] < RARE_MASKS * len(masks)):
            notes.append(f"mask value {v} is rare: {where(v)}, {100 * hist[v] / labeled:.2f}% of the labeled "
                         "pixels; if it is not a class, fix those masks, or give --classes or a dataset card")


# ----------------------------------------------------------------------------- reader
def read_segfolder(spec: str, problems: Problems, classes: list[str] | None = None,
                   image_size: int | None = None) -> Source:
    """An images/ + masks/ folder or the CamVid layout (`seg_layout`); `image_size` is unused: a
    segmentation source keeps its images' size."""
    root = Path(spec)
    found = seg_layout(root)
    plan = _plan(root, found, problems)
    if "train" not in plan:
        raise UserError(f"{root}: no training images and masks found; expected images/ and masks/ "
                        "(or train/images/ and train/masks/)")
    return read_plan(root, plan, problems, classes, layout=found)


def read_plan(root: Path, plan: dict[str, tuple[Path, Path, list[Path]]], problems: Problems,
              classes: list[str] | None, card: dict | None = None, layout: str = "folder") -> Source:
    """The images and masks of `plan` (split -> images folder, masks folder, unlabeled folders),
    their classes from `card` (`card.read_card`), else from `classes` or the mask values."""
    notes: list[str] = []
    pairs = _one_split_per_file({s: _pairs(*plan[s], problems, notes) for s in plan}, problems)
    colours = _colour_table(card["palette"], card["ignore"]) if card and card["palette"] else None
    done: list[str] = []
    loaded = {s: in_threads(lambda p: p[1] and _load_mask(p[1], colours, problems, done), pairs[s]) for s in pairs}
    if done.count("orientation"):
        notes.append(f"turned {done.count('orientation')} masks upright by their EXIF orientation, as their images")
    indexed = [(pairs[s][i][1], m[1]) for s in loaded for i, m in enumerate(loaded[s]) if m and not m[2]]
    hist = sum((h for _, h in indexed), np.zeros(256, np.int64))
    present = set(np.flatnonzero(hist).tolist())

    # what the mask values mean: class indices and which value is ignored
    lut = np.full(256, -1, np.int16)  # mask value -> class index, IGNORE, or -1 (a problem)
    palette = None
    if card:
        ignore = card["ignore"] if isinstance(card["ignore"], int) else None
        names, palette, kind = card["classes"], card["palette"], "dataset card"
    elif present and present <= {0, 255} and 255 in present:
        ignore, names, kind = None, ["background", "foreground"], "segmentation folder (binary masks)"
        lut[255] = 1
    elif layout == "camvid" and present <= set(range(12)):
        ignore, names, palette, kind = 11, CAMVID_CLASSES, CAMVID_PALETTE, "CamVid folder"
    else:
        ignore, kind = IGNORE, "CamVid folder" if layout == "camvid" else "segmentation folder"
        names = [str(i) for i in range(max(present - {IGNORE}, default=-1) + 1)]
        if classes is None:
            _unnamed_values(root, hist, indexed, problems, notes)
    names = list(classes) if classes is not None else names
    if not names:
        raise UserError(f"{root}: the masks hold no class values (all pixels are the ignore value {ignore})")
    k = len(names)
    lut[:k] = np.arange(k)
    if ignore is not None:
        lut[ignore] = IGNORE
    palette = palette if palette and len(palette) == k else distinct_palette(k)

    splits: dict[str, Split] = {}
    size = channels = None
    base = root.parent if card else root
    for s, items in pairs.items():
        ok = [i for i, (_, m) in enumerate(items) if m is None or loaded[s][i] is not None]
        sizes: list = []
        x, keep = decode_images([(str(items[i][0]), items[i][0].read_bytes) for i in ok], problems, notes,
                                size, channels, sizes, fit="stretch")
        if size is None and len(x):
            channels, size = x.shape[1], (x.shape[3], x.shape[2])
        rows, masks, y, files = [], [], [], []
        for j, i in enumerate(ok[q] for q in keep):  # j: row of x, i: item
            img, mpath = items[i]
            a = np.full(size[::-1], IGNORE, np.uint8)  # an unlabeled image: all ignored
            if mpath is not None:
                a, h, mapped = loaded[s][i]
                if a.shape != sizes[j][::-1]:
                    problems.add(f"{mpath}: mask is {a.shape[1]}x{a.shape[0]} pixels but its image {img.name} "
                                 f"is {sizes[j][0]}x{sizes[j][1]}; save the mask at the image's size")
                    continue
                if not mapped:
                    bad = np.flatnonzero((h > 0) & (lut < 0))
                    if len(bad):
                        also = "" if ignore is None else f" or the ignore value {ignore}"
                        problems.add(f"{mpath}: mask values {', '.join(map(str, bad[:5]))} are not classes "
                                     f"(0..{k - 1}){also}; fix the mask or the list of classes")
                    a = np.where(lut[a] < 0, IGNORE, lut[a]).astype(np.uint8)
                if a.shape != size[::-1]:  # its image was resized to the most common size
                    a = np.asarray(Image.fromarray(a).resize(size, Image.NEAREST))
            rows.append(j)
            masks.append(a)
            y.append(-1 if mpath is None else 0)
            files.append(os.path.relpath(img, base))
        m = torch.from_numpy(np.stack(masks)) if masks else torch.zeros(0, *x.shape[2:], dtype=torch.uint8)
        x = x if len(rows) == len(x) else x[rows]  # a copy only where some were dropped
        splits[s] = Split(x, torch.tensor(y, dtype=torch.long), files, masks=m)
    if len(splits["train"].x) == 0:
        raise UserError(f"{root}: no readable training images")
    return Source(root.stem if card else root.name, kind, names, splits["train"], splits.get("test"),
                  splits.get("val"), flip=True, notes=notes, task="segment", palette=palette,
                  ignore_index=ignore)


def detect(spec: str) -> bool:
    return seg_layout(Path(spec)) is not None


FORMAT = Format("segfolder", "segment", "segmentation data (images with masks)", detect, read_segfolder)
