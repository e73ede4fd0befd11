import torch.nn as nn

from .norm import InputNorm


def _block(i: int, o: int) -> list[nn.Module]:
    return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.LeakyReLU(0.1)]


class SmallCNN(nn.Module):
    """Five 3x3 conv layers in three stages (w, 2w, 4w channels) with BatchNorm and
    LeakyReLU, global average pooling, a linear head. For 8x8 to 28x28 images."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 32):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            InputNorm(in_channels), *_block(in_channels, w), *_block(w, w), nn.MaxPool2d(2),
            *_block(w, 2 * w), *_block(2 * w, 2 * w), nn.MaxPool2d(2),
            *_block(2 * w, 4 * w), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(4 * w, num_classes)
        self.feature_dim = 4 * w

    def forward(self, x):
        return self.head(self.features(x))
