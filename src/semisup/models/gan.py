"""The networks of the semi-supervised GAN (Salimans et al. 2016, "Improved techniques for
training GANs", MNIST setup of their code): a weight-normalised MLP discriminator with Gaussian
noise before every layer, whose K outputs are the classifier, and an MLP generator with
BatchNorm and softplus; a DCGAN-style generator (their CIFAR-10 one) for larger images."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.parametrizations import weight_norm

from .norm import InputNorm


class GaussianNoise(nn.Module):
    def __init__(self, std: float):
        super().__init__()
        self.std = std

    def forward(self, x):
        return x + self.std * torch.randn_like(x) if self.training and self.std > 0 else x


class WNDiscriminator(nn.Module):
    """A discriminator/classifier of weight-normalised layers in two Sequentials, `features` and
    `head`, with the data-dependent initialisation of Salimans & Kingma 2016 on the first
    training batch (zero-mean, unit-variance pre-activations per unit or channel), which the
    noise and dropout scales of the Improved-GAN networks assume. As in the authors' code only
    the output layer trains its scale, so the hidden layers cannot outgrow their noise."""

    def __init__(self, features: list[nn.Module], head: list[nn.Module], feature_dim: int):
        super().__init__()
        self.features, self.head, self.feature_dim = nn.Sequential(*features), nn.Sequential(*head), feature_dim
        for layer in self.features:
            if hasattr(layer, "parametrizations"):
                layer.parametrizations.weight.original0.requires_grad_(False)
        self.register_buffer("initialised", torch.tensor(False))

    @torch.no_grad()
    def _data_init(self, x):
        for layer in [*self.features, *self.head]:
            if hasattr(layer, "parametrizations"):
                g = layer.parametrizations.weight.original0
                g.fill_(1.0)
                nn.init.zeros_(layer.bias)
                t = layer(x)
                dims = [0, 2, 3] if t.ndim == 4 else [0]
                mean, std = t.mean(dims), t.std(dims) + 1e-6
                if torch.distributed.is_available() and torch.distributed.is_initialized():
                    for v in (mean, std):  # the same initial weights on every process
                        torch.distributed.all_reduce(v)
                        v /= torch.distributed.get_world_size()
                g.copy_((1.0 / std).view_as(g))
                layer.bias.copy_(-mean / std)
            x = layer(x)
        self.initialised.fill_(True)

    def forward(self, x):
        if self.training and not self.initialised:
            self._data_init(x)
        return self.head(self.features(x))


class MLPDiscriminator(WNDiscriminator):
    """784-1000-500-250-250-250-K with ReLU, weight norm, Gaussian noise on the input and 0.5 on
    every hidden layer (Salimans et al. 2016, MNIST). The input noise is 1.0 because the input is
    normalised to unit std: the paper's 0.3 on [0, 1] pixels, MNIST's pixel std being 0.31.
    Works on any image size (the input is flattened)."""

    def __init__(self, in_features: int, num_classes: int, channels: int = 1, hidden=(1000, 500, 250, 250, 250),
                 noise_in: float = 1.0, noise_hidden: float = 0.5):
        layers: list[nn.Module] = [InputNorm(channels), nn.Flatten(), GaussianNoise(noise_in)]
        i = in_features
        for j, o in enumerate(hidden):
            if j:
                layers.append(GaussianNoise(noise_hidden))
            layers += [weight_norm(nn.Linear(i, o)), nn.ReLU()]
            i = o
        super().__init__(layers, [GaussianNoise(noise_hidden), weight_norm(nn.Linear(i, num_classes))], i)


class _PadToValid(nn.Module):
    """Pads maps smaller than 3x3 so the 'valid' 3x3 convolution works on tiny images."""

    def forward(self, x):
        return F.pad(x, (1, 1, 1, 1)) if min(x.shape[-2:]) < 3 else x


class ConvDiscriminator(WNDiscriminator):
    """The Improved-GAN CIFAR-10 discriminator (Salimans et al. 2016, code): dropout 0.2 on the
    input, 3x3 convolutions w, w, w stride 2, dropout 0.5, 2w, 2w, 2w stride 2, dropout 0.5,
    3x3 valid 2w, two 1x1 2w, global average pooling, linear; LeakyReLU 0.2, weight norm.
    The paper's widths are w = 96; the default here is w = 32 (`gan_cnn`), which a CPU trains in
    minutes; `gan_cnn96` is the paper's. Built for Adam (sgan's optimiser): under the SGD of
    the other methods it diverges at their lr 0.03 (`supervised` on digits: NaN within 100 steps)
    and trains at 0.003 (87-91%, 300 steps)."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 32):
        w, w2 = width, 2 * width
        conv = lambda i, o, k=3, s=1, p=1: [weight_norm(nn.Conv2d(i, o, k, s, p)), nn.LeakyReLU(0.2)]  # noqa: E731
        layers = [InputNorm(in_channels), nn.Dropout(0.2), *conv(in_channels, w), *conv(w, w), *conv(w, w, s=2), nn.Dropout(0.5),
                  *conv(w, w2), *conv(w2, w2), *conv(w2, w2, s=2), nn.Dropout(0.5),
                  _PadToValid(), *conv(w2, w2, p=0), *conv(w2, w2, 1, p=0), *conv(w2, w2, 1, p=0),
                  nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        super().__init__(layers, [weight_norm(nn.Linear(w2, num_classes))], w2)


class MLPGenerator(nn.Module):
    """z (uniform, 100) -> 500 -> 500 -> C*H*W, softplus and BatchNorm on the hidden layers,
    a weight-normalised sigmoid output in [0, 1] (Salimans et al. 2016, MNIST)."""

    def __init__(self, shape: tuple[int, int, int], z_dim: int = 100, hidden: int = 500):
        super().__init__()
        self.shape, self.z_dim = tuple(shape), z_dim
        self.net = nn.Sequential(
            nn.Linear(z_dim, hidden), nn.BatchNorm1d(hidden), nn.Softplus(),
            nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.Softplus(),
            weight_norm(nn.Linear(hidden, math.prod(shape))), nn.Sigmoid())

    def forward(self, z):
        return self.net(z).view(-1, *self.shape)


class ConvGenerator(nn.Module):
    """z -> 4x4x512 -> three stride-2 5x5 transposed convolutions (256, 128, C) with BatchNorm
    and ReLU, sigmoid output (Salimans et al. 2016, CIFAR-10, with sigmoid for [0, 1] pixels);
    the 32x32 output is resized to the data's size when it differs."""

    def __init__(self, shape: tuple[int, int, int], z_dim: int = 100):
        super().__init__()
        self.shape, self.z_dim = tuple(shape), z_dim
        up = lambda i, o: [nn.ConvTranspose2d(i, o, 5, 2, 2, output_padding=1, bias=False),  # noqa: E731
                           nn.BatchNorm2d(o), nn.ReLU()]
        self.fc = nn.Sequential(nn.Linear(z_dim, 4 * 4 * 512, bias=False), nn.BatchNorm1d(4 * 4 * 512), nn.ReLU())
        self.net = nn.Sequential(*up(512, 256), *up(256, 128),
                                 weight_norm(nn.ConvTranspose2d(128, shape[0], 5, 2, 2, output_padding=1)),
                                 nn.Sigmoid())

    def forward(self, z):
        x = self.net(self.fc(z).view(-1, 512, 4, 4))
        if x.shape[-2:] != self.shape[1:]:
            x = nn.functional.interpolate(x, size=self.shape[1:], mode="bilinear", align_corners=False)
        return x


def build_generator(shape: tuple[int, int, int], z_dim: int = 100) -> nn.Module:
    """The MLP generator for small images (up to 32x32 single-channel), the convolutional one
    otherwise."""
    c, h, w = shape
    return MLPGenerator(shape, z_dim) if c * h * w <= 1024 else ConvGenerator(shape, z_dim)
