"""Segmentation networks on any timm encoder: `--model unet:ENCODER` and
`--model deeplabv3plus:ENCODER` (ENCODER a timm architecture: resnet50, convnext_nano,
efficientnet_b0, ...). The encoder is timm's `features_only` network behind the network's
`InputNorm`; the decoders keep the `SegNet` interface (`encode` gives the feature list that
UniMatch perturbs; `encoder` is what --init / --pretrained load), as segmentation_models_pytorch's
Unet and DeepLabV3Plus do on their timm ("tu-") encoders."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import UserError, first_line
from .deeplab import DeepLabV3Plus
from .norm import InputNorm
from .unet import SegNet, SkipDecoding, double_conv


class TimmEncoder(nn.Module):
    """timm's feature pyramid of `name` (every stage, shallow to deep); `output_stride` 16 dilates
    the last stage where the architecture allows it (DeepLabV3+)."""

    def __init__(self, name: str, in_channels: int, output_stride: int | None = None):
        super().__init__()
        import timm

        kw = dict(features_only=True, pretrained=False, in_chans=in_channels)
        try:
            net = timm.create_model(name, **kw, **({"output_stride": output_stride} if output_stride else {}))
        except (TypeError, AssertionError, ValueError):  # no dilation in this architecture: stride 32
            net, output_stride = timm.create_model(name, **kw), None
        self.output_stride = output_stride  # what timm built it with (None: the architecture's own)
        self.arch = name
        self.input = InputNorm(in_channels)
        self.net = net
        self.channels = net.feature_info.channels()
        self.reductions = net.feature_info.reduction()
        self.pretrained_cfg = dict(net.pretrained_cfg)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.net(self.input(x))


class Up(nn.Module):
    """A decoder step: the deeper map resized to the skip's size (nearest, as smp's Unet),
    concatenated with the skip, a double conv to `o` channels."""

    def __init__(self, i: int, skip: int, o: int):
        super().__init__()
        self.conv = double_conv(i + skip, o)

    def forward(self, x, skip):
        return self.conv(torch.cat([F.interpolate(x, size=skip.shape[-2:], mode="nearest"), skip], 1))


class TimmUNet(SkipDecoding):
    """U-Net decoder on a timm pyramid: from the deepest stage up, each skip joined in turn, the
    decoder's channels those of the skip (at least 16); the head's map (at the shallowest
    stage's stride, 2 for ResNets) is resized to the image by `logits`."""

    def __init__(self, encoder: str, in_channels: int, num_classes: int):
        super().__init__()
        self.encoder = TimmEncoder(encoder, in_channels)
        ch = self.encoder.channels
        widths = [max(c, 16) for c in ch]
        self.decoder = nn.ModuleList([Up(widths[i + 1] if i + 1 < len(ch) - 1 else ch[-1], ch[i], widths[i])
                                      for i in reversed(range(len(ch) - 1))])
        self.decoder_channels = widths[0]
        self.head = nn.Conv2d(widths[0], num_classes, 1)


class TimmDeepLab(DeepLabV3Plus):
    """DeepLabV3+ on a timm encoder at output stride 16 where it dilates: ASPP on the deepest
    stage, the low-level features from the stage at stride 4 (the first at 4 or more)."""

    def __init__(self, encoder: str, in_channels: int, num_classes: int, width: int = 256):
        enc = TimmEncoder(encoder, in_channels, output_stride=16)
        low = next((i for i, r in enumerate(enc.reductions) if r >= 4), 0)
        super().__init__(in_channels, num_classes, width=width, encoder=enc,
                         channels=(enc.channels[low], enc.channels[-1]))
        self.low = low

    def encode(self, x):
        feats = self.encoder(x)
        return [feats[self.low], feats[-1]]


DECODERS = {"unet": TimmUNet, "deeplabv3plus": TimmDeepLab}


def build_timm_seg(decoder: str, encoder: str, shape: tuple[int, int, int], num_classes: int) -> SegNet:
    """`DECODER:ENCODER` for images of `shape`; one forward here turns what timm cannot build or
    run at that size into one line."""
    c, h, w = shape
    spelled = f"--model {decoder}:{encoder}"
    if decoder not in DECODERS:
        raise UserError(f"{spelled}: the decoder is one of {', '.join(DECODERS)} (e.g. unet:resnet18)")
    from .timm_net import is_timm_name

    if not is_timm_name(encoder):
        raise UserError(f"{spelled}: {encoder} is not a timm architecture (`semisup models` lists them)")
    try:
        model = DECODERS[decoder](encoder, c, num_classes)
        with torch.no_grad():
            model.eval()(torch.zeros(1, c, h, w))
        model.train()
    except Exception as e:  # noqa: BLE001 (timm raises AssertionError, RuntimeError, ValueError, ...)
        raise UserError(f"{spelled}: cannot build it for {w}x{h} images with {c} channels "
                        f"({first_line(e)[:160]}); choose a CNN encoder (resnet18, convnext_nano) or another "
                        "--image-size") from None
    return model
