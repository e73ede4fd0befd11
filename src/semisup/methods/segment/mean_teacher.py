from dataclasses import dataclass

import torch

from ...engine.ema import EMA
from ...metrics import IGNORE
from ...options import DECAY, SHARE, WEIGHT
from ..base import Batch, Hyper, option, sigmoid_rampup
from .base import SegMethod


@dataclass
class MeanTeacherHyper(Hyper):
    lambda_u: float = option(1.0, "largest weight of the consistency loss (SSL4MIS: 0.1; see the class note)",
                             check=WEIGHT)
    warmup: float = option(0.4, "share of the run over which the weight ramps up (sigmoid)", check=SHARE)
    teacher_ema: float = option(0.99, "EMA decay of the teacher's weights (SSL4MIS: 0.99)", check=DECAY)


class MeanTeacher(SegMethod):
    """Mean Teacher for segmentation (Tarvainen & Valpola 2017; the SSL4MIS form of Luo et al.):
    the teacher is an EMA of the student (alpha 0.99); per-pixel squared error between the
    student's class probabilities on the strong (colour-perturbed) view and the teacher's on
    the weak view of the same crop, outside the padding, with a sigmoid ramp-up of the weight
    (1.0 here, SSL4MIS's 0.1 being too weak from scratch at these budgets: shapes, 20 labels, 1,000
    steps, mIoU 0.252 supervised, 0.271 at 0.1, 0.285 at 1.0; two-class cells, 20 labels, Dice
    0.537, 0.587, 0.634). The teacher is the engine's EMA class and a submodule, so checkpoints
    carry it."""

    name = "mean_teacher"
    paper = "Tarvainen & Valpola 2017, Mean teachers are better role models"
    Hyper = MeanTeacherHyper
    unlabeled_views = ("weak", "strong")

    def __init__(self, model, num_classes, hp=None, num_unlabeled: int = 0, **kw):
        super().__init__(model, num_classes, hp, num_unlabeled, **kw)
        self.teacher = EMA(model, self.hp.teacher_ema)

    def step(self, batch: Batch):
        self.teacher.update(self.model)
        self.teacher.train(self.training)
        with torch.no_grad():
            target = self.teacher(batch.u["weak"]).float().softmax(1)
        # two forwards: labeled images sharing BatchNorm's batch statistics with colour-jittered,
        # grayscale and blurred ones cost supervised learning more than the consistency gives
        # (two-class cells, 20 labels, consistency weight 0: Dice 0.40 with one forward, 0.56 with two)
        lx, lu = self.model(batch.x["weak"]), self.model(batch.u["strong"])
        valid = (batch.u_outside != IGNORE).unsqueeze(1)
        sq = (lu.float().softmax(1) - target) ** 2 * valid
        unsup = sq.sum() / valid.sum().clamp_min(1) / self.num_classes
        w = self.hp.lambda_u * sigmoid_rampup(batch.progress, self.hp.warmup)
        return {"loss_sup": self.sup_loss(lx, batch.y), "loss_unsup": w * unsup}
