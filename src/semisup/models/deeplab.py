"""DeepLabV3+ (Chen et al. 2018, "Encoder-decoder with atrous separable convolution for
semantic image segmentation") on a ResNet (He et al. 2016, "Deep residual learning for image
recognition"). The ResNet's module and parameter names are torchvision's, so a torchvision
`resnet18` / `resnet50` state dict (less `fc`) loads into `encoder` unchanged."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .norm import InputNorm
from .unet import SegNet


def _bn_relu(conv: nn.Conv2d) -> nn.Sequential:
    return nn.Sequential(conv, nn.BatchNorm2d(conv.out_channels), nn.ReLU(inplace=True))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions (ResNet-18/34), dilated in an atrous stage."""
    expansion = 1

    def __init__(self, i: int, o: int, stride: int = 1, dilation: int = 1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(i, o, 3, stride, dilation, dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(o)
        self.conv2 = nn.Conv2d(o, o, 3, 1, dilation, dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(o)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        return self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))) + idt)


class Bottleneck(nn.Module):
    """1x1, 3x3 (strided or dilated, as torchvision's "ResNet v1.5"), 1x1 x4 (ResNet-50/101)."""
    expansion = 4

    def __init__(self, i: int, o: int, stride: int = 1, dilation: int = 1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(i, o, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(o)
        self.conv2 = nn.Conv2d(o, o, 3, stride, dilation, dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(o)
        self.conv3 = nn.Conv2d(o, 4 * o, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(4 * o)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + idt)


class ResNet(nn.Module):
    """torchvision's ResNet without `avgpool`/`fc`, with `replace_stride_with_dilation =
    (False, False, True)`: layer4 keeps layer3's resolution and dilates by 2 instead (output
    stride 16). Returns layer1 (stride 4) and layer4 (stride 16)."""

    def __init__(self, block, layers, in_channels: int = 3):
        super().__init__()
        self.inplanes, self.dilation = 64, 1
        self.input = InputNorm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2, dilate=True)
        self.channels = (64 * block.expansion, 512 * block.expansion)
        self._init_convs()

    def _init_convs(self) -> None:
        """torchvision's initialisation: Kaiming-normal (fan-out) convolutions; BatchNorm at 1, 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def reset_parameters(self) -> None:
        """Fresh weights as the constructor draws them."""
        for m in self.modules():
            if m is not self and hasattr(m, "reset_parameters"):
                m.reset_parameters()
        self._init_convs()

    def _make_layer(self, block, planes: int, blocks: int, stride: int = 1, dilate: bool = False):
        previous = self.dilation
        if dilate:
            self.dilation, stride = self.dilation * stride, 1
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                                       nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, previous, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, dilation=self.dilation) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        c1 = self.layer1(self.maxpool(self.relu(self.bn1(self.conv1(self.input(x))))))
        return [c1, self.layer4(self.layer3(self.layer2(c1)))]


RESNETS = {18: (BasicBlock, (2, 2, 2, 2)), 34: (BasicBlock, (3, 4, 6, 3)),
           50: (Bottleneck, (3, 4, 6, 3)), 101: (Bottleneck, (3, 4, 23, 3))}


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling (Chen et al. 2017, DeepLabV3, Sec. 3.3): a 1x1 conv, three
    3x3 convs with rates 6, 12, 18, and image pooling (global average, 1x1 conv, upsampled),
    concatenated and projected by a 1x1 conv; BatchNorm and ReLU after each. Plain, not
    separable, convolutions, as DeepLabV3+ is used with ResNets (torchvision, UniMatch)."""

    def __init__(self, i: int, o: int, rates=(6, 12, 18)):
        super().__init__()
        self.branches = nn.ModuleList([_bn_relu(nn.Conv2d(i, o, 1, bias=False))] + [
            _bn_relu(nn.Conv2d(i, o, 3, padding=r, dilation=r, bias=False)) for r in rates])
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), _bn_relu(nn.Conv2d(i, o, 1, bias=False)))
        self.project = _bn_relu(nn.Conv2d(o * (len(rates) + 2), o, 1, bias=False))

    def forward(self, x):
        pooled = self.pool(x).expand(-1, -1, *x.shape[-2:])  # bilinear upsampling of a 1x1 map
        return self.project(torch.cat([b(x) for b in self.branches] + [pooled], 1))


class DeepLabV3Plus(SegNet):
    """DeepLabV3+ (Chen et al. 2018, Sec. 3.1 and Fig. 2): ResNet encoder at output stride 16,
    ASPP on layer4, upsampled x4 (to layer1's size) and concatenated with layer1's features
    projected to 48 channels, two 3x3 convs (`width` channels), the 1x1 classifier; the logits
    are upsampled x4 to the image. `encode` gives [layer1, layer4]. Another `encoder` (a timm
    pyramid, `timm_seg`) comes with its low- and high-level `channels`."""

    def __init__(self, in_channels: int, num_classes: int, depth: int = 18, width: int = 256,
                 encoder: nn.Module | None = None, channels: tuple[int, int] | None = None):
        super().__init__()
        self.encoder = encoder if encoder is not None else ResNet(*RESNETS[depth], in_channels)
        low, high = channels or self.encoder.channels
        self.aspp = ASPP(high, width)
        self.reduce = _bn_relu(nn.Conv2d(low, 48, 1, bias=False))
        self.fuse = nn.Sequential(_bn_relu(nn.Conv2d(width + 48, width, 3, padding=1, bias=False)),
                                  _bn_relu(nn.Conv2d(width, width, 3, padding=1, bias=False)))
        self.decoder_channels = width
        self.head = nn.Conv2d(width, num_classes, 1)

    def encode(self, x):
        return self.encoder(x)

    def decode(self, feats):
        low, high = feats[0], feats[-1]
        high = F.interpolate(self.aspp(high), size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.fuse(torch.cat([self.reduce(low), high], 1))
