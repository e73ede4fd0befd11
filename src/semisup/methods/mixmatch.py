from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..options import POSITIVE, SHARE, WEIGHT
from .base import Batch, Hyper, Method, frozen_bn, linear_ramp, mixup, option, sharpen


@dataclass
class MixMatchHyper(Hyper):
    lambda_u: float = option(75.0, "weight of the unlabeled L2 loss (lambda_U, CIFAR-10)", check=WEIGHT)
    temperature: float = option(0.5, "sharpening temperature of the guessed labels (T)", check=POSITIVE)
    mixup_alpha: float = option(0.75, "Beta(alpha, alpha) of MixUp (alpha)", check=WEIGHT)
    warmup: float = option(0.4, "share of the run over which lambda_u ramps up linearly", check=SHARE)


class MixMatch(Method):
    """MixMatch (Berthelot et al. 2019, Algorithm 1): the label of each unlabeled image is
    guessed by averaging the predictions on K = 2 weak views and sharpening with temperature
    T (Eq. 6-7); labeled and unlabeled images with their (guessed) labels are then mixed with
    MixUp, one lambda per example, lambda' = max(lambda, 1 - lambda) (Eq. 8-11, the authors'
    code); cross-entropy on the mixed labeled part, squared error of probabilities on the mixed
    unlabeled part weighted by lambda_U (Eq. 2-5). Paper defaults T 0.5, K 2, alpha 0.75,
    lambda_U 75 (CIFAR-10), one unlabeled image per labeled one (as USB's
    `mixmatch_cifar10_*.yaml`), linearly ramped up: the paper over its first 16k of 1M steps;
    here over 40% of the run, as USB's `unsup_warm_up: 0.4`. The
    guessing pass leaves BatchNorm statistics alone, and the mixed batch goes through the
    network as one batch, which is what the paper's interleaving emulates."""

    name = "mixmatch"
    paper = "Berthelot et al. 2019, MixMatch: a holistic approach to semi-supervised learning"
    Hyper = MixMatchHyper
    unlabeled_views = ("weak", "weak2")

    @classmethod
    def run_defaults_for(cls, given):
        return {"unlabeled_ratio": 1}

    def step(self, batch: Batch):
        n, nu = len(batch.y), len(batch.u["weak"])
        u1, u2 = batch.u["weak"], batch.u["weak2"]
        with torch.no_grad(), frozen_bn(self.model):
            p = self.model(torch.cat([u1, u2])).float().softmax(-1)
            guess = sharpen((p[:nu] + p[nu:]) / 2, self.hp.temperature)
        target = torch.cat([F.one_hot(batch.y, self.num_classes).float(), guess, guess])
        x, t = mixup(torch.cat([batch.x["weak"], u1, u2]), target, self.hp.mixup_alpha)
        logits = self.model(x).float()
        sup = F.cross_entropy(logits[:n], t[:n])
        unsup = F.mse_loss(logits[n:].softmax(-1), t[n:])  # mean over images and classes, as the paper's code
        w = self.hp.lambda_u * linear_ramp(batch.progress, self.hp.warmup)
        return {"loss_sup": sup, "loss_unsup": w * unsup, "pseudo_label": guess.argmax(-1),
                "mask": torch.ones(nu, device=guess.device)}
