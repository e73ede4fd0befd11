"""The method contract (DESIGN.md): a Module that owns its networks and state; `step` takes
a Batch of views and returns a dict of tensors. Keys starting with `loss` are summed and
backpropagated by the trainer; the rest are logged. Two optional keys let the trainer report
how good the pseudo-labels are without the method ever seeing the hidden labels:
`pseudo_label` (per unlabeled image) and `mask` (1 where the image counted)."""
from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class Batch:
    x: dict[str, torch.Tensor]  # labeled images, one normalised tensor per view
    y: torch.Tensor  # their classes
    u: dict[str, torch.Tensor]  # unlabeled images, one tensor per view (the same images)
    step: int = 0
    progress: float = 0.0  # step / total steps, for ramps and schedules
    u_index: torch.Tensor | None = None  # positions of the unlabeled images in the unlabeled pool


def option(default, help: str):
    """A hyperparameter with its paper default and a one-line meaning (for --help and
    `semisup methods --verbose`)."""
    return field(default=default, metadata={"help": help})


@dataclass
class Hyper:
    pass


class Method(nn.Module):
    name = ""
    task = "classify"
    paper = ""
    Hyper = Hyper
    labeled_views: tuple[str, ...] = ("weak",)
    unlabeled_views: tuple[str, ...] = ()

    def __init__(self, model: nn.Module, num_classes: int, hp=None, num_unlabeled: int = 0):
        super().__init__()
        self.model = model
        self.num_classes = num_classes
        self.num_unlabeled = num_unlabeled  # size of the unlabeled pool, for per-image state
        self.hp = hp if hp is not None else self.Hyper()

    @classmethod
    def hyper_fields(cls):
        return fields(cls.Hyper)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    # shared by the weak-to-strong family (FixMatch and its descendants)
    def weak_strong_logits(self, batch: Batch):
        """One forward of labeled, weak and strong images together (BatchNorm sees them as the
        papers do); returns labeled logits, detached float weak logits, strong logits."""
        n, nu = len(batch.y), len(batch.u["weak"])
        logits = self.model(torch.cat([batch.x["weak"], batch.u["weak"], batch.u["strong"]]))
        return logits[:n], logits[n:n + nu].detach().float(), logits[n + nu:]

    def pseudo_label_losses(self, lx, y, strong, target, mask, lambda_u: float) -> dict[str, torch.Tensor]:
        """Cross-entropy on the labeled batch plus lambda_u * the mask-weighted cross-entropy of
        the strong views against the pseudo-labels (mean over all unlabeled images)."""
        unsup = (F.cross_entropy(strong, target, reduction="none") * mask).mean()
        return {"loss_sup": F.cross_entropy(lx, y), "loss_unsup": lambda_u * unsup,
                "pseudo_label": target if target.ndim == 1 else target.argmax(-1), "mask": mask}
