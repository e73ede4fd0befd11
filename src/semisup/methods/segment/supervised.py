from dataclasses import dataclass

from ...options import WEIGHT
from ..base import Batch, Hyper, option
from .base import SegMethod


@dataclass
class SupervisedHyper(Hyper):
    dice: float = option(0.0, "weight of a soft Dice loss beside cross-entropy (0: cross-entropy only)", check=WEIGHT)


class Supervised(SegMethod):
    """The labeled-only baseline: per-pixel cross-entropy (ignored pixels excluded) on the weak
    view of the labeled masks, optionally plus a soft Dice term, with the same steps, batch,
    optimiser and EMA as the semi-supervised methods."""

    name = "supervised"
    paper = "baseline: labeled masks only"
    Hyper = SupervisedHyper

    def step(self, batch: Batch):
        return {"loss_sup": self.sup_loss(self.model(batch.x["weak"]), batch.y, self.hp.dice)}
