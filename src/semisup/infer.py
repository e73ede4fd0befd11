"""Inference on a finished run: load it (the network with its evaluated weights and its
meta), score it on its own test split or other data, predict classes or masks for image
files, draw samples from a generator. What differs by task comes from the run's task object."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from .data.labels import file_keys
from .data.sources import BUILTINS, Split
from .data.split import make_semidata
from .engine.runfolder import check_writable, load_checkpoint
from .errors import UserError
from .tasks import DEFAULT_TASK, get_task, predict_logits


def task_of_run(meta: dict):
    """The task object of a run, from its checkpoint's meta."""
    return get_task(meta.get("task", DEFAULT_TASK))


def evaluated_weights(ckpt: dict) -> dict:
    """The state dict of the network with the weights a run is evaluated with: a checkpoint's
    "model" entry (the EMA's network, its input statistics included)."""
    return ckpt["model"]


def split_identity(data, spec: str) -> dict:
    """What identifies a run's test split, recorded in its checkpoints: its name, size, file names
    (relative to the data's folder, where the data has files) and a blake2b hash of its pixels,
    labels and masks in file order. Eval recomputes it to tell whether the data changed."""
    names, split = _test_files(data)
    return {"name": data.test_name, "images": len(data.test.y), "files": file_keys(names, spec),
            "hash": _split_hash(split)}


def _test_files(data) -> tuple[list[str], Split]:
    """The test split's file names and the split in their order: a split held out from train
    (no names of its own) is the training images in neither the labeled nor the unlabeled pool."""
    src = data.source
    if data.test.names or data.test is src.test or data.test is src.val or len(src.train.names) != len(src.train.y):
        return list(data.test.names), data.test
    held = torch.ones(len(src.train.y), dtype=torch.bool)
    held[data.labeled] = False
    held[data.unlabeled] = False
    idx = held.nonzero().flatten()
    return [src.train.names[i] for i in idx.tolist()], _rows(src.train, idx)


def _rows(split: Split, idx: torch.Tensor) -> Split:
    return Split(split.x[idx], split.y[idx], [split.names[i] for i in idx.tolist()],
                 None if split.masks is None else split.masks[idx])


def _split_hash(split: Split) -> str:
    h = hashlib.blake2b(digest_size=16)
    for t in (split.x, split.y, split.masks):
        if t is not None:
            h.update(repr(tuple(t.shape)).encode())
            h.update(t.contiguous().numpy().data)
    return h.hexdigest()


def _rows_by_key(src, keys: list[str], spec: str) -> tuple[Split | None, list[str]]:
    """The images of `src` with these file keys, in their order, or None and the keys not found."""
    where = {}
    for s in (src.test, src.val, src.train):
        if s is not None and s.names:
            for i, k in enumerate(file_keys(s.names, spec)):
                where.setdefault(k, (s, i))
    missing = [k for k in keys if k not in where]
    if missing or not keys:
        return None, missing
    hits = [where[k] for k in keys]
    masks = None if hits[0][0].masks is None else torch.stack([s.masks[i] for s, i in hits])
    return Split(torch.stack([s.x[i] for s, i in hits]), torch.stack([s.y[i] for s, i in hits]), list(keys),
                 masks), []


def training_data(run_dir: str, meta: dict) -> str | None:
    """Where a run's training data is now: the absolute path recorded at training, else its path as
    given, relative to here, to the run folder or to a folder above it (a project moved whole)."""
    spec = str(meta["config"]["data"])
    if spec in BUILTINS:
        return spec
    run = Path(os.path.abspath(run_dir))
    for c in (meta.get("data_path"), spec, *(str(d / spec) for d in [run, *run.parents[:3]])):
        if c and Path(c).exists():
            return c
    return None


def _same_data(spec: str, trained_on: str | None) -> bool:
    if trained_on is None or spec in BUILTINS or trained_on in BUILTINS:
        return spec == trained_on
    return os.path.realpath(spec) == os.path.realpath(trained_on)


def _run_test_split(src, meta: dict, spec: str) -> tuple[Split | None, str, str]:
    """The run's own test split found in `src`: (split, its name, a note or ''), or (None, its
    name, what changed) where the data no longer holds it."""
    stored, n = meta["test_split"], meta["test_split"]["images"]
    try:
        data = make_semidata(src, seed=meta["config"]["seed"])  # the test split does not depend on the draw
    except UserError:
        data = None
    now = split_identity(data, spec) if data is not None else None
    if now is not None and now["hash"] == stored["hash"]:
        return data.test, data.test_name, ""
    if not stored["files"]:
        changed = (f"its test split had {n} images and now has {now['images']}" if now and now["images"] != n
                   else f"its {n} test images or their labels differ")
        return None, stored["name"], changed
    split, missing = _rows_by_key(src, stored["files"], spec)
    if split is None:
        return None, stored["name"], (f"{len(missing)} of its {n} test images {'is' if len(missing) == 1 else 'are'} "
                                      f"gone, e.g. {missing[0]}")
    if _split_hash(split) != stored["hash"]:
        return None, stored["name"], (f"its {n} test images are all there but their pixels or labels differ "
                                      "(edited, relabeled, or read differently by another semisup version)")
    differ = len(set(now["files"]) ^ set(stored["files"])) if now else 0
    return split, stored["name"], (f"images were added to or removed from {spec} since training"
                                   + (f" (the test split drawn now differs in {differ} images)" if differ else "")
                                   + f"; scoring the run's own {n} test images, found by file name")


def _eval_source(spec: str, meta: dict, notes: list[str]):
    """The data, read as eval needs it: an unreadable file is skipped with a note (the test split
    check tells whether it mattered)."""
    src = task_of_run(meta).read(spec, False, meta["classes"], meta.get("config", {}).get("image_size"))
    if src.problems:
        notes.append(f"{spec}: skipped {len(src.problems)} problems in the data ({src.problems[0]}); "
                     "`semisup data` lists them")
    return src


def checkpoint_note(ckpt_path: Path, which: str) -> str | None:
    """A note where `read_run` took another checkpoint than the one asked for."""
    if ckpt_path.stem == which:
        return None
    return f"{ckpt_path.parent} has no {which}.pt (no evaluation saved one yet); using {ckpt_path.name}"


def read_run(run_dir: str, which: str = "best") -> tuple[dict, Path]:
    """A run folder's checkpoint `which` and its path; for `best`, last.pt where the run has no
    best.pt yet (`checkpoint_note` says so)."""
    from .engine.runfolder import run_state

    run = Path(run_dir)
    if not run.is_dir():
        raise UserError(f"{run_dir}: no such run folder" if not run.exists() else
                        f"{run_dir}: a file, not a run folder; give the folder that `semisup train --out` wrote")
    ckpt_path = run / "checkpoints" / f"{which}.pt"
    other = run / "checkpoints" / ("last.pt" if which == "best" else "best.pt")
    if not ckpt_path.exists() and other.exists():
        if which != "best":
            raise UserError(f"{run_dir}: no checkpoints/{which}.pt, only {other.name}; use --checkpoint {other.stem}")
        ckpt_path = other
    if not ckpt_path.exists():
        if not (run / "config.yaml").exists():
            raise UserError(f"{run_dir}: not a semisup run folder (no checkpoints/best.pt or last.pt); give the "
                            "folder that `semisup train --out` wrote")
        if run_state(run) == "running":
            raise UserError(f"{run_dir}: the run is training and has not saved a checkpoint yet; wait for its "
                            "first save (--save-every)")
        raise UserError(f"{run_dir}: the run stopped before it saved a checkpoint, so there is no model to load; "
                        "train it again")
    return load_checkpoint(ckpt_path), ckpt_path


def load_run(run_dir: str, which: str = "best"):
    """(the network with the EMA weights, in eval mode, which takes [0, 1] pixels; meta; the checkpoint path)."""
    ckpt, ckpt_path = read_run(run_dir, which)
    if not isinstance(ckpt, dict) or not {"meta", "ema"} <= set(ckpt):
        raise UserError(f"{ckpt_path}: not a checkpoint that `semisup train` wrote (no 'meta' and 'ema'); "
                        "give a semisup run folder")
    meta = ckpt["meta"]
    shape = (meta["channels"], *meta["size"])
    model = task_of_run(meta).build_model(meta["model"], shape, len(meta["classes"]))
    try:
        model.load_state_dict(evaluated_weights(ckpt))
    except RuntimeError as e:
        raise UserError(f"{ckpt_path}: its weights do not fit the model '{meta['model']}' "
                        f"({str(e).splitlines()[0]}); was it written by another semisup version?") from None
    model.eval()
    return model, meta, ckpt_path


def run_classifier(run_dir: str, data):
    """A finished classification run's classifier as a function of [0, 1] pixels (cgan_pseudo's
    --labeler), checked against `data`'s classes and image size."""
    model, meta, _ = load_run(run_dir)
    if meta.get("task", DEFAULT_TASK) != DEFAULT_TASK:
        raise UserError(f"--labeler {run_dir}: a {meta['task']} run; give a classification run folder")
    if list(meta["classes"]) != list(data.classes) or [meta["channels"], *meta["size"]] != list(data.source.shape):
        raise UserError(f"--labeler {run_dir}: trained on classes {meta['classes']} and images "
                        f"{[meta['channels'], *meta['size']]}; this data has {data.classes} and "
                        f"{list(data.source.shape)}; give a run trained on the same classes and image size")

    def label(pixels):
        model.to(pixels.device)
        return model(pixels)
    return label


def eval_run(run_dir: str, data_spec: str | None = None, which: str = "best") -> dict:
    """Score a run on its own test split (`scored_split`); `notes` says what was assumed."""
    model, meta, ckpt_path, split, name, notes = scored_split(run_dir, data_spec, which)
    task = task_of_run(meta)
    r = task.evaluate(model, split, torch.device("cpu"), classes=meta["classes"])
    return {"run": str(run_dir), "checkpoint": str(ckpt_path), "data": name, "task": task.name,
            "images": int((split.y >= 0).sum()), "notes": notes, **r}


def scored_split(run_dir: str, data_spec: str | None = None, which: str = "best"):
    """The split a run is scored on, with the run loaded: (model, meta, checkpoint path, split, its
    name, notes). By default the run's own test split, recomputed from its training data (found
    where it was, or relative to here or to the run folder) and checked against the split recorded
    at training: where the data changed, the run's test files are found by name, else it is an
    error. With `data_spec`, that data's test split (else all its labeled images); data that is
    the training data (the same path, or the recorded test split found in it) gives the run's own
    test split, never the images it trained on."""
    model, meta, ckpt_path = load_run(run_dir, which)
    task = task_of_run(meta)
    notes = [n for n in [checkpoint_note(ckpt_path, which)] if n]
    trained_on = training_data(run_dir, meta)
    stored = meta.get("test_split")
    split = None
    if data_spec is not None and not _same_data(data_spec, trained_on):
        src = _eval_source(data_spec, meta, notes)
        if src.shape[0] != meta["channels"] or (task.resizes_images and src.shape[1:] != tuple(meta["size"])):
            raise UserError(f"--data {data_spec}: images are {src.shape}, the run was trained on "
                            f"{(meta['channels'], *meta['size'])} (channels, height, width)")
        if stored:
            split, test_name, note = _run_test_split(src, meta, data_spec)
        if split is not None:
            name = f"{data_spec} ({test_name})"
            notes.append(f"--data {data_spec} holds this run's test split: scoring it, not all the labeled images")
            notes += [note] if note else []
        else:
            split = src.test or src.train
            name = f"{data_spec} ({'test' if src.test is not None else 'all labeled images'})"
    else:
        spec = data_spec or trained_on
        if spec is None and meta.get("data_format") == "arrays":
            raise UserError(f"{run_dir}: trained on arrays in Python (SemiSupervisedClassifier), which it does not "
                            "keep; score it on data with --data PATH")
        if spec is None:
            raise UserError(f"{run_dir}: its training data {meta['config']['data']} is not at "
                            f"{meta.get('data_path') or meta['config']['data']} (nor relative to here or to the run "
                            "folder); give where it is now with --data PATH")
        if data_spec is not None:
            notes.append(f"--data {data_spec} is this run's training data: scoring its test split, not all its "
                         "labeled images (some of which it trained on)")
        src = _eval_source(spec, meta, notes)
        if stored:
            split, test_name, note = _run_test_split(src, meta, spec)
            if split is None:
                raise UserError(f"{spec}: the data changed since this run trained ({note}), so the run's test split "
                                "is not there to score; restore the data, or score other data with --data PATH")
            notes += [note] if note else []
        else:
            notes.append("this run's checkpoint does not record its test split (it was trained by an earlier "
                         "semisup), so there is no check that the data is unchanged since training")
            data = make_semidata(src, seed=meta["config"]["seed"])
            split, test_name = data.test, data.test_name
        name = f"{spec} ({test_name})"
    return model, meta, ckpt_path, split, name, notes


PREDICT_HEADER = ("path", "class", "confidence", "error")
MASKS_INDEX, MASKS_HEADER = "predictions.csv", ("path", "mask", "overlay", "error")
PREDICT_CHUNK = 256  # images decoded at once: bounds the memory a folder of large photos takes


def predict(run_dir: str, paths: list[str], loaded: tuple | None = None, out: str | None = None,
            which: str = "best", notes: list[str] | None = None) -> list[tuple[str, str, float | None, str]]:
    """(path, class, confidence, error) for each input image, in input order. Every readable image
    is classified (resized to the run's input size, converted to its channels); an unreadable one,
    a missing path or a folder with no images gets a row with the error and no class. With `out`,
    the rows also go to that CSV (checked before predicting). `notes` receives what was skipped.
    UserError where no image was read."""
    model, meta, _ = loaded or load_run(run_dir, which)  # `loaded`: load_run's result, read once
    if task_of_run(meta).output != "classes":
        raise UserError(f"{run_dir}: a segmentation run; its predictions are masks (api.predict_masks)")
    inputs = image_files(paths, notes)
    csv_path = _csv_out(out, inputs) if out else None
    h, w = meta["size"]
    rows = []
    for start in range(0, len(inputs), PREDICT_CHUNK):
        chunk = inputs[start:start + PREDICT_CHUNK]
        x, kept, errors = _decode_inputs(chunk, size=(w, h), channels=meta["channels"])
        scores = {}
        if len(x):
            conf, cls = predict_logits(model, x, torch.device("cpu")).softmax(1).max(1)
            scores = dict(zip(kept, zip(cls.tolist(), conf.tolist())))
        for i, (shown, *_) in enumerate(chunk):
            c, p = scores.get(i, (None, None))
            rows.append((shown, "", None, errors[i]) if c is None else (shown, meta["classes"][c], p, ""))
    _check_some_read(rows)
    if csv_path:
        _write_csv(csv_path, PREDICT_HEADER, prediction_rows(rows))
    return rows


def prediction_rows(rows):
    """`predict`'s rows as CSV fields: the confidence to 4 decimals, empty for an unread image."""
    return ([path, cls, "" if p is None else f"{p:.4f}", error] for path, cls, p, error in rows)


def _decode_inputs(inputs, size=None, channels=None, fit="crop") -> tuple[torch.Tensor, list[int], dict[int, str]]:
    """Decode `image_files` entries as training does (`decode_images`), image by image: (images,
    their indices in `inputs`, the reason for each one not decoded)."""
    from .data.sources import decode_images
    from .errors import Problems

    errors, items = {}, []
    for i, (shown, f, _, error) in enumerate(inputs):
        if error:
            errors[i] = error
            continue
        try:
            data = f.read_bytes()
        except OSError as e:
            errors[i] = f"cannot read it ({e.strerror or type(e).__name__})"
            continue
        items.append((i, shown, data))
    problems = Problems(strict=False)
    x, keep = decode_images([(shown, lambda d=data: d) for _, shown, data in items], problems, [],
                            size=size, channels=channels, fit=fit)
    kept = {items[j][0] for j in keep}
    for i, shown, _ in items:
        if i not in kept:
            said = [m for m in problems.items if m.startswith(f"{shown}: ")]
            errors[i] = said[0][len(shown) + 2:] if said else "not a readable image; remove or replace it"
    return x, [items[j][0] for j in keep], errors


def _check_some_read(rows) -> None:
    bad = [r for r in rows if r[-1]]
    if len(bad) == len(rows):
        first = f"{bad[0][0]}: {bad[0][-1]}"
        raise UserError(first if len(bad) == 1 else f"none of the {len(bad)} images could be read "
                                                    f"({first}; and {len(bad) - 1} more)")


def _input_ids(inputs) -> set[tuple[int, int]]:
    """(device, inode) of each input file: an output path that is one of them is an input."""
    ids = set()
    for _, f, _, error in inputs:
        if not error:
            st = os.stat(f)
            ids.add((st.st_dev, st.st_ino))
    return ids


def _is_input(p: Path, ids: set) -> bool:
    if not p.exists():
        return False
    st = os.stat(p)
    return (st.st_dev, st.st_ino) in ids


def _csv_out(out: str, inputs) -> Path:
    """The CSV path, checked before predicting: not a folder, not an input image, its folder makeable."""
    p = Path(out)
    if p.is_dir():
        raise UserError(f"--out {out}: is a folder; give a file name for the CSV, e.g. {p / 'predictions.csv'}")
    if _is_input(p, _input_ids(inputs)):
        raise UserError(f"--out {out}: is one of the input images; give another file name for the CSV")
    check_writable(p.parent, f"--out {out}")
    return p


def _write_csv(path: Path, header, rows) -> None:
    import csv

    from .engine.runfolder import atomic_write
    from .errors import disk_error

    def write(tmp):
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(rows)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, write)
    except OSError as e:
        raise disk_error(e, path) or UserError(f"{path}: cannot write it ({e.strerror or e})") from None


def _mask_names(inputs) -> tuple[list[str | None], list[str]]:
    """Each image's output name less `.png`: its path relative to the inputs' common folder, less its
    extension; where two images would share an output file (0000.jpg and 0000.png, or a.jpg's
    overlay and a_overlay.jpg's mask), with the extension (0000_jpg, 0000_png), and a note."""
    def clash(stems) -> dict[str, list[int]]:  # an output file claimed by several images: their indices
        owners = {}
        for i, s in enumerate(stems):
            if s is not None:
                for t in (f"{s}.png", f"{s}_overlay.png"):
                    owners.setdefault(t.casefold(), []).append(i)
        return {t: o for t, o in owners.items() if len(o) > 1}

    stems = [None if error else os.path.splitext(rel)[0] for _, _, rel, error in inputs]
    groups = clash(stems)
    for i in sorted({i for o in groups.values() for i in o}):
        root, ext = os.path.splitext(inputs[i][2])
        stems[i] = f"{root}_{ext.lstrip('.')}"
    still = clash(stems)
    if still:
        i, j = next(iter(still.values()))[:2]
        raise UserError(f"{inputs[i][0]} and {inputs[j][0]}: their masks would have the same name; rename one of them")
    first = {tuple(o): t for t, o in reversed(groups.items())}  # one note per group of images
    notes = [f"{' and '.join(inputs[i][0] for i in o)} would write the same file, {t}: their masks are "
             f"{' and '.join(stems[i] + '.png' for i in o)}" for o, t in sorted(first.items())]
    return stems, notes


def _earlier_predictions(out: Path) -> list[list[str]]:
    """The rows of OUT/predictions.csv, the list an earlier predict wrote ([] where there is none)."""
    import csv

    index = out / MASKS_INDEX
    if not index.exists():
        return []
    try:
        with open(index, newline="") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error):
        rows = []
    if not rows or tuple(rows[0]) != MASKS_HEADER:
        raise UserError(f"--out {out}: holds a {MASKS_INDEX} that semisup predict did not write; choose a new "
                        "or empty folder")
    return [r for r in rows[1:] if len(r) == len(MASKS_HEADER)]


def _check_masks_out(out: Path, paths: list[str], inputs, stems, earlier) -> int:
    """Refuse, before anything is written, an --out in an input folder, an output that is an input
    image, and a file there that an earlier predict did not write; the number of masks replaced."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: is a file; give a folder for the masks")
    real_out = os.path.realpath(out)
    for arg in paths:
        d = os.path.realpath(arg)
        if Path(arg).is_dir() and (real_out == d or real_out.startswith(d.rstrip(os.sep) + os.sep)):
            raise UserError(f"--out {out}: {'is' if real_out == d else 'is inside'} the input folder {arg}; the "
                            "masks would mix with the images (and replace those of the same name); choose a "
                            "folder outside it")
    check_writable(out, f"--out {out}")
    ids, ours = _input_ids(inputs), {name for r in earlier for name in r[1:3] if name}
    foreign, replaced = [], 0
    for stem in (s for s in stems if s is not None):
        for name in (f"{stem}.png", f"{stem}_overlay.png"):
            p = out / name
            if _is_input(p, ids):
                raise UserError(f"--out {out}: {p} is an input image and a mask would be written there; choose "
                                "another --out")
            in_the_way = [d for d in p.parents if d != out and out in d.parents and d.exists() and not d.is_dir()]
            if in_the_way or p.is_dir() or (p.exists() and Path(name).as_posix() not in ours):
                foreign.append(in_the_way[0] if in_the_way else p)
        replaced += (out / f"{stem}.png").exists()
    if foreign:
        raise UserError(f"--out {out}: {len(foreign)} file{'s' if len(foreign) > 1 else ''} there would be replaced "
                        f"that semisup predict did not write ({foreign[0]}); choose a new or empty folder")
    return replaced


def predict_masks(run_dir: str, paths: list[str], out_dir: str | None = None,
                  loaded: tuple | None = None, which: str = "best") -> dict:
    """A segmentation run's masks for image files, each at its own size: OUT/REL.png (an index PNG,
    mode P, with the class palette) and OUT/REL_overlay.png (the colours over the image), REL the
    image's path relative to the inputs' common folder less its extension (`_mask_names`);
    OUT/predictions.csv lists each input with its mask, overlay and error. An input image, a file
    that an earlier predict did not write, and an OUT in an input folder are never written to: an
    error before anything is written. An unreadable image is listed, not fatal. Returns the folder,
    the rows, the counts written and replaced, and notes."""
    import numpy as np
    from PIL import Image

    from .engine.runfolder import atomic_write
    from .errors import disk_error
    from .report import colorize

    model, meta, _ = loaded or load_run(run_dir, which)  # `loaded`: load_run's result, read once
    if task_of_run(meta).output != "masks":
        raise UserError(f"{run_dir}: a classification run; `semisup predict` prints its classes without --masks")
    notes: list[str] = []
    inputs = image_files(paths, notes)
    out = Path(out_dir) if out_dir else Path(run_dir) / "predictions"
    stems, renamed = _mask_names(inputs)
    notes += renamed
    earlier = _earlier_predictions(out)
    replaced = _check_masks_out(out, paths, inputs, stems, earlier)
    names = {(f"{s}.png", f"{s}_overlay.png") for s in stems if s is not None}
    kept = [r for r in earlier if (r[1], r[2]) not in names]  # an earlier predict's rows for other images
    planned = [(shown, f"{s}.png", f"{s}_overlay.png", "not written: predict stopped before this image")
               for (shown, *_), s in zip(inputs, stems) if s is not None]
    palette = [c for rgb in meta["palette"] for c in rgb]
    rows, started = [], False
    for entry, stem in zip(inputs, stems):
        x, _, errors = _decode_inputs([entry], channels=meta["channels"], fit="stretch")  # at its own size
        if not len(x):
            rows.append((entry[0], "", "", errors[0]))
            continue
        try:
            pred = predict_logits(model, x, torch.device("cpu")).argmax(1)[0].numpy().astype(np.uint8)
        except RuntimeError as e:
            rows.append((entry[0], "", "", f"the model failed on it ({str(e).splitlines()[0]})"))
            continue
        if not started:  # the list first: a later predict knows these files as its own
            _write_csv(out / MASKS_INDEX, MASKS_HEADER, kept + planned)
            started = True
        mask = Image.fromarray(pred, mode="P")
        mask.putpalette(palette)
        rgb = x[0].permute(1, 2, 0).numpy().astype(np.float32)
        rgb = rgb.repeat(3, axis=2) if rgb.shape[2] == 1 else rgb
        overlay = Image.fromarray((0.5 * rgb + 0.5 * colorize(pred, meta["palette"])).astype(np.uint8))
        try:
            (out / stem).parent.mkdir(parents=True, exist_ok=True)
            atomic_write(out / f"{stem}.png", lambda p: mask.save(p, format="PNG"))
            atomic_write(out / f"{stem}_overlay.png", lambda p: overlay.save(p, format="PNG"))
        except OSError as e:
            raise disk_error(e, out / stem) or UserError(f"{out / stem}.png: cannot write it "
                                                         f"({e.strerror or e})") from None
        rows.append((entry[0], f"{stem}.png", f"{stem}_overlay.png", ""))
    _check_some_read(rows)
    _write_csv(out / MASKS_INDEX, MASKS_HEADER, kept + rows)
    return {"out": out, "rows": rows, "written": sum(not r[-1] for r in rows), "replaced": replaced, "notes": notes}


def sample(run_dir: str, per_class: int = 10, out: str | None = None, seed: int = 0,
           which: str = "last") -> tuple[Path, int]:
    """Images from a generation run's generator (`tasks.generate.Generate.sample`)."""
    ckpt, _ = read_run(run_dir, which)
    return task_of_run(ckpt["meta"]).sample(run_dir, ckpt, per_class, out, seed)


def predict_any(run_dir: str, paths: list[str], out: str | None = None, which: str = "best") -> dict:
    """What `semisup predict` does for the run's task: {"rows", "notes", "message", "table"}."""
    loaded = load_run(run_dir, which)
    notes = [n for n in [checkpoint_note(loaded[2], which)] if n]
    return task_of_run(loaded[1]).predict(run_dir, paths, loaded, out, notes)


def image_files(paths: list[str], notes: list[str] | None = None) -> list[tuple[str, Path | None, str, str]]:
    """Each input as (path shown, file, path relative to the inputs' common folder, error): the images
    in a folder, found as training finds them (`walk_folder`: links followed, hidden files and
    folders skipped, with a note), and each file given; with an error and no file, a path that does
    not exist, a folder with no images, a subfolder that cannot be read. A file reached twice is
    listed once."""
    from .data.decode import is_image as _is_image, walk_folder
    from .errors import Problems

    found, bases, seen = [], [], set()
    for arg in paths:
        p = Path(arg)
        if p.is_dir():
            problems = Problems(strict=False)
            files = [(p / rel, rel) for rel in walk_folder(p, problems, notes if notes is not None else [])[0]
                     if _is_image(rel)]
            found += [(arg, None, "", msg) for msg in problems.items]
            if not files:
                found.append((arg, None, "", "no image files in this folder (hidden files are skipped)"))
                continue
            base = p
        elif p.is_file():
            files, base = [(p, p.name)], p.parent
        else:
            found.append((arg, None, "", "no such image or folder"))
            continue
        bases.append(os.path.abspath(base))
        for f, rel in files:
            if os.path.realpath(f) not in seen:
                seen.add(os.path.realpath(f))
                found.append((str(f), f, os.path.join(os.path.abspath(base), rel), ""))
    common = os.path.commonpath(bases) if bases else ""
    return [(shown, f, Path(os.path.relpath(a, common)).as_posix() if f else a, error)
            for shown, f, a, error in found]
