"""Training: prepare a run (data, views, network, method: each from its task), train it into
its run folder, resume it; a failure ends in one line that says what was kept and what to do."""
from __future__ import annotations

import os
import signal
import time
from dataclasses import fields
from pathlib import Path

import torch

from .config import RunOptions, resolve
from .data.sources import BUILTINS
from .data.store import choose_store
from .engine import dist
from .engine.runfolder import RunFolder, check_out, load_checkpoint
from .engine.trainer import Diverged, StopRequested, StopRequests, Trainer, TrainOptions
from .errors import Stopped, UserError, disk_error, first_line, out_of_memory
from .infer import split_identity
from .methods import get_method
from .models.norm import set_input_norm
from .models.timm_net import pretrained_input_size
from .options import check_values
from .tasks import get_task


def prepare(cfg: dict, source=None):
    """Load (or take `source`, a `data.Source` already read) and split the data, build the model
    and method. Raises UserError on bad input."""
    task = get_task(cfg["task"])
    classes = cfg["classes"].split(",") if isinstance(cfg["classes"], str) else cfg["classes"]
    src = source if source is not None else task.read(str(cfg["data"]), True, classes, cfg["image_size"])
    if task.resizes_images and cfg["image_size"] is None and src.size_on_disk:  # photos resized by default
        side = pretrained_input_size(cfg["model"], cfg["pretrained"])
        if source is None and side and side != src.shape[-1]:  # to the size the weights were trained at
            src = task.read(str(cfg["data"]), True, classes, side)
        cfg["image_size"] = src.shape[-1]  # recorded, so eval and a rerun read the data at this size
    data = task.draw(src, cfg)
    method_cls = get_method(cfg["method"], cfg["task"])
    if method_cls.unlabeled_views and len(data.unlabeled) == (len(data.labeled) if cfg["include_labeled"] else 0):
        raise UserError(f"--method {cfg['method']}: there are no unlabeled images; ask for fewer labels "
                        "(--labels) or add unlabeled images")
    cfg["model"] = cfg["model"] or method_cls.default_model_for(src.shape, cfg) or task.default_model(src.shape)
    torch.manual_seed(cfg["seed"])  # the same initial weights on every process
    views = task.views(data, cfg)
    model = task.build_model(cfg["model"], src.shape, len(src.classes))
    set_input_norm(model, data.mean, data.std)  # the labeled images' statistics (an --init encoder brings its own)
    task.setup_model(model, cfg)
    hp = method_cls.Hyper(**{f.name: cfg[f.name] for f in method_cls.hyper_fields()})
    method = method_cls(model, len(src.classes), hp, num_unlabeled=len(data.unlabeled), shape=src.shape,
                        num_labeled=len(data.labeled))
    method.attach(data)
    return data, views, method


def train(given: dict, config: dict | None = None, out: str | None = None, resume: bool = False,
          overwrite: bool = False, source=None) -> tuple[dict, Path]:
    """Train a run into `out` (`source`: the data already read, as `prepare` takes it). A failure inside training releases the lock and, where no checkpoint
    was saved yet, removes what the run wrote, so the same --out works again; where one was, the
    message says that --resume continues it."""
    asked = {"device": given.get("device") or (config or {}).get("device") or "auto"}
    check_values(RunOptions, asked)  # before the device is set up
    rank, world, device = dist.setup(asked["device"])
    if out is not None and rank == 0:
        check_out(Path(out), resume, overwrite)  # before anything is read from it
    if out and resume:  # a resumed run takes its options from its own config.yaml
        from .engine.runfolder import load_config

        saved_path = Path(out) / "config.yaml"
        saved_cfg = load_config(saved_path)
        free = ("device", "quiet", "log_every", "store")  # where it runs and how it shows, not what it computes
        changed = [k for k, v in given.items() if k in saved_cfg and saved_cfg[k] != v and k not in free]
        if changed:
            raise UserError(f"--resume: --{changed[0].replace('_', '-')} differs from {saved_path}; "
                            "a resumed run keeps its options")
        config = {"include_labeled": False, **saved_cfg}  # a config without the key: a pool without them
    cfg = resolve(given, config)
    for opt, n in (("--batch-size", cfg["batch_size"]), ("--batch-size x --unlabeled-ratio",
                                                         cfg["batch_size"] * cfg["unlabeled_ratio"])):
        if n % world:
            raise UserError(f"{opt} = {n} must be divisible by the {world} processes")
    given_out = out is not None
    if out is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        out = f"runs/{cfg['task']}-{cfg['method']}-{Path(str(cfg['data'])).name}-{stamp}"
    out = Path(out)
    data_dir = Path(str(cfg["data"]))
    if str(data_dir) not in BUILTINS and data_dir.is_dir() and out.resolve().is_relative_to(data_dir.resolve()):
        raise UserError(f"{'--out ' if given_out else 'the run folder '}{out}: inside the data folder {data_dir}, "
                        "where its images (curves.png, samples) would be read as data next time; "
                        f"{'choose an --out' if given_out else 'pass --out'} outside it")
    if not given_out and rank == 0:
        check_out(out, resume, overwrite)
    dist.barrier()
    run = RunFolder(out) if rank == 0 else None
    trainer, training = None, False
    try:
        data, views, method = prepare(cfg, source)
        with StopRequests(abort_on_second=world == 1, note=rank == 0) as stop:
            if run:
                run.start(cfg, fresh=not resume)
            meta = meta_of(cfg, data)
            task = get_task(cfg["task"])
            gen_eval = task.evaluator(data, device, cfg["seed"]) if rank == 0 else None
            opts = TrainOptions(**{f.name: cfg[f.name] for f in fields(TrainOptions)})
            store = choose_store(data.images, device, cache_dir=out / "cache", store=cfg["store"],
                                 quiet=cfg["quiet"] or rank != 0)
            trainer = Trainer(method, data, views, opts, run, device, rank, world,
                              extra_eval=gen_eval if gen_eval is not None and gen_eval.available else None, task=task,
                              store=store)
            trainer.stop = stop
            if resume:
                _resume(trainer, run, out, device)
            if stop.signum is not None and world == 1:  # a signal while it set up: nothing trained yet
                raise StopRequested(stop.signum, trainer.step_n)
            t0 = time.time()
            training = True
            result = trainer.fit(meta)
        summary = None
        if rank == 0:
            summary = {"task": cfg["task"], "method": cfg["method"], "data": str(cfg["data"]),
                       "data_format": data.source.kind, "model": cfg["model"],
                       "num_labeled": len(data.labeled), "num_unlabeled": len(data.unlabeled),
                       "unlabeled_includes_labeled": cfg["include_labeled"],
                       "num_test": len(data.test.y), "test_split": data.test_name,
                       "steps": cfg["steps"], "seed": cfg["seed"], "processes": world, "device": str(device),
                       **result}
            if gen_eval is not None:
                summary["evaluator"] = ({"test_accuracy": gen_eval.accuracy, "samples": gen_eval.n}
                                        if gen_eval.available else {"unavailable": gen_eval.reason})
            summary["timing"]["wall_seconds"] = round(time.time() - t0, 2)
            summary["labels_by_round"] = data.labels_by_round
            from .suggest import write_labels

            write_labels(out / "labels.csv", data, str(cfg["data"]))
            run.write_summary(summary)
            from .report import plot_curves

            plot_curves(run.metrics(), out / "curves.png", title=f"{cfg['method']} on {Path(str(cfg['data'])).name}")
            task.artifacts(out, data)
    except BaseException as e:
        took, saved = run is not None and run.locked, (out / "checkpoints" / "last.pt").exists()
        if run:
            run.close(keep=saved)
        if isinstance(e, (StopRequested, Diverged)):
            dist.cleanup()  # every process stopped at the same step
        err = _explained(e, cfg, out, trainer, run, took, saved, training, rank)
        if err is e:
            raise
        raise err from None
    if run:
        run.close()
    dist.barrier()
    dist.cleanup()
    return summary, out


def _resume(trainer, run, out: Path, device) -> None:
    last = out / "checkpoints" / "last.pt"
    try:
        ckpt = load_checkpoint(last, device)
    except UserError as e:
        raise UserError(f"--resume: {e}; start the run again with --overwrite") from None
    try:
        trainer.load_state(ckpt)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise UserError(f"--resume: {last} does not belong to this run ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''}); start the run again with --overwrite") from None
    if run:
        run.truncate_metrics(ckpt["step"])


def _explained(e: BaseException, cfg: dict, out: Path, trainer, run, took: bool, saved: bool,
               training: bool, rank: int) -> BaseException:
    """The exception a failed training ends with: one line on what happened, what was kept and what
    to do (a bug keeps its traceback, with that as a note). `took`: the run folder was taken; `saved`:
    it holds last.pt; `training`: the loop had started."""
    at = f" at step {trainer.step_n}" if training else ""
    if saved:
        n = f" at step {trainer.saved_step}" if trainer is not None and trainer.saved_step is not None else ""
        tail = f"the checkpoint{n} is kept: `semisup train --out {out} --resume` continues the run"
    elif took:
        gone = f"{out} was removed" if run.made is not None else f"the run's files were removed from {out}"
        tail = f"no checkpoint was saved yet, so {gone}"
    else:
        tail = "nothing was written"
    if isinstance(e, StopRequested):
        how = "Ctrl-C" if e.signum == signal.SIGINT else signal.Signals(e.signum).name
        if saved:
            msg = (f"stopped by {how} at step {e.step}, checkpoint saved: `semisup train --out {out} --resume` "
                   "continues")
        else:
            msg = f"stopped by {how} at step {e.step}; nothing to resume: {tail}; start the run again"
        return Stopped(msg if rank == 0 else "", 128 + e.signum)
    if isinstance(e, KeyboardInterrupt):
        if saved or not took:
            return Stopped(f"interrupted{at}; {tail}", 130)
        return Stopped(f"interrupted{at}; nothing to resume: {tail}; start the run again", 130)
    if isinstance(e, Diverged):
        n = f" (step {trainer.saved_step})" if trainer.saved_step is not None else ""
        return UserError(f"{e}; " + (f"the last good checkpoint{n} is kept in {out}" if saved else tail))
    if out_of_memory(e):
        where = at or " while loading the data or building the model"
        return UserError(f"out of memory{where} ({first_line(e)}); {_lower(cfg)}" + (f"; {tail}" if took else ""))
    if isinstance(e, OSError) and disk_error(e, out) is not None:
        e = disk_error(e, out)
    if isinstance(e, UserError):
        return UserError(f"{e}; {tail}") if training else e
    if took and hasattr(e, "add_note"):
        e.add_note(f"semisup train: {tail}")
    return e


def _lower(cfg: dict) -> str:
    size = f" (now {cfg['image_size']})" if cfg.get("image_size") else ""
    return (f"lower --batch-size (now {cfg['batch_size']}), --unlabeled-ratio (now {cfg['unlabeled_ratio']}), "
            f"--image-size{size} or --eval-batch (now {cfg['eval_batch']})")


def meta_of(cfg: dict, data) -> dict:
    """What eval and predict need to rebuild the network and its input pipeline, and what
    identifies the test split (`split_identity`), so that eval can tell when the data changed."""
    c, h, w = data.source.shape
    spec = str(cfg["data"])
    return {"task": cfg["task"], "method": cfg["method"], "model": cfg["model"], "classes": data.classes,
            "channels": c, "size": [h, w],
            "data": spec, "data_format": data.source.kind,
            "data_path": None if spec in BUILTINS or data.source.kind == "arrays" else os.path.abspath(spec),
            "test_split": split_identity(data, spec), "config": cfg, "palette": data.source.palette}
