"""CNN-13 ("ConvLarge"): the 13-layer network of the Pi-model/temporal ensembling (Laine & Aila
2017, Table 5), Mean Teacher (Tarvainen & Valpola 2017) and the semi-supervised GAN papers:
3x(3x3 conv 128), max-pool, dropout 0.5, 3x(3x3 conv 256), max-pool, dropout 0.5, 3x3 conv
512 (valid), 1x1 conv 256, 1x1 conv 128, global average pooling, linear. BatchNorm and
LeakyReLU 0.1 after every convolution, as in Mean Teacher's ConvLarge. Input noise (std 0.15
in Laine & Aila) is left out: the views already perturb the input."""
import torch.nn as nn
import torch.nn.functional as F

from .norm import InputNorm


def _conv(i: int, o: int, k: int = 3, pad: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(i, o, k, padding=pad, bias=False), nn.BatchNorm2d(o), nn.LeakyReLU(0.1)]


class _Valid(nn.Module):
    """The 3x3 'valid' convolution; maps smaller than 3x3 (8x8 inputs) are padded first."""

    def __init__(self, i: int, o: int):
        super().__init__()
        self.body = nn.Sequential(*_conv(i, o, 3, 0))

    def forward(self, x):
        if min(x.shape[-2:]) < 3:
            x = F.pad(x, (1, 1, 1, 1))
        return self.body(x)


class CNN13(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.5):
        super().__init__()
        self.features = nn.Sequential(
            InputNorm(in_channels), *_conv(in_channels, 128), *_conv(128, 128), *_conv(128, 128),
            nn.MaxPool2d(2), nn.Dropout(dropout),
            *_conv(128, 256), *_conv(256, 256), *_conv(256, 256),
            nn.MaxPool2d(2), nn.Dropout(dropout),
            _Valid(256, 512), *_conv(512, 256, 1, 0), *_conv(256, 128, 1, 0),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(128, num_classes)
        self.feature_dim = 128

    def forward(self, x):
        return self.head(self.features(x))
