from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..options import DECAY, POSITIVE, SHARE, WEIGHT
from .base import Batch, Hyper, Method, frozen_bn, gather_batch, linear_ramp, mixup, option, sharpen


@dataclass
class ReMixMatchHyper(Hyper):
    lambda_u: float = option(1.5, "weight of the mixed unlabeled loss (lambda_U)", check=WEIGHT)
    lambda_kl: float = option(0.5, "weight of the pre-mixup loss on a strong view (lambda_U1)", check=WEIGHT)
    lambda_rot: float = option(0.5, "weight of the rotation-prediction loss (lambda_r)", check=WEIGHT)
    temperature: float = option(0.5, "sharpening temperature of the guessed labels (T)", check=POSITIVE)
    mixup_alpha: float = option(0.75, "Beta(alpha, alpha) of MixUp (alpha)", check=WEIGHT)
    ema_p: float = option(0.999, "EMA momentum of the running class distribution of predictions", check=DECAY)
    warmup: float = option(1 / 64, "share of the run over which the unlabeled weights ramp up linearly", check=SHARE)


def rotate(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image turned by a random multiple of 90 degrees (only 0 or 180 when not square);
    returns the images and the quarter-turn counts."""
    b = len(x)
    square = x.shape[-1] == x.shape[-2]
    k = torch.randint(4 if square else 2, (b,), device=x.device) * (1 if square else 2)
    turned = torch.stack([x.rot90(j, (2, 3)) if square or j % 2 == 0 else x for j in range(4)])
    return turned[k, torch.arange(b, device=x.device)], k


class ReMixMatch(Method):
    """ReMixMatch (Berthelot et al. 2020, Algorithm 1): MixMatch with
    - distribution alignment (Sec. 3.2, Eq. 1): the weak-view prediction q is multiplied by
      p(y) / p~(y) and renormalised, p~ the running mean of predictions on unlabeled images and
      p(y) the labeled class distribution (both running means in buffers, over the global batch under
      torchrun, so every process holds the same);
    - augmentation anchoring (Sec. 3.3): the sharpened, aligned weak-view guess is the target of
      K strong views; labeled images, the strong views and the weak view are mixed with MixUp
      (one lambda per example, as the authors' code) and trained with cross-entropy;
    - the pre-mixup loss of one strong view against the guess (lambda_U1) and the
      self-supervised rotation loss on it (predict 0/90/180/270 degrees, lambda_r, Sec. 3.4),
      in a forward that leaves BatchNorm's running statistics alone (USB's bn_controller).
    The unlabeled weights ramp up linearly over the first 1/64 of the run (the authors' 16k of
    1M steps; USB's `unsup_warm_up: 0.015625`). Paper defaults lambda_U 1.5, lambda_U1 0.5,
    lambda_r 0.5, T 0.5, alpha 0.75; one unlabeled image per labeled one (USB's
    `remixmatch_cifar10_*.yaml`). Deviations: K = 2 strong views (paper 8; USB uses 2),
    RandAugment as the strong view instead of CTAugment (as USB), running means as EMAs with
    momentum 0.999 (paper: the last 128 batches)."""

    name = "remixmatch"
    paper = "Berthelot et al. 2020, ReMixMatch: semi-supervised learning with distribution alignment and augmentation anchoring"
    Hyper = ReMixMatchHyper
    unlabeled_views = ("weak", "strong", "strong2")

    @classmethod
    def run_defaults_for(cls, given):
        return {"unlabeled_ratio": 1}

    def __init__(self, model, num_classes, hp=None, num_unlabeled: int = 0, **kw):
        super().__init__(model, num_classes, hp, num_unlabeled, **kw)
        self.rot_head = nn.Linear(model.feature_dim, 4)
        self.register_buffer("p_model", torch.full((num_classes,), 1.0 / num_classes))
        self.register_buffer("p_target", torch.full((num_classes,), 1.0 / num_classes))

    def step(self, batch: Batch):
        n, nu = len(batch.y), len(batch.u["weak"])
        s1, s2 = batch.u["strong"], batch.u["strong2"]
        onehot = F.one_hot(batch.y, self.num_classes).float()
        m = self.hp.ema_p
        with torch.no_grad(), frozen_bn(self.model):
            q = self.model(batch.u["weak"]).float().softmax(-1)
            every_q, every_y = gather_batch(q, onehot)  # the global batch: the same on every process
            self.p_model.mul_(m).add_((1 - m) * every_q.mean(0))
            self.p_target.mul_(m).add_((1 - m) * every_y.mean(0))
            q = q * self.p_target / (self.p_model + 1e-6)
            guess = sharpen(q / q.sum(-1, keepdim=True), self.hp.temperature)
        x, t = mixup(torch.cat([batch.x["weak"], s1, s2, batch.u["weak"]]), torch.cat([onehot, guess, guess, guess]),
                     self.hp.mixup_alpha)
        logits = self.model(x).float()
        turned, k = rotate(s1)
        with frozen_bn(self.model):
            feats = self.model.features(torch.cat([s1, turned]))
        u1 = F.cross_entropy(self.model.head(feats[:nu]).float(), guess)
        rot = F.cross_entropy(self.rot_head(feats[nu:]).float(), k)
        w = linear_ramp(batch.progress, self.hp.warmup)
        return {"loss_sup": F.cross_entropy(logits[:n], t[:n]),
                "loss_unsup": w * self.hp.lambda_u * F.cross_entropy(logits[n:], t[n:]),
                "loss_u1": w * self.hp.lambda_kl * u1, "loss_rot": self.hp.lambda_rot * rot,
                "pseudo_label": guess.argmax(-1), "mask": torch.ones(nu, device=guess.device)}
