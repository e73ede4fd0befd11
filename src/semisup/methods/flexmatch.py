from dataclasses import dataclass

import torch

from ..options import BOOL, SHARE, WEIGHT
from .base import Batch, Method, WeakStrongHyper, gather_batch, option


@dataclass
class FlexMatchHyper(WeakStrongHyper):
    threshold: float = option(0.95, "the highest threshold tau; a class's threshold rises to it as it is learned",
                              check=SHARE)
    lambda_u: float = option(1.0, "weight of the unlabeled loss", check=WEIGHT)
    threshold_warmup: bool = option(True, "count not-yet-used unlabeled images in the normaliser (Eq. 11)", check=BOOL)


class FlexMatch(Method):
    """FlexMatch (Zhang et al. 2021), curriculum pseudo-labelling: FixMatch with a threshold per
    class, T_t(c) = M(beta_t(c)) * tau, M(x) = x / (2 - x) (the convex mapping, Eq. 7), where
    beta_t(c) = sigma_t(c) / max(max_c sigma_t, N - sum_c sigma_t) (Eq. 5 with the threshold
    warm-up of Eq. 11) and sigma_t(c) counts the unlabeled images whose latest confident
    (>= tau) prediction is c. As in USB's FlexMatchThresholdingHook, a step's mask uses the
    thresholds from the steps before it, and the table is updated after. The per-image
    prediction table is a buffer on the device, so it is checkpointed, and the counts are one
    bincount per step: no host copy (USB's FlexMatch copies the table to the host every step).
    Paper defaults: tau 0.95, lambda_u 1, mu 7, as FixMatch.
    Under torchrun the processes exchange their shares' predictions each step, so every process
    holds the same table."""

    name = "flexmatch"
    paper = "Zhang et al. 2021, FlexMatch: boosting semi-supervised learning with curriculum pseudo labeling"
    Hyper = FlexMatchHyper
    unlabeled_views = ("weak", "strong")
    cpu_bf16 = True  # digits, seeds 0-4, and MNIST-100: accuracy held (docs/benchmarks.md, Speed)

    def __init__(self, model, num_classes, hp=None, num_unlabeled: int = 0, **kw):
        super().__init__(model, num_classes, hp, num_unlabeled, **kw)
        self.register_buffer("selected", torch.full((num_unlabeled,), -1, dtype=torch.long))

    def class_thresholds(self) -> torch.Tensor:
        used = self.selected >= 0
        sigma = torch.bincount(self.selected.clamp_min(0), weights=used.float(), minlength=self.num_classes)
        denom = sigma.max()
        if self.hp.threshold_warmup:
            denom = torch.maximum(denom, (~used).sum().float())
        beta = sigma / denom.clamp_min(1)
        return self.hp.threshold * beta / (2 - beta)

    def step(self, batch: Batch):
        lx, weak, strong = self.weak_strong_logits(batch)
        conf, pl = weak.softmax(-1).max(-1)
        with torch.no_grad():  # the mask from the learning status so far, then the update (USB's order)
            mask = (conf >= self.class_thresholds()[pl]).float()
            idx, c, p = gather_batch(batch.u_index, conf, pl)
            self.selected[idx] = torch.where(c >= self.hp.threshold, p, self.selected[idx])
        return self.pseudo_label_losses(lx, batch.y, strong, pl, mask, self.hp.lambda_u)
