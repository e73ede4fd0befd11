from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..models.norm import input_norm
from ..options import COUNT, POSITIVE, SHARE, WEIGHT
from .base import Batch, Hyper, Method, frozen_bn, linear_ramp, option


@dataclass
class VATHyper(Hyper):
    lambda_u: float = option(0.3, "weight of the VAT loss (USB's default)", check=WEIGHT)
    vat_eps: float = option(6.0, "L2 norm of the adversarial perturbation of a 32x32x3 image, in normalised pixel "
                                 "units (epsilon); scaled by sqrt(C*H*W / 3072) for other sizes", check=POSITIVE)
    vat_xi: float = option(1e-6, "size of the probe for the power iteration (xi)", check=POSITIVE)
    vat_iters: int = option(1, "power iterations for the adversarial direction", check=COUNT)
    lambda_ent: float = option(0.06, "weight of entropy minimisation on unlabeled predictions (VAT+EntMin)",
                               check=WEIGHT)
    warmup: float = option(0.4, "share of the run over which lambda_u ramps up linearly", check=SHARE)


def _unit(d: torch.Tensor) -> torch.Tensor:
    """Each image's d scaled to L2 norm 1, whatever its size: divided by its largest |value|
    first, as Miyato et al.'s `get_normalized_vector`, since the power iteration's gradients
    are tiny (norm about 1e-12 at xi = 1e-6) and a fixed epsilon in the denominator would
    shrink them. A zero d stays zero."""
    dims = tuple(range(1, d.ndim))
    d = d / d.abs().amax(dims, keepdim=True).clamp_min(1e-30)
    return d / d.square().sum(dims, keepdim=True).sqrt().clamp_min(1e-30)


def _kl(target_logits: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """KL(p_target || p), batch mean."""
    return F.kl_div(logits.float().log_softmax(-1), target_logits.float().log_softmax(-1),
                    reduction="batchmean", log_target=True)


class VAT(Method):
    """Virtual adversarial training (Miyato et al. 2018, Eq. 7-13): the perturbation r_adv of
    norm eps that most changes the prediction, found by power iteration from a random probe
    of size xi (Eq. 12-13: r_adv = eps g/||g||, g the gradient of KL(p(x) || p(x + xi d)) in d),
    and the local distributional smoothness loss KL(p(x) || p(x + r_adv)) on unlabeled images
    (Eq. 10), plus entropy minimisation (Sec. 3.3, "VAT+EntMin"). Defaults from USB (lambda 0.3,
    eps 6, xi 1e-6, entropy weight 0.06, linear ramp over 40% of the run, one unlabeled image per
    labeled one). As in USB's `vat.py`, the labeled batch has its own forward; the unlabeled
    forward that gives the clean target and every probe use the unlabeled batch's statistics
    and leave the BatchNorm running statistics alone, so the KL is 0 at d = 0. The probes run in
    float32 (xi = 1e-6 is below bfloat16's resolution). eps is USB's 6 for a 32x32x3 image,
    scaled by sqrt(C*H*W / 3072) so that it is the same per pixel (0.108 in normalised units) at
    every image size: 3.0 on 28x28 MNIST, 0.87 on the 8x8 digits. The gradient of the probe is
    tiny (norm about 1e-12) and is scaled to norm 1 through its largest value first (`_unit`,
    as Miyato et al.'s `get_normalized_vector`; USB divides by the norm + 1e-16): a norm +
    1e-8 leaves r_adv at about 1e-4 of eps, and on MNIST-100 (4,000 steps, seeds 0-2) the full
    perturbation scores 97.97, 96.91, 98.23 against 97.35, 96.24, 97.88 for the shrunk one
    (docs/benchmarks.md). In float32 a probe of
    1e-6 is lost on some images (x + d == x), whose gradient is then 0 and r_adv 0, as in USB."""

    name = "vat"
    paper = "Miyato et al. 2018, Virtual adversarial training: a regularization method for supervised and semi-supervised learning"
    Hyper = VATHyper
    unlabeled_views = ("weak",)

    @classmethod
    def run_defaults_for(cls, given):
        return {"unlabeled_ratio": 1}

    def eps(self) -> float:
        c, h, w = self.shape
        return self.hp.vat_eps * (c * h * w / 3072) ** 0.5

    def adversarial(self, u: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """r_adv for the images u whose clean logits are `target`, by power iteration in float32."""
        u = u.float()
        s = input_norm(self.model).std  # d lives in the network's normalised units, as in USB
        d = torch.randn_like(u)
        with torch.autocast(u.device.type, enabled=False):
            for _ in range(self.hp.vat_iters):
                d = (self.hp.vat_xi * _unit(d)).requires_grad_()
                dist = _kl(target, self.model(u + d * s))
                d = torch.autograd.grad(dist, d)[0].detach()
        return self.eps() * _unit(d) * s

    def step(self, batch: Batch):
        u = batch.u["weak"]
        lx = self.model(batch.x["weak"])
        with frozen_bn(self.model):
            lu = self.model(u)
            target = lu.detach()
            adv = self.model(u + self.adversarial(u, target).to(u.dtype))
        vat = _kl(target, adv)
        p = lu.float().softmax(-1)
        ent = -(p * lu.float().log_softmax(-1)).sum(-1).mean()
        w = self.hp.lambda_u * linear_ramp(batch.progress, self.hp.warmup)
        return {"loss_sup": F.cross_entropy(lx, batch.y), "loss_vat": w * vat,
                "loss_ent": self.hp.lambda_ent * ent}
