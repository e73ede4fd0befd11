"""What the generation methods share: the Method contract with a class-conditional generator
beside the classifier (`model`, which the trainer evaluates and saves as in classification).
`generate(y, z)` gives images in [0, 1]; `samples()` a grid of one row per class from fixed
noise, which the trainer writes to the run folder at each evaluation."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ...models.cgan import CondGenerator
from ..base import Method


class GenMethod(Method):
    task = "generate"
    z_dim = 128
    per_class_grid = 10  # columns of the grid saved at each evaluation

    def __init__(self, model, num_classes, hp=None, num_unlabeled: int = 0, **kw):
        super().__init__(model, num_classes, hp, num_unlabeled, **kw)
        self.z_dim = getattr(self.hp, "z_dim", self.z_dim)
        g = torch.Generator().manual_seed(12345)
        self.register_buffer("fixed_z", torch.randn(num_classes * self.per_class_grid, self.z_dim, generator=g))

    def configure_optimizer(self, o):
        """Adam for every network, as the generative papers train: `--momentum` is beta1; beta2 is
        0.9 where beta1 is 0 (SNGAN's (0, 0.9)) and 0.999 otherwise."""
        return torch.optim.Adam(self.parameters(), lr=o.lr, betas=(o.momentum, 0.999 if o.momentum > 0 else 0.9),
                                weight_decay=o.weight_decay)

    schedule = "constant (DCGAN's Adam; Kingma et al. 2014)"

    def lr_factor(self, k: int, steps: int) -> float:
        """A constant rate, as the references of these methods train: DCGAN's Adam at 2e-4
        (Radford et al. 2016, whose optimiser the GAN methods take) and Kingma et al. 2014's AdaM
        at 3e-4 (dpkingma/nips14-ssl, learn_yz_x_ss.py `optim_vae_ss_adam`, adam.py: alpha never
        changes). SNGAN's projection code decays linearly to 0 (pfnet-research/sngan_projection,
        train.py `LinearShift`, configs/sn_cifar10.yml iteration_decay_start 0); not taken."""
        return 1.0

    def noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(n, self.z_dim, generator=generator, device=self.fixed_z.device if generator is None
                           else generator.device)

    def decode(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] of classes `y` from noise `z` (the generator in train/eval mode as set)."""
        raise NotImplementedError

    @torch.no_grad()
    def generate(self, y: torch.Tensor, z: torch.Tensor | None = None, batch: int = 500) -> torch.Tensor:
        """Images of classes `y` in [0, 1], the generator in eval mode, in chunks."""
        was = self.training
        self.eval()
        z = self.noise(len(y)) if z is None else z
        out = torch.cat([self.decode(z[i:i + batch], y[i:i + batch]) for i in range(0, len(y), batch)]) \
            if len(y) else torch.zeros(0, *self.shape)
        self.train(was)
        return out

    def samples(self):
        y = torch.arange(self.num_classes, device=self.fixed_z.device).repeat_interleave(self.per_class_grid)
        return self.generate(y, self.fixed_z)

    def one_hot(self, y: torch.Tensor) -> torch.Tensor:
        return F.one_hot(y, self.num_classes).float()


class CondGANMethod(GenMethod):
    """The GAN methods: a class-conditional generator (`g_width` hyperparameter), real images
    unaugmented for the discriminator and weakly augmented for the classifier, Adam at 2e-4 with
    beta1 0.5 (DCGAN's, Radford et al. 2016, for one discriminator step per generator step),
    128 real images a step (32 labeled, 96 unlabeled)."""

    labeled_views = ("none", "weak")
    unlabeled_views = ("none", "weak")

    @classmethod
    def run_defaults_for(cls, given):
        return {"lr": 2e-4, "momentum": 0.5, "weight_decay": 0.0, "batch_size": 32, "unlabeled_ratio": 3, "ema": 0.99}

    def __init__(self, model, num_classes, hp=None, num_unlabeled: int = 0, **kw):
        super().__init__(model, num_classes, hp, num_unlabeled, **kw)
        self.generator = CondGenerator(self.shape, num_classes, self.z_dim, self.hp.g_width)

    def decode(self, z, y):
        return self.generator(z, y)
