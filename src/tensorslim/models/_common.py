"""Small helpers shared by the reference models: argument checks, output-size arithmetic, initialisation."""

from __future__ import annotations

from torch import nn

from ..errors import ModelError

#: An input size: one int for square images, or ``(height, width)``.
Size = int | tuple[int, int]


def positive_int(value: object, what: str, model: str) -> int:
    """``value`` as an int if it is a positive integer, else a one-line :class:`ModelError`."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ModelError(f"{model}: {what} must be a positive integer, got {value!r}")
    return value


def hw(input_size: Size, model: str) -> tuple[int, int]:
    """Normalise ``input_size`` (int or pair) to ``(height, width)``."""
    if isinstance(input_size, (tuple, list)) and len(input_size) == 2:
        return (positive_int(input_size[0], "input_size", model), positive_int(input_size[1], "input_size", model))
    size = positive_int(input_size, "input_size (an int or a (height, width) pair)", model)
    return size, size


def conv_out(size: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Spatial output size of a convolution or pooling window (floor mode)."""
    return (size + 2 * padding - kernel) // stride + 1


def pool2_ceil(size: int) -> int:
    """Output size of ``MaxPool2d(2, ceil_mode=True)``: a last odd row / column still makes an output."""
    return (size + 1) // 2


def flat_features(channels: int, height: int, width: int, model: str, input_size: Size) -> int:
    """In-features of the first FC layer; a one-line error when the input is too small to reach it."""
    if height < 1 or width < 1:
        raise ModelError(f"{model}: input_size {input_size!r} is too small; the feature map vanishes")
    return channels * height * width


def init_conv_bn(model: nn.Module) -> None:
    """He (fan-out) init for convolutions, unit scale and zero shift for BatchNorm; Linear keeps torch's."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
