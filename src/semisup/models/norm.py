"""The network owns its input. Views give images as [0, 1] pixels, and the first layer of every
network is `InputNorm`, the per-channel (x - mean) / std of the images its weights were trained
on, held as buffers: a checkpoint carries its normalisation, so predict, eval and a loaded
encoder need nothing beside the weights, and a pretrained backbone brings its own statistics."""
from __future__ import annotations

import torch
import torch.nn as nn


class InputNorm(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(1, channels, 1, 1))
        self.register_buffer("std", torch.ones(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"{self.mean.shape[1]}"


def input_norm(model: nn.Module) -> InputNorm:
    """The network's input layer: what a method that perturbs images in the units the network
    sees (VAT's eps, instance noise) scales by, as `input_norm(model).std`."""
    for m in model.modules():
        if isinstance(m, InputNorm):
            return m
    raise TypeError(f"{type(model).__name__} has no InputNorm layer: a network takes [0, 1] pixels and "
                    "normalises them itself (semisup.models.norm)")


@torch.no_grad()
def set_input_norm(model: nn.Module, mean, std) -> None:
    """Sets the per-channel statistics (sequences or tensors of C values, for [0, 1] pixels) of
    every InputNorm in `model`."""
    found = [m for m in model.modules() if isinstance(m, InputNorm)]
    if not found:
        input_norm(model)  # the error
    for m in found:
        m.mean.copy_(torch.as_tensor(mean, dtype=torch.float32).view_as(m.mean))
        m.std.copy_(torch.as_tensor(std, dtype=torch.float32).view_as(m.std))
