"""Option layering and checks (DESIGN.md): the common defaults, then the task's, then the
built-in data set's, then the method's paper defaults, then a --config file, then the options
given (command line or Python). `resolve` merges them and `check_config` checks the result
once, so the command line, --config and `api.train({...})` get the same one-line messages.
Each option declares its own constraint (`options.option(..., check=...)`): the run keys in
`RunOptions`, the optimisation options in `TrainOptions`, a method's in its `Hyper`; the few
rules between options are the cross checks below and the methods' own `Method.check`."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from .engine.trainer import TrainOptions
from .errors import UserError
from .methods import METHODS, get_method
from .options import BOOL, COUNT, Choice, File, Interval, check_values, flag, option
from .tasks import DEFAULT_TASK, TASKS

# Defaults per task above the common ones (each task's `defaults`, with its reasons).
TASK_DEFAULTS = {name: dict(t.defaults) for name, t in TASKS.items() if t.defaults}
# Defaults per built-in data set, chosen so that the run fits a small CPU budget; a task's name
# holds the defaults for that task alone. Digits, classification: FlexMatch with the weak view in
# a no-grad pass of its own, 600 steps, chosen over FixMatch (joint or separate pass, float32 or
# bf16, 600 or 1,000 steps) by the mean final accuracy on the unlabeled pool's hidden labels,
# seeds 0-4, not on test (docs/benchmarks.md, Speed: 97.26% against at most 96.95%), in half
# the time of FixMatch's 1,000 joint steps; on `cnn_small` with 3 unlabeled images per labeled
# one: an eighth of the arithmetic of `cnn` with 7, 2.7x less training time on a CPU without
# native bf16 (float32, seeds 0-4: pool 97.13% against 97.00-97.33% for the dearer settings;
# docs/benchmarks.md, Speed). Then 300 steps of 64 labeled + 192 unlabeled images (FixMatch's
# B = 64) in place of 600 of 32 + 96: a step of twice the images costs 1.5x on a CPU, where
# these small steps pay per call, so the run trains in 30-40% less time; seeds 0-9, final test
# mean 97.55% against 97.38%, pool 96.96% against 97.19% (within the seeds' spread).
DATA_DEFAULTS = {
    "digits": dict(labels_per_class=4, steps=1000, batch_size=32, eval_every=100, save_every=500,
                   classify=dict(method="flexmatch"),
                   # measured per method (docs/benchmarks.md, Speed): the weak view in its own pass,
                   # and flexmatch, the default run, reaches its accuracy in 300 steps of B = 64
                   methods=dict(flexmatch=dict(weak_pass="separate", steps=300, batch_size=64, model="cnn_small",
                                                  unlabeled_ratio=3),
                                fixmatch=dict(weak_pass="separate"))),
    "shapes": dict(labels=50, steps=1000, eval_every=100, save_every=500),
}
# Fine-tuning a pretrained classifier (--pretrained): USB's recipe for its pretrained ViTs,
# config/usb_cv/fixmatch/fixmatch_cifar100_200_0.yaml (the same in every usb_cv algorithm's
# cifar100 config): AdamW, lr 5e-4, layer_decay 0.5, weight_decay 5e-4, batch_size 8, uratio 1,
# ema_m 0 (the evaluated weights are the live ones), num_warmup_iter 5120 of 204800 (1/40).
# USB lowers lr for other data (stl10: 1e-4 with layer_decay 0.65; eurosat: 5e-5, no decay).
# Every usb_cv config is a ViT, and the layer decay is a ViT recipe: on a timm ResNet-18 (its
# stem 8 groups below the top, at 0.5^8 of the rate) it cost FixMatch 0.4-3.6 points against no
# decay (docs/benchmarks.md, "Transfer"), so it is the default for transformers only
# (`models.timm_net.is_transformer`).
FINETUNE = dict(optimizer="adamw", lr=5e-4, weight_decay=5e-4, batch_size=8, unlabeled_ratio=1, ema=0.0)
FINETUNE_LAYER_DECAY = 0.5
FINETUNE_WARMUP = 1 / 40  # of the steps
WHERE_NOT_WHAT = ("out", "resume", "overwrite", "code")  # never taken from a config file (code: provenance)


def _task_methods() -> str:
    return "; ".join(f"--task {t}: {d['method']}" for t, d in TASK_DEFAULTS.items() if "method" in d)


@dataclass
class RunOptions:
    """What to train: the task, method, data, labeled draw, network and device. The help says
    the defaults that depend on the data in words."""

    task: str = option(DEFAULT_TASK, f"classify (default), segment (default for segmentation data: a folder "
                       "with images/ and masks/, the CamVid layout, a dataset card, shapes; default method "
                       f"{TASK_DEFAULTS['segment']['method']}) or generate (a class-conditional generator with a "
                       f"classifier; default method {TASK_DEFAULTS['generate']['method']})", check=Choice(*TASKS))
    method: str = option("fixmatch", f"the algorithm (default fixmatch; on digits flexmatch; {_task_methods()}); "
                         "`semisup methods` lists them")
    data: str = option("digits", "a built-in name (digits; shapes for segmentation) or a path: IDX folder, image "
                       "folder or .tar(.gz), .csv manifest, .npz; segmentation: a folder with images/ and masks/, "
                       "the CamVid layout, a dataset card .yaml")
    labels: int | None = option(None, "labeled images to draw, class-balanced (default: digits 4 per class; other "
                                "data: every labeled image)", check=COUNT)
    labels_per_class: int | None = option(None, "labeled images to draw per class", check=COUNT)
    labeled_fraction: float | None = option(None, "share of each class's training images to label, e.g. 0.125; "
                                            "1 labels them all (segmentation: of the images with masks)",
                                            check=Interval(float, 0, 1, closed="right"))
    model: str | None = option(None, "cnn, cnn_small, cnn_small_s2d, wrn28_2, cnn13, mlp_gan, gan_cnn, gan_cnn96 or any timm "
                               "architecture, e.g. resnet18 (`semisup models`; default: the "
                               "method's own if it has one, else cnn below 16 px, cnn_small below 32 px, wrn28_2 "
                               "from 32 px); segmentation: unet (width 16), unet<N> (width N), deeplabv3plus "
                               "(ResNet-18), deeplabv3plus_r50 (default unet), or unet:ENCODER / "
                               "deeplabv3plus:ENCODER on a timm encoder (unet:resnet18, deeplabv3plus:resnet50)")
    device: str = option("auto", "auto (CUDA where there is one), cpu or cuda", check=Choice("auto", "cpu", "cuda"))
    flip: bool | None = option(None, "horizontal flips in the views (default: true for colour images)", check=BOOL)
    classes: str | None = option(None, "comma-separated class names, fixing their order (CSV, NPZ, folders)")
    image_size: int | None = option(None, "classification: every image resized to this square as it is read, the "
                                    "shorter side scaled to N and the longer one centre-cropped (default: the "
                                    "images' size; photos with a side above 256 px: 224); segmentation: the square "
                                    "training crop in pixels (default: the image size, at most 256)",
                                    check=Interval(int, 8, unit="pixels"))
    init: str | None = option(None, "segmentation: a local state dict (.pt/.pth) loaded into the encoder "
                              "(torchvision ResNet names for deeplabv3plus); default: random weights",
                              check=File("give a local state dict (.pt/.pth) for the encoder"))
    pretrained: str | None = option(None, "the backbone's (segmentation: the encoder's) starting weights: a "
                                    "weights file (.safetensors, .pth, .bin; timm, torchvision or semisup names), "
                                    "a semisup run folder, or for a timm network a timm tag (resnet18.a1_in1k), "
                                    "hf-hub:ID or TAG=FILE (the tag's config, a local file's weights); the input "
                                    "mean and std come with them; classification then fine-tunes with USB's "
                                    "defaults (AdamW, --layer-decay; default: random weights)")
    store: str = option("auto", "where the training images live: on the device (device), in a memory-mapped "
                        "uint8 file in the run folder's cache/ (memmap), or auto: on the device when they take at "
                        "most half its free memory", check=Choice("auto", "device", "memmap"))
    include_labeled: bool = option(True, "the labeled images are in the unlabeled pool too (default: true, as "
                                   "FixMatch and USB; segmentation: false, as UniMatch's splits)", check=BOOL)
    add_labels: str | None = option(None, "CSV files, comma-separated (a.csv,b.csv), of images labeled by hand: the "
                                    "rows with a class name in their label column (index, path, label: the picks.csv "
                                    "of `semisup suggest`) join the drawn labeled set, beyond --labels; round k of "
                                    "RUN/labels.csv is the k-th file")


RUN_KEYS = asdict(RunOptions())


def method_options() -> dict[str, object]:
    """Every method hyperparameter name with the first field found (for the CLI)."""
    out = {}
    for m in [m for task in METHODS.values() for m in task.values()]:
        for f in m.hyper_fields():
            out.setdefault(f.name, f)
    return out


def defaults(data: str | None = None, task: str = DEFAULT_TASK) -> dict:
    """The common defaults, then the task's, then the data set's (a built-in name)."""
    d = {**RUN_KEYS, **asdict(TrainOptions()), **TASK_DEFAULTS.get(task, {})}
    own = DATA_DEFAULTS.get(data or d["data"], {})
    d.update({k: v for k, v in own.items() if k not in TASKS and k != "methods"})
    d.update(own.get(task, {}))
    return d


def method_data_defaults(data: str | None, method: str) -> dict:
    """A data set's defaults for one method (DATA_DEFAULTS[data]["methods"]): above the method's own."""
    return dict(DATA_DEFAULTS.get(data or RUN_KEYS["data"], {}).get("methods", {}).get(method, {}))


def task_of(merged: dict) -> str:
    """--task, else what the data is (a segmentation folder, card or `shapes`), else classify."""
    if merged.get("task"):
        return merged["task"]
    if merged.get("data"):
        from .data.sources import detect_task

        return detect_task(str(merged["data"]))
    return RUN_KEYS["task"]


def resolve(given: dict, config: dict | None = None) -> dict:
    """Merge defaults, data defaults, the method's defaults, a config file and given options
    into the full config, and check it (`check_config`)."""
    config = {k: v for k, v in (config or {}).items() if k not in WHERE_NOT_WHAT}
    known = set(defaults()) | set(method_options()) | {k for d in TASK_DEFAULTS.values() for k in d}
    for k in config:
        if k not in known:
            raise UserError(f"--config: unknown option '{k}'; `semisup train --help` lists the options")
    for k in given:
        if k not in known:
            raise UserError(f"unknown option '{k}'; `semisup train --help` lists the options")
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
    paper = method.run_defaults_for(merged)
    own = {**paper, **method_data_defaults(merged.get("data"), method.name)}
    tune = finetune_defaults(method, merged, task)  # above a data set's budget for a method, not its paper's
    cfg = {**base, **own, **{k: v for k, v in tune.items() if k not in paper}, **merged, "task": task}
    if tune and "lr_warmup" not in merged:
        cfg["lr_warmup"] = round(cfg["steps"] * FINETUNE_WARMUP)
    names = {f.name for f in method.hyper_fields()}
    for k in set(merged) & set(method_options()) - names:
        if merged[k] is not None:
            raise UserError(f"{flag(k)}: not an option of method '{cfg['method']}' "
                            f"(its options: {', '.join(sorted(names)) or 'none'})")
    for f in method.hyper_fields():
        cfg[f.name] = merged.get(f.name) if merged.get(f.name) is not None else own.get(f.name, base.get(f.name, f.default))
    for k in [k for k in cfg if k in method_options() and k not in names]:
        del cfg[k]
    check_config(cfg)
    return cfg


def own_optimizer(method) -> bool:
    """Whether the method trains with its paper's own optimiser (sgan's, the generators' Adam)."""
    from .methods.base import Method

    return method.configure_optimizer is not Method.configure_optimizer


def finetune_defaults(method, merged: dict, task: str) -> dict:
    """USB's fine-tuning options (`FINETUNE`) for a classifier with --pretrained weights, where
    the method takes the common optimiser; {} otherwise. They sit above a data set's defaults for
    the method (digits' unlabeled ratio for flexmatch's default run), below the method's paper
    defaults for the same options (a method's own unlabeled ratio stays) and below --config and
    the command line."""
    if task != "classify" or not merged.get("pretrained") or own_optimizer(method):
        return {}
    from .models.timm_net import is_transformer

    vit = bool(merged.get("model")) and is_transformer(str(merged["model"]))
    return {**FINETUNE, "layer_decay": FINETUNE_LAYER_DECAY if vit else 1.0}


def check_config(cfg: dict) -> None:
    """The one check of a resolved config, whichever way its options came: first whether each
    option applies, then each against its declared constraint (run keys, TrainOptions, the
    method's Hyper), then the rules between options (the cross checks here, the method's own
    `check`). Raises UserError, one line, at the first problem."""
    method = get_method(cfg["method"], cfg["task"])
    TASKS[cfg["task"]].check(cfg)
    for declared in (RunOptions, TrainOptions, method.Hyper):
        check_values(declared, cfg)
    if (cfg["optimizer"] != "sgd" or cfg["layer_decay"] != 1.0) and own_optimizer(method):
        changed = "--optimizer" if cfg["optimizer"] != "sgd" else "--layer-decay"
        raise UserError(f"{changed}: method '{cfg['method']}' trains with its paper's own optimiser (Adam, "
                        "`semisup methods` says which); leave it out")
    if cfg["layer_decay"] != 1.0:
        from .models.timm_net import is_timm_name

        if cfg["task"] != "classify" or not cfg.get("model") or not is_timm_name(str(cfg["model"])):
            raise UserError(f"--layer-decay {cfg['layer_decay']}: needs a timm classifier backbone (--model resnet18, "
                            "vit_small_patch16_224, ...), whose blocks it scales; use 1 for this network")
    start = cfg.get("unlabeled_ratio_start")
    if start is not None and start > cfg["unlabeled_ratio"]:
        raise UserError(f"--unlabeled-ratio-start {start}: above --unlabeled-ratio {cfg['unlabeled_ratio']}, where "
                        "the ramp ends; give a start at or below it")
    if cfg["device"] == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available here; use --device cpu or auto")
    method.check(cfg)
