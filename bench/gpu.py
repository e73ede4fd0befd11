"""GPU benchmark: one prepared script for one H100/H200, under 8 minutes, printing one table.

    PYTHONPATH=src python bench/gpu.py [--data ../shared/data/cifar10-jpg.tar.gz] [--train-minutes 5]
    python bench/gpu.py --device cpu --smoke          # a check that it runs, on the CPU (about a minute)

What it measures, all on FixMatch with WRN-28-2, 64 labeled + 448 unlabeled images a step (each
unlabeled image weak and strong), bf16 autocast, channels-last, CIFAR-10 with 250 labels:
1. images per second of semisup's step (views made on the GPU for the whole batch), eager;
2. the same with `--compile` (torch.compile of the network);
3. the same network, loss and optimiser fed as USB feeds it: each image augmented on its own on
   the CPU (torchvision's flip, reflect-padded crop, RandAugment with 3 ops, Cutout) by
   DataLoader workers, then copied to the GPU; the ratio 1 / 3 is measured in the same run;
4. peak GPU memory of each;
5. test accuracy after --train-minutes of training (steps = the minutes over the fastest step
   measured in 1-2, the cosine schedule over those steps, one evaluation at the end).
On a machine with no ../shared, copy the tar into the repository (an ignored folder) and pass
--data. Needs kornia (carry its wheels where it is not installed). Nothing here runs in CI.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from contextlib import nullcontext
from dataclasses import fields
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from semisup.config import resolve  # noqa: E402
from semisup.engine.trainer import Trainer, TrainOptions  # noqa: E402
from semisup.methods.base import Batch  # noqa: E402
from semisup.run import prepare  # noqa: E402
from semisup.tasks import get_task  # noqa: E402


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def build(a, source, dev: torch.device, compile_: bool = False, steps: int = 1000):
    cfg = resolve({"data": a.data, "labels": 250, "model": "wrn28_2", "batch_size": a.batch,
                   "unlabeled_ratio": a.mu, "amp": "bf16", "device": dev.type, "compile": compile_,
                   "steps": steps, "eval_every": steps, "save_every": steps, "quiet": True, "seed": 0}, None)
    data, views, method = prepare(cfg, source)
    opts = TrainOptions(**{f.name: cfg[f.name] for f in fields(TrainOptions)})
    return Trainer(method, data, views, opts, None, dev, task=get_task("classify")), data


def timed(step, dev: torch.device, warm: int, n: int) -> tuple[float, float]:
    """Median seconds per step over n steps after `warm`, and peak GPU memory in GiB."""
    for _ in range(warm):
        step()
    sync(dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        step()
        sync(dev)
        ts.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else float("nan")
    return statistics.median(ts), peak


class PerImage(torch.utils.data.Dataset):
    """USB's input pipeline: every image augmented on its own on the CPU, in a worker."""

    def __init__(self, images: torch.Tensor, idx: torch.Tensor, strong: bool):
        from torchvision.transforms import v2

        self.images, self.idx = images, idx
        weak = [v2.RandomHorizontalFlip(), v2.RandomCrop(32, padding=4, padding_mode="reflect")]
        self.weak = v2.Compose(weak)
        self.strong = v2.Compose([*weak, v2.RandAugment(num_ops=3), v2.ToDtype(torch.float32, scale=True),
                                  v2.RandomErasing(p=1.0, scale=(0.02, 0.25), value=0.5)]) if strong else None

    def __len__(self) -> int:
        return 1 << 30  # sampled with replacement, as a step-based loop does

    def __getitem__(self, i: int):
        x = self.images[self.idx[torch.randint(len(self.idx), ()).item()]]
        w = self.weak(x).float().div_(255)
        return (w, self.strong(x)) if self.strong is not None else w


def usb_step(t: Trainer, data, dev: torch.device, workers: int):
    """A step function that draws its views from DataLoaders of per-image CPU augmentation."""
    b, bu = t.o.batch_size, t.bu
    kw = dict(num_workers=workers, pin_memory=dev.type == "cuda", persistent_workers=workers > 0)
    lab = iter(torch.utils.data.DataLoader(PerImage(data.images, data.labeled, False), batch_size=b, **kw))
    ulb = iter(torch.utils.data.DataLoader(PerImage(data.images, data.unlabeled, True), batch_size=bu, **kw))
    y = data.hidden_targets[data.labeled[:b]].to(dev)  # the classes do not change the arithmetic
    cl = torch.channels_last

    def step():
        xw = next(lab).to(dev, non_blocking=True).contiguous(memory_format=cl)
        uw, us = (v.to(dev, non_blocking=True).contiguous(memory_format=cl) for v in next(ulb))
        batch = Batch({"weak": xw}, y, {"weak": uw, "strong": us}, t.step_n, t.step_n / t.o.steps)
        t.m.train()
        with t.amp or nullcontext():
            out = t.m.step(batch)
        loss = sum(v for k, v in out.items() if k.startswith("loss"))
        t.opt.zero_grad(set_to_none=True)
        loss.backward()
        t.opt.step()
        t.sched.step()
        t.ema.update(t.m.model)
        t.step_n += 1
    return step


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "cifar10-jpg.tar.gz"))
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--train-minutes", type=float, default=5.0)
    ap.add_argument("--steps", type=int, default=50, help="timed steps per measurement")
    ap.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="USB-style loader workers")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--smoke", action="store_true", help="tiny batches and budget: checks that it runs")
    a = ap.parse_args()
    a.batch, a.mu = (8, 2) if a.smoke else (64, 7)
    warm, n = (1, 2) if a.smoke else (10, a.steps)
    minutes = 0.2 if a.smoke else a.train_minutes
    dev = torch.device(a.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        sys.exit("bench/gpu.py: no CUDA device here; --device cpu --smoke checks the script on the CPU")
    if not Path(a.data).exists():
        sys.exit(f"{a.data}: not found; pass --data (CIFAR-10 as an image-folder tar)")
    t_start = time.time()
    source = get_task("classify").read(a.data, True, None, None)
    print(f"data read in {time.time() - t_start:.0f} s", flush=True)
    imgs = a.batch * (1 + a.mu)
    rows = []

    t, data = build(a, source, dev)
    s, peak = timed(t.train_step, dev, warm, n)
    rows.append(("semisup, views on the device for the batch, eager", s, peak))
    if not a.no_compile:
        t0 = time.time()
        tc, _ = build(a, source, dev, compile_=True)
        s, peak = timed(tc.train_step, dev, warm, n)
        rows.append((f"semisup, views on the device, torch.compile (compile + warm-up {time.time() - t0:.0f} s)",
                     s, peak))
        del tc
    fastest = min(r[1] for r in rows)
    tu, data = build(a, source, dev)
    s, peak = timed(usb_step(tu, data, dev, a.workers), dev, warm, n)
    rows.append((f"USB's pipeline: per-image CPU augmentation in {a.workers} DataLoader workers", s, peak))
    del tu, t

    steps = max(int(minutes * 60 / fastest), 1)
    use_compile = len(rows) == 3 and rows[1][1] < rows[0][1]
    tt, _ = build(a, source, dev, compile_=use_compile, steps=steps)
    res = tt.fit({"method": "fixmatch"})
    acc = res["metrics"]["test_accuracy"]  # the final EMA network on the test split

    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu"
    print(f"\n{name}; torch {torch.__version__}; {os.cpu_count()} CPU cores; FixMatch, WRN-28-2, "
          f"{a.batch} labeled + {a.batch * a.mu} unlabeled (weak + strong) a step, bf16, channels-last; "
          f"median of {n} steps after {warm}\n")
    print("| pipeline | s/step | images/s | vs USB's pipeline | peak GPU memory |")
    print("|---|---|---|---|---|")
    usb = rows[-1][1]
    for label, s, peak in rows:
        print(f"| {label} | {s:.4f} | {imgs / s:,.0f} | {usb / s:.2f}x | {peak:.1f} GiB |")
    print(f"\nCIFAR-10, 250 labels, seed 0: {steps} steps ({'compiled' if use_compile else 'eager'}) in "
          f"{tt.train_seconds / 60:.1f} min of training: final test accuracy {100 * acc:.2f}%")
    print(f"whole script: {(time.time() - t_start) / 60:.1f} min")


if __name__ == "__main__":
    main()
