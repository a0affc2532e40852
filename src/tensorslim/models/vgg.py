"""VGG-16 for CIFAR-sized inputs: the 13 convs of configuration D, each with BatchNorm, then an FC head.

Features: 64,64,M,128,128,M,256×3,M,512×3,M,512×3,M (3×3 convs, padding 1, 2×2 max pools), modules named
``conv{block}_{index}`` as in the paper. Head: flatten → FC 512 → FC 512 → FC classes with dropout. At
32×32 the last map is 512×1×1; ``input_size`` sets the first FC's in-features for other sizes
(64 px → 512×2×2). The pools use ``ceil_mode=True`` (identical on power-of-two sizes) so that 28 px images
(Fashion-MNIST) keep a 1×1 map instead of vanishing. About 15.0 M params and 314 M MACs at 3×32×32.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn

from ._common import Size, flat_features, hw, init_conv_bn, pool2_ceil, positive_int

#: Channels per block of configuration D.
BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


def _features(in_channels: int) -> nn.Sequential:
    layers: list[tuple[str, nn.Module]] = []
    cin = in_channels
    for b, widths in enumerate(BLOCKS, start=1):
        for i, cout in enumerate(widths, start=1):
            layers += [
                (f"conv{b}_{i}", nn.Conv2d(cin, cout, 3, padding=1, bias=False)),
                (f"bn{b}_{i}", nn.BatchNorm2d(cout)),
                (f"relu{b}_{i}", nn.ReLU(inplace=True)),
            ]
            cin = cout
        layers.append((f"pool{b}", nn.MaxPool2d(2, ceil_mode=True)))
    return nn.Sequential(OrderedDict(layers))


class VGG16(nn.Module):
    """CIFAR VGG-16 with BatchNorm; ``features`` (13 convs) and ``classifier`` (3 FC layers)."""

    def __init__(self, in_channels: int = 3, num_classes: int = 10, input_size: Size = 32,
                 hidden: int = 512, dropout: float = 0.5):
        super().__init__()
        positive_int(in_channels, "in_channels", "vgg16")
        positive_int(num_classes, "num_classes", "vgg16")
        positive_int(hidden, "hidden", "vgg16")
        h, w = hw(input_size, "vgg16")
        for _ in BLOCKS:
            h, w = pool2_ceil(h), pool2_ceil(w)
        features = flat_features(BLOCKS[-1][-1], h, w, "vgg16", input_size)
        self.features = _features(in_channels)
        self.classifier = nn.Sequential(OrderedDict([
            ("flatten", nn.Flatten()),
            ("fc1", nn.Linear(features, hidden)),
            ("relu1", nn.ReLU(inplace=True)),
            ("drop1", nn.Dropout(dropout)),
            ("fc2", nn.Linear(hidden, hidden)),
            ("relu2", nn.ReLU(inplace=True)),
            ("drop2", nn.Dropout(dropout)),
            ("fc3", nn.Linear(hidden, num_classes)),
        ]))
        init_conv_bn(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


def vgg16(in_channels: int = 3, num_classes: int = 10, input_size: Size = 32,
          hidden: int = 512, dropout: float = 0.5) -> VGG16:
    """CIFAR VGG-16 with BatchNorm (default input 3×32×32)."""
    return VGG16(in_channels, num_classes, input_size, hidden, dropout)
