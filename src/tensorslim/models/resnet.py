"""The CIFAR ResNets of He et al. 2016 (section 4.2): ``resnet20``, ``resnet32``, ``resnet56``.

A 3×3 conv with 16 channels, then three stages of n basic blocks with 16, 32 and 64 channels (stride 2 at the
start of stages 2 and 3), global average pooling and one FC layer: 6n+2 weighted layers (n = 3, 5, 9).

Shortcut: option A of the paper by default, the parameter-free one the paper uses on CIFAR. Where the shape
changes, the block input is subsampled (every second pixel) and padded with zero channels. With it the
parameter counts at 10 classes are 269,722 / 464,154 / 853,018: the paper's 0.27 M / 0.46 M / 0.85 M.
``shortcut="B"`` uses a 1×1 conv + BatchNorm projection at those blocks instead (a few thousand more params).
"""

from __future__ import annotations

from collections import OrderedDict

import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ModelError
from ._common import Size, hw, init_conv_bn, positive_int

STAGE_WIDTHS = (16, 32, 64)


class ShortcutA(nn.Module):
    """Option-A shortcut: subsample by ``stride`` and zero-pad the channels from ``in_channels`` to ``out_channels``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        extra = self.out_channels - self.in_channels
        return F.pad(x, (0, 0, 0, 0, extra // 2, extra - extra // 2))


def _shortcut(kind: str, cin: int, cout: int, stride: int) -> nn.Module:
    if stride == 1 and cin == cout:
        return nn.Identity()
    if kind == "A":
        return ShortcutA(cin, cout, stride)
    return nn.Sequential(OrderedDict([
        ("conv", nn.Conv2d(cin, cout, 1, stride=stride, bias=False)),
        ("bn", nn.BatchNorm2d(cout)),
    ]))


class BasicBlock(nn.Module):
    """conv3×3-BN-ReLU-conv3×3-BN, plus the shortcut, then ReLU."""

    def __init__(self, cin: int, cout: int, stride: int, shortcut: str):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = _shortcut(shortcut, cin, cout, stride)
        self.relu2 = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """CIFAR ResNet with ``depth = 6n + 2``; modules ``features.{conv1,bn1,relu1,stage1..3,pool}``, ``classifier``."""

    def __init__(self, depth: int, in_channels: int = 3, num_classes: int = 10, shortcut: str = "A"):
        super().__init__()
        name = f"resnet{depth}"
        positive_int(in_channels, "in_channels", name)
        positive_int(num_classes, "num_classes", name)
        if (depth - 2) % 6 or depth < 8:
            raise ModelError(f"{name}: depth must be 6n+2 with n >= 1")
        if shortcut not in ("A", "B"):
            raise ModelError(f"{name}: shortcut must be 'A' or 'B', got {shortcut!r}")
        blocks = (depth - 2) // 6
        layers: list[tuple[str, nn.Module]] = [
            ("conv1", nn.Conv2d(in_channels, STAGE_WIDTHS[0], 3, padding=1, bias=False)),
            ("bn1", nn.BatchNorm2d(STAGE_WIDTHS[0])),
            ("relu1", nn.ReLU(inplace=True)),
        ]
        cin = STAGE_WIDTHS[0]
        for s, width in enumerate(STAGE_WIDTHS):
            stage = []
            for b in range(blocks):
                stride = 2 if s > 0 and b == 0 else 1
                stage.append(BasicBlock(cin, width, stride, shortcut))
                cin = width
            layers.append((f"stage{s + 1}", nn.Sequential(*stage)))
        layers.append(("pool", nn.AdaptiveAvgPool2d(1)))
        self.features = nn.Sequential(OrderedDict(layers))
        self.classifier = nn.Sequential(OrderedDict([
            ("flatten", nn.Flatten()),
            ("fc", nn.Linear(cin, num_classes)),
        ]))
        init_conv_bn(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


def _resnet(depth: int, in_channels: int, num_classes: int, input_size: Size, shortcut: str) -> CifarResNet:
    hw(input_size, f"resnet{depth}")  # validated only: global pooling makes the head size-independent
    return CifarResNet(depth, in_channels, num_classes, shortcut)


def resnet20(in_channels: int = 3, num_classes: int = 10, input_size: Size = 32, shortcut: str = "A") -> CifarResNet:
    """ResNet-20 for CIFAR (0.27 M params). ``input_size`` is accepted for uniformity; any size works."""
    return _resnet(20, in_channels, num_classes, input_size, shortcut)


def resnet32(in_channels: int = 3, num_classes: int = 10, input_size: Size = 32, shortcut: str = "A") -> CifarResNet:
    """ResNet-32 for CIFAR (0.46 M params). ``input_size`` is accepted for uniformity; any size works."""
    return _resnet(32, in_channels, num_classes, input_size, shortcut)


def resnet56(in_channels: int = 3, num_classes: int = 10, input_size: Size = 32, shortcut: str = "A") -> CifarResNet:
    """ResNet-56 for CIFAR (0.85 M params). ``input_size`` is accepted for uniformity; any size works."""
    return _resnet(56, in_channels, num_classes, input_size, shortcut)
