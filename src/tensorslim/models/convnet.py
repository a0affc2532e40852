"""``convnet``: a small VGG-style network for 28×28 grey images (Fashion-MNIST), cheap enough to train on CPU.

Layout (default widths 16-32-64)::

    conv1 16 ─ pool ─ conv2 32 ─ conv3 32 ─ pool ─ conv4 64 ─ conv5 64 ─ pool ─ flatten ─ FC 256 ─ FC classes

Every conv is 3×3 with BatchNorm and ReLU; dropout guards the FC head. At 1×28×28: 5.7 M MACs, 0.22 M params.

Why this shape: resolution is halved right after the first conv (whose single input channel makes it cheap),
so the two 32→32 / 32→64 / 64→64 convs that carry most of the compute, and are the natural targets of CP
and Tucker-2, work on 14×14 and 7×7 maps. That keeps a training epoch on two CPU threads around 20 s, about
four times cheaper than a 32-32-64-64-128 stack at full resolution (22 M MACs), while the 576→256 FC layer
leaves SVD / TT / TCL heads something real to compress.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import Tensor, nn

from ..errors import ModelError
from ._common import Size, conv_out, flat_features, hw, init_conv_bn, positive_int


def _conv_bn_relu(index: int, cin: int, cout: int) -> list[tuple[str, nn.Module]]:
    return [
        (f"conv{index}", nn.Conv2d(cin, cout, 3, padding=1, bias=False)),
        (f"bn{index}", nn.BatchNorm2d(cout)),
        (f"relu{index}", nn.ReLU(inplace=True)),
    ]


class ConvNet(nn.Module):
    """Five 3×3 conv+BN+ReLU layers in three stages (1, 2, 2 convs), each stage ending in a 2×2 max pool."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, input_size: Size = 28,
                 widths: Sequence[int] = (16, 32, 64), hidden: int = 256, dropout: float = 0.3):
        super().__init__()
        positive_int(in_channels, "in_channels", "convnet")
        positive_int(num_classes, "num_classes", "convnet")
        positive_int(hidden, "hidden", "convnet")
        if len(widths) != 3:
            raise ModelError(f"convnet: widths must list 3 channel counts, got {list(widths)!r}")
        w1, w2, w3 = (positive_int(w, "each width", "convnet") for w in widths)
        h, w = hw(input_size, "convnet")
        for _ in range(3):
            h, w = conv_out(h, 2, 2), conv_out(w, 2, 2)
        features = flat_features(w3, h, w, "convnet", input_size)
        self.features = nn.Sequential(OrderedDict([
            *_conv_bn_relu(1, in_channels, w1), ("pool1", nn.MaxPool2d(2)),
            *_conv_bn_relu(2, w1, w2), *_conv_bn_relu(3, w2, w2), ("pool2", nn.MaxPool2d(2)),
            *_conv_bn_relu(4, w2, w3), *_conv_bn_relu(5, w3, w3), ("pool3", nn.MaxPool2d(2)),
        ]))
        self.classifier = nn.Sequential(OrderedDict([
            ("flatten", nn.Flatten()),
            ("drop1", nn.Dropout(dropout)),
            ("fc1", nn.Linear(features, hidden)),
            ("relu1", nn.ReLU(inplace=True)),
            ("drop2", nn.Dropout(dropout)),
            ("fc2", nn.Linear(hidden, num_classes)),
        ]))
        init_conv_bn(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


def convnet(in_channels: int = 1, num_classes: int = 10, input_size: Size = 28,
            widths: Sequence[int] = (16, 32, 64), hidden: int = 256, dropout: float = 0.3) -> ConvNet:
    """The small VGG-style Fashion-MNIST network (default input 1×28×28)."""
    return ConvNet(in_channels, num_classes, input_size, widths, hidden, dropout)
