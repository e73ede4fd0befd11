import torch.nn.functional as F

from .base import Batch, Method


class Supervised(Method):
    """The labeled-only baseline: cross-entropy on the weak view of the labeled batch, with the
    same steps, batch, optimiser and EMA as the semi-supervised methods."""

    name = "supervised"
    paper = "baseline: labeled images only"

    def step(self, batch: Batch):
        return {"loss_sup": F.cross_entropy(self.model(batch.x["weak"]), batch.y)}
