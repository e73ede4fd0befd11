from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..engine.ema import EMA
from ..options import DECAY, SHARE, WEIGHT
from .base import Batch, Hyper, Method, option, sigmoid_rampup


@dataclass
class MeanTeacherHyper(Hyper):
    lambda_u: float = option(50.0, "largest weight of the consistency loss (USB's default)", check=WEIGHT)
    warmup: float = option(0.4, "share of the run over which the weight ramps up (sigmoid)", check=SHARE)
    teacher_ema: float = option(0.999, "EMA decay of the teacher's weights (alpha)", check=DECAY)


class MeanTeacher(Method):
    """Mean Teacher (Tarvainen & Valpola 2017): the teacher is an exponential moving average of
    the student's weights (Eq. 1: theta'_t = alpha theta'_{t-1} + (1 - alpha) theta_t); the
    student's class probabilities on one weak view are pulled to the teacher's on another by
    the squared error averaged over classes and images (USB's `consistency_loss(..., 'mse')`),
    with a sigmoid ramp-up. The teacher is a submodule, so checkpoints carry it. It is the
    trainer's EMA class, updated at the start of each step from the weights the previous step
    produced. Defaults are USB's classic-CV config (`meanteacher_cifar10_*.yaml`: weight 50, one
    unlabeled image per labeled one, EMA 0.999, ramp over 40% of the run); the paper ramps the
    weight with exp(-5 (1 - t)^2) as here (USB: linearly)."""

    name = "mean_teacher"
    paper = "Tarvainen & Valpola 2017, Mean teachers are better role models"
    Hyper = MeanTeacherHyper
    unlabeled_views = ("weak", "weak2")

    @classmethod
    def run_defaults_for(cls, given):
        return {"unlabeled_ratio": 1}

    def __init__(self, model, num_classes, hp=None, num_unlabeled: int = 0, **kw):
        super().__init__(model, num_classes, hp, num_unlabeled, **kw)
        self.teacher = EMA(model, self.hp.teacher_ema)  # the trainer's EMA, warm-up included

    def step(self, batch: Batch):
        self.teacher.update(self.model)
        n = len(batch.y)
        self.teacher.train(self.training)
        with torch.no_grad():
            target = self.teacher(batch.u["weak"]).float().softmax(-1)
        logits = self.model(torch.cat([batch.x["weak"], batch.u["weak2"]]))
        unsup = F.mse_loss(logits[n:].float().softmax(-1), target)  # mean over images and classes
        w = self.hp.lambda_u * sigmoid_rampup(batch.progress, self.hp.warmup)
        return {"loss_sup": F.cross_entropy(logits[:n], batch.y), "loss_unsup": w * unsup}
