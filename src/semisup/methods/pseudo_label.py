from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..options import SHARE, WEIGHT
from .base import Batch, Hyper, Method, linear_ramp, option


@dataclass
class PseudoLabelHyper(Hyper):
    threshold: float = option(0.95, "confidence above which a prediction becomes a pseudo-label", check=SHARE)
    lambda_u: float = option(1.0, "weight of the unlabeled loss", check=WEIGHT)
    warmup: float = option(0.4, "share of the run over which the unlabeled weight ramps up from 0", check=SHARE)


class PseudoLabel(Method):
    """Pseudo-Label (Lee 2013, Eq. 15): the model's own confident predictions on unlabeled
    images are trained on as if they were labels, with a weight alpha(t) that ramps up.
    Lee takes every argmax with a ramp over epochs 100-600; as in USB, we keep only
    predictions above `threshold` and ramp linearly over the first `warmup` of the run, with one
    unlabeled image per labeled one (USB's `pseudolabel_cifar10_*.yaml`)."""

    name = "pseudo_label"
    paper = "Lee 2013, Pseudo-Label: the simple and efficient semi-supervised learning method"
    Hyper = PseudoLabelHyper
    unlabeled_views = ("weak",)

    @classmethod
    def run_defaults_for(cls, given):
        return {"unlabeled_ratio": 1}

    def step(self, batch: Batch):
        n = len(batch.y)
        logits = self.model(torch.cat([batch.x["weak"], batch.u["weak"]]))
        lx, lu = logits[:n], logits[n:]
        conf, pl = lu.detach().softmax(-1).max(-1)
        mask = (conf >= self.hp.threshold).float()
        ramp = linear_ramp(batch.progress, self.hp.warmup)
        unsup = (F.cross_entropy(lu, pl, reduction="none") * mask).mean()
        return {"loss_sup": F.cross_entropy(lx, batch.y), "loss_unsup": self.hp.lambda_u * ramp * unsup,
                "pseudo_label": pl, "mask": mask}
