import torch.nn as nn
import torch.nn.functional as F

from .norm import InputNorm


def _block(i: int, o: int) -> list[nn.Module]:
    return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.LeakyReLU(0.1)]


class SpaceToDepth(nn.Module):
    """Each 2x2 block of pixels as 4 channels at half the resolution (`nn.PixelUnshuffle(2)`),
    an odd side padded by one zero row or column first: the network reads every pixel at a
    quarter of the positions."""

    def forward(self, x):
        x = F.pad(x, (0, x.shape[-1] % 2, 0, x.shape[-2] % 2))
        return F.pixel_unshuffle(x, 2)


class SmallCNN(nn.Module):
    """Five 3x3 conv layers in three stages (w, 2w, 4w channels) with BatchNorm and
    LeakyReLU, global average pooling, a linear head. For 8x8 to 28x28 images. `space_to_depth`
    starts it at half the resolution with 4x the input channels (`SpaceToDepth`): about a
    quarter of the arithmetic, every pixel still seen."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 32, space_to_depth: bool = False):
        super().__init__()
        w = width
        stem = [SpaceToDepth()] if space_to_depth else []
        c = in_channels * 4 if space_to_depth else in_channels
        self.features = nn.Sequential(
            InputNorm(in_channels), *stem, *_block(c, w), *_block(w, w), nn.MaxPool2d(2),
            *_block(w, 2 * w), *_block(2 * w, 2 * w), nn.MaxPool2d(2),
            *_block(2 * w, 4 * w), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(4 * w, num_classes)
        self.feature_dim = 4 * w

    def forward(self, x):
        return self.head(self.features(x))
