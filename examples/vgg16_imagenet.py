"""A user model for tensorslim: the standard ImageNet VGG-16 (Simonyan & Zisserman, configuration D).

13 convs 3×3 (no BatchNorm), 5 max pools, adaptive average pooling to 7×7, then
25088 → 4096 → 4096 → ``num_classes`` with ReLU and dropout: 138,357,544 params and about 15.5 G MACs at
3×224×224 (1000 classes), matching torchvision's ``vgg16``, whose state-dict keys it shares, so its weights
load by name.

Use it as the builder ``examples.vgg16_imagenet:vgg16`` (repository root on ``sys.path``) or
``examples/vgg16_imagenet.py:vgg16``, e.g. ``tensorslim inspect examples/vgg16_imagenet.py:vgg16``.
Only torch is needed.
"""

from __future__ import annotations

from torch import Tensor, nn

#: Output channels of each conv, "M" for a 2×2 max pool (configuration D).
CONFIG_D = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class VGG(nn.Module):
    """VGG with torchvision's module layout: ``features``, ``avgpool``, ``flatten``, ``classifier``."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1000, dropout: float = 0.5):
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_channels
        for v in CONFIG_D:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, int(v), 3, padding=1), nn.ReLU(inplace=True)]
                cin = int(v)
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.flatten(self.avgpool(self.features(x))))


def vgg16(num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.5) -> VGG:
    """ImageNet VGG-16 (configuration D, no BatchNorm); default input 3×224×224."""
    return VGG(in_channels, num_classes, dropout)


vgg16.input_shape = (3, 224, 224)  # read by tensorslim.models.default_input_shape
