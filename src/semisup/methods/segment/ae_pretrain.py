from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...errors import UserError
from ...models.norm import input_norm
from ...options import SHARE, WEIGHT, Interval
from ..base import Batch, Hyper, option
from .base import SegMethod


@dataclass
class AEPretrainHyper(Hyper):
    pretrain_steps: int = option(500, "steps of autoencoder training before fine-tuning (counted in --steps)",
                                 check=Interval(int, 0))
    noise: float = option(0.5, "std of the Gaussian noise added to the (normalised) input images", check=WEIGHT)
    mask_ratio: float = option(0.25, "share of 4x4-pixel patches blanked in the input images", check=SHARE)


class AEPretrain(SegMethod):
    """Autoencoder pretraining, then fine-tuning: for the first `--pretrain-steps` the
    segmentation network's encoder and decoder, with a 1x1 reconstruction head in place of the
    classifier, learn to reconstruct all training images, labeled and unlabeled, from copies
    with Gaussian noise and blanked patches (a denoising autoencoder, Vincent et al. 2008; the
    patch masking of context encoders, Pathak et al. 2016), squared error on the clean image;
    then the whole network is fine-tuned on the labeled masks with cross-entropy. Both phases
    count in --steps, so a comparison at equal steps gives it fewer supervised steps. The EMA of
    the evaluated network restarts when fine-tuning starts (with the default EMA of 0.999, 500
    fine-tuning steps left 61% of the average on the pretraining weights, whose classifier is
    untrained)."""

    name = "ae_pretrain"
    paper = "Vincent et al. 2008, denoising autoencoders (pretraining), then supervised fine-tuning"
    Hyper = AEPretrainHyper
    unlabeled_views = ("weak",)

    def __init__(self, model, num_classes, hp=None, num_unlabeled: int = 0, **kw):
        super().__init__(model, num_classes, hp, num_unlabeled, **kw)
        self.recon = nn.Conv2d(model.decoder_channels, self.shape[0], 1)

    @classmethod
    def check(cls, cfg):
        if cfg["pretrain_steps"] >= cfg["steps"]:
            raise UserError(f"--pretrain-steps {cfg['pretrain_steps']}: must be at least 0 and below --steps "
                            f"({cfg['steps']}); both phases count in --steps")

    def phase_starts(self, steps):
        return (self.hp.pretrain_steps,)

    def step(self, batch: Batch):
        if batch.step >= self.hp.pretrain_steps:
            # the reconstruction head takes no part: a zero-weight term keeps DDP's gradient set fixed
            idle = sum(p.sum() for p in self.recon.parameters()) * 0.0
            return {"loss_sup": self.sup_loss(self.model(batch.x["weak"]), batch.y) + idle}
        x = torch.cat([batch.x["weak"], batch.u["weak"]])
        b, _, h, w = x.shape
        keep = F.interpolate((torch.rand(b, 1, (h + 3) // 4, (w + 3) // 4, device=x.device)
                              >= self.hp.mask_ratio).float(), scale_factor=4)[..., :h, :w]
        m = self.model
        norm = input_norm(m)  # noise, blanks (at the mean) and the target in the network's normalised units
        clean = norm(x)
        noisy = (clean + self.hp.noise * torch.randn_like(x)) * keep
        out = F.interpolate(self.recon(m.decode(m.encode(noisy * norm.std + norm.mean))), (h, w), mode="bilinear",
                            align_corners=False)
        idle = sum(p.sum() for p in m.head.parameters()) * 0.0
        return {"loss_recon": F.mse_loss(out.float(), clean) + idle}
