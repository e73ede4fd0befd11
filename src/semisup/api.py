"""The library entry points the CLI calls: resolve options, load data, train, evaluate, predict.

Options resolve in layers: defaults, then the data set's defaults, then a --config file,
then the options given on the command line. The resolved set is what config.yaml records."""
from __future__ import annotations

import time
from dataclasses import asdict, fields
from pathlib import Path

import torch

from .data.sources import load_source
from .data.split import make_semidata
from .data.segviews import seg_view_maker_for
from .data.views import view_maker_for
from .engine import dist
from .engine.runfolder import RunFolder, check_out, load_checkpoint
from .engine.trainer import Trainer, TrainOptions, evaluate, predict_logits
from .errors import UserError
from .methods import METHODS, get_method
from .models import build_model, build_seg_model, default_model, load_encoder

RUN_KEYS = dict(task="classify", method="fixmatch", data="digits", labels=None, labels_per_class=None,
                labeled_fraction=None, model=None, device="auto", flip=None, classes=None, image_size=None,
                init=None)
# Defaults per task above the common ones: segmentation trains a network from scratch on few,
# large images (weight decay 1e-4 as SSL4MIS's U-Nets; UniMatch's equal labeled and unlabeled
# batches; lr 0.05, not SSL4MIS's 0.01: U-Net on shapes, 50 labels, 1,000 steps, test mean IoU
# 0.42 against 0.35).
TASK_DEFAULTS = {
    "generate": dict(method="triple_gan"),
    "segment": dict(data="shapes", method="mean_teacher", batch_size=8, unlabeled_ratio=1, lr=0.05, weight_decay=1e-4,
                    eval_every=100, save_every=500),
}
# Defaults per built-in data set, chosen so that the run fits a small CPU budget.
DATA_DEFAULTS = {
    "digits": dict(labels_per_class=4, steps=1000, batch_size=32, eval_every=100, save_every=500),
    "shapes": dict(labels=50, steps=1000, eval_every=100, save_every=500),
}
WHERE_NOT_WHAT = ("out", "resume", "overwrite")  # never taken from a config file


def method_options() -> dict[str, object]:
    """Every method hyperparameter name with the first default found (for the CLI)."""
    out = {}
    for m in [m for task in METHODS.values() for m in task.values()]:
        for f in m.hyper_fields():
            out.setdefault(f.name, f)
    return out


def defaults(data: str | None = None, task: str = "classify") -> dict:
    d = {**RUN_KEYS, **asdict(TrainOptions()), **TASK_DEFAULTS.get(task, {})}
    d.update(DATA_DEFAULTS.get(data or d["data"], {}))
    return d


def task_of(merged: dict) -> str:
    """--task, else what the data is (a segmentation folder, card or `shapes`), else classify."""
    if merged.get("task"):
        return merged["task"]
    if merged.get("data"):
        from .data.sources import detect_task

        return detect_task(str(merged["data"]))
    return RUN_KEYS["task"]


def resolve(given: dict, config: dict | None = None) -> dict:
    """Merge defaults, data defaults, a config file and given options into the full config."""
    config = {k: v for k, v in (config or {}).items() if k not in WHERE_NOT_WHAT}
    known = set(defaults()) | set(method_options()) | {k for d in TASK_DEFAULTS.values() for k in d}
    for k in config:
        if k not in known:
            raise UserError(f"--config: unknown option '{k}'; `semisup train --help` lists the options")
    merged = {**config, **given}
    draws = ("labels", "labels_per_class", "labeled_fraction")
    for a in draws:  # asking for one way of drawing labels switches off the others from a lower layer
        for b in draws:
            if b == a:
                continue
            if given.get(a) is not None and b not in given:
                merged[b] = None
            elif config.get(a) is not None and b not in config and b not in given:
                merged[b] = None
    task = task_of(merged)
    base = defaults(merged.get("data"), task)
    method = get_method(merged.get("method", base["method"]), task)
    own = method.run_defaults_for(merged)
    cfg = {**base, **own, **merged, "task": task}
    names = {f.name for f in method.hyper_fields()}
    for k in set(merged) & set(method_options()) - names:
        if merged[k] is not None:
            raise UserError(f"--{k.replace('_', '-')}: not an option of method '{cfg['method']}' "
                            f"(its options: {', '.join(sorted(names)) or 'none'})")
    for f in method.hyper_fields():
        cfg[f.name] = merged.get(f.name) if merged.get(f.name) is not None else own.get(f.name, f.default)
    for k in [k for k in cfg if k in method_options() and k not in names]:
        del cfg[k]
    _check(cfg)
    return cfg


def _check(cfg: dict) -> None:
    positive = ("steps", "batch_size", "eval_every", "save_every", "log_every", "eval_batch")
    for k in positive:
        if not isinstance(cfg[k], int) or cfg[k] < 1:
            raise UserError(f"--{k.replace('_', '-')} {cfg[k]}: must be a whole number of at least 1")
    if cfg["unlabeled_ratio"] < 0:
        raise UserError(f"--unlabeled-ratio {cfg['unlabeled_ratio']}: must be 0 or more")
    if not 0 <= cfg["ema"] < 1:
        raise UserError(f"--ema {cfg['ema']}: must be in [0, 1)")
    if cfg["lr"] <= 0:
        raise UserError(f"--lr {cfg['lr']}: must be positive")
    if cfg["device"] not in ("auto", "cpu", "cuda"):
        raise UserError(f"--device {cfg['device']}: choose auto, cpu or cuda")
    if cfg["device"] == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available here; use --device cpu or auto")
    if cfg["amp"] not in ("auto", "bf16", "off"):
        raise UserError(f"--amp {cfg['amp']}: choose auto, bf16 or off")
    if cfg.get("tsa", "none") not in ("none", "linear", "exp", "log"):
        raise UserError(f"--tsa {cfg['tsa']}: choose none, linear, exp or log")
    if "threshold" in cfg and not 0 <= cfg["threshold"] <= 1:
        raise UserError(f"--threshold {cfg['threshold']}: must be in [0, 1]")
    if cfg["task"] != "segment":
        for k in ("image_size", "init"):
            if cfg[k] is not None:
                raise UserError(f"--{k.replace('_', '-')}: only for --task segment")
    if cfg["image_size"] is not None and (not isinstance(cfg["image_size"], int) or cfg["image_size"] < 8):
        raise UserError(f"--image-size {cfg['image_size']}: must be a whole number of pixels, at least 8")
    if cfg["init"] is not None and not Path(str(cfg["init"])).is_file():
        raise UserError(f"--init {cfg['init']}: no such file; give a local state dict (.pt/.pth) for the encoder")
    if cfg.get("labeler") and not (Path(str(cfg["labeler"])) / "checkpoints").is_dir():
        raise UserError(f"--labeler {cfg['labeler']}: not a run folder (no checkpoints/); give a finished "
                        "classification run")
    if "pretrain_steps" in cfg and not 0 <= cfg["pretrain_steps"] < cfg["steps"]:
        raise UserError(f"--pretrain-steps {cfg['pretrain_steps']}: must be at least 0 and below --steps "
                        f"({cfg['steps']}); both phases count in --steps")


def prepare(cfg: dict):
    """Load and split the data, build the model and method. Raises UserError on bad input."""
    classes = cfg["classes"].split(",") if isinstance(cfg["classes"], str) else cfg["classes"]
    src = load_source(str(cfg["data"]), strict=True, classes=classes, task=cfg["task"])
    data = make_semidata(src, cfg["labels"], cfg["labels_per_class"], cfg["seed"],
                         labeled_fraction=cfg["labeled_fraction"])
    method_cls = get_method(cfg["method"], cfg["task"])
    if method_cls.unlabeled_views and len(data.unlabeled) == 0:
        raise UserError(f"--method {cfg['method']}: there are no unlabeled images; ask for fewer labels "
                        "(--labels) or add unlabeled images")
    c, h, w = src.shape
    cfg["model"] = cfg["model"] or method_cls.default_model_for(src.shape, cfg) or default_model(min(h, w))
    torch.manual_seed(cfg["seed"])  # the same initial weights on every process
    if cfg["task"] == "segment":
        views = seg_view_maker_for(data, cfg["image_size"])
        if cfg["flip"] is not None:
            views.flip = cfg["flip"]
        model = build_seg_model(cfg["model"], src.shape, len(src.classes))
        if cfg["init"]:
            load_encoder(model, cfg["init"])
    else:
        views = view_maker_for(data, flip=cfg["flip"])
        model = build_model(cfg["model"], src.shape, len(src.classes))
    hp = method_cls.Hyper(**{f.name: cfg[f.name] for f in method_cls.hyper_fields()})
    method = method_cls(model, len(src.classes), hp, num_unlabeled=len(data.unlabeled), shape=src.shape,
                        mean=views.mean, std=views.std, num_labeled=len(data.labeled))
    if cfg.get("labeler"):
        method.label_fn = run_labeler(cfg["labeler"], data)
    return data, views, method


def run_labeler(run_dir: str, data):
    """A finished classification run's classifier as a function of [0, 1] pixels, for --labeler."""
    model, views, meta, _ = load_run(run_dir)
    if meta.get("task", "classify") != "classify":
        raise UserError(f"--labeler {run_dir}: a {meta['task']} run; give a classification run folder")
    if list(meta["classes"]) != list(data.classes) or [meta["channels"], *meta["size"]] != list(data.source.shape):
        raise UserError(f"--labeler {run_dir}: trained on classes {meta['classes']} and images "
                        f"{[meta['channels'], *meta['size']]}; this data has {data.classes} and "
                        f"{list(data.source.shape)}; give a run trained on the same classes and image size")

    def label(pixels):
        model.to(pixels.device)
        return model(views.normalize(pixels))
    return label


def train(given: dict, config: dict | None = None, out: str | None = None, resume: bool = False,
          overwrite: bool = False) -> tuple[dict, Path]:
    rank, world, device = dist.setup(given.get("device") or (config or {}).get("device") or "auto")
    if out and resume:  # a resumed run takes its options from its own config.yaml
        from .engine.runfolder import load_config

        saved_path = Path(out) / "config.yaml"
        if saved_path.exists():
            saved = load_config(saved_path)
            free = ("device", "quiet", "log_every")  # where and how it shows, not what it computes
            changed = [k for k, v in given.items() if k in saved and saved[k] != v and k not in free]
            if changed:
                raise UserError(f"--resume: --{changed[0].replace('_', '-')} differs from {saved_path}; "
                                "a resumed run keeps its options")
            config = saved
    cfg = resolve(given, config)
    for opt, n in (("--batch-size", cfg["batch_size"]), ("--batch-size x --unlabeled-ratio",
                                                         cfg["batch_size"] * cfg["unlabeled_ratio"])):
        if n % world:
            raise UserError(f"{opt} = {n} must be divisible by the {world} processes")
    data, views, method = prepare(cfg)
    if out is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        out = f"runs/{cfg['task']}-{cfg['method']}-{Path(str(cfg['data'])).name}-{stamp}"
    out = Path(out)
    if rank == 0:
        check_out(out, resume, overwrite)
    dist.barrier()
    opts = TrainOptions(**{f.name: cfg[f.name] for f in fields(TrainOptions)})
    run = RunFolder(out) if rank == 0 else None
    if run:
        run.start(cfg, fresh=not resume)
    meta = meta_of(cfg, data)
    gen_eval = None
    if cfg["task"] == "generate" and rank == 0:
        from .evaluator import GenEvaluator

        gen_eval = GenEvaluator(data, device, cfg["seed"])
    trainer = Trainer(method, data, views, opts, run, device, rank, world,
                      extra_eval=gen_eval if gen_eval is not None and gen_eval.available else None)
    if resume:
        ckpt = load_checkpoint(out / "checkpoints" / "last.pt", device)
        trainer.load_state(ckpt)
        if run:
            run.truncate_metrics(ckpt["step"])
    t0 = time.time()
    try:
        result = trainer.fit(meta)
    finally:
        if run:
            run.finish()
    summary = None
    if rank == 0:
        summary = {"task": cfg["task"], "method": cfg["method"], "data": str(cfg["data"]),
                   "data_format": data.source.kind, "model": cfg["model"],
                   "num_labeled": len(data.labeled), "num_unlabeled": len(data.unlabeled),
                   "num_test": len(data.test.y), "test_split": data.test_name,
                   "steps": cfg["steps"], "seed": cfg["seed"], "processes": world, "device": str(device),
                   **result}
        if gen_eval is not None:
            summary["evaluator"] = ({"test_accuracy": gen_eval.accuracy, "samples": gen_eval.n}
                                    if gen_eval.available else {"unavailable": gen_eval.reason})
        summary["timing"]["wall_seconds"] = round(time.time() - t0, 2)
        run.write_summary(summary)
        from .report import plot_curves

        plot_curves(run.metrics(), out / "curves.png", title=f"{cfg['method']} on {Path(str(cfg['data'])).name}")
        if cfg["task"] == "segment":
            seg_examples(out, data)
    dist.barrier()
    dist.cleanup()
    return summary, out


def meta_of(cfg: dict, data) -> dict:
    """What eval and predict need to rebuild the network and its input pipeline."""
    c, h, w = data.source.shape
    return {"task": cfg["task"], "method": cfg["method"], "model": cfg["model"], "classes": data.classes,
            "channels": c, "size": [h, w], "mean": data.mean.tolist(), "std": data.std.tolist(),
            "data": str(cfg["data"]), "config": cfg, "palette": data.source.palette}


def seg_examples(out: Path, data, n: int = 6) -> None:
    """examples.png in the run folder: image, ground truth and prediction of the first test images."""
    from .report import save_seg_examples

    model, views, meta, _ = load_run(str(out))
    x, masks = data.test.x[:n], data.test.masks[:n]
    preds = predict_logits(model, x, views, torch.device("cpu"), batch=n).argmax(1)
    save_seg_examples(x.numpy(), masks.numpy(), preds.numpy(), meta["palette"], out / "examples.png")


# ---------------------------------------------------------------------------- eval / predict
def read_run(run_dir: str, which: str = "best") -> tuple[dict, Path]:
    """A run folder's checkpoint (`which`, else last.pt) and its path."""
    run = Path(run_dir)
    ckpt_path = run / "checkpoints" / f"{which}.pt"
    if not run.is_dir():
        raise UserError(f"{run_dir}: no such run folder")
    if not ckpt_path.exists():
        ckpt_path = run / "checkpoints" / "last.pt"
    if not ckpt_path.exists():
        raise UserError(f"{run_dir}: no checkpoints/best.pt or last.pt; is it a semisup run folder?")
    return load_checkpoint(ckpt_path), ckpt_path


def load_run(run_dir: str, which: str = "best"):
    ckpt, ckpt_path = read_run(run_dir, which)
    meta = ckpt["meta"]
    shape = (meta["channels"], *meta["size"])
    segment = meta.get("task") == "segment"
    model = (build_seg_model if segment else build_model)(meta["model"], shape, len(meta["classes"]))
    model.load_state_dict({k[len("module."):]: v for k, v in ckpt["ema"].items() if k.startswith("module.")})
    model.eval()
    from .data.views import ViewMaker

    views = ViewMaker(torch.tensor(meta["mean"]), torch.tensor(meta["std"]))  # its "none" view normalises
    return model, views, meta, ckpt_path


def eval_run(run_dir: str, data_spec: str | None = None, which: str = "best") -> dict:
    model, views, meta, ckpt_path = load_run(run_dir, which)
    cfg = meta["config"]
    task = meta.get("task", "classify")
    if data_spec is None:
        data = make_semidata(load_source(cfg["data"], classes=meta["classes"], task=task), cfg["labels"],
                             cfg["labels_per_class"], cfg["seed"], labeled_fraction=cfg.get("labeled_fraction"))
        split, name = data.test, f"{cfg['data']} ({data.test_name})"
    else:
        src = load_source(data_spec, classes=meta["classes"], task=task)
        if src.shape[0] != meta["channels"] or (task != "segment" and src.shape[1:] != tuple(meta["size"])):
            raise UserError(f"--data {data_spec}: images are {src.shape}, the run was trained on "
                            f"{(meta['channels'], *meta['size'])} (channels, height, width)")
        split = src.test or src.train
        name = f"{data_spec} ({'test' if src.test is not None else 'all labeled images'})"
    r = evaluate(model, split, views, torch.device("cpu"), classes=meta["classes"])
    return {"run": str(run_dir), "checkpoint": str(ckpt_path), "data": name, "task": task,
            "images": int((split.y >= 0).sum()), **r}


def predict(run_dir: str, paths: list[str], loaded: tuple | None = None) -> list[tuple[str, str, float]]:
    from .data.sources import decode_images
    from .errors import Problems

    model, views, meta, _ = loaded or load_run(run_dir)  # `loaded`: load_run's result, read once
    if meta.get("task") == "segment":
        raise UserError(f"{run_dir}: a segmentation run; its predictions are masks (api.predict_masks)")
    files = image_files(paths)
    h, w = meta["size"]
    x, keep = decode_images([(str(f), f.read_bytes) for f in files], Problems(strict=True), [],
                            size=(w, h), channels=meta["channels"])
    logits = predict_logits(model, x, views, torch.device("cpu"))
    conf, cls = logits.softmax(1).max(1)
    return [(str(files[i]), meta["classes"][c], float(p)) for i, c, p in zip(keep, cls.tolist(), conf.tolist())]


def predict_masks(run_dir: str, paths: list[str], out_dir: str | None = None,
                  loaded: tuple | None = None) -> tuple[Path, int]:
    """A segmentation run's masks for image files, each at its own size: NAME.png (an index
    PNG, mode P, with the class palette) and NAME_overlay.png (the colours over the image)."""
    import numpy as np
    from PIL import Image

    from .engine.runfolder import atomic_write
    from .report import colorize

    model, views, meta, _ = loaded or load_run(run_dir)  # `loaded`: load_run's result, read once
    if meta.get("task") != "segment":
        raise UserError(f"{run_dir}: a classification run; `semisup predict` prints its classes without --masks")
    files = image_files(paths)
    out = Path(out_dir) if out_dir else Path(run_dir) / "predictions"
    out.mkdir(parents=True, exist_ok=True)
    palette = [c for rgb in meta["palette"] for c in rgb]
    for f in files:
        try:
            im = Image.open(f)
            im = im.convert("L" if meta["channels"] == 1 else "RGB")
        except OSError as e:
            raise UserError(f"{f}: not a readable image ({type(e).__name__}); remove or replace it")
        arr = np.asarray(im)
        x = torch.from_numpy(arr.copy()).view(*arr.shape[:2], -1).permute(2, 0, 1).unsqueeze(0)
        pred = predict_logits(model, x, views, torch.device("cpu")).argmax(1)[0].numpy().astype(np.uint8)
        mask = Image.fromarray(pred, mode="P")
        mask.putpalette(palette)
        rgb = np.asarray(im.convert("RGB"), dtype=np.float32)
        overlay = Image.fromarray((0.5 * rgb + 0.5 * colorize(pred, meta["palette"])).astype(np.uint8))
        atomic_write(out / f"{f.stem}.png", lambda p: mask.save(p, format="PNG"))
        atomic_write(out / f"{f.stem}_overlay.png", lambda p: overlay.save(p, format="PNG"))
    return out, len(files)


def sample(run_dir: str, per_class: int = 10, out: str | None = None, seed: int = 0,
           which: str = "last") -> tuple[Path, int]:
    """Images from a generation run's generator, `per_class` of each class from noise drawn
    from `seed`: a PNG grid with one row per class (OUT ending in .png, the default
    RUN_DIR/sample_grid.png), or OUT/<class>/<i>.png."""
    from .report import save_grid

    ckpt, _ = read_run(run_dir, which)
    meta = ckpt["meta"]
    if meta.get("task") != "generate":
        raise UserError(f"{run_dir}: a {meta.get('task', 'classify')} run; `semisup sample` needs a "
                        "--task generate run")
    if per_class < 1:
        raise UserError(f"--per-class {per_class}: must be at least 1")
    cfg, k = meta["config"], len(meta["classes"])
    cls = get_method(cfg["method"], "generate")
    shape = (meta["channels"], *meta["size"])
    hp = cls.Hyper(**{f.name: cfg[f.name] for f in cls.hyper_fields()})
    method = cls(build_model(meta["model"], shape, k), k, hp, shape=shape, mean=meta["mean"], std=meta["std"])
    method.load_state_dict(ckpt["method"])
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(k).repeat_interleave(per_class)
    x = method.generate(y, torch.randn(len(y), method.z_dim, generator=g))
    dest = Path(out) if out else Path(run_dir) / "sample_grid.png"
    if dest.suffix.lower() == ".png":
        dest.parent.mkdir(parents=True, exist_ok=True)
        save_grid(x, dest, nrow=per_class)
        return dest, len(x)
    from .engine.runfolder import atomic_write
    from PIL import Image

    for i, (img, c) in enumerate(zip(x, y.tolist())):
        folder = dest / meta["classes"][c]
        folder.mkdir(parents=True, exist_ok=True)
        arr = (img.permute(1, 2, 0).numpy() * 255).round().astype("uint8")
        pic = Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)
        atomic_write(folder / f"{i % per_class:04d}.png", lambda p: pic.save(p, format="PNG"))
    return dest, len(x)


def image_files(paths: list[str]) -> list[Path]:
    from .data.sources import IMAGE_EXTS

    files = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTS)
        elif p.is_file():
            files.append(p)
        else:
            raise UserError(f"{p}: no such image or folder")
    if not files:
        raise UserError(f"{', '.join(paths)}: no images found")
    return files
