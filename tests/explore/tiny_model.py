"""A tiny CNN for the explore tests (loaded by path as a ``file.py:factory`` builder)."""

from collections import OrderedDict

from torch import nn


def tiny(in_channels: int = 1, num_classes: int = 4) -> nn.Module:
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(in_channels, 4, 3, padding=1)),
        ("relu1", nn.ReLU()),
        ("pool1", nn.MaxPool2d(2)),
        ("conv2", nn.Conv2d(4, 6, 3, padding=1)),
        ("relu2", nn.ReLU()),
        ("pool2", nn.MaxPool2d(2)),
        ("flatten", nn.Flatten()),
        ("fc1", nn.Linear(6 * 2 * 2, 12)),
        ("relu3", nn.ReLU()),
        ("fc2", nn.Linear(12, num_classes)),
    ]))
