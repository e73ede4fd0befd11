"""The command line: parses, calls the library, prints. No logic of its own."""
from __future__ import annotations

import argparse
import csv
import os
import sys
from dataclasses import MISSING, fields
from pathlib import Path

from .errors import Stopped, UserError, disk_error, first_line, out_of_memory


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit status 2
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        sys.exit(2)


def _bool(s: str) -> bool:
    if s.lower() in ("1", "true", "yes", "on"):
        return True
    if s.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {s!r}")


def _named(argv: list[str], name: str) -> str | None:
    """The value given to option `name` on a command line (`--name X` or `--name=X`; the last)."""
    value = None
    for i, a in enumerate(argv):
        if a == name and i + 1 < len(argv):
            value = argv[i + 1]
        elif a.startswith(name + "="):
            value = a[len(name) + 1:]
    return value


def _help_method(argv: list[str]):
    """The method whose options `train --help` lists: --method (in --task, else the first task
    that has it), else the task's default method; and whether --method named it."""
    from .config import RUN_KEYS, defaults
    from .methods import METHODS

    task, name = _named(argv, "--task"), _named(argv, "--method")
    tasks = [task] if task in METHODS else [RUN_KEYS["task"], *METHODS]
    for t in tasks:
        if name in METHODS[t]:
            return t, METHODS[t][name], True
    t = tasks[0]  # the default method of the task on the data (flexmatch on digits)
    return t, METHODS[t][defaults(_named(argv, "--data"), t)["method"]], False


def _parse_type(f):
    """What the command line parses an option's text as: its constraint's type, else its default's."""
    from .options import check_of

    c = check_of(f)
    typ = c.type if c is not None else type(f.default) if f.default is not None else str
    return _bool if typ is bool else typ


def _with_default(help: str, default) -> str:
    """'weight (lambda_u)' -> 'weight (lambda_u; default 1.0)'; 'weight' -> 'weight (default 1.0)'."""
    depth, i = 0, len(help)
    for i in range(len(help) - 1, -1, -1):  # the parenthesis that a final ')' closes
        depth += {")": 1, "(": -1}.get(help[i], 0)
        if depth == 0:
            break
    if help.endswith(")") and i > 0 and help[i - 1] == " ":  # a closing note, not p(x|y,z)
        return f"{help[:-1]}; default {default})"
    return f"{help} (default {default})"


def _train_parser(sub, argv: list[str]) -> None:
    """`semisup train`. It accepts every method's options (one the chosen method lacks gets
    `config.resolve`'s message naming the options it takes), but --help lists the common options
    and only the chosen method's (--method on the command line, else the default), each with
    that method's meaning and default."""
    from .config import RunOptions, defaults, method_data_defaults, method_options
    from .engine.trainer import TrainOptions
    from .options import flag

    task, method, named = _help_method(argv)
    data = _named(argv, "--data")
    shown = {**defaults(data, task), **{f.name: f.default for f in method.hyper_fields()},
             **method.run_defaults_for({}), **method_data_defaults(data, method.name)}
    esc = lambda s: s.replace("%", "%%")  # noqa: E731  (argparse formats help with %)
    p = sub.add_parser("train", help="train a model (flexmatch on digits with no options)",
                       description="Train a semi-supervised model. With no options: flexmatch on the built-in "
                                   "digits with 4 labels per class.", argument_default=argparse.SUPPRESS)
    S = argparse.SUPPRESS
    g = p.add_argument_group("what to train")
    g.add_argument("--config", help="a YAML file of options (a run's config.yaml reproduces it); "
                                    "options given here override it")
    for f in fields(RunOptions):
        g.add_argument(flag(f.name), type=_parse_type(f), help=esc(f.metadata["help"]))
    t = p.add_argument_group(f"optimisation (defaults of {method.name} on {data or shown['data']})")
    for f in fields(TrainOptions):
        if f.name != "quiet":  # a switch, with the run folder's
            t.add_argument(flag(f.name), type=_parse_type(f),
                           help=esc(_with_default(f.metadata["help"], shown[f.name])))
    who = f"{method.name}{'' if named else ', the default method'} (--task {task})"
    m = p.add_argument_group(f"options of {who}", "`semisup train --method X --help` shows the options of method "
                                                  "X; `semisup methods --verbose` lists every method's")
    own = {f.name: f for f in method.hyper_fields()}
    for name, f in {**own, **method_options()}.items():  # the method's own first, in its order
        mine = own.get(name)
        m.add_argument(flag(name), type=_parse_type(mine or f),
                       help=S if mine is None else esc(_with_default(mine.metadata["help"], shown[name])))
    r = p.add_argument_group("run folder")
    r.add_argument("--out", default=S, help="run folder (default runs/<task>-<method>-<data>-<time>)")
    r.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    r.add_argument("--overwrite", action="store_true", help="replace the run in --out")
    r.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser(argv: list[str] | None = None) -> Parser:
    """The parser; `argv` (default: the process's arguments) picks the method `train --help` shows."""
    p = Parser(prog="semisup", description="Semi-supervised image models from a few labeled images.")
    p.add_argument("--version", action="version", version=f"semisup {__import__('semisup').__version__}")
    sub = p.add_subparsers(dest="command", parser_class=Parser)
    _train_parser(sub, sys.argv[1:] if argv is None else list(argv))
    e = sub.add_parser("eval", help="evaluate a run's best checkpoint")
    e.add_argument("run_dir")
    e.add_argument("--data", help="evaluate on this data instead: its test split, else all its labeled images "
                                  "(the run's own training data: the run's test split)")
    e.add_argument("--checkpoint", default="best", choices=("best", "last"),
                   help="best (default; last.pt where there is no best.pt yet) or last")
    pr = sub.add_parser("predict", help="classify images, or segment them, with a trained run")
    pr.add_argument("run_dir")
    pr.add_argument("images", nargs="+", help="image files or folders")
    pr.add_argument("--out", help="classification: write the CSV path,class,confidence,error to this file "
                                  "instead of printing it; segmentation: the folder for REL.png index masks and "
                                  "REL_overlay.png, REL each image's path under its input folder, and the list "
                                  "predictions.csv (default RUN_DIR/predictions)")
    pr.add_argument("--strict", action="store_true", help="exit with status 2 when an image could not be read "
                                                          "(every readable image is still predicted)")
    pr.add_argument("--checkpoint", default="best", choices=("best", "last"),
                    help="best (default; last.pt where there is no best.pt yet) or last")
    sa = sub.add_parser("sample", help="draw images of each class from a generation run")
    sa.add_argument("run_dir")
    sa.add_argument("--per-class", type=int, default=10, help="images per class (default 10)")
    sa.add_argument("--out", help="a .png grid with one row per class (default RUN_DIR/sample_grid.png), "
                                  "or a folder for OUT/<class>/<i>.png")
    sa.add_argument("--seed", type=int, default=0, help="seed of the noise: the same seed, the same images")
    sa.add_argument("--checkpoint", default="last", choices=("best", "last"),
                    help="last (default): the final generator; best: the checkpoint of the best classifier")
    _suggest_parser(sub)
    me = sub.add_parser("methods", help="list the methods")
    me.add_argument("--verbose", "-v", action="store_true", help="with their options and defaults")
    mo = sub.add_parser("models", help="list the networks --model takes: the project's own and timm's")
    mo.add_argument("pattern", nargs="?", default="", help="timm names matching this (fnmatch: 'resnet*', '*vit*')")
    d = sub.add_parser("data", help="check a data set: counts, sizes, problems")
    d.add_argument("spec", help="a built-in name or a path")
    d.add_argument("--classes", help="comma-separated class names")
    d.add_argument("--image-size", type=int, help="classification: read the images at this square size, as "
                                                  "`semisup train --image-size` does (the report shows the memory)")
    _sweep_parsers(sub)
    return p


def cmd_train(a: argparse.Namespace) -> None:
    from .api import train
    from .engine.runfolder import load_config

    given = {k: v for k, v in vars(a).items() if k not in ("command", "config", "out", "resume", "overwrite")}
    config = load_config(a.config) if getattr(a, "config", None) else None
    summary, out = train(given, config, getattr(a, "out", None), getattr(a, "resume", False),
                         getattr(a, "overwrite", False))
    if summary is not None:
        from .tasks import get_task

        t, score = summary["timing"], get_task(summary["task"]).summary_line(summary)
        print(f"{summary['method']} on {summary['data']}: {score}, "
              f"{summary['num_labeled']} labeled + {summary['num_unlabeled']} unlabeled, "
              f"{summary['steps']} steps in {t['train_seconds']:.0f} s")
        print(f"run folder: {out}")


def cmd_eval(a) -> None:
    from .api import eval_run
    from .tasks import get_task

    r = eval_run(a.run_dir, a.data, a.checkpoint)
    for note in r["notes"]:
        sys.stderr.write(f"semisup eval: note: {note}\n")
    print(get_task(r["task"]).eval_line(r))


def cmd_predict(a) -> None:
    from .api import predict_any

    r = predict_any(a.run_dir, a.images, a.out, a.checkpoint)
    rows, notes = r["rows"], r["notes"]
    if r["message"]:
        print(r["message"])
    if r["table"] is not None:
        csv.writer(sys.stdout).writerows(r["table"])
    for note in notes:
        sys.stderr.write(f"semisup predict: note: {note}\n")
    bad = [r for r in rows if r[-1]]
    for r in bad:
        sys.stderr.write(f"semisup predict: could not read {r[0]}: {r[-1]}\n")
    if bad:
        strict = "; --strict: exit status 2" if a.strict else ""
        sys.stderr.write(f"semisup predict: {len(bad)} of {len(rows)} images could not be read (listed above, "
                         f"and with an error in the CSV){strict}\n")
        if a.strict:
            sys.exit(2)


def cmd_sample(a) -> None:
    from .api import sample

    out, n = sample(a.run_dir, a.per_class, a.out, a.seed, a.checkpoint)
    print(f"wrote {n} images ({a.per_class} per class) to {out}")


# ---------------------------------------------------------------------------- semisup suggest
def _suggest_parser(sub) -> None:
    from .suggest import POOL_LIMIT, STRATEGIES

    su = sub.add_parser("suggest", help="which unlabeled images to label next, from a finished run",
                        description="Rank a finished run's unlabeled training images by how much a label would teach "
                                    "it and write the best N to OUT/picks.csv (index,path,predicted,confidence,score,"
                                    "reason,label) and OUT/picks.png. Fill in the label column with class names and "
                                    "train again with --add-labels OUT/picks.csv.")
    su.add_argument("run_dir")
    su.add_argument("--n", type=int, default=50, help="images to pick (default 50)")
    su.add_argument("--strategy", default=None, choices=STRATEGIES, metavar="STRATEGY",
                    help="typiclust (the default for classification; Hacohen et al. 2022: the most typical image of "
                         "the least-labeled k-means cluster, for few labels); badge (Ash et al. 2020: k-means++ over "
                         "last-layer gradient embeddings, uncertain and diverse); margin (smallest gap between the top two classes, Scheffer et al. 2001); "
                         "entropy (highest predictive entropy, Settles 2009); disagreement (symmetric KL of the live "
                         "network and its EMA, or of the plain and a strong view, Seung et al. 1992); kcenter "
                         "(k-center greedy over the features, Sener & Savarese 2018); random. Segmentation runs: entropy "
                         "(their default) or margin, by the mean over the pixels")
    su.add_argument("--seed", type=int, default=0, help="seed of the pool sample, BADGE's k-means++, the strong view "
                                                        "and random (default 0)")
    su.add_argument("--pool-limit", type=int, default=POOL_LIMIT,
                    help=f"score at most this many unlabeled images, drawn at random from --seed "
                         f"(default {POOL_LIMIT})")
    su.add_argument("--out", required=True, help="the folder for picks.csv and picks.png")


def cmd_suggest(a) -> None:
    from .suggest import PICKS, suggest

    rows = suggest(a.run_dir, a.n, a.strategy, a.seed, a.pool_limit, a.out)
    fewer = f" (the pool has only {len(rows)} unlabeled images)" if len(rows) < a.n else ""
    print(f"wrote {len(rows)} picks ({rows[0]['strategy']}){fewer} to {os.path.join(a.out, PICKS)} and "
          f"{os.path.join(a.out, 'picks.png')}; fill in the label column, then `semisup train ... --add-labels "
          f"{os.path.join(a.out, PICKS)}`")


def cmd_methods(a) -> None:
    from .methods import METHODS

    for name, m in [(n, m) for task in METHODS.values() for n, m in task.items()]:
        print(f"{name:16s} {m.task:9s} {m.paper}")
        if a.verbose:
            for f in m.hyper_fields():
                d = f.default if f.default is not MISSING else "required"
                print(f"    --{f.name.replace('_', '-'):16s} {d!s:8s} {f.metadata.get('help', '')}")
            if m.run_defaults_for({}):
                own = ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in m.run_defaults_for({}).items())
                print(f"    (its paper's training defaults: {own})")
            print(f"    (learning rate: {m.schedule})")


def cmd_models(a) -> None:
    from .models import MODELS, SEG_MODELS, SIZED
    from .models.timm_net import timm_names

    print("classification (the project's own): " + ", ".join([*MODELS, *SIZED]))
    print("segmentation (--task segment): " + ", ".join([*SEG_MODELS, "unet<N>"]))
    try:
        names = timm_names(a.pattern)
    except ImportError:
        print("timm is not installed: `pip install timm` for its architectures")
        return
    shown = names if a.pattern else names[:20]
    print(f"timm ({len(names)}{' matching ' + repr(a.pattern) if a.pattern else ''}): " + ", ".join(shown)
          + (", ... (give a pattern, e.g. `semisup models 'resnet*'`)" if len(shown) < len(names) else ""))


def cmd_data(a) -> None:
    from .data.check import report

    if a.image_size is not None and a.image_size < 8:
        raise UserError(f"--image-size {a.image_size}: must be a whole number of pixels, at least 8")
    print(report(a.spec, a.classes.split(",") if a.classes else None, image_size=a.image_size))


# ---------------------------------------------------------------------------- sweep and report
SWEEP_RUN_KEYS = ("task", "model", "device", "flip", "classes", "image_size", "init", "pretrained", "store",
                  "include_labeled")  # what to train, beside the method, data, labels and seed the sweep sets


def _numbers(least: int):
    """An argparse type: comma-separated whole numbers, each at least `least`."""
    def parse(s: str) -> list[int]:
        try:
            values = [int(v) for v in s.split(",") if v.strip()]
        except ValueError:
            values = None
        if not values or any(v < least for v in values):
            raise argparse.ArgumentTypeError(f"expected whole numbers of at least {least} separated by commas, "
                                             f"e.g. 10,40,100; got {s!r}")
        return values
    return parse


def _sweep_parsers(sub) -> None:
    """`semisup sweep` (how many labels: a run per method, label count and seed, then a report) and
    `semisup report` (one run's report)."""
    from .config import RunOptions
    from .engine.trainer import TrainOptions
    from .options import flag

    S = argparse.SUPPRESS
    esc = lambda s: s.replace("%", "%%")  # noqa: E731
    p = sub.add_parser("sweep", help="how many labels: train each method at each number of labels, then a report",
                       description="Train every (method, labels, seed) point into OUT/runs/METHOD-nLABELS-sSEED "
                                   "(a finished run is skipped, an interrupted one resumed), then write "
                                   "OUT/results.json and OUT/report.html. The supervised baseline (the labeled "
                                   "images alone) is added where --methods lacks it.")
    p.add_argument("--data", default="digits", help="the data set, as `semisup train --data` takes it (default digits)")
    p.add_argument("--labels", required=True, type=_numbers(1), help="numbers of labeled images, e.g. 10,40,100,400")
    p.add_argument("--methods", default="supervised,fixmatch", help="comma-separated methods (default "
                                                                     "supervised,fixmatch)")
    p.add_argument("--seeds", default=[0], type=_numbers(0), help="comma-separated seeds (default 0)")
    p.add_argument("--out", required=True, help="the sweep folder (new, empty, or an earlier sweep's to continue it)")
    t = p.add_argument_group("passed to every run (see `semisup train --help`; default: each method's own)")
    for f in fields(RunOptions):
        if f.name in SWEEP_RUN_KEYS:
            t.add_argument(flag(f.name), type=_parse_type(f), default=S, help=esc(f.metadata["help"]))
    for f in fields(TrainOptions):
        if f.name not in ("seed", "quiet"):
            t.add_argument(flag(f.name), type=_parse_type(f), default=S, help=esc(f.metadata["help"]))
    r = sub.add_parser("report", help="a run's report.html: curves, confusion matrix, most confident mistakes")
    r.add_argument("run_dir")
    r.add_argument("--out", help="the report's folder (default RUN_DIR/report)")


def cmd_sweep(a) -> None:
    from .sweep import sweep

    sweeping = ("command", "data", "labels", "methods", "seeds", "out")
    options = {k: v for k, v in vars(a).items() if k not in sweeping}
    methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    r = sweep(a.data, a.labels, methods, a.seeds, options, a.out, log=lambda line: print(line, flush=True))
    busy = f", {r['running']} left to another process" if r["running"] else ""
    print(f"{len(r['rows'])} runs ({r['trained']} trained, {r['resumed']} resumed, {r['finished']} finished "
          f"already{busy}); results: {Path(a.out) / 'results.json'}")
    print(f"report: {r['report']}")


def cmd_report(a) -> None:
    from .report import run_report

    print(f"report: {run_report(a.run_dir, a.out)}")


def main(argv=None) -> None:
    """The command line, in this process: returns, or raises SystemExit with the status (what the
    tests call). Under torchrun it leaves as `entry` does."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return _main(argv)
    _leave(argv)


def entry() -> None:
    """The `semisup` program (its console script and `python -m semisup`): the command, then, once
    its output is flushed, os._exit with its status. Every file is written and closed by then, and
    the interpreter's own teardown is skipped: after importing torch it took 0.8-0.9 s of each
    command on this CPU (tearing down thousands of modules and objects; `python -c "import torch"`
    3.3 s against 2.5 s ending in os._exit), and under torchrun it aborted a process now and then
    after a finished gloo run ("terminate called without an active exception", about 1 run in 17
    on this CPU), which made torchrun report a failure. An unexpected error still ends as Python
    ends one (its traceback, status 1)."""
    _leave(None)


def _leave(argv) -> None:
    try:
        _main(argv)
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
        if isinstance(e.code, str):
            sys.stderr.write(e.code + "\n")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _main(argv=None) -> None:
    parser = build_parser(argv)
    a = parser.parse_args(argv)
    if a.command is None:
        parser.print_help()
        sys.exit(0)
    try:
        {"train": cmd_train, "eval": cmd_eval, "predict": cmd_predict, "sample": cmd_sample, "methods": cmd_methods,
         "models": cmd_models, "data": cmd_data, "sweep": cmd_sweep, "report": cmd_report,
         "suggest": cmd_suggest}[a.command](a)
        sys.stdout.flush()  # here, so that a reader gone away (`| head`) is caught below
    except BrokenPipeError:  # the reader stopped reading: not an error, and no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit flush goes nowhere
        sys.exit(141)  # 128 + SIGPIPE, as a shell reports it
    except UserError as e:
        sys.stderr.write(f"semisup {a.command}: error: {e}\n")
        sys.exit(2)
    except Stopped as e:  # training saved what it could; the message says so
        if str(e):
            sys.stderr.write(f"semisup {a.command}: {e}\n")
        sys.exit(e.status)
    except KeyboardInterrupt:
        sys.stderr.write(f"semisup {a.command}: interrupted\n")
        sys.exit(130)
    except (MemoryError, RuntimeError, OSError) as e:
        if out_of_memory(e):
            line = f"out of memory ({first_line(e)}); use fewer or smaller images at a time"
        elif isinstance(e, OSError) and disk_error(e) is not None:
            line = str(disk_error(e))
        else:
            raise
        sys.stderr.write(f"semisup {a.command}: error: {line}\n")
        sys.exit(2)


if __name__ == "__main__":
    main()
