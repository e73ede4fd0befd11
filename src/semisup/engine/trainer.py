"""The step-based trainer: sampling on the device, views, optimiser, schedule, EMA, precision,
DDP, evaluation cadence, checkpoints with every RNG state, and the run folder."""
from __future__ import annotations

import functools
import math
import random
import signal
import sys
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..data.store import DeviceStore
from ..errors import UserError
from ..methods.base import Batch
from ..options import BOOL, COUNT, DECAY, POSITIVE, WEIGHT, Checked, Choice, Interval, option
from . import dist
from .ema import EMA
from .runfolder import RunFolder


@dataclass
class TrainOptions(Checked):
    """The run's optimisation options (FixMatch's defaults), checked when built."""

    steps: int = option(1000, "training steps", check=COUNT)
    batch_size: int = option(64, "labeled images per step, global (split across processes)", check=COUNT)
    unlabeled_ratio: int = option(7, "unlabeled images per labeled one (mu)", check=Interval(int, 0))
    unlabeled_ratio_start: int | None = option(
        None, "grow the unlabeled ratio from this one to --unlabeled-ratio in equal stages over the run (the "
        "curriculum batch size of Fast FixMatch, arXiv 2309.03469: fewer unlabeled images while the model is "
        "poor); default: --unlabeled-ratio throughout", check=Interval(int, 1))
    optimizer: str = option("sgd", "sgd (with --momentum and --nesterov: FixMatch, USB's classic CV) or adamw "
                            "(USB's fine-tuning of pretrained backbones; the default with --pretrained)",
                            check=Choice("sgd", "adamw"))
    lr: float = option(0.03, "learning rate (the method's schedule scales it)", check=POSITIVE)
    layer_decay: float = option(1.0, "layer-wise learning-rate decay of a timm backbone: block i of n from the top "
                                "learns at lr x decay^i (USB, BEiT); 1: one rate", check=Interval(float, 0, 1,
                                                                                                  closed="right"))
    lr_warmup: int = option(0, "steps over which the learning rate rises linearly to --lr", check=Interval(int, 0))
    momentum: float = option(0.9, "SGD momentum; beta1 of AdamW and of the methods that train with Adam", check=DECAY)
    nesterov: bool = option(True, "Nesterov momentum", check=BOOL)
    weight_decay: float = option(5e-4, "weight decay", check=WEIGHT)
    ema: float = option(0.999, "EMA decay of the evaluated weights", check=DECAY)
    eval_every: int = option(200, "steps between evaluations", check=COUNT)
    save_every: int = option(500, "steps between checkpoints", check=COUNT)
    log_every: int = option(20, "steps between log reads", check=COUNT)
    seed: int = option(0, "seed of the labeled draw, initial weights and sampling", check=Interval(int, 0))
    draw: str = option("independent", "how batches draw from the labeled images and the unlabeled pool: "
                       "independent (every index uniformly at random, so an image may come twice before another "
                       "comes once; every figure in docs/benchmarks.md) or passes (each image once a pass, in a new "
                       "random order each pass, as USB and TorchSSL sample)", check=Choice("independent", "passes"))
    amp: str = option("auto", "auto (bf16 on CUDA; on a CPU with native bf16 (AVX512-BF16, AMX) bf16 for the methods "
                      "measured to keep their accuracy with it (fixmatch, flexmatch with --weak-pass separate), else float32), bf16, off",
                      check=Choice("auto", "bf16", "off"))
    compile: bool = option(False, "torch.compile the network", check=BOOL)
    # 128 on a CPU: 1.2-2.6x faster than 1024 (cnn13, WRN-28-2, cnn_small)
    eval_batch: int = option(128, "evaluation batch size", check=COUNT)
    quiet: bool = option(False, "no progress bar", check=BOOL)


def rng_state(device: torch.device) -> dict:
    s = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if device.type == "cuda":
        s["cuda"] = torch.cuda.get_rng_state(device)
    return s


def set_rng_state(s: dict, device: torch.device) -> None:
    random.setstate(s["python"])
    np.random.set_state(s["numpy"])
    torch.set_rng_state(s["torch"])
    if "cuda" in s and device.type == "cuda":
        torch.cuda.set_rng_state(s["cuda"], device)


class Diverged(UserError):
    """The loss, the weights or a test metric became non-finite; the last good checkpoint stays."""


class StopRequested(Exception):
    """Raised by the loop after it saved last.pt at a step boundary, on a signal."""

    def __init__(self, signum: int, step: int):
        super().__init__(f"{signal.Signals(signum).name} at step {step}")
        self.signum, self.step = signum, step


class StopRequests:
    """While training: SIGTERM (container stop, preemption) and a first Ctrl-C ask the loop to stop at
    the next step boundary, where it saves last.pt and releases the lock; a second Ctrl-C stops at once
    (KeyboardInterrupt). Under torchrun the agent passes a Ctrl-C on to every process, so there a
    repeated Ctrl-C only asks again."""

    def __init__(self, abort_on_second: bool = True, note: bool = True):
        self.signum: int | None = None
        self.abort_on_second, self.note = abort_on_second, note
        self._old: dict = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGTERM, signal.SIGINT):
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old = {}

    def _handle(self, signum, frame):
        if signum == signal.SIGINT and self.signum is not None and self.abort_on_second:
            raise KeyboardInterrupt
        if self.signum is None and signum == signal.SIGINT and self.note and sys.stderr.isatty():
            sys.stderr.write("\nsemisup: stopping after this step to save a checkpoint; Ctrl-C again stops "
                             "at once\n")
        self.signum = self.signum or signum


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (oneDNN's test: AVX512-BF16 or AMX). Without it,
    bf16 autocast on the CPU is emulated and slower than float32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


@functools.cache
def keep_freed_memory() -> bool:
    """On Linux with glibc, keep freed blocks of up to 32 MB in the process's heap (mallopt's
    M_MMAP_THRESHOLD) and its free top (M_TRIM_THRESHOLD, 1 GiB) instead of handing them back to
    the system. A CPU step allocates its activations anew each time (cnn_small on MNIST: 12.8 MB
    a map); glibc's default maps and unmaps each, so every step page-faults them in again:
    the MNIST-100 float32 step 140-179 ms against 115-125 ms with this, 3.4x fewer page faults
    (docs/benchmarks.md, Speed). The process keeps its peak memory until it exits, as with
    jemalloc or tcmalloc. Once per process; False where the C library has no mallopt."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # musl and others: no mallopt
        return False
    return bool(mallopt(-1, 1 << 30)) and bool(mallopt(-3, 32 << 20))  # M_TRIM_, M_MMAP_THRESHOLD


def _conv_small_input_forward(conv: torch.nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """A strided convolution in float32 where its input is smaller than its stride. oneDNN's bf16
    weight gradient for that shape is wrong on this CPU (torch 2.14.1): a 3x3 stride-2 conv on a 1x1
    map, as timm's resnet18 has on 8x8 digits, gives random values, inf or nan in some of the
    weight's taps in about half the calls (float32 and every other shape checked agree with the
    reference). Such a map is a few numbers, so float32 costs nothing."""
    if x.shape[-2] < conv.stride[0] or x.shape[-1] < conv.stride[1]:
        with torch.autocast("cpu", enabled=False):
            return type(conv).forward(conv, x.float())
    return type(conv).forward(conv, x)


def _warm_bn_forward(bn, forward, m: float, warm: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """BatchNorm's training forward at its own momentum m on copies of the running statistics,
    which then move the buffers as if the momentum had been w = max(m, warm): the update
    (1 - m) r + m b moved r by m (b - r); scaling that move by w / m gives (1 - w) r + w b. With
    `warm` a tensor the compiled graph stays one graph. (The copies: autograd keeps the statistics
    it was given, so the buffers themselves cannot be updated twice.)"""
    if not (bn.training and bn.track_running_stats):
        return forward(x)
    mean, var = bn.running_mean.clone(), bn.running_var.clone()
    y = F.batch_norm(x, mean, var, bn.weight, bn.bias, True, m, bn.eps)
    scale = torch.clamp(warm, min=m) / m
    with torch.no_grad():
        for r, moved in ((bn.running_mean, mean), (bn.running_var, var)):
            r.add_((moved - r) * scale)
        bn.num_batches_tracked.add_(1)
    return y


class Trainer:
    def __init__(self, method, data, views, opts: TrainOptions, run: RunFolder | None,
                 device: torch.device, rank: int = 0, world: int = 1, extra_eval=None, store=None, *,
                 task):
        """`task` (a `tasks.Task`, the method's) scores the model and names the metric that
        selects a checkpoint; `extra_eval`: method -> more metrics at each evaluation."""
        self.m, self.data, self.views, self.o, self.run, self.task = method, data, views, opts, run, task
        self.extra_eval = extra_eval
        self.dev, self.rank, self.world = device, rank, world
        o = opts
        self.bu = o.batch_size * o.unlabeled_ratio if method.unlabeled_views else 0
        self.local_b = o.batch_size // world
        if device.type == "cpu":
            keep_freed_memory()
        self.m.to(device)
        self.m.to(memory_format=torch.channels_last)  # CPU here: WRN-28-2 201 -> 251, cnn_small 4,591 -> 5,968 img/s
        self.opt = method.configure_optimizer(o)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda k: min(1.0, (k + 1) / o.lr_warmup if o.lr_warmup else 1.0) * method.lr_factor(k, o.steps))
        self.ema = EMA(self.m.model, o.ema).to(device)
        self.phase_starts = set(self.m.phase_starts(o.steps))
        # BatchNorm running statistics warm up like the EMA: momentum max(m, 9 / (10 + n)), so a
        # slow paper momentum (WRN-28-2's 0.001) does not leave short runs evaluating with the
        # initial statistics (sgan with WRN-28-2 on 3 CIFAR classes: test loss 8e5, chance accuracy)
        self.bns = [(b, b.momentum) for b in self.m.modules()
                    if isinstance(b, torch.nn.modules.batchnorm._BatchNorm) and b.momentum is not None]
        use_bf16 = o.amp == "bf16" or (o.amp == "auto" and (device.type == "cuda" or (
            method.bf16_on_cpu() and device.type == "cpu" and cpu_has_bf16())))
        self.amp = torch.autocast(device.type, dtype=torch.bfloat16) if use_bf16 else None
        if use_bf16 and device.type == "cpu":
            for c in [*self.m.modules(), *self.ema.modules()]:
                if isinstance(c, torch.nn.Conv2d) and max(c.stride) > 1 and max(c.kernel_size) > 1:
                    c.forward = partial(_conv_small_input_forward, c)
        # the warm-up momentum as data: under torch.compile a float momentum that changes every step
        # is a new graph every step (dynamo guards on it, and after 8 runs the network eagerly)
        self.warm = torch.ones((), device=device) if o.compile else None
        if o.compile:
            for b, m in self.bns:
                b.forward = partial(_warm_bn_forward, b, b.forward, m, self.warm)
            self.m.model.forward = torch.compile(self.m.model.forward)
        # the images come from a store (default: on the device); batches are index gathers
        self.store = store if store is not None else DeviceStore(data.images, device)
        self.hidden = data.hidden_targets.to(device)
        self.lab, self.ulb = data.labeled.to(device), data.unlabeled.to(device)
        # the same index stream on every process (each takes its slice); augmentation differs
        self.sampler = torch.Generator(device=device).manual_seed(o.seed)
        # --draw passes: what is left of each pool's current pass (positions in the pool)
        self.queues = {"lab": self.lab[:0], "ulb": self.ulb[:0]}
        torch.manual_seed(o.seed * 1000 + rank + 1)
        np.random.seed(o.seed * 1000 + rank + 1)
        random.seed(o.seed * 1000 + rank + 1)
        self.step_n = 0
        self.sums: dict = {}  # the logged values summed on the device since the last log read
        self.logs: dict = {}  # the log reads since the last evaluation, for its metrics row
        self.saved_step: int | None = None  # the step of the last last.pt written or resumed
        self.stop: StopRequests | None = None
        self.history: list[dict] = []
        self.train_seconds = 0.0
        self.primary = task.primary  # what selects and reports
        self.best = {"select": -1.0, "step": 0, "row": {}}

    # ------------------------------------------------------------------ batches
    def _draw(self, key: str, pool: torch.Tensor, n: int, local: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Positions in the pool and image indices, this process's share of the global batch: the
        next n of the pool's passes (a batch may end one pass and begin the next), or n independent draws."""
        if self.o.draw == "independent":
            pos = torch.randint(len(pool), (n,), device=self.dev, generator=self.sampler)
        else:
            q = self.queues[key]
            while len(q) < n:
                q = torch.cat([q, torch.randperm(len(pool), device=self.dev, generator=self.sampler)])
            pos, self.queues[key] = q[:n], q[n:]
        pos = pos[self.rank * local:(self.rank + 1) * local]
        return pos, pool[pos]

    def unlabeled_batch(self, step: int) -> int:
        """The global unlabeled batch at `step`: batch_size x mu, where mu grows from
        --unlabeled-ratio-start to --unlabeled-ratio in stages of equal length when the start is set."""
        o = self.o
        if not self.bu or o.unlabeled_ratio_start is None:
            return self.bu
        lo, hi = o.unlabeled_ratio_start, o.unlabeled_ratio
        return o.batch_size * min(hi, lo + (hi - lo + 1) * step // o.steps)

    def batch(self):
        _, li = self._draw("lab", self.lab, self.o.batch_size, self.local_b)
        xs, y = self.views.make(self.store.gather(li), self.m.labeled_views, self.hidden[li])
        us, ui, upos, outside = {}, None, None, None
        bu = self.unlabeled_batch(self.step_n)
        if bu:
            upos, ui = self._draw("ulb", self.ulb, bu, bu // self.world)
            us, outside = self.views.make(self.store.gather(ui), self.m.unlabeled_views)
        xs = {k: v.contiguous(memory_format=torch.channels_last) for k, v in xs.items()}
        us = {k: v.contiguous(memory_format=torch.channels_last) for k, v in us.items()}
        return Batch(xs, y, us, self.step_n, self.step_n / self.o.steps, upos, outside), ui

    # ------------------------------------------------------------------ one step
    def train_step(self) -> None:
        self.m.train()
        warm = 9.0 / (10 + self.step_n)
        if self.warm is not None:
            self.warm.fill_(warm)
        else:
            for b, m in self.bns:
                if m < warm:
                    b.momentum = warm
                elif b.momentum != m:
                    b.momentum = m
        batch, ui = self.batch()
        with self.amp or nullcontext():
            out = self.m.step(batch)
        loss = sum(v for k, v in out.items() if k.startswith("loss"))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.world > 1:
            dist.average_gradients(self.m.parameters())
        self.opt.step()
        self.sched.step()
        if self.step_n in self.phase_starts:
            self.ema.restart(self.m.model)
        else:
            self.ema.update(self.m.model)
        self._accumulate(out, loss, ui)
        self.step_n += 1

    def _accumulate(self, out: dict, loss: torch.Tensor, ui) -> None:
        """Logs stay on the device; they are read every log_every steps."""
        a = self.sums
        add = lambda k, v: a.__setitem__(k, a.get(k, 0) + v.detach().float())  # noqa: E731
        add("loss", loss)
        for k, v in out.items():  # the losses, and every other scalar but the pseudo-label report's
            if k.startswith("loss") or (k not in ("pseudo_label", "mask") and v.ndim == 0):
                add(k, v)
        if "mask" in out and ui is not None:
            mask = out["mask"].detach().float()
            truth = self.hidden[ui]
            known = (truth >= 0).float()
            add("mask", mask.mean())
            add("pl_correct", ((out["pseudo_label"] == truth).float() * mask * known).sum())
            add("pl_counted", (mask * known).sum())
        a["n"] = a.get("n", 0) + 1

    def read_logs(self) -> dict:
        a = {k: (v.item() if torch.is_tensor(v) else v) for k, v in self.sums.items()}
        n = max(a.pop("n", 1), 1)
        pc, pn = a.pop("pl_correct", None), a.pop("pl_counted", None)
        logs = {k: v / n for k, v in a.items()}
        if "mask" in logs:
            logs["mask_rate"] = logs.pop("mask")
        if pn:
            logs["pseudo_label_accuracy"] = pc / pn
        return logs

    # ------------------------------------------------------------------ eval, checkpoints
    def evaluate(self) -> dict:
        if self.world > 1:
            dist.average_buffers(self.m)
            dist.average_buffers(self.ema)
        res = {}
        if self.rank == 0:
            score = self.task.evaluate
            r = score(self.ema, self.data.test, self.dev, self.o.eval_batch, classes=self.data.classes)
            res = {f"test_{k}": v for k, v in r.items()}
            if self.data.val is not None:
                p = self.primary
                res[f"val_{p}"] = score(self.ema, self.data.val, self.dev,
                                        self.o.eval_batch, classes=self.data.classes)[p]
            if self.extra_eval is not None:
                res.update(self.extra_eval(self.m))
        return res

    def state(self) -> dict:
        """last.pt: everything a resume needs. Like best.pt it holds, under "model", the state dict of
        the network with the weights the run is evaluated with (the EMA's), loadable as it is into
        the network `meta["model"]` names."""
        return {"step": self.step_n, "model": self.ema.module.state_dict(), "method": self.m.state_dict(),
                "ema": self.ema.state_dict(),
                "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
                "sampler": self.sampler.get_state(), "queues": {k: q.cpu() for k, q in self.queues.items()},
                "rng": dist.gather(rng_state(self.dev)),
                "sums": dict(self.sums), "logs": self.logs, "history": self.history,
                "best": self.best, "train_seconds": self.train_seconds, "world": self.world}

    def load_state(self, s: dict) -> None:
        self.m.load_state_dict(s["method"])
        self.ema.load_state_dict(s["ema"])
        self.opt.load_state_dict(s["optimizer"])
        self.sched.load_state_dict(s["scheduler"])
        self.sampler.set_state(s["sampler"].to("cpu") if self.dev.type != "cuda" else s["sampler"].cpu())
        if "queues" in s:  # older checkpoints drew independently
            self.queues = {k: q.to(self.dev) for k, q in s["queues"].items()}
        rngs = s["rng"]
        set_rng_state(rngs[self.rank] if len(rngs) == self.world else rngs[0], self.dev)
        sums = s["sums"] if "sums" in s else s["acc"]  # "acc": the key's name in older checkpoints
        self.sums = {k: (v.to(self.dev) if torch.is_tensor(v) else v) for k, v in sums.items()}
        self.history, self.best, self.logs = s["history"], s["best"], s.get("logs", {})
        self.train_seconds, self.step_n = s["train_seconds"], s["step"]
        self.saved_step = s["step"]

    # ------------------------------------------------------------------ the loop
    def fit(self, meta: dict) -> dict:
        o = self.o
        window_images = 0
        bar = tqdm(total=o.steps, initial=self.step_n, disable=self.rank != 0 or o.quiet,
                   dynamic_ncols=True, unit="step", desc=meta.get("method", "train"))
        last_eval = {}
        window_t = 0.0
        while self.step_n < o.steps:
            t0 = time.perf_counter()
            window_images += o.batch_size + self.unlabeled_batch(self.step_n)
            self.train_step()
            dt = time.perf_counter() - t0
            self.train_seconds += dt
            window_t += dt
            bar.update(1)
            s = self.step_n
            read = s % o.log_every == 0 or s % o.eval_every == 0 or s == o.steps
            evaluating = s % o.eval_every == 0 or s == o.steps
            saving = s % o.save_every == 0 or s == o.steps
            signalled = self.stop is not None and self.stop.signum is not None
            fresh_logs = None
            if read:
                fresh_logs = self.read_logs()
                self.logs = {**self.logs, **fresh_logs}
                self.sums = {}
                post = {"loss": f"{self.logs['loss']:.3f}"}
                if last_eval:
                    post[self.primary] = f"{last_eval['test_' + self.primary]:.4f}"
                if "mask_rate" in self.logs:
                    post["mask"] = f"{self.logs['mask_rate']:.2f}"
                bar.set_postfix(post, refresh=False)
            res = self.evaluate() if evaluating else None
            stopping = False
            if read or evaluating or saving or (signalled and self.world == 1):
                stopping = self._guard(s, fresh_logs, res, saving or signalled, signalled)
            if evaluating:
                last_eval = res
                if self.rank == 0:
                    logs = self.logs
                    row = {"step": s, **last_eval, **logs, "lr": self.sched.get_last_lr()[0],
                           "images_per_second": window_images / max(window_t, 1e-9)}
                    self.history.append(row)
                    p = self.primary
                    select = row.get(f"val_{p}", row[f"test_{p}"])
                    if math.isfinite(select) and select > self.best["select"]:
                        self.best = {"select": select, "step": s, "row": row}
                        if self.run:
                            self.run.save_checkpoint({"step": s, "model": self.ema.module.state_dict(),
                                                      "ema": self.ema.state_dict(), "method": self.m.state_dict(),
                                                      "meta": meta}, "best.pt")
                    if self.run:
                        self.run.log(row)
                        self.task.after_eval(self.m, self.run.path, s)
                    bar.set_postfix({"loss": f"{logs['loss']:.3f}", p: f"{row['test_' + p]:.4f}",
                                     **({"mask": f"{logs['mask_rate']:.2f}"} if "mask_rate" in logs else {})})
                self.logs, window_t, window_images = {}, 0.0, 0
            if saving or stopping:  # every process: the state has collectives
                if self.world > 1:
                    dist.average_buffers(self.m)
                    dist.average_buffers(self.ema)
                st = self.state()
                if self.run:  # rank 0 only
                    self.run.save_checkpoint({**st, "meta": meta}, "last.pt")
                self.saved_step = s
                dist.barrier()
            if stopping:
                bar.close()
                raise StopRequested(self.stop.signum if signalled else signal.SIGTERM, s)
        bar.close()
        return self.summary_metrics()

    def _guard(self, s: int, fresh_logs: dict | None, res: dict | None, saving: bool, signalled: bool) -> bool:
        """Where the logs are read anyway, before a checkpoint and at an evaluation: stop on a non-finite
        loss, weight or test metric (so none is saved or chosen as best), and agree across processes on a
        stop a signal asked for. Returns whether to stop at this step."""
        bad = None
        if fresh_logs is not None:
            loss = fresh_logs["loss"]
        elif "loss" in self.sums:  # steps since the last log read (a save between reads)
            loss = (self.sums["loss"] / self.sums["n"]).item()
        else:
            loss = 0.0
        p = self.primary
        if not math.isfinite(loss):
            bad = f"the training loss is {loss}"
        for k in (f"test_{p}", "test_loss", f"val_{p}"):
            if bad is None and res and k in res and not math.isfinite(res[k]):
                bad = f"{k} is {res[k]}"
        if bad is None and saving:  # one sync for all of them, at a save (which syncs anyway)
            weights = [t for t in self.m.state_dict().values() if t.is_floating_point()]
            if not bool(torch.stack([torch.isfinite(t).all() for t in weights]).all()):
                bad = "the weights are not finite"
        any_bad, stop = dist.any_true([bad is not None, signalled], self.dev)
        if any_bad:
            amp = " or try --amp off" if self.amp is not None else ""
            raise Diverged(f"training diverged at step {s}: {bad or 'on another process'}; lower --lr "
                           f"(now {self.o.lr:g}){amp} and start again")
        return stop

    def summary_metrics(self) -> dict:
        """The final test metric and the test metric at the selected step (on val where there is a
        val split, else on test), with what the task adds (`Task.summary_metrics`)."""
        final = self.history[-1] if self.history else {}
        best, p = self.best.get("row", {}), self.primary
        imgs = sum(self.o.batch_size + self.unlabeled_batch(k) for k in range(self.o.steps))
        m = {f"test_{p}": final.get(f"test_{p}"), f"best_test_{p}": best.get(f"test_{p}", 0.0),
             "best_step": self.best["step"], "selected_on": "val" if self.data.val is not None else "test"}
        if self.data.val is not None:
            m[f"best_val_{p}"] = self.best["select"]
        m.update(self.task.summary_metrics(final, best, self.data.val is not None))
        for k in ("mask_rate", "pseudo_label_accuracy", "conditional_accuracy", "local_fid", "local_fid_floor"):
            if k in final:
                m[k] = final[k]
        return {"metrics": m, "timing": {"train_seconds": round(self.train_seconds, 2),
                                         "images_per_second": round(imgs / max(self.train_seconds, 1e-9), 1)}}
