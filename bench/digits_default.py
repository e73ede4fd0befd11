"""Candidates for the digits default run: each configuration (semisup train options as key=value,
space-separated, one quoted argument each) over seeds, with the final test accuracy, the
accuracy on the unlabeled pool's hidden labels (what chooses the default: not test) and the
training seconds of each run. Prints one line a configuration (docs/benchmarks.md, Speed).

    python bench/digits_default.py "model=cnn_small unlabeled_ratio=3" "model=cnn" --seeds 0 1 2 3 4
"""
from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import fields
from types import SimpleNamespace

import torch

from semisup.config import resolve
from semisup.engine.trainer import Trainer, TrainOptions
from semisup.run import prepare
from semisup.tasks import get_task


def parse(conf: str) -> dict:
    out = {}
    for item in conf.split():
        k, v = item.split("=", 1)
        for cast in (int, float):
            try:
                v = cast(v)
                break
            except ValueError:
                pass
        out[k] = v
    return out


def run(given: dict, seed: int) -> tuple[float, float, float]:
    cfg = resolve({**given, "seed": seed, "quiet": True}, None)
    data, views, method = prepare(cfg)
    opts = TrainOptions(**{f.name: cfg[f.name] for f in fields(TrainOptions)})
    task = get_task(cfg["task"])
    t = Trainer(method, data, views, opts, None, torch.device("cpu"), task=task)
    t0 = time.perf_counter()
    result = t.fit({})
    seconds = time.perf_counter() - t0
    pool = data.unlabeled[data.hidden_targets[data.unlabeled] >= 0]
    pool_acc = task.evaluate(t.ema, SimpleNamespace(x=data.images[pool], y=data.hidden_targets[pool]),
                             torch.device("cpu"))["accuracy"]
    return result["metrics"]["test_accuracy"], pool_acc, seconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("configs", nargs="+")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    a = ap.parse_args()
    for conf in a.configs:
        runs = [run(parse(conf), s) for s in a.seeds]
        test = [100 * r[0] for r in runs]
        pool = [100 * r[1] for r in runs]
        print(f"{conf or '(the default)'}: test {', '.join(f'{v:.2f}' for v in test)} ({statistics.mean(test):.2f}), "
              f"pool {statistics.mean(pool):.2f}, train s {', '.join(f'{r[2]:.1f}' for r in runs)}", flush=True)


if __name__ == "__main__":
    main()
