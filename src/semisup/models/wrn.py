"""Wide ResNet (Zagoruyko & Komodakis 2016) as used by FixMatch and USB: WRN-28-2, BatchNorm
momentum 0.001, LeakyReLU 0.1, pre-activation blocks."""
import torch.nn as nn
import torch.nn.functional as F

from .norm import InputNorm


class _Block(nn.Module):
    def __init__(self, i: int, o: int, stride: int, activate_before_residual: bool = False):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(i, momentum=0.001)
        self.conv1 = nn.Conv2d(i, o, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(o, momentum=0.001)
        self.conv2 = nn.Conv2d(o, o, 3, 1, 1, bias=False)
        self.shortcut = None if i == o and stride == 1 else nn.Conv2d(i, o, 1, stride, bias=False)
        self.abr = activate_before_residual

    def forward(self, x):  # as in USB's wrn.py, including its quirks, so results compare
        same = self.shortcut is None
        if not same and self.abr:
            x = F.leaky_relu(self.bn1(x), 0.1)
            o = x
        else:
            o = F.leaky_relu(self.bn1(x), 0.1)
        o = self.conv2(F.leaky_relu(self.bn2(self.conv1(o if same else x)), 0.1))
        return (x if same else self.shortcut(x)) + o


class WideResNet(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, depth: int = 28, widen: int = 2):
        super().__init__()
        n = (depth - 4) // 6
        ch = [16, 16 * widen, 32 * widen, 64 * widen]
        layers = [InputNorm(in_channels), nn.Conv2d(in_channels, ch[0], 3, 1, 1, bias=False)]
        for g, stride in zip(range(3), (1, 2, 2)):
            for j in range(n):
                layers.append(_Block(ch[g] if j == 0 else ch[g + 1], ch[g + 1], stride if j == 0 else 1,
                                     activate_before_residual=(g == 0 and j == 0)))
        self.features = nn.Sequential(*layers, nn.BatchNorm2d(ch[3], momentum=0.001), nn.LeakyReLU(0.1),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(ch[3], num_classes)
        self.feature_dim = ch[3]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="leaky_relu")
            elif isinstance(m, nn.Linear):
                nn.init.xavier_normal_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        return self.head(self.features(x))
