"""The method contract (DESIGN.md): a Module that owns its networks and state; `step` takes
a Batch of views and returns a dict of tensors. Keys starting with `loss` are summed and
backpropagated by the trainer; the rest are logged. Two optional keys let the trainer report
how good the pseudo-labels are without the method ever seeing the hidden labels:
`pseudo_label` (per unlabeled image) and `mask` (1 where the image counted)."""
from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch
import torch.nn as nn


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
