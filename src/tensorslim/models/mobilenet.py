"""MobileNetV2 (Sandler et al. 2018), CIFAR variant.

Inverted residual blocks (1×1 expand, 3×3 depthwise, 1×1 linear projection; ReLU6) with the paper's
(t, c, n, s) table, except as in the common CIFAR ports: the stem conv has stride 1 and the second stage
(24 channels) stride 1, so a 32×32 image is downsampled three times to 4×4. The residual connection is the
paper's (only where stride is 1 and channels match). ``width_mult`` scales every width, rounded to a multiple
of 8; the 1280-channel last conv is only ever widened. About 2.24 M params and 94 M MACs at 3×32×32.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn

from ..errors import ModelError
from ._common import Size, hw, init_conv_bn, positive_int

#: (expansion t, output channels c, blocks n, stride s) of each stage, CIFAR strides.
STAGES = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, never going more than 10 % below it."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]


class InvertedResidual(nn.Sequential):
    """``expand`` (1×1, absent when t = 1) → ``dwconv`` (3×3 depthwise) → ``project`` (1×1, linear), each + BN."""

    def __init__(self, cin: int, cout: int, stride: int, expansion: int):
        hidden = cin * expansion
        layers: list[tuple[str, nn.Module]] = []
        if expansion != 1:
            expand, expand_bn = _conv_bn(cin, hidden, 1)
            layers += [("expand", expand), ("expand_bn", expand_bn), ("expand_relu", nn.ReLU6(inplace=True))]
        dw, dw_bn = _conv_bn(hidden, hidden, 3, stride, groups=hidden)
        project, project_bn = _conv_bn(hidden, cout, 1)
        layers += [("dwconv", dw), ("dwconv_bn", dw_bn), ("dwconv_relu", nn.ReLU6(inplace=True)),
                   ("project", project), ("project_bn", project_bn)]
        super().__init__(OrderedDict(layers))
        self.use_residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        out = super().forward(x)
        return x + out if self.use_residual else out


class MobileNetV2(nn.Module):
    """CIFAR MobileNetV2; ``features`` (stem, blocks, last 1×1 conv, pooling) and ``classifier``."""

    def __init__(self, in_channels: int = 3, num_classes: int = 10, width_mult: float = 1.0,
                 dropout: float = 0.2):
        super().__init__()
        positive_int(in_channels, "in_channels", "mobilenetv2")
        positive_int(num_classes, "num_classes", "mobilenetv2")
        if isinstance(width_mult, bool) or not isinstance(width_mult, (int, float)) or width_mult <= 0:
            raise ModelError(f"mobilenetv2: width_mult must be a positive number, got {width_mult!r}")
        cin = make_divisible(32 * width_mult)
        stem_conv, stem_bn = _conv_bn(in_channels, cin, 3)
        layers: list[tuple[str, nn.Module]] = [
            ("conv1", stem_conv), ("bn1", stem_bn), ("relu1", nn.ReLU6(inplace=True))]
        index = 0
        for t, c, n, s in STAGES:
            cout = make_divisible(c * width_mult)
            for i in range(n):
                index += 1
                layers.append((f"block{index}", InvertedResidual(cin, cout, s if i == 0 else 1, t)))
                cin = cout
        last = make_divisible(1280 * max(1.0, width_mult))
        last_conv, last_bn = _conv_bn(cin, last, 1)
        layers += [("conv2", last_conv), ("bn2", last_bn), ("relu2", nn.ReLU6(inplace=True)),
                   ("pool", nn.AdaptiveAvgPool2d(1))]
        self.features = nn.Sequential(OrderedDict(layers))
        self.classifier = nn.Sequential(OrderedDict([
            ("flatten", nn.Flatten()),
            ("drop", nn.Dropout(dropout)),
            ("fc", nn.Linear(last, num_classes)),
        ]))
        init_conv_bn(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


def mobilenetv2(in_channels: int = 3, num_classes: int = 10, input_size: Size = 32, width_mult: float = 1.0,
                dropout: float = 0.2) -> MobileNetV2:
    """CIFAR MobileNetV2 (default input 3×32×32). ``input_size`` is accepted for uniformity; any size works."""
    hw(input_size, "mobilenetv2")
    return MobileNetV2(in_channels, num_classes, width_mult, dropout)
