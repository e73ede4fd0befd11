from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.func import functional_call

from ..models.gan import ConvDiscriminator, WNDiscriminator, build_generator
from ..models.norm import input_norm
from ..options import COUNT, WEIGHT
from .base import Batch, Hyper, Method, frozen_bn, option


@dataclass
class SGANHyper(Hyper):
    lambda_u: float = option(1.0, "weight of the real-versus-fake loss on unlabeled and generated images", check=WEIGHT)
    lambda_fm: float = option(1.0, "weight of the generator's feature-matching loss", check=WEIGHT)
    z_dim: int = option(100, "size of the generator's uniform noise input", check=COUNT)
    input_noise: float = option(0.25, "std of Gaussian noise on the discriminator's inputs, real and generated "
                                     "(in the network's normalised units), where it has no noise or dropout layers of its own",
                                     check=WEIGHT)


class SGAN(Method):
    """The semi-supervised GAN of Salimans et al. 2016 ("Improved techniques for training GANs",
    Sec. 5): the discriminator is a K-class classifier whose logits l imply a fake class with
    logit 0, so D(x) = Z / (Z + 1), Z = sum_k exp l_k. Its loss is cross-entropy on labeled
    images plus, for unlabeled real images u and generated images G(z),
      -E log D(u) - E log(1 - D(G(z))) = E[softplus(lse l(u)) - lse l(u)] + E[softplus(lse l(G(z)))]
    (each term halved, as in the authors' code). The generator is trained by feature matching
    (Sec. 3.1): || E f(u) - E f(G(z)) ||^2 with f the discriminator's last hidden layer, the
    discriminator held fixed for this term. Both networks share one Adam optimiser (lr 0.003,
    beta1 0.5, the paper's MNIST setting; `--momentum` is beta1; the rate schedule is the
    authors', `lr_factor`), batches of 100 labeled and
    100 unlabeled images. The discriminator (`model`) is the classifier that is evaluated and
    saved; by default it is the paper's MNIST MLP (Gaussian noise, weight norm) for gray images
    of 16 to 32 px, and otherwise the project's small BatchNorm CNN (`cnn` below 16 px,
    `cnn_small` above; `--model gan_cnn` is the paper's CIFAR-10 network at a third of its
    width, `gan_cnn96` at full width). Real and generated images pass through the
    discriminator separately and only real ones update BatchNorm's running statistics, and
    such a discriminator, which has no noise layers of its own, gets Gaussian instance noise
    (std 0.25) on all its inputs: without it the BatchNorm CNN wins the game outright on
    digits (D(real) 1.0, D(fake) 0.0) and its accuracy falls from 93.6% at step 100 to 89.7%.
    Measured (seed 0): on 3 CIFAR-10 classes, 20 labels each, 400 steps, `cnn_small` as the
    discriminator 72.6% without noise, 69.5% with 0.25, 65.6% with 0.5; `gan_cnn` 51.1%
    (lr 0.0003), WRN-28-2 65.8% (no noise); supervised `cnn_small` 65.1%. Samples of the
    generator go to samples.png (and samples/ per evaluation) in the run folder.
    Deviation: real images (labeled and unlabeled) enter as weak views (shifts), so the
    generator learns the shifted distribution; the paper fed them unaugmented."""

    name = "sgan"
    paper = "Salimans et al. 2016, Improved techniques for training GANs"
    Hyper = SGANHyper
    labeled_views = ("weak",)
    unlabeled_views = ("weak",)

    def __init__(self, model, num_classes, hp=None, num_unlabeled: int = 0, **kw):
        super().__init__(model, num_classes, hp, num_unlabeled, **kw)
        self.generator = build_generator(self.shape, self.hp.z_dim)
        g = torch.Generator().manual_seed(12345)
        self.register_buffer("fixed_z", torch.rand(num_classes * 10, self.hp.z_dim, generator=g))

    @classmethod
    def run_defaults_for(cls, given):
        return {"lr": 0.003, "momentum": 0.5, "weight_decay": 0.0, "batch_size": 100, "unlabeled_ratio": 1}

    @classmethod
    def default_model_for(cls, shape, cfg):
        c, h, w = shape
        if c == 1 and 16 <= min(h, w) and max(h, w) <= 32:
            return "mlp_gan"
        return "cnn" if min(h, w) < 16 else "cnn_small"

    schedule = "constant (the authors' MNIST); with gan_cnn/gan_cnn96, linear to 0 over the last third (their CIFAR-10)"

    def lr_factor(self, k: int, steps: int) -> float:
        """The authors' schedules (openai/improved-gan): constant for the MNIST setting that
        run defaults take (train_mnist_feature_matching.py, lr 0.003 for all 300 epochs); with
        their CIFAR-10 network (`gan_cnn`, `gan_cnn96`), their CIFAR-10 decay, constant for
        two thirds of the run and then linear to 0 (train_cifar_feature_matching.py,
        lr * min(3 - epoch / 400, 1) over 1,200 epochs)."""
        return min(3.0 - 3.0 * k / steps, 1.0) if isinstance(self.model, ConvDiscriminator) else 1.0

    def configure_optimizer(self, o):
        return torch.optim.Adam(self.parameters(), lr=o.lr, betas=(o.momentum, 0.999), weight_decay=o.weight_decay)

    def step(self, batch: Batch):
        n, u = len(batch.y), batch.u["weak"]
        nu = len(u)
        if not getattr(self, "_checked_init", False):  # data-dependent init on real images only
            if not bool(getattr(self.model, "initialised", True)):
                with torch.no_grad():
                    self.model(torch.cat([batch.x["weak"], u]))
            self._checked_init = True
        fake = self.generator(torch.rand(nu, self.hp.z_dim, device=u.device))
        if self.hp.input_noise > 0 and not isinstance(self.model, WNDiscriminator):  # instance noise
            s = self.hp.input_noise * input_norm(self.model).std  # in the units the network sees
            jitter = lambda t: t + s * torch.randn_like(t)  # noqa: E731
            batch = Batch({"weak": jitter(batch.x["weak"])}, batch.y, {"weak": jitter(u)})
            u, fake = batch.u["weak"], jitter(fake)
        real = torch.cat([batch.x["weak"], u])
        if isinstance(self.model, WNDiscriminator):  # no BatchNorm: one pass, as the authors' code
            feats = self.model.features(torch.cat([real, fake.detach()]))
        else:  # only real images move BatchNorm's running statistics (else eval uses fake-image ones)
            with frozen_bn(self.model):
                f_g = self.model.features(fake.detach())
            feats = torch.cat([self.model.features(real), f_g])
        # feature matching through a copy of the discriminator's weights that takes no gradient
        held = {k: v.detach() for k, v in self.model.features.named_parameters()}
        with frozen_bn(self.model):
            f_fake = functional_call(self.model.features, held, (fake,))
        logits = self.model.head(feats).float()
        lse_u = logits[n:n + nu].logsumexp(-1)
        lse_g = logits[n + nu:].logsumexp(-1)
        unsup = 0.5 * (F.softplus(lse_u) - lse_u).mean() + 0.5 * F.softplus(lse_g).mean()
        fm = ((feats[n:n + nu].detach().float().mean(0) - f_fake.float().mean(0)) ** 2).mean()
        with torch.no_grad():
            d_real = torch.sigmoid(lse_u).mean()  # D(u) = Z/(Z+1) = sigmoid(lse)
            d_fake = torch.sigmoid(lse_g).mean()
        return {"loss_sup": F.cross_entropy(logits[:n], batch.y), "loss_unsup": self.hp.lambda_u * unsup,
                "loss_gen": self.hp.lambda_fm * fm, "d_real": d_real, "d_fake": d_fake}

    @torch.no_grad()
    def samples(self):
        was = self.generator.training
        self.generator.eval()
        x = self.generator(self.fixed_z)
        self.generator.train(was)
        return x
