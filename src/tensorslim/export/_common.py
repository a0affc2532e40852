"""What every module of :mod:`tensorslim.export` shares: its error types, one-line messages, the input shape."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ModelError


class ExportError(ModelError):
    """The model cannot be exported to ONNX, or a file is not a usable ONNX model."""


class BenchError(ExportError):
    """Bad benchmark arguments or a target that cannot be timed."""


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def strip_ansi(text: str) -> str:
    """``text`` without ANSI colour codes (the dynamo exporter colours its messages)."""
    return _ANSI.sub("", text)


def one_line(text: object, limit: int = 300) -> str:
    """The first meaningful line of ``text`` (ANSI colours removed), shortened to ``limit`` characters."""
    lines = [ln.strip() for ln in strip_ansi(str(text)).splitlines()]
    lines = [ln for ln in lines if ln]
    line = lines[0] if lines else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def check_input_shape(input_shape: Any, what: str = "input shape") -> tuple[int, ...]:
    """``input_shape`` (without batch, e.g. ``(1, 28, 28)``) as a tuple of positive ints, else ExportError."""
    if input_shape is None:
        raise ExportError(f"{what} is required (e.g. 1,28,28 for channels, height, width; no batch axis)")
    if (isinstance(input_shape, (str, bytes)) or not isinstance(input_shape, Sequence)
            or len(input_shape) == 0):
        raise ExportError(f"{what} must be a non-empty sequence of positive integers, got {input_shape!r}")
    dims = []
    for d in input_shape:
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
            raise ExportError(f"{what} must contain positive integers only, got {list(input_shape)!r}")
        dims.append(int(d))
    return tuple(dims)
