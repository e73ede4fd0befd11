"""The method contract (DESIGN.md): a Module that owns its networks and state; `step` takes
a Batch of views and returns a dict of tensors. Keys starting with `loss` are summed and
backpropagated by the trainer; the rest are logged. Two optional keys let the trainer report
how good the pseudo-labels are without the method ever seeing the hidden labels:
`pseudo_label` (per unlabeled image) and `mask` (1 where the image counted)."""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..options import Checked, Choice, option  # noqa: F401  (option: re-exported for the methods' Hyper fields)


@dataclass
class Batch:
    x: dict[str, torch.Tensor]  # labeled images in [0, 1], one tensor per view (the network normalises)
    y: torch.Tensor  # their classes (segmentation: their masks, B x H x W, 255 ignored)
    u: dict[str, torch.Tensor]  # unlabeled images, one tensor per view (the same images)
    step: int = 0
    progress: float = 0.0  # step / total steps, for ramps and schedules
    u_index: torch.Tensor | None = None  # positions of the unlabeled images in the unlabeled pool
    u_outside: torch.Tensor | None = None  # segmentation: (B, H, W), 255 where a crop fell outside its image


def linear_ramp(progress: float, length: float) -> float:
    """0 to 1 linearly over the first `length` of the run (USB's unsup_warmup)."""
    return min(progress / length, 1.0) if length > 0 else 1.0


def sigmoid_rampup(progress: float, length: float) -> float:
    """exp(-5 (1 - t)^2), t = progress / length (Laine & Aila 2017; Tarvainen & Valpola 2017)."""
    if length <= 0:
        return 1.0
    t = min(max(progress / length, 0.0), 1.0)
    return math.exp(-5.0 * (1.0 - t) ** 2)


@dataclass
class Hyper(Checked):
    """A method's hyperparameters: `option(paper default, meaning, check=constraint)` fields,
    checked when the dataclass is built."""


@dataclass
class WeakStrongHyper(Hyper):
    """The options every weak-to-strong method (FixMatch and its descendants) shares."""

    weak_pass: str = option("joint", "joint: labeled, weak and strong images in one forward, as the papers do; "
                            "separate: the weak view in a no-grad forward of its own (no backward for it)",
                            check=Choice("joint", "separate"))


def _undecorated(name: str):
    """torch.optim.Optimizer's method `name` without its `torch._disable_dynamo` wrapper, which
    imports torch._dynamo on its first call (1.5-2.6 s here; the digits default run trains 13 s).
    Outside a compiled optimiser the wrapper changes nothing. The wrapped one where torch keeps no
    `__wrapped__`."""
    f = getattr(torch.optim.Optimizer, name)
    return getattr(f, "__wrapped__", f)


class SGD(torch.optim.SGD):
    """torch's SGD without the first-call import of torch._dynamo (`_undecorated`): its step calls
    the update functions `torch.optim.SGD.step` calls, on the same arguments, so the weights are
    torch's bit for bit, fused and not (a test), and the momentum buffers are where torch keeps them, so
    checkpoints load either way. Falls back to torch's step where its private functions are not
    there or an option needs its wrapper (closure, differentiable, maximize).
    `fused` (the default here where torch has a fused kernel for the parameters' devices): the
    whole update in one kernel, `torch._fused_sgd_`: on the digits network 0.18 ms a step against
    0.63 for the per-tensor loop (2 CPU threads), the same update to within float rounding (a
    test); a step where only some parameters have momentum buffers yet takes the per-tensor path,
    which starts them one by one as torch does."""

    def __init__(self, params, fused: bool | None = None, **kw):
        if fused is None:
            params = list(params)
            tensors = [p for g in params for p in (g["params"] if isinstance(g, dict) else [g])]
            from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

            fused = bool(tensors) and all(t.is_floating_point() and t.device.type in
                                          _get_fused_kernels_supported_devices() for t in tensors)
        super().__init__(params, fused=fused, **kw)

    add_param_group = _undecorated("add_param_group")
    zero_grad = _undecorated("zero_grad")
    state_dict = _undecorated("state_dict")
    load_state_dict = _undecorated("load_state_dict")

    @torch.no_grad()
    def step(self, closure=None):
        from torch.optim import sgd as impl

        funcs = [getattr(impl, n, None) for n in ("_default_to_fused_or_foreach", "_multi_tensor_sgd",
                                                  "_single_tensor_sgd", "_fused_sgd")]
        wrapped = any(g.get("differentiable") or g.get("maximize") for g in self.param_groups)
        if closure is not None or wrapped or None in funcs or not hasattr(self, "_init_group"):
            return super().step(closure)
        default, multi, single, fused = funcs
        for g in self.param_groups:
            params, grads, bufs = [], [], []
            sparse = self._init_group(g, params, grads, bufs)
            foreach = g.get("foreach")
            foreach = default(params, differentiable=False, use_fused=False)[1] if foreach is None else foreach
            started = [b is not None for b in bufs]
            whole = g["momentum"] == 0 or all(started) or not any(started)  # what the fused kernel takes
            func = fused if g.get("fused") and not sparse and whole else multi if foreach else single
            scaling = getattr(self, "grad_scale", None), getattr(self, "found_inf", None)  # a GradScaler's, fused
            func(params, grads, bufs, *scaling, weight_decay=g["weight_decay"], momentum=g["momentum"],
                 lr=g["lr"], dampening=g["dampening"], nesterov=g["nesterov"], maximize=False,
                 has_sparse_grad=sparse)
            if g["momentum"] != 0:
                for p, b in zip(params, bufs):
                    self.state[p]["momentum_buffer"] = b
        return None


class Method(nn.Module):
    name = ""
    task = "classify"
    paper = ""
    Hyper = Hyper
    labeled_views: tuple[str, ...] = ("weak",)
    unlabeled_views: tuple[str, ...] = ()
    # bf16 autocast under --amp auto on a CPU with native bf16: only where measured to keep the
    # method's accuracy (docs/benchmarks.md, Speed); float32 otherwise
    cpu_bf16 = False
    schedule = "FixMatch's cosine decay, lr cos(7 pi k / 16 K)"  # what lr_factor does, for `semisup methods`

    def bf16_on_cpu(self) -> bool:
        """Whether --amp auto takes bf16 on a CPU with native bf16: where measured (`cpu_bf16`), and
        for the weak-to-strong family only with the weak view in its own pass: in the joint pass
        bf16 cost digits 3 points at a short budget (fixmatch, 150 steps, ratio 3: 88.9% against
        91.9% float32 and 94.7% bf16 with the separate pass)."""
        return self.cpu_bf16 and self.separate_weak_pass()

    def separate_weak_pass(self) -> bool:
        """Whether the weak view has a no-grad forward of its own (`WeakStrongHyper.weak_pass`)."""
        return isinstance(self.hp, WeakStrongHyper) and self.hp.weak_pass == "separate"

    def __init__(self, model: nn.Module, num_classes: int, hp=None, num_unlabeled: int = 0,
                 shape: tuple[int, int, int] = (1, 28, 28), num_labeled: int = 0):
        super().__init__()
        self.model = model
        self.num_classes = num_classes
        self.num_unlabeled = num_unlabeled  # size of the unlabeled pool, for per-image state
        self.num_labeled = num_labeled  # size of the labeled set (for objectives that weigh by it)
        self.shape = tuple(shape)  # (channels, height, width) of the images
        self.hp = hp if hp is not None else self.Hyper()

    def phase_starts(self, steps: int) -> tuple[int, ...]:
        """Steps that begin a new phase of training (fine-tuning after pretraining): the EMA of
        the evaluated network restarts there from the live weights, so that it does not average
        in the weights of the phase before."""
        return ()

    @classmethod
    def run_defaults_for(cls, given: dict) -> dict:
        """Run options (and method options) whose paper default differs from the common one (a
        GAN's Adam lr), given the options asked for; they sit above the data set's defaults and
        below --config and the command line."""
        return {}

    @classmethod
    def default_model_for(cls, shape: tuple[int, int, int], cfg: dict) -> str | None:
        """The backbone this method wants when --model is not given, for images of `shape` and
        the options `cfg` (None: the task's size rule)."""
        return None

    def attach(self, data) -> None:
        """Called once the method is built, with the run's SemiData: what the method needs from
        outside its networks (cgan_pseudo's --labeler run)."""

    @classmethod
    def check(cls, cfg: dict) -> None:
        """Rules between this method's options and the run's that no single option's constraint
        says (--pretrain-steps below --steps); raise UserError, one line. The resolved config
        is checked option by option first."""

    def configure_optimizer(self, o):
        """The optimiser of the run's options `o` (TrainOptions): SGD with Nesterov momentum as in
        FixMatch and USB, or AdamW (USB's fine-tuning of pretrained backbones, beta2 0.999); no
        weight decay on BatchNorm, LayerNorm and biases (USB's `bn_wd_skip`); with --layer-decay
        below 1 each parameter of a timm backbone learns at its block's share of --lr
        (`timm_net.layer_scales`, USB's `param_groups_layer_decay`). A method with another paper
        optimiser overrides this."""
        from ..models.timm_net import layer_scales

        scales = layer_scales(self.model, o.layer_decay)
        groups: dict[tuple[float, bool], list] = {}
        for p in self.parameters():
            groups.setdefault((scales.get(id(p), 1.0), p.ndim > 1), []).append(p)
        params = [{"params": ps, "lr": o.lr * scale, "weight_decay": o.weight_decay if decays else 0.0}
                  for (scale, decays), ps in groups.items()]
        if o.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=o.lr, betas=(o.momentum, 0.999))
        return SGD(params, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov)

    def lr_factor(self, k: int, steps: int) -> float:
        """The learning rate at step k of `steps`, as a factor of --lr. FixMatch's cosine decay,
        cos(7 pi k / (16 K)) (Sohn et al. 2020; USB's default for every classic CV method); a
        method whose paper schedules otherwise overrides this, as it does the optimiser."""
        return math.cos(7 * math.pi * k / (16 * steps))

    def samples(self) -> torch.Tensor | None:
        """Images the method makes (a generator's), as a [0, 1] grid C x H x W, saved in the run
        folder at each evaluation; None for methods that make none."""
        return None

    @classmethod
    def hyper_fields(cls):
        return fields(cls.Hyper)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    # shared by the weak-to-strong family (FixMatch and its descendants)
    def weak_strong_logits(self, batch: Batch):
        """Labeled logits, detached float weak logits, strong logits. `weak_pass` "joint": one
        forward of labeled, weak and strong images together (BatchNorm sees them as the papers
        do); "separate": the weak view first in a no-grad forward of its own (BatchNorm normalises
        it with its own batch statistics), so its activations are not kept and it has no backward."""
        n, nu = len(batch.y), len(batch.u["weak"])
        if self.separate_weak_pass():
            with torch.no_grad():
                weak = self.model(batch.u["weak"]).float()
            logits = self.model(torch.cat([batch.x["weak"], batch.u["strong"]]))
            return logits[:n], weak, logits[n:]
        logits = self.model(torch.cat([batch.x["weak"], batch.u["weak"], batch.u["strong"]]))
        return logits[:n], logits[n:n + nu].detach().float(), logits[n + nu:]

    def pseudo_label_losses(self, lx, y, strong, target, mask, lambda_u: float) -> dict[str, torch.Tensor]:
        """Cross-entropy on the labeled batch plus lambda_u * the mask-weighted cross-entropy of
        the strong views against the pseudo-labels (mean over all unlabeled images)."""
        unsup = (F.cross_entropy(strong, target, reduction="none") * mask).mean()
        return {"loss_sup": F.cross_entropy(lx, y), "loss_unsup": lambda_u * unsup,
                "pseudo_label": target if target.ndim == 1 else target.argmax(-1), "mask": mask}


@contextmanager
def frozen_bn(model: nn.Module):
    """Forward passes inside leave BatchNorm running statistics untouched (USB's bn_controller):
    for label guessing and adversarial probes that should not count as training data."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, mo in zip(bns, saved):
            m.momentum = mo


def mixup(x: torch.Tensor, target: torch.Tensor, alpha: float):
    """MixUp as MixMatch uses it (Berthelot et al. 2019, Eq. 8-11, and the authors' code): one
    lambda ~ Beta(alpha, alpha) per example, lambda' = max(lambda, 1 - lambda) so each mixed
    example stays closer to its own input, mixed with a random permutation of the batch. (USB
    draws one lambda per batch.) The draws come from torch's generator on the device, which the
    checkpoint saves, so no host sync is needed."""
    n = len(x)
    if alpha > 0:
        a = torch.full((n,), float(alpha), device=x.device)
        lam = torch.distributions.Beta(a, a).sample()
        lam = torch.maximum(lam, 1 - lam)
    else:
        lam = torch.ones(n, device=x.device)
    perm = torch.randperm(n, device=x.device)
    lx, lt = lam.view(-1, *[1] * (x.ndim - 1)).to(x.dtype), lam.view(-1, *[1] * (target.ndim - 1))
    return lx * x + (1 - lx) * x[perm], lt * target + (1 - lt) * target[perm]


def sharpen(p: torch.Tensor, t: float) -> torch.Tensor:
    """p^(1/T), renormalised (MixMatch Eq. 7)."""
    p = p ** (1.0 / t)
    return p / p.sum(-1, keepdim=True)



def gather_batch(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Under torchrun, each tensor concatenated over the processes (all shares are the same
    size); unchanged in a single process. For per-image state that every process must agree on."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return tensors
    out = []
    for t in tensors:
        parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, t.contiguous())
        out.append(torch.cat(parts))
    return tuple(out)
