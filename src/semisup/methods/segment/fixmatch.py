from dataclasses import dataclass

import torch

from ...data.segviews import cutmix, cutmix_boxes
from ...metrics import IGNORE
from ...options import BOOL, DECAY, SHARE, WEIGHT
from ..base import Batch, Hyper, option
from .base import SegMethod


@dataclass
class FixMatchHyper(Hyper):
    threshold: float = option(0.95, "confidence a pixel's pseudo-label needs (UniMatch's FixMatch: 0.95)", check=SHARE)
    lambda_u: float = option(1.0, "weight of the unlabeled loss", check=WEIGHT)
    cutmix_p: float = option(0.5, "probability that an unlabeled image gets a CutMix box", check=SHARE)
    classwise: bool = option(True, "class-wise thresholds: the threshold x the class's EMA confidence / the "
                                   "highest class's (false: one threshold for every class, as the paper)", check=BOOL)
    class_momentum: float = option(0.99, "EMA momentum of the per-class confidence (FreeMatch: 0.999)", check=DECAY)


class FixMatch(SegMethod):
    """FixMatch for segmentation (Sohn et al. 2020, as UniMatch's baseline `fixmatch.py`, Yang et
    al. 2023, Sec. 3.1): the weak view's confident pixels (>= 0.95) are the pseudo-mask of the
    strong view, whose image is CutMixed with another unlabeled image of the batch (the
    pseudo-mask, confidences and padding map mixed alike). Loss = (sup + unsup) / 2 as in
    UniMatch's code. The mixing partner is a permutation of the batch rather than a second
    unlabeled batch: the same pairs at half the forward passes.

    One deviation, on by default (`--classwise false` gives the paper's one threshold): class-wise
    thresholds (SegMethod.confident: 0.95 for the class the network is surest of, lower in
    proportion to its confidence for the others, after FreeMatch and AEL), so that the minority
    class is not left out of the pseudo-masks. On the two-class cells of bench/cells.py (20
    labels, 1,000 steps, seed 0) test Dice 0.754 with one threshold, 0.811 class-wise (supervised
    0.689); with one threshold Dice stayed below supervised up to step 625 (0.43 against 0.65 at
    step 375), class-wise it is above from step 375. Shapes (50 labels, seed 0): test mIoU 0.382 with one
    threshold, 0.490 class-wise, 0.429 supervised; squares still below supervised there (IoU 0.151
    against 0.220; docs/benchmarks.md)."""

    name = "fixmatch"
    paper = "Sohn et al. 2020, FixMatch (segmentation form of Yang et al. 2023)"
    Hyper = FixMatchHyper
    unlabeled_views = ("weak", "strong")

    def __init__(self, model, num_classes, hp=None, num_unlabeled: int = 0, **kw):
        super().__init__(model, num_classes, hp, num_unlabeled, **kw)
        self.init_class_conf()

    def step(self, batch: Batch):
        n, (u_w, u_s) = len(batch.y), (batch.u["weak"], batch.u["strong"])
        b, _, h, w = u_s.shape
        logits = self.model(torch.cat([batch.x["weak"], u_w]))
        conf, target = self.pseudo_masks(logits[n:])
        valid = batch.u_outside != IGNORE
        keep, logs = self.confident(conf, target, valid)
        box, perm = cutmix_boxes(b, h, w, u_s.device, self.hp.cutmix_p), torch.randperm(b, device=u_s.device)
        u_s, target, keep, valid = cutmix(box, perm, u_s, target, keep, valid)
        unsup = self.pseudo_loss(self.model(u_s), target, keep, valid)
        return {"loss_sup": self.sup_loss(logits[:n], batch.y) / 2, "loss_unsup": self.hp.lambda_u * unsup / 2,
                **logs}
