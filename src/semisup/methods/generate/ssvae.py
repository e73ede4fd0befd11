from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ...errors import UserError
from ...models.cgan import MLP, M1M2Classifier
from ...options import BOOL, COUNT, SHARE, WEIGHT
from ..base import Batch, Hyper, gather_batch, option
from .base import GenMethod


@dataclass
class SSVAEHyper(Hyper):
    z_dim: int = option(50, "size of M2's latent z (style)", check=COUNT)
    hidden: int = option(500, "hidden units of M2's encoder q(z|x,y) and decoder p(x|y,z)", check=COUNT)
    alpha: float = option(0.1, "weight of the labeled cross-entropy: the paper's alpha = 0.1 N over N images "
                               "(1 with --stack-m1)", check=WEIGHT)
    stack_m1: bool = option(False, "M1+M2: M2 models the latent z1 of a first VAE (M1), trained first on all images "
                                   "(its defaults: --alpha 1 --lr 0.001 --unlabeled-ratio 3)", check=BOOL)
    m1_share: float = option(0.5, "with --stack-m1, the share of the steps that trains M1 before M2 starts",
                             check=SHARE)


def gaussian_nll(x, mean, logvar, keep):
    """-log N(x; mean, exp(logvar)) summed over the dimensions where `keep` is 1."""
    return (0.5 * (((x - mean) ** 2) / logvar.exp() + logvar + math.log(2 * math.pi)) * keep).sum(1)


class SSVAE(GenMethod):
    """The semi-supervised VAE of Kingma et al. 2014 ("Semi-supervised learning with deep
    generative models"). M2 (Sec. 3.1.2): a decoder p(x|y,z), an encoder q(z|x,y) (diagonal
    Gaussian) and a classifier q(y|x) (`model`). A labeled image costs the negative bound
    L(x,y) = -E_q[log p(x|y,z)] + KL(q(z|x,y) || N(0, I)) - log p(y) (Eq. 6); an unlabeled one
    U(x) = sum_y q(y|x) L(x,y) - H(q(y|x)) (Eq. 7, every class in one batch); the objective is
    J^alpha = sum_l L + sum_u U + alpha sum_l -log q(y|x) (Eq. 9, alpha = 0.1 N). As in the
    authors' code (learn_yz_x_ss.py: the labeled log q(y|x) weighted by 0.1 N_tot / N_l, the
    total divided by N_tot), a step estimates J^alpha / N: the labeled bound weighs N_l / N, the
    unlabeled one N_u / N, the mean labeled cross-entropy `alpha`. Adam lr 3e-4, beta1 0.9 (the
    authors' AdaM settings), one hidden layer of 500 softplus units, z of 50, Bernoulli pixels.
    `--stack-m1` (M1+M2, Sec. 3.2): the first `m1_share` of the steps train M1, a VAE on the
    pixels (two hidden layers of 500, z1 of 50, as the authors' MNIST model), then M2 models
    samples of q(z1|x) with a Gaussian p(z1|y,z) and classifies z1 with an MLP; M1 stays fixed,
    and as in the authors' code only the z1 units whose mean varies over a batch (std > 0.1) are
    kept (the others are noise from the prior: 20.0% error without this, 6,000 steps).
    Deviation (M2 alone): q(y|x) is the project's CNN (by image size, as in classification) on
    weak views (shifts), not the paper's MLP; the bound is on the unaugmented pixels.
    Samples: the decoder's mean image for z ~ N(0, I) (M1+M2: M2's mean z1 through M1's decoder)."""

    name = "ssvae"
    paper = "Kingma et al. 2014, Semi-supervised learning with deep generative models (M2, M1+M2)"
    Hyper = SSVAEHyper
    labeled_views = ("weak", "none")
    unlabeled_views = ("weak", "none")

    @classmethod
    def run_defaults_for(cls, given):
        """The authors' Adam settings; with --stack-m1, M1+M2's own, for budgets of thousands of
        steps rather than the paper's 3,000 epochs (MNIST, 100 labels, 16,000 steps:
        docs/benchmarks.md)."""
        paper = {"lr": 3e-4, "momentum": 0.9, "weight_decay": 0.0, "batch_size": 64, "unlabeled_ratio": 1}
        return {**paper, "alpha": 1.0, "lr": 1e-3, "unlabeled_ratio": 3} if given.get("stack_m1") else paper

    def __init__(self, model, num_classes, hp=None, num_unlabeled: int = 0, **kw):
        super().__init__(model, num_classes, hp, num_unlabeled, **kw)
        d, h, k, z = math.prod(self.shape), self.hp.hidden, num_classes, self.hp.z_dim
        if self.hp.stack_m1 != isinstance(model, M1M2Classifier):
            raise UserError("--stack-m1 goes with the model m1m2 (M1's encoder and an MLP) and only with it; "
                            "leave --model out")
        if self.hp.stack_m1:
            z1 = model.z1_dim
            self.m1_decoder = MLP([z1, 500, 500, d])
            self.register_buffer("m1_done", torch.tensor(False))
            d = z1  # M2 models z1, with a Gaussian likelihood (mean and log-variance)
        self.encoder = MLP([d + k, h, 2 * z])
        self.decoder = MLP([z + k, h, 2 * d if self.hp.stack_m1 else d])

    @classmethod
    def default_model_for(cls, shape, cfg):
        return "m1m2" if cfg.get("stack_m1") else None

    def decode(self, z, y):
        out = self.decoder(torch.cat([z, self.one_hot(y)], 1))
        if self.hp.stack_m1:
            out = self.m1_decoder(out.chunk(2, 1)[0])
        return torch.sigmoid(out).view(-1, *self.shape)

    def bound(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """M2's -ELBO(x, y) per example, in nats: reconstruction + KL - log p(y) (uniform prior)."""
        oh = self.one_hot(y)
        mu, logvar = self.encoder(torch.cat([x, oh], 1)).float().chunk(2, 1)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        out = self.decoder(torch.cat([z, oh], 1)).float()
        if self.hp.stack_m1:
            rec = gaussian_nll(x, *out.chunk(2, 1), self.model.active)
        else:
            rec = F.binary_cross_entropy_with_logits(out, x, reduction="none").sum(1)
        kl = 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).sum(1)
        return rec + kl + math.log(self.num_classes)

    def m1_loss(self, batch: Batch) -> torch.Tensor:
        """M1's -ELBO on every image of the step (Bernoulli pixels)."""
        x = torch.cat([batch.x["none"], batch.u["none"]])
        mu, logvar = self.model.encode(x)
        z1 = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        rec = F.binary_cross_entropy_with_logits(self.m1_decoder(z1).float(), x.flatten(1),
                                                 reduction="none").sum(1)
        return (rec + 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).sum(1)).mean()

    def step(self, batch: Batch):
        n, k = len(batch.y), self.num_classes
        if self.hp.stack_m1:
            if batch.progress < self.hp.m1_share:
                return {"loss_m1": self.m1_loss(batch)}
            with torch.no_grad():  # M1 fixed: M2's data are samples of q(z1|x) in its active units
                mu, logvar = self.model.encode(torch.cat([batch.x["none"], batch.u["none"]]))
                if not getattr(self, "_m1_checked", False):  # one host read per process
                    self._m1_checked = True
                    if not bool(self.m1_done):  # the authors keep the units whose mean varies (std > 0.1)
                        self.model.active.copy_(gather_batch(mu.float())[0].std(0) > 0.1)
                        self.m1_done.fill_(True)
                feats = (mu + torch.randn_like(mu) * (0.5 * logvar).exp()) * self.model.active
            logits = self.model.head(feats).float()
            xl, xu = feats[:n], feats[n:]
        else:
            logits = self.model(torch.cat([batch.x["weak"], batch.u["weak"]])).float()
            xl, xu = batch.x["none"].flatten(1), batch.u["none"].flatten(1)
        q = logits[n:].softmax(1)
        ys = torch.arange(k, device=xu.device).repeat(len(xu))
        bounds = self.bound(xu.repeat_interleave(k, 0), ys).view(len(xu), k)
        u = (q * bounds).sum(1) + (q * logits[n:].log_softmax(1)).sum(1)
        nl, nu = max(self.num_labeled, 1), max(self.num_unlabeled, 1)
        return {"loss_labeled": nl / (nl + nu) * self.bound(xl, batch.y).mean(),
                "loss_unlabeled": nu / (nl + nu) * u.mean(),
                "loss_cls": self.hp.alpha * F.cross_entropy(logits[:n], batch.y),
                "pseudo_label": q.argmax(1).detach(), "mask": torch.ones_like(q[:, 0])}
