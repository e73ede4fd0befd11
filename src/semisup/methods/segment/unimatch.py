from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ...data.segviews import cutmix, cutmix_boxes
from ...metrics import IGNORE
from ..base import Batch, Hyper, option
from .base import SegMethod


@dataclass
class UniMatchHyper(Hyper):
    threshold: float = option(0.95, "confidence a pixel's pseudo-label needs (UniMatch: 0.95)")
    fp_dropout: float = option(0.5, "channel dropout on the encoder features of the feature-perturbation stream")
    cutmix_p: float = option(0.5, "probability that an unlabeled image gets a CutMix box")


class UniMatch(SegMethod):
    """UniMatch (Yang et al. 2023, "Revisiting weak-to-strong consistency in semi-supervised
    semantic segmentation", Eq. 5-7 and `unimatch.py`): the weak view's confident pixels
    supervise (1) a feature-perturbation stream, the weak image's encoder features through
    Dropout2d(0.5) then the decoder, and (2) two strong views, each CutMixed with its own box
    (dual-stream perturbation). Loss = (sup + 0.5 fp + 0.25 s1 + 0.25 s2) / 2. The labeled
    and weak images share one forward (with the perturbed stream beside it), the two strong
    views another, as in the authors' code; the CutMix partner is a permutation of the batch."""

    name = "unimatch"
    paper = "Yang et al. 2023, UniMatch"
    Hyper = UniMatchHyper
    unlabeled_views = ("weak", "strong", "strong2")

    def step(self, batch: Batch):
        n, u_w = len(batch.y), batch.u["weak"]
        b, _, h, w = u_w.shape
        m = self.model
        feats = m.encode(torch.cat([batch.x["weak"], u_w]))
        fp = [F.dropout2d(f[n:], self.hp.fp_dropout, self.training) for f in feats]
        both = m.logits([torch.cat([f, g]) for f, g in zip(feats, fp)], (h, w))
        lx, lw, lfp = both[:n], both[n:n + b], both[n + b:]
        conf, target = self.pseudo_masks(lw)
        valid = batch.u_mask != IGNORE
        perm = torch.randperm(b, device=u_w.device)
        mixed, losses = [], []
        for v in ("strong", "strong2"):
            box = cutmix_boxes(b, h, w, u_w.device, self.hp.cutmix_p)
            mixed.append(cutmix(box, perm, batch.u[v], target, conf, valid))
        ls = m(torch.cat([mx[0] for mx in mixed])).chunk(2)
        for logits, (_, t, c, v) in zip(ls, mixed):
            losses.append(self.pseudo_loss(logits, t, c, v, self.hp.threshold))
        fp_loss = self.pseudo_loss(lfp, target, conf, valid, self.hp.threshold)
        return {"loss_sup": self.sup_loss(lx, batch.y) / 2, "loss_fp": 0.25 * fp_loss,
                "loss_s1": 0.125 * losses[0], "loss_s2": 0.125 * losses[1],
                "mask_rate": ((conf >= self.hp.threshold) & valid).float().mean()}
