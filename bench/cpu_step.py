"""One training step of a run's configuration, timed by phase (views, forward, backward,
optimiser, EMA, logs): the median over --steps steps after --warm-up, then one evaluation.
Any `semisup train` option is given as key=value; `--glibc-default` leaves the trainer's
`keep_freed_memory` off, to compare against it (docs/benchmarks.md, Speed).

    python bench/cpu_step.py data=../shared/data/mnist labels=100 method=flexmatch weak_pass=separate batch_size=32
    python bench/cpu_step.py --glibc-default data=...          # the same with glibc's malloc defaults
    python bench/cpu_step.py --threads 1 ...                  # torch threads (default: torch's)
    python bench/cpu_step.py --layout nchw ...                # the network and its inputs in NCHW, as USB runs
"""
from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import fields

import torch

import semisup.engine.trainer as trainer_module
from semisup.config import resolve
from semisup.engine.trainer import Trainer, TrainOptions
from semisup.run import prepare
from semisup.tasks import get_task


def parse_value(v: str):
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return v


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("options", nargs="*", help="semisup train options as key=value")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warm-up", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--glibc-default", action="store_true", help="do not keep freed memory in the heap")
    ap.add_argument("--layout", choices=["channels_last", "nchw"], default="channels_last",
                    help="memory layout of the network and its inputs (the trainer's: channels_last)")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.glibc_default:
        trainer_module.keep_freed_memory = lambda: False
    given = {k: parse_value(v) for k, v in (o.split("=", 1) for o in a.options)}
    cfg = resolve({**given, "quiet": True}, None)
    data, views, method = prepare(cfg)
    opts = TrainOptions(**{f.name: cfg[f.name] for f in fields(TrainOptions)})
    t = Trainer(method, data, views, opts, None, torch.device("cpu"), task=get_task(cfg["task"]))
    if a.layout == "nchw":  # the trainer makes both channels-last; undo it for the network and each batch
        t.m.to(memory_format=torch.contiguous_format)
        made = t.batch

        def nchw_batch():
            b, ui = made()
            for views in (b.x, b.u):
                for k, v in views.items():
                    views[k] = v.contiguous()
            return b, ui
        t.batch = nchw_batch
    print(f"{cfg['method']}, {cfg['model']}, B = {opts.batch_size} + {t.bu}, amp {t.amp is not None}, "
          f"{torch.get_num_threads()} threads, heap kept: {not a.glibc_default}, {a.layout}")
    for _ in range(a.warm_up):
        t.train_step()
    times: dict[str, list[float]] = {}

    def timed(name, f):
        t0 = time.perf_counter()
        r = f()
        times.setdefault(name, []).append(time.perf_counter() - t0)
        return r

    for _ in range(a.steps):  # Trainer.train_step, phase by phase
        t.m.train()
        batch, ui = timed("views", t.batch)
        out = timed("forward", lambda: t.m.step(batch))
        loss = sum(v for k, v in out.items() if k.startswith("loss"))
        t.opt.zero_grad(set_to_none=True)
        timed("backward", loss.backward)
        timed("optimiser", t.opt.step)
        t.sched.step()
        timed("ema", lambda: t.ema.update(t.m.model))
        timed("logs", lambda: t._accumulate(out, loss, ui))
        t.step_n += 1
    total = 0.0
    for name, ts in times.items():
        ms = 1000 * statistics.median(ts)
        total += ms
        print(f"{name:10s} {ms:8.2f} ms")
    print(f"{'step':10s} {total:8.2f} ms (sum of the medians)")
    t0 = time.perf_counter()
    t.evaluate()
    print(f"evaluation {time.perf_counter() - t0:.2f} s")


if __name__ == "__main__":
    main()
