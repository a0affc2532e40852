"""LeNet-5 (LeCun et al. 1998) in its common modern form: ReLU and max pooling.

conv 6@5×5 (padding 2, so a 28 px image behaves like the original 32 px one) → pool → conv 16@5×5 → pool →
FC 120 → FC 84 → FC classes. At 1×28×28 and 10 classes: 61,706 parameters, 416,520 MACs.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn

from ._common import Size, conv_out, flat_features, hw, positive_int


def _feature_side(side: int) -> int:
    """Side of the last feature map: conv 5×5 pad 2, pool 2, conv 5×5, pool 2."""
    side = conv_out(conv_out(side, 5, padding=2), 2, 2)
    return conv_out(conv_out(side, 5), 2, 2)


class LeNet5(nn.Module):
    """LeNet-5; ``input_size`` sets the in-features of the first FC layer."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, input_size: Size = 28):
        super().__init__()
        positive_int(in_channels, "in_channels", "lenet5")
        positive_int(num_classes, "num_classes", "lenet5")
        h, w = (_feature_side(d) for d in hw(input_size, "lenet5"))
        features = flat_features(16, h, w, "lenet5", input_size)
        self.features = nn.Sequential(OrderedDict([
            ("conv1", nn.Conv2d(in_channels, 6, 5, padding=2)),
            ("relu1", nn.ReLU(inplace=True)),
            ("pool1", nn.MaxPool2d(2)),
            ("conv2", nn.Conv2d(6, 16, 5)),
            ("relu2", nn.ReLU(inplace=True)),
            ("pool2", nn.MaxPool2d(2)),
        ]))
        self.classifier = nn.Sequential(OrderedDict([
            ("flatten", nn.Flatten()),
            ("fc1", nn.Linear(features, 120)),
            ("relu1", nn.ReLU(inplace=True)),
            ("fc2", nn.Linear(120, 84)),
            ("relu2", nn.ReLU(inplace=True)),
            ("fc3", nn.Linear(84, num_classes)),
        ]))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


def lenet5(in_channels: int = 1, num_classes: int = 10, input_size: Size = 28) -> LeNet5:
    """LeNet-5 for ``in_channels``×``input_size``² images (default 1×28×28)."""
    return LeNet5(in_channels, num_classes, input_size)
