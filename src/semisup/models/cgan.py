"""Networks of the class-conditional generators: a DCGAN-style generator with class-conditional
BatchNorm, a projection discriminator with spectral norm and a classification head (Miyato &
Koyama 2018, "cGANs with projection discriminator"; Miyato et al. 2018, "Spectral normalization
for GANs", their standard CNN at half width), and the MLPs of the semi-supervised VAE (Kingma et
al. 2014). Generators return pixels in [0, 1]."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.parametrizations import spectral_norm

from .norm import InputNorm


class CondBatchNorm(nn.Module):
    """BatchNorm without its own affine; a gain and bias per class (de Vries et al. 2017)."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.gain = nn.Embedding(num_classes, channels)
        self.bias = nn.Embedding(num_classes, channels)
        nn.init.ones_(self.gain.weight)
        nn.init.zeros_(self.bias.weight)

    def forward(self, x, y):
        return self.bn(x) * self.gain(y)[:, :, None, None] + self.bias(y)[:, :, None, None]


class CondGenerator(nn.Module):
    """z ~ N(0, I) and a class -> a (4w, H/4, W/4) map -> two nearest-neighbour 2x upsamplings,
    each a 3x3 convolution, class-conditional BatchNorm and ReLU (4w -> 2w -> w) -> a 3x3
    convolution to the image channels, sigmoid (DCGAN's shape, Radford et al. 2016, with the
    conditional BatchNorm of Miyato & Koyama 2018). Any image size (the map is cropped to
    H x W). w = 32: 29 M multiply-adds per 28x28 image."""

    def __init__(self, shape: tuple[int, int, int], num_classes: int, z_dim: int = 128, width: int = 32):
        super().__init__()
        c, h, w = self.shape = tuple(shape)
        self.z_dim, self.s = z_dim, (math.ceil(h / 4), math.ceil(w / 4))
        self.fc = nn.Linear(z_dim, 4 * width * self.s[0] * self.s[1])
        self.bns = nn.ModuleList([CondBatchNorm(4 * width, num_classes), CondBatchNorm(2 * width, num_classes),
                                  CondBatchNorm(width, num_classes)])
        self.convs = nn.ModuleList([nn.Conv2d(4 * width, 2 * width, 3, 1, 1), nn.Conv2d(2 * width, width, 3, 1, 1)])
        self.out = nn.Conv2d(width, c, 3, 1, 1)

    def forward(self, z, y):
        x = F.relu(self.bns[0](self.fc(z).view(len(z), -1, *self.s), y))
        for conv, bn in zip(self.convs, self.bns[1:]):
            x = F.relu(bn(conv(F.interpolate(x, scale_factor=2.0, mode="nearest")), y))
        return torch.sigmoid(self.out(x))[:, :, :self.shape[1], :self.shape[2]]


class ProjDiscriminator(nn.Module):
    """Spectrally normalised convolutions (3x3 w, 4x4/2 w, 3x3 2w, 4x4/2 2w, 3x3 4w; LeakyReLU
    0.1), global sum pooling to the feature h; the critic is psi(h) + <embed(y), h> (projection),
    and `head` (no spectral norm) gives class logits from h: `forward` is the classifier, so the
    discriminator is what is evaluated and saved as the run's classifier (S3GAN's head,
    Lucic et al. 2019)."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 32):
        super().__init__()
        w = width
        conv = lambda i, o, k, s: [spectral_norm(nn.Conv2d(i, o, k, s, (k - 1) // 2 if k == 3 else 1)),  # noqa: E731
                                   nn.LeakyReLU(0.1)]
        self.convs = nn.Sequential(InputNorm(in_channels), *conv(in_channels, w, 3, 1), *conv(w, w, 4, 2), *conv(w, 2 * w, 3, 1),
                                   *conv(2 * w, 2 * w, 4, 2), *conv(2 * w, 4 * w, 3, 1))
        self.feature_dim = 4 * w
        self.psi = spectral_norm(nn.Linear(4 * w, 1))
        self.embed = spectral_norm(nn.Embedding(num_classes, 4 * w))
        self.head = nn.Linear(4 * w, num_classes)

    def features(self, x):
        """h: the convolutions' output summed over the positions (SNGAN's global sum pooling)."""
        return self.convs(x).sum((2, 3))

    def critic(self, h, y=None, known=None):
        """psi(h) + <embed(y), h>; rows where `known` is False get psi(h) alone (unconditional)."""
        out = self.psi(h).squeeze(1)
        if y is None:
            return out
        proj = (self.embed(y) * h).sum(1)
        return out + (proj if known is None else proj * known)

    def critic_all(self, h):
        """The critic for every class at once: (N, K)."""
        return self.psi(h) + h @ self.embed.weight.t()

    def forward(self, x, y=None, with_logits: bool = False):
        """Class logits of the head; with `y`, the critic of (x, y) instead (and the logits,
        `with_logits`)."""
        h = self.features(x)
        if y is None:
            return self.head(h)
        return (self.critic(h, y), self.head(h)) if with_logits else self.critic(h, y)


class MLP(nn.Sequential):
    """Linear layers with softplus between them (the M2 networks: one hidden layer of 500)."""

    def __init__(self, sizes: list[int]):
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(nn.Softplus())
        super().__init__(*layers)


class M1M2Classifier(nn.Module):
    """q(y|x) of M1+M2 (Kingma et al. 2014, Sec. 3.2): the mean of M1's Gaussian encoder
    q(z1|x) (two hidden layers of 500 softplus units, z1 of 50, as the authors' released MNIST
    model), then M2's classifier q(y|z1) (one hidden layer of 500)."""

    def __init__(self, in_features: int, num_classes: int, channels: int = 1, z1_dim: int = 50, hidden_m1: int = 500,
                 hidden: int = 500):
        super().__init__()
        self.input = InputNorm(channels)
        self.z1_dim = self.feature_dim = z1_dim
        self.encoder = MLP([in_features, hidden_m1, hidden_m1, 2 * z1_dim])
        self.head = MLP([z1_dim, hidden, num_classes])
        # True for the latent units M1 uses, False for the inactive ones (set once M1 is trained);
        # bool, so the EMA copies it rather than averaging it
        self.register_buffer("active", torch.ones(z1_dim, dtype=torch.bool))

    def encode(self, x):
        """Mean and log-variance of q(z1|x)."""
        return self.encoder(self.input(x).flatten(1)).chunk(2, 1)

    def features(self, x):
        return self.encode(x)[0] * self.active

    def forward(self, x):
        return self.head(self.features(x))
