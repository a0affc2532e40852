"""A user model for tensorslim: a small CNN factory, as any user project would have one.

Use it as the builder ``examples.small_cnn:small_cnn`` (repository root on ``sys.path``) or
``examples/small_cnn.py:small_cnn``. A saved model directory names this factory, so loading it runs this file:
that needs ``--trust-code`` / ``trust_code=True``.
"""

from __future__ import annotations

from torch import nn


def small_cnn(in_channels: int = 1, num_classes: int = 10, width: int = 16) -> nn.Module:
    """Two 3×3 conv blocks (conv, BN, ReLU, 2×2 max pool) and a linear head, for 28×28 inputs."""
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(2 * width * 7 * 7, num_classes),
    )
