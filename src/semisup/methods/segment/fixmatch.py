from dataclasses import dataclass

import torch

from ...data.segviews import cutmix, cutmix_boxes
from ...metrics import IGNORE
from ..base import Batch, Hyper, option
from .base import SegMethod


@dataclass
class FixMatchHyper(Hyper):
    threshold: float = option(0.95, "confidence a pixel's pseudo-label needs (UniMatch's FixMatch: 0.95)")
    lambda_u: float = option(1.0, "weight of the unlabeled loss")
    cutmix_p: float = option(0.5, "probability that an unlabeled image gets a CutMix box")


class FixMatch(SegMethod):
    """FixMatch for segmentation (Sohn et al. 2020, as UniMatch's baseline `fixmatch.py`, Yang et
    al. 2023, Sec. 3.1): the weak view's confident pixels (>= 0.95) are the pseudo-mask of the
    strong view, whose image is CutMixed with another unlabeled image of the batch (the
    pseudo-mask, confidences and padding map mixed alike). Loss = (sup + unsup) / 2 as in
    UniMatch's code. The mixing partner is a permutation of the batch rather than a second
    unlabeled batch: the same pairs at half the forward passes."""

    name = "fixmatch"
    paper = "Sohn et al. 2020, FixMatch (segmentation form of Yang et al. 2023)"
    Hyper = FixMatchHyper
    unlabeled_views = ("weak", "strong")

    def step(self, batch: Batch):
        n, (u_w, u_s) = len(batch.y), (batch.u["weak"], batch.u["strong"])
        b, _, h, w = u_s.shape
        logits = self.model(torch.cat([batch.x["weak"], u_w]))
        conf, target = self.pseudo_masks(logits[n:])
        valid = batch.u_mask != IGNORE
        box, perm = cutmix_boxes(b, h, w, u_s.device, self.hp.cutmix_p), torch.randperm(b, device=u_s.device)
        u_s, target, conf, valid = cutmix(box, perm, u_s, target, conf, valid)
        unsup = self.pseudo_loss(self.model(u_s), target, conf, valid, self.hp.threshold)
        return {"loss_sup": self.sup_loss(logits[:n], batch.y) / 2, "loss_unsup": self.hp.lambda_u * unsup / 2,
                "mask_rate": ((conf >= self.hp.threshold) & valid).float().mean()}
