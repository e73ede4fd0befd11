import copy

import torch
import torch.nn as nn


class EMA(nn.Module):
    """Exponential moving average of a network's weights and buffers, used for evaluation.
    The decay warms up as min(decay, (1 + n) / (10 + n)) so short runs are not dominated by
    the random initial weights. (torch.optim.swa_utils.AveragedModel with its EMA function has
    no such warm-up.) The state of a parametrization (spectral norm's power-iteration vectors u
    and v) is copied, not averaged: an average of unit vectors that turn is shorter than one,
    and u.W v then underestimates the largest singular value, scaling that layer up."""

    def __init__(self, model: nn.Module, decay: float):
        super().__init__()
        self.module = copy.deepcopy(model).requires_grad_(False)
        self.decay = decay
        self.register_buffer("n", torch.zeros((), dtype=torch.long))
        # per state entry: averaged (floating point, not a parametrization's own state) or copied
        self.averaged = [v.is_floating_point() and (".parametrizations." not in k or k.endswith(".original"))
                         for k, v in self.module.state_dict().items()]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.n += 1
        n = self.n.float()
        decay = torch.clamp((1 + n) / (10 + n), max=self.decay)
        pairs = zip(self.averaged, self.module.state_dict().values(), model.state_dict().values())
        floats, others = [], []
        for avg, a, b in pairs:
            (floats if avg else others).append((a, b))
        if floats:
            a, b = zip(*floats)
            torch._foreach_lerp_(list(a), list(b), 1 - decay)
        for a, b in others:
            a.copy_(b)

    @torch.no_grad()
    def restart(self, model: nn.Module) -> None:
        """Start over from `model`'s weights, with the decay's warm-up (a new training phase)."""
        self.module.load_state_dict(model.state_dict())
        self.n.zero_()

    def forward(self, x):
        return self.module(x)
