from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ...models.cgan import MLP
from ..base import Batch, Hyper, option
from .base import GenMethod


@dataclass
class SSVAEHyper(Hyper):
    z_dim: int = option(50, "size of the latent z (style)")
    hidden: int = option(500, "hidden units of the encoder q(z|x,y) and the decoder p(x|y,z)")
    alpha: float = option(0.1, "the classification loss weighs alpha * N (N: training images), the paper's 0.1 N")


class SSVAE(GenMethod):
    """The semi-supervised VAE M2 of Kingma et al. 2014 ("Semi-supervised learning with deep
    generative models", Sec. 3.1.2): a decoder p(x|y,z) (Bernoulli pixels), an encoder q(z|x,y)
    (diagonal Gaussian) and a classifier q(y|x) (`model`). A labeled image costs the negative
    bound L(x,y) = -E_q[log p(x|y,z)] + KL(q(z|x,y) || N(0, I)) - log p(y) (Eq. 6); an unlabeled
    one U(x) = sum_y q(y|x) L(x,y) - H(q(y|x)) (Eq. 7, every class evaluated in one batch); the
    objective J^alpha = sum_l [L + alpha (-log q(y|x))] + sum_u U with alpha = 0.1 N (Eq. 9).
    Each step estimates J^alpha / N from one labeled and one unlabeled batch, so the labeled
    bound weighs N_l / N, the unlabeled one N_u / N and the cross-entropy 0.1 N_l. Adam, lr
    3e-4 (the paper: RMSProp or AdaGrad at 3e-4), one hidden layer of 500 softplus units, z of
    50. Deviation: q(y|x) is the project's CNN (by image size, as in classification) on weak
    views (shifts), not the paper's MLP on raw pixels; the bound is on the unaugmented pixels.
    Samples: the decoder's mean image for z ~ N(0, I)."""

    name = "ssvae"
    paper = "Kingma et al. 2014, Semi-supervised learning with deep generative models (M2)"
    Hyper = SSVAEHyper
    labeled_views = ("weak", "none")
    unlabeled_views = ("weak", "none")
    run_defaults = {"lr": 3e-4, "momentum": 0.9, "weight_decay": 0.0, "batch_size": 64, "unlabeled_ratio": 1}

    def __init__(self, model, num_classes, hp=None, num_unlabeled: int = 0, **kw):
        super().__init__(model, num_classes, hp, num_unlabeled, **kw)
        d, h, k, z = math.prod(self.shape), self.hp.hidden, num_classes, self.hp.z_dim
        self.encoder = MLP([d + k, h, 2 * z])
        self.decoder = MLP([z + k, h, d])

    def decode(self, z, y):
        return torch.sigmoid(self.decoder(torch.cat([z, self.one_hot(y)], 1))).view(-1, *self.shape)

    def bound(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """-ELBO(x, y) per image, in nats: reconstruction + KL - log p(y) (uniform prior)."""
        oh = self.one_hot(y)
        mu, logvar = self.encoder(torch.cat([x.flatten(1), oh], 1)).float().chunk(2, 1)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        logits = self.decoder(torch.cat([z, oh], 1)).float()
        rec = F.binary_cross_entropy_with_logits(logits, x.flatten(1), reduction="none").sum(1)
        kl = 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).sum(1)
        return rec + kl + math.log(self.num_classes)

    def step(self, batch: Batch):
        n, k = len(batch.y), self.num_classes
        xl, xu = self.to_pixels(batch.x["none"]), self.to_pixels(batch.u["none"])
        logits = self.model(torch.cat([batch.x["weak"], batch.u["weak"]])).float()
        q = logits[n:].softmax(1)
        ys = torch.arange(k, device=xu.device).repeat(len(xu))
        bounds = self.bound(xu.repeat_interleave(k, 0), ys).view(len(xu), k)
        u = (q * bounds).sum(1) + (q * logits[n:].log_softmax(1)).sum(1)
        nl, nu = max(self.num_labeled, 1), max(self.num_unlabeled, 1)
        total = nl + nu
        return {"loss_labeled": nl / total * self.bound(xl, batch.y).mean(), "loss_unlabeled": nu / total * u.mean(),
                "loss_cls": self.hp.alpha * F.cross_entropy(logits[:n], batch.y),
                "pseudo_label": q.argmax(1).detach(), "mask": torch.ones_like(q[:, 0])}
