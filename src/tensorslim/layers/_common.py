"""Shared helpers of the factorized layers: validation, convolution geometry, calls into ``decompose``.

Nothing here is public API; the layers re-export what users need.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import nn

from tensorslim.errors import DecompositionError, ModelError

T = TypeVar("T")

#: A padding as ``nn.Conv2d`` takes it: one int, a (height, width) pair, or ``"same"`` / ``"valid"``.
Padding = int | Sequence[int] | str


def layer_label(name: str | None, obj: object) -> str:
    """The name used in error messages: ``name`` when given, else the class name of ``obj``."""
    if name:
        return name
    return obj.__name__ if isinstance(obj, type) else type(obj).__name__


def one_line(text: str) -> str:
    """Collapse whitespace so that a message fits on one line."""
    return " ".join(str(text).split()) or "unknown reason"


def check_positive_int(layer: str, value: Any, what: str) -> int:
    """``value`` as a positive int, else :class:`DecompositionError`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DecompositionError(layer, f"{what} must be a positive integer, got {value!r}")
    return int(value)


def check_rank(layer: str, rank: Any, full: int, what: str = "rank") -> int:
    """A rank in ``1..full``, else :class:`DecompositionError` (rank 0, negative, or above full rank)."""
    if isinstance(rank, bool) or not isinstance(rank, int):
        raise DecompositionError(layer, f"{what} must be an integer, got {rank!r}")
    if rank < 1:
        raise DecompositionError(layer, f"{what} must be at least 1, got {rank}")
    if rank > full:
        raise DecompositionError(layer, f"{what} {rank} is above the full rank {full}")
    return rank


def check_shape(layer: str, shape: Any, what: str, length: int | None = None) -> tuple[int, ...]:
    """A non-empty tuple of positive ints (optionally of a given length), else :class:`DecompositionError`."""
    if isinstance(shape, (str, bytes)) or not isinstance(shape, Sequence) or len(shape) == 0:
        raise DecompositionError(layer, f"{what} must be a non-empty sequence of integers, got {shape!r}")
    if length is not None and len(shape) != length:
        raise DecompositionError(layer, f"{what} must have {length} entries, got {list(shape)}")
    for v in shape:
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise DecompositionError(layer, f"{what} must hold positive integers, got {list(shape)}")
    return tuple(int(v) for v in shape)


def check_finite(layer: str, *tensors: torch.Tensor | None, what: str = "weight") -> None:
    """Refuse NaN or infinite values in any of ``tensors`` (``None`` entries are skipped)."""
    for t in tensors:
        if t is not None and not bool(torch.isfinite(t).all()):
            raise DecompositionError(layer, f"{what} contains NaN or infinite values")


def check_module(layer: str, module: Any, kind: type[nn.Module]) -> None:
    """Refuse anything that is not an instance of ``kind``."""
    if not isinstance(module, kind):
        raise DecompositionError(layer, f"expected a {kind.__name__}, got {type(module).__name__}")


def run_decomposition(layer: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call a ``tensorslim.decompose`` function, turning its ``ValueError`` (bad rank, bad shape) and
    linear-algebra failures into :class:`DecompositionError` naming ``layer``."""
    try:
        return fn(*args, **kwargs)
    except DecompositionError:
        raise
    except (ValueError, torch.linalg.LinAlgError) as err:
        raise DecompositionError(layer, one_line(str(err))) from err


def as_float64(weight: torch.Tensor) -> torch.Tensor:
    """A detached float64 copy of a weight, the precision the decompositions are run in."""
    return weight.detach().to(torch.float64)


def like(t: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """``t`` detached and cast to the dtype and device of ``ref``."""
    return t.detach().to(dtype=ref.dtype, device=ref.device)


def numel(shape: Sequence[int]) -> int:
    """Product of a shape (1 for an empty shape)."""
    return math.prod(int(v) for v in shape)


def pair(layer: str, value: Any, what: str, minimum: int = 1) -> tuple[int, int]:
    """An int or a 2-sequence of ints as a (height, width) pair, each at least ``minimum``."""
    if isinstance(value, bool):
        raise DecompositionError(layer, f"{what} must be an int or a pair of ints, got {value!r}")
    if isinstance(value, int):
        values: tuple[Any, ...] = (value, value)
    elif isinstance(value, Sequence) and not isinstance(value, (str, bytes)) and len(value) == 2:
        values = tuple(value)
    else:
        raise DecompositionError(layer, f"{what} must be an int or a pair of ints, got {value!r}")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise DecompositionError(layer, f"{what} must hold integers >= {minimum}, got {value!r}")
    return int(values[0]), int(values[1])


def conv_output_size(size: int, kernel: int, stride: int, padding: int | str, dilation: int) -> int:
    """Output length of a convolution along one axis (PyTorch's formula; ``"same"`` keeps the size)."""
    if padding == "same":
        return size
    pad = 0 if padding == "valid" else int(padding)
    return (size + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1


@dataclass(frozen=True)
class ConvGeometry:
    """Kernel size, stride, padding and dilation of a 2-D convolution, normalised to (height, width) pairs.

    ``padding`` is a pair of ints, or the string ``"same"`` / ``"valid"`` exactly as ``nn.Conv2d`` accepts.
    """

    kernel_size: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int] | str
    dilation: tuple[int, int]

    @classmethod
    def make(cls, layer: str, kernel_size: Any, stride: Any, padding: Padding, dilation: Any) -> ConvGeometry:
        """Validate and normalise; refuses ``"same"`` with a stride (PyTorch does too)."""
        k = pair(layer, kernel_size, "kernel_size")
        s = pair(layer, stride, "stride")
        d = pair(layer, dilation, "dilation")
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise DecompositionError(layer, f"padding must be an int, a pair, 'same' or 'valid', got {padding!r}")
            if padding == "same" and s != (1, 1):
                raise DecompositionError(layer, "padding='same' is not supported with a stride other than 1")
            p: tuple[int, int] | str = padding
        else:
            p = pair(layer, padding, "padding", minimum=0)
        return cls(k, s, p, d)

    @classmethod
    def of(cls, layer: str, conv: nn.Conv2d) -> ConvGeometry:
        """The geometry of an existing ``nn.Conv2d``."""
        return cls.make(layer, conv.kernel_size, conv.stride, conv.padding, conv.dilation)

    def axis(self, i: int) -> tuple[int, int, int | str, int]:
        """(kernel, stride, padding, dilation) along axis ``i`` (0 = height, 1 = width)."""
        pad = self.padding if isinstance(self.padding, str) else self.padding[i]
        return self.kernel_size[i], self.stride[i], pad, self.dilation[i]

    def axis_padding(self, i: int) -> tuple[int, int] | str:
        """Padding for a convolution whose kernel spans only axis ``i`` (the other axis has kernel 1)."""
        if isinstance(self.padding, str):
            return self.padding
        return (self.padding[0], 0) if i == 0 else (0, self.padding[1])

    def output_hw(self, h: int, w: int) -> tuple[int, int]:
        """Output (height, width) for an input of ``h`` × ``w``; :class:`ModelError` when it is empty."""
        ho = conv_output_size(h, *self.axis(0))
        wo = conv_output_size(w, *self.axis(1))
        if ho < 1 or wo < 1:
            raise ModelError(f"input {h}x{w} is too small for a {self.kernel_size} convolution window")
        return ho, wo

    def config(self) -> dict[str, Any]:
        """The JSON-able constructor arguments."""
        return {
            "kernel_size": list(self.kernel_size),
            "stride": list(self.stride),
            "padding": self.padding if isinstance(self.padding, str) else list(self.padding),
            "dilation": list(self.dilation),
        }


def check_conv2d(layer: str, conv: Any) -> None:
    """Refuse what the conv converters cannot represent: non-Conv2d, grouped/depthwise, non-zero padding modes,
    NaN/inf weights."""
    check_module(layer, conv, nn.Conv2d)
    if conv.groups != 1:
        raise DecompositionError(layer, f"grouped or depthwise convolution (groups={conv.groups}) is not supported")
    if conv.padding_mode != "zeros":
        raise DecompositionError(layer, f"padding_mode {conv.padding_mode!r} is not supported (only 'zeros')")
    check_finite(layer, conv.weight, conv.bias)


def feature_input(input_shape: Sequence[int], in_features: int, what: str) -> int:
    """For a layer acting on the last axis: the number of feature vectors in one sample of ``input_shape``."""
    shape = tuple(int(v) for v in input_shape)
    if len(shape) == 0 or shape[-1] != in_features:
        raise ModelError(f"{what} expects inputs whose last axis has {in_features} features, got {list(shape)}")
    return numel(shape[:-1])


def image_input(input_shape: Sequence[int], channels: int, what: str) -> tuple[int, int]:
    """(H, W) of a (C, H, W) input shape with C == ``channels``; :class:`ModelError` otherwise."""
    shape = tuple(int(v) for v in input_shape)
    if len(shape) != 3 or shape[0] != channels:
        raise ModelError(f"{what} expects an input shape ({channels}, H, W), got {list(shape)}")
    return shape[1], shape[2]


def normal_(tensor: torch.Tensor, std: float) -> torch.Tensor:
    """Fill ``tensor`` in place from N(0, std²) without tracking gradients."""
    with torch.no_grad():
        return tensor.normal_(0.0, std)


def balance_cp(weights: torch.Tensor | None, factors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Fold the CP weights λ into the factors, spreading each component's scale evenly.

    Column ``r`` of every factor gets the same norm ``(|λ_r| Π_i ‖a_i[:, r]‖)^(1/N)``; the sign of ``λ_r`` goes
    to the first factor. The reconstruction is unchanged and no factor is much larger than another, which
    keeps float32 layers and gradient steps well conditioned. A zero component stays zero.
    """
    factors = [f.detach() for f in factors]
    rank = factors[0].shape[1]
    lam = torch.ones(rank, dtype=factors[0].dtype, device=factors[0].device) if weights is None else weights
    lam = lam.detach().to(factors[0].dtype)
    norms = [f.norm(dim=0) for f in factors]
    scale = lam.abs()
    for n in norms:
        scale = scale * n
    per_factor = scale.pow(1.0 / len(factors))
    out = []
    for i, (f, n) in enumerate(zip(factors, norms)):
        safe = torch.where(n > 0, n, torch.ones_like(n))
        g = f / safe * per_factor
        if i == 0:
            g = g * torch.where(lam < 0, -1.0, 1.0).to(g.dtype)
        out.append(g)
    return out
