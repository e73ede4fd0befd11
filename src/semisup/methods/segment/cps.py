import copy
from dataclasses import dataclass

import torch

from ...data.segviews import cutmix, cutmix_boxes
from ...metrics import IGNORE
from ...options import SHARE, WEIGHT
from ..base import Batch, Hyper, option, sigmoid_rampup
from .base import SegMethod


@dataclass
class CPSHyper(Hyper):
    lambda_u: float = option(1.5, "weight of the cross pseudo supervision loss (CPS with CutMix: 1.5)", check=WEIGHT)
    cutmix_p: float = option(1.0, "probability that an unlabeled image gets a CutMix box (CPS: always)", check=SHARE)
    warmup: float = option(0.4, "share of the run over which the weight ramps up (sigmoid, as SSL4MIS's CPS)",
                           check=SHARE)


class CPS(SegMethod):
    """Cross pseudo supervision (Chen et al. 2021, Eq. 2-4, with CutMix): two networks of the
    same architecture, initialised differently, each supervised on the labeled masks; on
    unlabeled images each network's hard pseudo-mask (argmax) supervises the other. With
    CutMix, as in the paper's code, the pseudo-masks of a mixed image are the two networks'
    predictions on the unmixed images, mixed with the same box. `model` (evaluated, saved)
    is the first network; the second is `peer`. The weight ramps up (sigmoid) over the first 40%
    of the run, as in SSL4MIS's CPS for networks trained from scratch: the paper starts from
    ImageNet weights, and from random ones the early argmax masks pull both networks to one
    class (supervised loss at chance after 60 steps on shapes without the ramp).

    The peer is the network's own initialisation drawn with the seed + 1; with `--init` both
    networks' encoders hold the loaded weights and only the rest (decoder, head) differs, as in
    the paper's code (TorchSemiSeg: two branches on one pretrained backbone, each decoder drawn
    anew; it draws them Kaiming-normal fan-in, here by the network's own initialisation, the
    one the first network's decoder has)."""

    name = "cps"
    paper = "Chen et al. 2021, Semi-supervised semantic segmentation with cross pseudo supervision"
    Hyper = CPSHyper
    unlabeled_views = ("weak",)

    def __init__(self, model, num_classes, hp=None, num_unlabeled: int = 0, **kw):
        super().__init__(model, num_classes, hp, num_unlabeled, **kw)
        self.peer = copy.deepcopy(model)
        with torch.random.fork_rng(devices=[]):  # other draws of the same initialisation
            torch.manual_seed(torch.initial_seed() + 1)
            self.peer.reinitialize(encoder=model.encoder_source is None)

    def step(self, batch: Batch):
        n, u = len(batch.y), batch.u["weak"]
        b, _, h, w = u.shape
        valid = batch.u_outside != IGNORE
        box, perm = cutmix_boxes(b, h, w, u.device, self.hp.cutmix_p), torch.randperm(b, device=u.device)
        with torch.no_grad():
            t1, t2 = self.model(u).argmax(1), self.peer(u).argmax(1)
        u_mix, t1, t2, valid = cutmix(box, perm, u, t1, t2, valid)
        x = torch.cat([batch.x["weak"], u_mix])
        l1, l2 = self.model(x), self.peer(x)
        cps = self.pseudo_loss(l1[n:], t2, valid, valid) + self.pseudo_loss(l2[n:], t1, valid, valid)
        return {"loss_sup": self.sup_loss(l1[:n], batch.y) + self.sup_loss(l2[:n], batch.y),
                "loss_cps": self.hp.lambda_u * sigmoid_rampup(batch.progress, self.hp.warmup) * cps}
