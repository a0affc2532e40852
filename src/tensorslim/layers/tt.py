"""Tensor-Train layers: :class:`TTLinear` (Novikov et al. 2015, as in T3F) and :class:`TTConv2d` (Garipov et al.
2016).

Index conventions (row-major everywhere). A Linear weight ``W`` (``M × N``, ``M = Π m_k``, ``N = Π n_k``) is
``W[(i_1…i_d), (j_1…j_d)] = G_1[:, i_1, j_1, :] ⋯ G_d[:, i_d, j_d, :]`` with cores ``G_k`` of shape
``r_{k-1} × m_k × n_k × r_k``, ``r_0 = r_d = 1``, where ``(i_1…i_d)`` is the row-major multi-index of ``out_shape``
and ``(j_1…j_d)`` that of ``in_shape``. The forward pass reshapes the input to ``(batch, n_1, …, n_d)`` and
contracts it with one core at a time in the cheapest order (see :mod:`._ttplan`); the dense matrix is never
formed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from tensorslim.errors import DecompositionError

from .. import decompose
from ._common import (
    ConvGeometry,
    Padding,
    as_float64,
    check_conv2d,
    check_finite,
    check_module,
    check_shape,
    feature_input,
    image_input,
    layer_label,
    like,
    normal_,
    run_decomposition,
)
from ._ttplan import TTContraction


def tt_full_ranks(mode_sizes: Sequence[int]) -> list[int]:
    """Full TT-ranks ``r_0 … r_d`` of a tensor with these mode sizes: ``min(Π left, Π right)`` per bond."""
    d = len(mode_sizes)
    total = math.prod(mode_sizes)
    ranks = [1]
    left = 1
    for k in range(d - 1):
        left *= mode_sizes[k]
        ranks.append(min(left, total // left))
    return ranks + [1]


def tt_core_params(ranks: Sequence[int], out_shape: Sequence[int], in_shape: Sequence[int]) -> int:
    """``Σ r_{k-1} m_k n_k r_k``: the number of entries of TT cores ``r_{k-1} × m_k × n_k × r_k``."""
    return sum(ranks[k] * out_shape[k] * in_shape[k] * ranks[k + 1] for k in range(len(in_shape)))


def tt_conv_ranks(in_shape: Sequence[int], out_shape: Sequence[int], kernel_size: Sequence[int],
                  ranks: int | Sequence[int], *, name: str = "TTConv2d") -> tuple[int, ...]:
    """The ranks ``r_0 … r_d`` a :class:`TTConv2d` of these shapes resolves ``ranks`` to (no layer built)."""
    kh, kw = kernel_size
    modes = [kh * kw] + [t * c for t, c in zip(out_shape, in_shape)]
    full = tt_full_ranks(modes)[1:]  # bonds after the spatial core: r_0 … r_d
    return _resolve_ranks(name, ranks, full, fixed_left=False)


def tt_conv_params(in_shape: Sequence[int], out_shape: Sequence[int], kernel_size: Sequence[int],
                   ranks: Sequence[int], bias: bool = True) -> int:
    """Parameters of a :class:`TTConv2d`: ``r_0·kh·kw + Σ r_{k-1} t_k c_k r_k``, plus ``out_channels`` for the bias."""
    kh, kw = kernel_size
    return ranks[0] * kh * kw + tt_core_params(ranks, out_shape, in_shape) + (math.prod(out_shape) if bias else 0)


def tt_conv_macs(in_shape: Sequence[int], out_shape: Sequence[int], kernel_size: Sequence[int],
                 ranks: Sequence[int], output_hw: Sequence[int], plan: TTContraction | None = None) -> int:
    """MACs of a :class:`TTConv2d` for one sample: ``C·r_0·kh·kw`` for the spatial step plus the planned channel
    contractions, at each of the ``Ho·Wo`` output pixels. ``plan``: the layer's own, when already built."""
    kh, kw = kernel_size
    ho, wo = output_hw
    if plan is None:
        plan = TTContraction(in_shape, out_shape, ranks, left_in_input=True)
    return ho * wo * (math.prod(in_shape) * ranks[0] * kh * kw + plan.macs_per_row)


def _resolve_ranks(label: str, ranks: Any, full: list[int], *, fixed_left: bool) -> tuple[int, ...]:
    """TT-ranks ``r_0 … r_d`` from an int (a maximum, capped per bond at the full rank) or a sequence.

    With ``fixed_left`` (TT-matrix) a sequence gives either all ``d+1`` ranks with ``r_0 = r_d = 1`` or the ``d-1``
    interior ones; otherwise (TT conv, where ``r_0`` is the spatial rank) all ``d+1`` with ``r_d = 1`` or the
    first ``d``.
    """
    d = len(full) - 1
    if isinstance(ranks, bool):
        raise DecompositionError(label, f"TT ranks must be an int or a sequence of ints, got {ranks!r}")
    if isinstance(ranks, int):
        if ranks < 1:
            raise DecompositionError(label, f"TT rank must be at least 1, got {ranks}")
        out = [min(ranks, f) for f in full]
        if fixed_left:
            out[0] = 1
        return tuple(out)
    if isinstance(ranks, (str, bytes)) or not isinstance(ranks, Sequence):
        raise DecompositionError(label, f"TT ranks must be an int or a sequence of ints, got {ranks!r}")
    values = list(ranks)
    short = d - 1 if fixed_left else d
    if len(values) == short:
        values = ([1] if fixed_left else []) + values + [1]
    if len(values) != d + 1:
        raise DecompositionError(label, f"expected {d + 1} TT ranks (or {short}), got {list(ranks)}")
    ends = (0, d) if fixed_left else (d,)
    for k in ends:
        if values[k] != 1:
            raise DecompositionError(label, f"TT rank r_{k} must be 1, got {list(ranks)}")
    for k, (r, f) in enumerate(zip(values, full)):
        if isinstance(r, bool) or not isinstance(r, int) or r < 1:
            raise DecompositionError(label, f"TT rank r_{k} must be a positive integer, got {r!r}")
        if r > f:
            raise DecompositionError(label, f"TT rank r_{k}={r} is above the full rank {f}")
    return tuple(int(r) for r in values)


def _tt_init_std(fan_in: int, inner_ranks: Sequence[int], n_factors: int) -> float:
    """Std of i.i.d. normal cores so that each entry of the represented weight has variance ``1/fan_in``."""
    return (1.0 / (fan_in * math.prod(inner_ranks))) ** (1.0 / (2 * n_factors))


def _random_cores(ranks: Sequence[int], out_shape: Sequence[int], in_shape: Sequence[int],
                  std: float) -> nn.ParameterList:
    """Cores ``r_{k-1} × m_k × n_k × r_k`` drawn from N(0, std²)."""
    return nn.ParameterList([
        nn.Parameter(normal_(torch.empty(ranks[k], out_shape[k], in_shape[k], ranks[k + 1]), std))
        for k in range(len(in_shape))])


def _chained_ranks(label: str, first: int, cores: Sequence[torch.Tensor]) -> list[int]:
    """Ranks ``r_0 … r_d`` of given cores (``r_0 = first``); :class:`DecompositionError` unless the bonds match."""
    ranks = [first] + [c.shape[3] for c in cores]
    if any(cores[k].shape[0] != ranks[k] for k in range(len(cores))):
        raise DecompositionError(label, f"TT core ranks do not chain: {[tuple(c.shape) for c in cores]}")
    return ranks


def _copy_cores(layer: TTLinear | TTConv2d, cores: Sequence[torch.Tensor], bias: torch.Tensor | None) -> None:
    """Copy given cores (and bias) into a freshly built TT layer."""
    with torch.no_grad():
        for p, c in zip(layer.cores, cores):
            p.copy_(c)
        if bias is not None:
            layer.bias.copy_(bias.detach())  # type: ignore[union-attr]


def _check_mode_shapes(label: str, in_shape: Any, out_shape: Any, in_size: int, out_size: int,
                       unit: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``in_shape`` and ``out_shape`` checked to multiply to the layer's ``in_{unit}`` and ``out_{unit}``."""
    in_shape = check_shape(label, in_shape, "in_shape")
    out_shape = check_shape(label, out_shape, "out_shape", length=len(in_shape))
    for side, shape, size in (("in", in_shape, in_size), ("out", out_shape, out_size)):
        if math.prod(shape) != size:
            raise DecompositionError(label, f"{side}_shape {list(shape)} multiplies to {math.prod(shape)}, "
                                            f"not {side}_{unit}={size}")
    return in_shape, out_shape


def set_feature_factors(layer: nn.Module, label: str, in_shape: Sequence[int], out_shape: Sequence[int]) -> None:
    """Set ``in_shape``, ``out_shape``, ``in_features`` and ``out_features`` of a Linear whose sizes are factored
    into modes (TT and TR); the shapes are checked (positive ints, the same number of factors)."""
    layer.in_shape = check_shape(label, in_shape, "in_shape")
    layer.out_shape = check_shape(label, out_shape, "out_shape", length=len(layer.in_shape))
    layer.in_features, layer.out_features = math.prod(layer.in_shape), math.prod(layer.out_shape)


class ModeFactored:
    """``config()`` and ``extra_repr()`` of the TT and TR layers, whose sizes are factored into modes
    (:func:`set_feature_factors`, :func:`set_channel_factors`): the mode shapes, the ranks, a conv's geometry
    (``geometry`` None for a Linear) and whether there is a bias."""

    geometry: ConvGeometry | None = None

    def config(self) -> dict[str, Any]:
        geometry = self.geometry.config() if self.geometry is not None else {}
        return {"in_shape": list(self.in_shape), "out_shape": list(self.out_shape), "ranks": list(self.ranks),
                **geometry, "bias": self.bias is not None}

    def extra_repr(self) -> str:
        kernel = f"kernel_size={self.geometry.kernel_size}, " if self.geometry is not None else ""
        return f"in_shape={list(self.in_shape)}, out_shape={list(self.out_shape)}, {kernel}ranks={list(self.ranks)}"


class TTLinear(ModeFactored, nn.Module):
    """A Linear layer whose weight is a TT-matrix (see the module doc for the index convention).

    Args:
        in_shape: ``(n_1, …, n_d)`` with ``Π n_k = in_features``.
        out_shape: ``(m_1, …, m_d)`` with ``Π m_k = out_features``, same length ``d``.
        ranks: an int (maximum TT-rank, capped per bond at the full rank ``min(Π_{i≤k} m_i n_i, Π_{i>k} m_i n_i)``),
            or all ``d+1`` ranks (``r_0 = r_d = 1``), or the ``d-1`` interior ones.
        bias: add a bias of size ``out_features``.
        name: layer name used in error messages only.

    Parameters: ``cores.0 … cores.{d-1}`` (``r_{k-1} × m_k × n_k × r_k``), ``bias``. Random init: normal cores
    scaled so that the represented weight has entry variance ``1/in_features``; zero bias.
    """

    def __init__(self, in_shape: Sequence[int], out_shape: Sequence[int], ranks: int | Sequence[int],
                 bias: bool = True, *, name: str | None = None):
        super().__init__()
        label = layer_label(name, self)
        set_feature_factors(self, label, in_shape, out_shape)
        d = len(self.in_shape)
        full = tt_full_ranks([m * n for m, n in zip(self.out_shape, self.in_shape)])
        self.ranks = _resolve_ranks(label, ranks, full, fixed_left=True)
        std = _tt_init_std(self.in_features, self.ranks[1:-1], d)
        self.cores = _random_cores(self.ranks, self.out_shape, self.in_shape, std)
        self.bias = nn.Parameter(torch.zeros(self.out_features)) if bias else None
        self.plan = TTContraction(self.in_shape, self.out_shape, self.ranks)
        #: Relative Frobenius error of the TT decomposition when built by :meth:`from_linear`, else ``None``.
        self.rel_error: float | None = None

    @classmethod
    def from_cores(cls, cores: Sequence[torch.Tensor], bias: torch.Tensor | None = None, *,
                   name: str | None = None) -> TTLinear:
        """Build the layer from given cores ``r_{k-1} × m_k × n_k × r_k`` (and an optional bias)."""
        label = layer_label(name, cls)
        check_finite(label, bias, *cores, what="TT cores")
        if not cores or any(c.dim() != 4 for c in cores):
            raise DecompositionError(label, "TT-matrix cores must be a non-empty list of 4-way tensors")
        ranks = _chained_ranks(label, cores[0].shape[0], cores)
        layer = cls([c.shape[2] for c in cores], [c.shape[1] for c in cores], ranks, bias=bias is not None,
                    name=label)
        layer.to(device=cores[0].device, dtype=cores[0].dtype)
        _copy_cores(layer, cores, bias)
        return layer

    @classmethod
    def from_linear(cls, linear: nn.Linear, in_shape: Sequence[int], out_shape: Sequence[int],
                    rank: int | Sequence[int], *, name: str | None = None) -> TTLinear:
        """TT-SVD of a trained ``nn.Linear`` (``decompose.tt_matrix``).

        ``rank`` as in the constructor (an int is a maximum TT-rank, capped per bond); the TT-SVD is run with
        exactly the resolved ranks, so the structure never depends on the data. Exact at full TT-ranks. Shapes
        whose products differ from the layer's sizes, NaN/inf weights and bad ranks raise
        :class:`DecompositionError` naming ``name``.
        """
        label = layer_label(name, linear)
        check_module(label, linear, nn.Linear)
        check_finite(label, linear.weight, linear.bias)
        in_shape, out_shape = _check_mode_shapes(label, in_shape, out_shape, linear.in_features,
                                                 linear.out_features, "features")
        probe = cls(in_shape, out_shape, rank, bias=False, name=label)  # validates the ranks first
        result = run_decomposition(label, decompose.tt_matrix, as_float64(linear.weight), out_shape,
                                   in_shape, ranks=probe.ranks)
        check_finite(label, *result.cores, what="TT result")
        layer = cls.from_cores([like(c, linear.weight) for c in result.cores], linear.bias, name=label)
        layer.rel_error = float(result.rel_error)
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        y = self.plan.apply(x.reshape(-1, *self.in_shape), list(self.cores))
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*lead, self.out_features)

    def params(self) -> int:
        """``Σ r_{k-1} m_k n_k r_k`` plus ``out_features`` for the bias."""
        cores = tt_core_params(self.ranks, self.out_shape, self.in_shape)
        return cores + (self.out_features if self.bias is not None else 0)

    def macs(self, input_shape: Sequence[int]) -> int:
        """Multiply-accumulates of the planned core contractions for one sample of shape ``(…, in_features)``."""
        vectors = feature_input(input_shape, self.in_features, type(self).__name__)
        return vectors * self.plan.macs_per_row

    def extra_repr(self) -> str:
        return (f"in_shape={list(self.in_shape)}, out_shape={list(self.out_shape)}, ranks={list(self.ranks)}, "
                f"order={list(self.plan.order)}")


def set_channel_factors(layer: nn.Module, label: str, in_shape: Sequence[int], out_shape: Sequence[int],
                        kernel_size: Any, stride: Any, padding: Any, dilation: Any) -> ConvGeometry:
    """Set ``in_shape``, ``out_shape``, ``in_channels``, ``out_channels`` and ``geometry`` of a conv whose channels
    are factored into modes (TT and TR convs); returns the geometry."""
    layer.in_shape = check_shape(label, in_shape, "in_shape")
    layer.out_shape = check_shape(label, out_shape, "out_shape", length=len(layer.in_shape))
    layer.in_channels, layer.out_channels = math.prod(layer.in_shape), math.prod(layer.out_shape)
    layer.geometry = ConvGeometry.make(label, kernel_size, stride, padding, dilation)
    return layer.geometry


class TTConv2d(ModeFactored, nn.Module):
    """A convolution whose kernel is a tensor train with the spatial window as its own core (Garipov et al. 2016).

    Kernel ``W[t, c, i, j] = Σ_{r_0} F[r_0, i, j] · TT[(t_1…t_d), (c_1…c_d), r_0]`` where ``F`` (``r_0 × kh × kw``) is
    the spatial core and ``TT`` is a TT-matrix with channel cores ``G_k`` (``r_{k-1} × t_k × c_k × r_k``) whose
    first bond is ``r_0`` (so ``r_0`` links the spatial core to the channel cores) and ``r_d = 1``.

    Realisation (Garipov's): the input ``(B, C, H, W)`` is reshaped to ``(B·C, 1, H, W)`` and convolved by one
    ``nn.Conv2d(1 → r_0, kh × kw)`` — the same ``r_0`` spatial filters applied to every input channel separately,
    with the layer's stride / padding / dilation. The result, ``(B, Ho, Wo, r_0, c_1…c_d)`` after a permute, is
    contracted with the channel cores one at a time in the cheapest order (a TT-matrix acting on the
    ``(r_0, C)`` vector of every output pixel), then the bias is added.

    Args:
        in_shape: ``(c_1…c_d)`` with ``Π c_k = in_channels``; out_shape: ``(t_1…t_d)`` with ``Π t_k = out_channels``.
        kernel_size, stride, padding, dilation: as in ``nn.Conv2d``.
        ranks: an int (maximum rank, capped per bond at the full rank of the ``kh·kw × c_1t_1 × … × c_dt_d`` tensor),
            or all ``d+1`` ranks ``r_0 … r_d`` with ``r_d = 1``, or the first ``d``.
        bias: add a bias of size ``out_channels``.
        name: layer name used in error messages only.

    Parameters: ``spatial.weight`` (``r_0 × 1 × kh × kw``), ``cores.0 … cores.{d-1}``, ``bias``.
    """

    def __init__(self, in_shape: Sequence[int], out_shape: Sequence[int], kernel_size: int | Sequence[int],
                 ranks: int | Sequence[int], stride: int | Sequence[int] = 1, padding: Padding = 0,
                 dilation: int | Sequence[int] = 1, bias: bool = True, *, name: str | None = None):
        super().__init__()
        label = layer_label(name, self)
        g = set_channel_factors(self, label, in_shape, out_shape, kernel_size, stride, padding, dilation)
        kh, kw = g.kernel_size
        d = len(self.in_shape)
        self.ranks = tt_conv_ranks(self.in_shape, self.out_shape, g.kernel_size, ranks, name=label)
        std = _tt_init_std(self.in_channels * kh * kw, self.ranks[:-1], d + 1)
        self.spatial = nn.Conv2d(1, self.ranks[0], g.kernel_size, stride=g.stride, padding=g.padding,
                                 dilation=g.dilation, bias=False)
        normal_(self.spatial.weight, std)
        self.cores = _random_cores(self.ranks, self.out_shape, self.in_shape, std)
        self.bias = nn.Parameter(torch.zeros(self.out_channels)) if bias else None
        self.plan = TTContraction(self.in_shape, self.out_shape, self.ranks, left_in_input=True)
        #: Relative Frobenius error of the TT decomposition when built by :meth:`from_conv`, else ``None``.
        self.rel_error: float | None = None

    @classmethod
    def from_cores(cls, spatial: torch.Tensor, cores: Sequence[torch.Tensor], bias: torch.Tensor | None = None, *,
                   stride: int | Sequence[int] = 1, padding: Padding = 0, dilation: int | Sequence[int] = 1,
                   name: str | None = None) -> TTConv2d:
        """Build the layer from a spatial core ``r_0 × kh × kw`` and channel cores ``r_{k-1} × t_k × c_k × r_k``."""
        label = layer_label(name, cls)
        check_finite(label, spatial, bias, *cores, what="TT cores")
        if spatial.dim() != 3 or not cores or any(c.dim() != 4 for c in cores):
            raise DecompositionError(label, "TT conv needs a 3-way spatial core and 4-way channel cores")
        ranks = _chained_ranks(label, spatial.shape[0], cores)
        layer = cls([c.shape[2] for c in cores], [c.shape[1] for c in cores], tuple(spatial.shape[1:]), ranks,
                    stride=stride, padding=padding, dilation=dilation, bias=bias is not None, name=label)
        layer.to(device=spatial.device, dtype=spatial.dtype)
        with torch.no_grad():
            layer.spatial.weight.copy_(spatial.unsqueeze(1))
        _copy_cores(layer, cores, bias)
        return layer

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, in_shape: Sequence[int], out_shape: Sequence[int],
                  rank: int | Sequence[int], *, name: str | None = None) -> TTConv2d:
        """TT-SVD (``decompose.tt_svd``) of the kernel of a trained ``nn.Conv2d``; ``rank`` as in the constructor.

        The kernel ``T × C × kh × kw`` is reshaped to ``(t_1…t_d, c_1…c_d, kh, kw)``, permuted to
        ``(kh, kw, c_1, t_1, …, c_d, t_d)`` and reshaped to ``kh·kw × c_1t_1 × … × c_dt_d`` — the spatial mode
        first — before TT-SVD. Exact at full TT-ranks.
        """
        label = layer_label(name, conv)
        check_conv2d(label, conv)
        in_shape, out_shape = _check_mode_shapes(label, in_shape, out_shape, conv.in_channels, conv.out_channels,
                                                 "channels")
        probe = cls(in_shape, out_shape, conv.kernel_size, rank, stride=conv.stride, padding=conv.padding,
                    dilation=conv.dilation, bias=False, name=label)  # validates geometry and ranks first
        d = len(in_shape)
        kh, kw = conv.kernel_size
        w = as_float64(conv.weight).reshape(*out_shape, *in_shape, kh, kw)
        perm = [2 * d, 2 * d + 1] + [i for k in range(d) for i in (d + k, k)]
        tensor = w.permute(perm).reshape(kh * kw, *[c * t for c, t in zip(in_shape, out_shape)])
        result = run_decomposition(label, decompose.tt_svd, tensor, ranks=(1, *probe.ranks))
        check_finite(label, *result.cores, what="TT result")
        first, *rest = result.cores  # first: 1 × kh·kw × r_0; rest: r_{k-1} × c_k·t_k × r_k
        spatial = first.reshape(kh * kw, -1).t().reshape(-1, kh, kw)
        cores = [c.reshape(c.shape[0], in_shape[k], out_shape[k], c.shape[-1]).permute(0, 2, 1, 3)
                 for k, c in enumerate(rest)]
        layer = cls.from_cores(like(spatial, conv.weight), [like(c, conv.weight) for c in cores], conv.bias,
                               stride=conv.stride, padding=conv.padding, dilation=conv.dilation, name=label)
        layer.rel_error = float(result.rel_error)
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        z = self.spatial(x.reshape(b * c, 1, h, w))                    # (B·C, r_0, Ho, Wo)
        ho, wo = z.shape[-2:]
        z = z.reshape(b, c, self.ranks[0], ho, wo).permute(0, 3, 4, 2, 1)  # (B, Ho, Wo, r_0, C)
        y = self.plan.apply(z.reshape(-1, self.ranks[0], *self.in_shape), list(self.cores))
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(b, ho, wo, self.out_channels).permute(0, 3, 1, 2)

    def params(self) -> int:
        """``r_0·kh·kw + Σ r_{k-1} t_k c_k r_k`` plus ``out_channels`` for the bias."""
        return tt_conv_params(self.in_shape, self.out_shape, self.geometry.kernel_size, self.ranks,
                              bias=self.bias is not None)

    def macs(self, input_shape: Sequence[int]) -> int:
        """``C·r_0·kh·kw·Ho·Wo`` for the spatial step plus the planned channel contractions at every output pixel."""
        h, w = image_input(input_shape, self.in_channels, type(self).__name__)
        return tt_conv_macs(self.in_shape, self.out_shape, self.geometry.kernel_size, self.ranks,
                            self.geometry.output_hw(h, w), plan=self.plan)

