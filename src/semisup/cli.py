"""The command line: parses, calls the library, prints. No logic of its own."""
from __future__ import annotations

import argparse
import csv
import os
import sys
from dataclasses import MISSING

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


def _train_parser(sub) -> None:
    from .api import RUN_KEYS, method_options
    from .engine.trainer import TrainOptions

    p = sub.add_parser("train", help="train a model (fixmatch on digits with no options)",
                       description="Train a semi-supervised model. With no options: fixmatch on the built-in "
                                   "digits with 4 labels per class.", argument_default=argparse.SUPPRESS)
    S = argparse.SUPPRESS
    g = p.add_argument_group("what to train")
    g.add_argument("--config", help="a YAML file of options (a run's config.yaml reproduces it); "
                                    "options given here override it")
    g.add_argument("--task", help="classify (default), segment (default for segmentation data: a folder "
                                  "with images/ and masks/, the CamVid layout, a dataset card, shapes) or "
                                  "generate (a class-conditional generator with a classifier; default triple_gan)")
    g.add_argument("--method", help=f"the algorithm (default {RUN_KEYS['method']}); `semisup methods` lists them")
    g.add_argument("--data", help="a built-in name (digits; shapes for segmentation) or a path: IDX folder, "
                                  "image folder or .tar(.gz), .csv manifest, .npz; segmentation: a folder "
                                  "with images/ and masks/, the CamVid layout, a dataset card .yaml")
    g.add_argument("--labels", type=int, help="labeled images to draw, class-balanced (default: digits 4 per "
                                              "class; other data: every labeled image)")
    g.add_argument("--labels-per-class", type=int, help="labeled images to draw per class")
    g.add_argument("--labeled-fraction", type=float, help="share of the training images to label, "
                                                          "e.g. 0.125 (segmentation: images with masks)")
    g.add_argument("--include-labeled", type=_bool, help="the labeled images are in the unlabeled pool too "
                                                         "(default: true, as FixMatch and USB; segmentation: "
                                                         "false, as UniMatch's splits)")
    g.add_argument("--image-size", type=int, help="classification: every image resized to this square as it "
                                                  "is read, the shorter side scaled to N and the longer one "
                                                  "centre-cropped (default: the images' size; photos with a side "
                                                  "above 256 px: 224); segmentation: the square training crop in "
                                                  "pixels (default: the image size, at most 256)")
    g.add_argument("--init", help="segmentation: a local state dict (.pt/.pth) loaded into the encoder "
                                  "(torchvision ResNet names for deeplabv3plus); default: random weights")
    g.add_argument("--classes", help="comma-separated class names, fixing their order (CSV, NPZ, folders)")
    g.add_argument("--seed", type=int, help="seed of the labeled draw, initial weights and sampling (default 0)")
    g.add_argument("--model", help="cnn, cnn_small, wrn28_2, cnn13, mlp_gan, gan_cnn, gan_cnn96 (default: the method's own if it has one, "
                   "else cnn below 16 px, cnn_small below 32 px, wrn28_2 from 32 px); segmentation: unet (width 16), "
                   "unet<N> (width N), deeplabv3plus (ResNet-18), deeplabv3plus_r50 (default unet)")
    g.add_argument("--flip", type=_bool, help="horizontal flips in the views (default: true for colour images)")
    t = p.add_argument_group("optimisation (defaults: FixMatch's, scaled to the data set's CPU budget)")
    defaults = TrainOptions()
    for name, typ, h in (("steps", int, "training steps"), ("batch_size", int, "labeled images per step, global"),
                         ("unlabeled_ratio", int, "unlabeled images per labeled one (mu)"),
                         ("lr", float, "learning rate (the method's schedule scales it)"),
                         ("momentum", float, "SGD momentum"),
                         ("nesterov", _bool, "Nesterov momentum"), ("weight_decay", float, "weight decay"),
                         ("ema", float, "EMA decay of the evaluated weights"),
                         ("eval_every", int, "steps between evaluations"),
                         ("save_every", int, "steps between checkpoints"), ("log_every", int, "steps between log reads"),
                         ("amp", str, "auto (bf16 on CUDA, float32 on CPU), bf16, off"), ("compile", _bool, "torch.compile the network"),
                         ("eval_batch", int, "evaluation batch size"), ("device", str, "auto, cpu or cuda")):
        d = getattr(defaults, name, "auto")
        t.add_argument("--" + name.replace("_", "-"), type=typ, help=f"{h} (default {d})")
    m = p.add_argument_group("method options (each method takes its own; `semisup methods --verbose`)")
    for name, f in method_options().items():
        typ = _bool if isinstance(f.default, bool) else type(f.default)
        m.add_argument("--" + name.replace("_", "-"), type=typ, help=f"{f.metadata.get('help', '')}")
    r = p.add_argument_group("run folder")
    r.add_argument("--out", default=S, help="run folder (default runs/<task>-<method>-<data>-<time>)")
    r.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    r.add_argument("--overwrite", action="store_true", help="replace the run in --out")
    r.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser() -> Parser:
    p = Parser(prog="semisup", description="Semi-supervised image models from a few labeled images.")
    p.add_argument("--version", action="version", version=f"semisup {__import__('semisup').__version__}")
    sub = p.add_subparsers(dest="command", parser_class=Parser)
    _train_parser(sub)
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
    me = sub.add_parser("methods", help="list the methods")
    me.add_argument("--verbose", "-v", action="store_true", help="with their options and defaults")
    d = sub.add_parser("data", help="check a data set: counts, sizes, problems")
    d.add_argument("spec", help="a built-in name or a path")
    d.add_argument("--classes", help="comma-separated class names")
    d.add_argument("--image-size", type=int, help="classification: read the images at this square size, as "
                                                  "`semisup train --image-size` does (the report shows the memory)")
    return p


def cmd_train(a: argparse.Namespace) -> None:
    from .api import train
    from .engine.runfolder import load_config

    given = {k: v for k, v in vars(a).items() if k not in ("command", "config", "out", "resume", "overwrite")}
    config = load_config(a.config) if getattr(a, "config", None) else None
    summary, out = train(given, config, getattr(a, "out", None), getattr(a, "resume", False),
                         getattr(a, "overwrite", False))
    if summary is not None:
        m, t = summary["metrics"], summary["timing"]
        if summary["task"] == "segment":
            sel = f"checkpoint selected on val at step {m['best_step']}" if m["selected_on"] == "val" else "final"
            dice = f", Dice {m['test_dice']:.4f}" if "test_dice" in m else ""
            score = (f"test mean IoU {m['test_miou']:.4f} ({sel}; pixel accuracy {m['test_pixel_accuracy']:.4f}"
                     f"{dice})")
        else:
            score = (f"test accuracy {m['test_accuracy']:.4f} (best {m['best_test_accuracy']:.4f} "
                     f"at step {m['best_step']})")
            if summary["task"] == "generate":
                score += (f", conditional accuracy {m['conditional_accuracy']:.4f}, local FID {m['local_fid']:.2f} "
                          f"(floor {m['local_fid_floor']:.2f})" if "local_fid" in m else
                          f"; generation metrics unavailable: {summary['evaluator']['unavailable']}")
        print(f"{summary['method']} on {summary['data']}: {score}, "
              f"{summary['num_labeled']} labeled + {summary['num_unlabeled']} unlabeled, "
              f"{summary['steps']} steps in {t['train_seconds']:.0f} s")
        print(f"run folder: {out}")


def cmd_eval(a) -> None:
    from .api import eval_run

    r = eval_run(a.run_dir, a.data, a.checkpoint)
    for note in r["notes"]:
        sys.stderr.write(f"semisup eval: note: {note}\n")
    if r["task"] == "segment":
        per = ", ".join(f"{c} {v:.3f}" for c, v in r["iou"].items() if v is not None)
        print(f"{r['data']}: mean IoU {r['miou']:.4f}, pixel accuracy {r['pixel_accuracy']:.4f} on {r['images']} "
              f"images ({r['checkpoint']}); IoU per class: {per}")
    else:
        print(f"{r['data']}: accuracy {r['accuracy']:.4f} on {r['images']} images ({r['checkpoint']})")


def cmd_predict(a) -> None:
    from .api import MASKS_INDEX, PREDICT_HEADER, checkpoint_note, load_run, predict, predict_masks, prediction_rows

    loaded = load_run(a.run_dir, a.checkpoint)
    notes = [n for n in [checkpoint_note(loaded[3], a.checkpoint)] if n]
    if loaded[2].get("task") == "segment":
        r = predict_masks(a.run_dir, a.images, a.out, loaded)
        rows, notes = r["rows"], notes + r["notes"]
        again = f", replacing {r['replaced']} from an earlier predict" if r["replaced"] else ""
        print(f"wrote {r['written']} masks and overlays to {r['out']}{again} (list: {r['out'] / MASKS_INDEX})")
    else:
        rows = predict(a.run_dir, a.images, loaded, a.out, notes=notes)
        if a.out:
            print(f"wrote {len(rows)} rows to {a.out}")
        else:
            w = csv.writer(sys.stdout)
            w.writerow(PREDICT_HEADER)
            w.writerows(prediction_rows(rows))
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


def cmd_methods(a) -> None:
    from .methods import METHODS

    for name, m in [(n, m) for task in METHODS.values() for n, m in task.items()]:
        print(f"{name:16s} {m.task:9s} {m.paper}")
        if a.verbose:
            for f in m.hyper_fields():
                d = f.default if f.default is not MISSING else "required"
                print(f"    --{f.name.replace('_', '-'):16s} {d!s:8s} {f.metadata.get('help', '')}")
            if m.run_defaults:
                own = ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in m.run_defaults.items())
                print(f"    (its paper's training defaults: {own})")
            print(f"    (learning rate: {m.schedule})")


def cmd_data(a) -> None:
    from .data.check import report

    if a.image_size is not None and a.image_size < 8:
        raise UserError(f"--image-size {a.image_size}: must be a whole number of pixels, at least 8")
    print(report(a.spec, a.classes.split(",") if a.classes else None, image_size=a.image_size))


def main(argv=None) -> None:
    parser = build_parser()
    a = parser.parse_args(argv)
    if a.command is None:
        parser.print_help()
        sys.exit(0)
    try:
        {"train": cmd_train, "eval": cmd_eval, "predict": cmd_predict, "sample": cmd_sample, "methods": cmd_methods,
         "data": cmd_data}[a.command](a)
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
