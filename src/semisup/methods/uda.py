import math
from dataclasses import dataclass

import torch.nn.functional as F

from ..options import POSITIVE, SHARE, WEIGHT, Choice
from .base import Batch, Method, WeakStrongHyper, option


@dataclass
class UDAHyper(WeakStrongHyper):
    lambda_u: float = option(1.0, "weight of the consistency loss", check=WEIGHT)
    temperature: float = option(0.4, "sharpening temperature of the weak-view target", check=POSITIVE)
    threshold: float = option(0.8, "confidence a weak-view prediction needs to count (confidence masking)", check=SHARE)
    tsa: str = option("none", "training signal annealing of the labeled loss: none, linear, exp or log",
                      check=Choice("none", "linear", "exp", "log"))


class UDA(Method):
    """UDA (Xie et al. 2020, Eq. 1-2): the strong (RandAugment) view's prediction is pulled to
    the weak view's sharpened prediction (temperature 0.4) wherever the weak view's confidence
    is at least 0.8; the KL divergence is a cross-entropy with a soft target up to a constant.
    Training signal annealing (Sec. 3.2) drops labeled images whose correct-class probability
    already exceeds eta_t = alpha_t (1 - 1/K) + 1/K; off by default, as in USB."""

    name = "uda"
    paper = "Xie et al. 2020, Unsupervised data augmentation for consistency training"
    Hyper = UDAHyper
    unlabeled_views = ("weak", "strong")

    def tsa_threshold(self, progress: float) -> float:
        schedule = {"linear": lambda t: t, "exp": lambda t: math.exp((t - 1) * 5),
                    "log": lambda t: 1 - math.exp(-t * 5)}
        if self.hp.tsa == "none":
            return 1.0
        k = self.num_classes
        return schedule[self.hp.tsa](progress) * (1 - 1 / k) + 1 / k

    def step(self, batch: Batch):
        lx, weak, strong = self.weak_strong_logits(batch)
        probs = weak.softmax(-1)
        target = (weak / self.hp.temperature).softmax(-1)
        mask = (probs.max(-1).values >= self.hp.threshold).float()
        out = self.pseudo_label_losses(lx, batch.y, strong, target, mask, self.hp.lambda_u)
        eta = self.tsa_threshold(batch.progress)
        if eta < 1.0:
            ce = F.cross_entropy(lx, batch.y, reduction="none")
            keep = (lx.detach().float().softmax(-1).gather(1, batch.y[:, None]).squeeze(1) <= eta).float()
            out["loss_sup"] = (ce * keep).sum() / keep.sum().clamp_min(1)
        return out
