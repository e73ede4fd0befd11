from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..options import DECAY, WEIGHT
from .base import Batch, Method, WeakStrongHyper, gather_batch, option


@dataclass
class FreeMatchHyper(WeakStrongHyper):
    lambda_u: float = option(1.0, "weight of the unlabeled loss (w_u)", check=WEIGHT)
    lambda_f: float = option(0.001, "weight of the self-adaptive fairness loss (w_f; USB's ent_loss_ratio)",
                             check=WEIGHT)
    ema_p: float = option(0.999, "EMA momentum of the confidence statistics (lambda)", check=DECAY)


class FreeMatch(Method):
    """FreeMatch (Wang et al. 2023), self-adaptive thresholding: a global threshold tau_t, the
    EMA of the mean top confidence on weak views (Eq. 6), modulated per class by the EMA of the
    mean class probability, tau_t(c) = MaxNorm(p_t)(c) * tau_t (Eq. 7-9); plus the
    self-adaptive fairness loss L_f = -H(SumNorm(p_t / h_t), SumNorm(p_bar / h_bar)) (Eq. 11)
    over the strong views that pass. All statistics are buffers, initialised to 1/K as in the
    paper; the masked means are weighted sums, so nothing waits on the host. Under torchrun the
    statistics are taken over the global batch (as USB all-gathers), so every process holds the
    same thresholds."""

    name = "freematch"
    paper = "Wang et al. 2023, FreeMatch: self-adaptive thresholding for semi-supervised learning"
    Hyper = FreeMatchHyper
    unlabeled_views = ("weak", "strong")

    def __init__(self, model, num_classes, hp=None, num_unlabeled: int = 0, **kw):
        super().__init__(model, num_classes, hp, num_unlabeled, **kw)
        k = num_classes
        self.register_buffer("time_p", torch.tensor(1.0 / k))
        self.register_buffer("p_model", torch.full((k,), 1.0 / k))
        self.register_buffer("label_hist", torch.full((k,), 1.0 / k))

    def step(self, batch: Batch):
        lx, weak, strong = self.weak_strong_logits(batch)
        probs = weak.softmax(-1)
        conf, pl = probs.max(-1)
        m = self.hp.ema_p
        with torch.no_grad():
            every, = gather_batch(probs)  # the global batch: the same statistics on every process
            top, label = every.max(-1)
            self.time_p.mul_(m).add_((1 - m) * top.mean())
            self.p_model.mul_(m).add_((1 - m) * every.mean(0))
            self.label_hist.mul_(m).add_((1 - m) * torch.bincount(label, minlength=self.num_classes).float()
                                         / len(label))
            mask = (conf >= self.time_p * (self.p_model / self.p_model.max())[pl]).float()
        out = self.pseudo_label_losses(lx, batch.y, strong, pl, mask, self.hp.lambda_u)
        out["loss_fair"] = self.hp.lambda_f * self.fairness(strong, mask)
        return out

    def fairness(self, strong_logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        p = strong_logits.float().softmax(-1)
        w = mask.unsqueeze(1)
        count = mask.sum()
        hist = (F.one_hot(p.argmax(-1), self.num_classes) * w).sum(0) / count.clamp_min(1)
        mean_p = (p * w).sum(0) / count.clamp_min(1)
        inv = lambda h: torch.where(h > 0, 1 / h, torch.zeros_like(h))  # noqa: E731
        target = self.p_model * inv(self.label_hist)
        target = target / target.sum()
        mine = mean_p * inv(hist)
        mine = mine / mine.sum().clamp_min(1e-12)
        return (target * torch.log(mine + 1e-12)).sum() * (count > 0).float()
