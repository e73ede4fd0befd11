from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.func import functional_call

from ...models.cgan import ProjDiscriminator
from ..base import Batch, Hyper, option
from .base import CondGANMethod


@dataclass
class TripleGANHyper(Hyper):
    alpha: float = option(0.5, "share of the fake pairs that come from the classifier (the rest from the generator)")
    alpha_p: float = option(0.1, "weight of the classifier's cross-entropy on generated images (R_P)")
    pseudo_start: float = option(0.5, "share of the run after which R_P starts (the generator must be good first)")
    z_dim: int = option(128, "size of the generator's Gaussian noise")
    g_width: int = option(32, "channels of the generator's last hidden layer (2x and 4x that before it)")


class TripleGAN(CondGANMethod):
    """Triple-GAN (Li et al. 2017, "Triple generative adversarial nets"): a generator p_g(x|y),
    a classifier p_c(y|x) (`model`, evaluated and saved) and a discriminator D(x, y) on pairs.
    Real pairs are the labeled images with their labels; fake pairs are (x_u, y ~ p_c(y|x_u))
    with weight alpha and (G(z, y), y) with weight 1 - alpha (Eq. 2). The classifier is trained
    with cross-entropy on labeled images (R_L), the adversarial term alpha E_u sum_y p_c(y|x)
    log(1 - D(x, y)) (all K classes scored at once by the projection critic, held fixed), and
    from `pseudo_start` on alpha_p times cross-entropy on generated pairs (R_P, Eq. 5). Paper
    defaults: alpha 1/2, alpha_p 0.1. Deviations: the discriminator is the projection
    discriminator with spectral norm shared with `cgan_pseudo` (the paper concatenates y), and
    the classifier trains on weak views (shifts) of real images; the discriminator sees real
    images unaugmented. Non-saturating losses as in the paper; all three networks update
    together from one step's gradients, Adam lr 2e-4, beta1 0.5."""

    name = "triple_gan"
    paper = "Li et al. 2017, Triple generative adversarial nets"
    Hyper = TripleGANHyper

    def __init__(self, model, num_classes, hp=None, num_unlabeled: int = 0, **kw):
        super().__init__(model, num_classes, hp, num_unlabeled, **kw)
        self.discriminator = ProjDiscriminator(self.shape[0], num_classes)

    def step(self, batch: Batch):
        d, a = self.discriminator, self.hp.alpha
        n, nu = len(batch.y), len(batch.u["none"])
        logits = self.model(torch.cat([batch.x["weak"], batch.u["weak"]])).float()
        p_u = logits[n:].softmax(1)
        y_c = torch.multinomial(p_u.detach(), 1).squeeze(1)
        y_g = torch.randint(self.num_classes, (nu,), device=p_u.device)
        fake = self.from_pixels(self.generator(self.noise(nu), y_g))
        h = d.features(torch.cat([batch.x["none"], batch.u["none"], fake.detach()]))
        h_l, h_u, h_g = h[:n], h[n:n + nu], h[n + nu:]
        # D: labeled pairs real; classifier pairs (weight alpha) and generator pairs (1 - alpha) fake
        loss_d = F.softplus(-d.critic(h_l, batch.y)).mean() + a * F.softplus(d.critic(h_u, y_c)).mean() \
            + (1 - a) * F.softplus(d.critic(h_g, y_g)).mean()
        # C: alpha sum_y p_c(y|x) log(1 - D(x, y)) with D held fixed, every class at once
        critic_u = d.critic_all(h_u.detach()).detach().float()
        loss_adv_c = a * (p_u * -F.softplus(critic_u)).sum(1).mean()
        # G: non-saturating, through D's weights held fixed
        held = {k: v.detach() for k, v in d.named_parameters()}
        loss_g = (1 - a) * F.softplus(-functional_call(d, held, (fake, y_g))).mean()
        out = {"loss_d": loss_d, "loss_g": loss_g, "loss_cls": F.cross_entropy(logits[:n], batch.y),
               "loss_adv_c": loss_adv_c, "pseudo_label": p_u.argmax(1).detach(), "mask": torch.ones_like(p_u[:, 0])}
        if batch.progress >= self.hp.pseudo_start and self.hp.alpha_p > 0:
            out["loss_pseudo"] = self.hp.alpha_p * F.cross_entropy(self.model(fake.detach()).float(), y_g)
        return out
