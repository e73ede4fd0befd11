"""U-Net (Ronneberger et al. 2015, "U-Net: Convolutional networks for biomedical image
segmentation", Fig. 1), and `SegNet`, the interface every segmentation network keeps."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .norm import InputNorm


class SegNet(nn.Module):
    """A segmentation network split the way the methods use it: `encoder` (the part
    `--init` loads), `encode(x)` -> the encoder features the decoder reads, shallow to deep;
    `decode(feats)` -> a (B, decoder_channels, h, w) map; `head`, a 1x1 conv to the classes;
    `logits(feats, size)` resizes the head's output to `size`. UniMatch perturbs the list from
    `encode` before `logits`; an autoencoder puts its own head on `decode`."""

    decoder_channels: int
    encoder_source: str | None = None  # the file `--init` loaded into `encoder` (models.load_encoder)

    def reinitialize(self, encoder: bool = True) -> None:
        """Fresh weights from the global RNG by the network's own initialisation (the one its
        constructor gives): for every part, or (encoder=False) for all but `encoder`. A part with
        its own `reset_parameters` (each layer; the ResNet) resets itself, the rest part by part."""
        def reset(module: nn.Module) -> None:
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
            else:
                for child in module.children():
                    reset(child)

        for name, child in self.named_children():
            if encoder or name != "encoder":
                reset(child)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError

    def decode(self, feats: list[torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def logits(self, feats: list[torch.Tensor], size) -> torch.Tensor:
        out = self.head(self.decode(feats))
        if tuple(out.shape[-2:]) != tuple(size):
            out = F.interpolate(out, size=tuple(size), mode="bilinear", align_corners=False)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(self.encode(x), x.shape[-2:])


def double_conv(i: int, o: int) -> nn.Sequential:
    """Two (3x3 conv, BatchNorm, ReLU): the paper's unit, with the 'same' padding and the
    BatchNorm that U-Nets use today (the paper's convolutions are unpadded, without it)."""
    return nn.Sequential(nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True),
                         nn.Conv2d(o, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True))


class UNetEncoder(nn.Module):
    """The contracting path: a double conv at full resolution (w channels), then four times
    2x2 max pooling and a double conv that doubles the channels (2w, 4w, 8w, 16w). Pooling
    rounds up (`ceil_mode`), so any size works, down to 1x1 at the bottom."""

    def __init__(self, in_channels: int, width: int):
        super().__init__()
        ch = [width * 2 ** i for i in range(5)]
        self.stages = nn.ModuleList([double_conv(in_channels, ch[0])] + [
            nn.Sequential(nn.MaxPool2d(2, ceil_mode=True), double_conv(ch[i], ch[i + 1])) for i in range(4)])
        self.channels = ch
        self.input = InputNorm(in_channels)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        x = self.input(x)
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


class Up(nn.Module):
    """The expansive step: a 2x2 stride-2 transposed convolution halving the channels, cropped
    to the skip's size (pooling rounded up, so it is never smaller), concatenated with the
    skip, a double conv."""

    def __init__(self, i: int, o: int):
        super().__init__()
        self.up = nn.ConvTranspose2d(i, o, 2, stride=2)
        self.conv = double_conv(2 * o, o)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        h, w = skip.shape[-2:]
        return self.conv(torch.cat([skip, self.up(x)[..., :h, :w]], 1))


class SkipDecoding(SegNet):
    """The U-Net's decoding: `encoder` gives the stages' maps shallow to deep, and `decoder`
    (one step per skip, deepest first) joins each skip in turn to the map from below."""

    def encode(self, x):
        return self.encoder(x)

    def decode(self, feats):
        x = feats[-1]
        for up, skip in zip(self.decoder, reversed(feats[:-1])):
            x = up(x, skip)
        return x


class UNet(SkipDecoding):
    """U-Net with widths w, 2w, 4w, 8w, 16w (the paper's w is 64; `unet` is w = 16, 16x
    less compute, for CPUs). `encode` gives the five stages' maps (full resolution to 1/16);
    the decoder ends at full resolution with w channels."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 16):
        super().__init__()
        self.encoder = UNetEncoder(in_channels, width)
        ch = self.encoder.channels
        self.decoder = nn.ModuleList([Up(ch[i + 1], ch[i]) for i in reversed(range(4))])
        self.decoder_channels = width
        self.head = nn.Conv2d(width, num_classes, 1)
