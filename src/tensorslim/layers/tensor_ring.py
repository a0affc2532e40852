"""Tensor Ring layers (Wang et al. 2018, "Wide Compression: Tensor Ring Nets"): :class:`TRLinear` and
:class:`TRConv2d`, initialised from trained layers by TR-ALS (:mod:`tensorslim.decompose.tensor_ring`).

Index conventions (row-major everywhere; core ``k`` of a ring is ``r_k × n_k × r_{k+1}`` and the last bond closes
on ``r_0``):

* :class:`TRLinear`: a ring of ``2d`` cores, input cores ``U_k`` (``r_{k-1} × i_k × r_k``, ``k = 1…d``) then output
  cores ``V_k`` (``r_{d+k-1} × o_k × r_{d+k}``), ``r_{2d} ≡ r_0``;
  ``W[o, i] = trace(U_1[:, i_1, :] ⋯ U_d[:, i_d, :] V_1[:, o_1, :] ⋯ V_d[:, o_d, :])`` with ``i = (i_1…i_d)`` and
  ``o = (o_1…o_d)`` row-major over their factors, as ``nn.Linear``'s ``weight[out, in]``.
* :class:`TRConv2d`: ``2d + 1`` cores, the ``d`` input cores, one spatial core ``S`` (``r_d × kh·kw × r_{d+1}``) and
  the ``d`` output cores (``V_k``: ``r_{d+k} × o_k × r_{d+k+1}``, ``r_{2d+1} ≡ r_0``);
  ``K[t, c, y, x] = trace(U(c) S[:, (y, x), :] V(t))``.

Forward (one code path for both layers; the dense weight is never formed). Activations are arranged as
``(N, features, P)``: for the Linear ``N = 1`` and the batch is ``P`` (so every product is one wide GEMM), for the
convolution ``N`` is the batch and ``P`` the pixels. The input cores are applied one at a time from the left:
``U_1`` (as an ``r_0 r_1 × i_1`` matrix) turns ``(N, i_1·rest, P)`` into ``(N·r_0, r_1, rest·P)``, and each next
``U_k`` contracts ``(r_{k-1}, i_k)``, leaving ``(N·r_0, r_d, P)``. For the convolution that is already the input
of one ``kh × kw`` ``nn.Conv2d`` (``r_d → r_{d+1}``, the original stride / padding / dilation; the ``r_0`` copies
ride in the batch). The output cores then add ``o_1, o_2, …`` one at a time, and the last one closes the ring by
contracting both its left bond and ``r_0`` (no trace op). Only ``reshape`` / ``permute`` / ``matmul`` / ``conv2d``
are used, so the layers export to ONNX as plain MatMul and Conv nodes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from tensorslim.decompose.tensor_ring import tr_als
from tensorslim.errors import DecompositionError

from ._common import (
    Padding,
    as_float64,
    check_conv2d,
    check_finite,
    check_module,
    feature_input,
    image_input,
    layer_label,
    like,
    normal_,
    run_decomposition,
)
from .tt import ModeFactored, _check_mode_shapes, _tt_init_std, set_channel_factors, set_feature_factors

#: Options of ``from_linear`` / ``from_conv`` passed to :func:`tensorslim.decompose.tensor_ring.tr_als`.
FIT_OPTIONS = ("n_iter_max", "tol", "init", "seed")


def tr_ring_ranks(ranks: int | Sequence[int], count: int, *, name: str = "TR layer") -> tuple[int, ...]:
    """The ``count`` ring ranks from an int (every bond the same) or a sequence of ``count`` positive ints."""
    if isinstance(ranks, bool):
        raise DecompositionError(name, f"TR ranks must be an int or a sequence of ints, got {ranks!r}")
    if isinstance(ranks, int):
        values = [ranks] * count
    elif isinstance(ranks, (str, bytes)) or not isinstance(ranks, Sequence):
        raise DecompositionError(name, f"TR ranks must be an int or a sequence of ints, got {ranks!r}")
    else:
        values = list(ranks)
        if len(values) != count:
            raise DecompositionError(name, f"expected {count} TR ring ranks, got {values}")
    for k, r in enumerate(values):
        if isinstance(r, bool) or not isinstance(r, int) or r < 1:
            raise DecompositionError(name, f"TR rank r_{k} must be at least 1, got {r!r}")
    return tuple(int(r) for r in values)


def _ring_core_shapes(in_shape: Sequence[int], out_shape: Sequence[int], ranks: Sequence[int],
                      middle: int | None = None) -> list[tuple[int, int, int]]:
    """Shapes ``r_k × n_k × r_{k+1}`` of the ring: input cores, the optional spatial core (``middle`` = kh·kw),
    output cores."""
    modes = [*in_shape, *([] if middle is None else [middle]), *out_shape]
    return [(ranks[k], n, ranks[(k + 1) % len(ranks)]) for k, n in enumerate(modes)]


def tr_linear_params(in_shape: Sequence[int], out_shape: Sequence[int], ranks: Sequence[int],
                     bias: bool = True) -> int:
    """Parameters of a :class:`TRLinear`: ``Σ_k r_{k-1} i_k r_k + Σ_k r_{d+k-1} o_k r_{d+k}`` plus the bias."""
    cores = sum(math.prod(s) for s in _ring_core_shapes(in_shape, out_shape, ranks))
    return cores + (math.prod(out_shape) if bias else 0)


def tr_conv_params(in_shape: Sequence[int], out_shape: Sequence[int], kernel_size: Sequence[int],
                   ranks: Sequence[int], bias: bool = True) -> int:
    """Parameters of a :class:`TRConv2d`: the input cores, ``r_d·kh·kw·r_{d+1}``, the output cores, the bias."""
    kh, kw = kernel_size
    cores = sum(math.prod(s) for s in _ring_core_shapes(in_shape, out_shape, ranks, kh * kw))
    return cores + (math.prod(out_shape) if bias else 0)


def _input_chain_macs(in_shape: Sequence[int], ranks: Sequence[int]) -> int:
    """Per position: ``r_0 r_1 Π_{j≥1} i_j + Σ_{k≥2} r_0 r_{k-1} r_k Π_{j≥k} i_j``."""
    d = len(in_shape)
    total = ranks[0] * ranks[1] * math.prod(in_shape)
    for k in range(1, d):
        total += ranks[0] * ranks[k] * ranks[k + 1] * math.prod(in_shape[k:])
    return total


def _output_chain_macs(out_shape: Sequence[int], ranks: Sequence[int], r0: int) -> int:
    """Per position, ``ranks`` = ``s_0 … s_d`` (``s_d = r_0``): ``Σ_{k<d} r_0 s_{k-1} s_k Π_{j≤k} o_j`` plus
    ``s_{d-1} r_0 Π_j o_j`` for the closing core."""
    d = len(out_shape)
    total = 0
    for k in range(1, d + 1):
        step = ranks[k - 1] * ranks[k] * math.prod(out_shape[:k])
        total += step * (r0 if k < d else 1)
    return total


def tr_linear_macs(in_shape: Sequence[int], out_shape: Sequence[int], ranks: Sequence[int]) -> int:
    """MACs of a :class:`TRLinear` per input vector: the input-core chain plus the output-core chain."""
    d = len(in_shape)
    return _input_chain_macs(in_shape, ranks[:d + 1]) + _output_chain_macs(out_shape, [*ranks[d:], ranks[0]],
                                                                           ranks[0])


def tr_conv_macs(in_shape: Sequence[int], out_shape: Sequence[int], kernel_size: Sequence[int],
                 ranks: Sequence[int], input_hw: Sequence[int], output_hw: Sequence[int]) -> int:
    """MACs of a :class:`TRConv2d` per sample: the input chain at each of the ``H·W`` input pixels, the spatial
    convolution ``r_0·r_d·r_{d+1}·kh·kw·Ho·Wo``, the output chain at each of the ``Ho·Wo`` output pixels."""
    d = len(in_shape)
    kh, kw = kernel_size
    pixels_in, pixels_out = math.prod(input_hw), math.prod(output_hw)
    spatial = ranks[0] * ranks[d] * ranks[d + 1] * kh * kw * pixels_out
    return (pixels_in * _input_chain_macs(in_shape, ranks[:d + 1]) + spatial
            + pixels_out * _output_chain_macs(out_shape, [*ranks[d + 1:], ranks[0]], ranks[0]))


def _random_ring(shapes: Sequence[tuple[int, int, int]], std: float) -> nn.ParameterList:
    return nn.ParameterList([nn.Parameter(normal_(torch.empty(s), std)) for s in shapes])


def _apply_inputs(x: torch.Tensor, cores: Sequence[torch.Tensor], in_shape: Sequence[int]) -> torch.Tensor:
    """``(N, C, P)`` with ``C = Π in_shape`` (row-major) → ``(N·r_0, r_d, P)`` through the input cores."""
    n, _, p = x.shape
    r0, i1, r1 = cores[0].shape
    z = torch.matmul(cores[0].permute(0, 2, 1).reshape(r0 * r1, i1), x.reshape(n, i1, -1))  # (N, r0·r1, rest·P)
    for core, size in zip(cores[1:], in_shape[1:]):
        r, _, r_next = core.shape
        z = torch.matmul(core.permute(2, 0, 1).reshape(r_next, r * size), z.reshape(n * r0, r * size, -1))
    return z.reshape(n * r0, -1, p)


def _apply_outputs(z: torch.Tensor, cores: Sequence[torch.Tensor], n: int, r0: int) -> torch.Tensor:
    """``(N·r_0, s_0, P)`` → ``(N, T, P)`` through the output cores; the last closes the ring over ``r_0``."""
    p = z.shape[-1]
    outs = 1
    z = z.reshape(n * r0, z.shape[1], p)
    for core in cores[:-1]:
        r, o, r_next = core.shape
        z = torch.matmul(core.permute(1, 2, 0).reshape(o * r_next, r), z.reshape(-1, r, p))  # (N r0 O, o r', P)
        outs *= o
    last = cores[-1]  # s_{d-1} × o_d × r_0
    r, o, _ = last.shape
    z = z.reshape(n, r0, outs, r, p).permute(0, 2, 1, 3, 4).reshape(n * outs, r0 * r, p)
    y = torch.matmul(last.permute(1, 2, 0).reshape(o, r0 * r), z)  # (N·O, o_d, P)
    return y.reshape(n, outs * o, p)


def _check_fit_options(label: str, options: dict[str, Any]) -> None:
    unknown = sorted(set(options) - set(FIT_OPTIONS))
    if unknown:
        raise DecompositionError(label, f"unknown TR fit option(s) {unknown}; known: {list(FIT_OPTIONS)}")


def _fit(label: str, tensor: torch.Tensor, ranks: Sequence[int], options: dict[str, Any]) -> Any:
    _check_fit_options(label, options)
    result = run_decomposition(label, tr_als, tensor, list(ranks), **options)
    check_finite(label, *result.cores, what="TR result")
    return result


def _copy_ring(params: Sequence[nn.Parameter], cores: Sequence[torch.Tensor]) -> None:
    with torch.no_grad():
        for p, c in zip(params, cores):
            p.copy_(c)


def _check_given_cores(label: str, cores: Sequence[torch.Tensor]) -> None:
    if any(c.dim() != 3 for c in cores):
        raise DecompositionError(label, "TR cores must be 3-way tensors")
    for k, core in enumerate(cores):
        if core.shape[2] != cores[(k + 1) % len(cores)].shape[0]:
            raise DecompositionError(label, f"TR core ranks do not close a ring: {[tuple(c.shape) for c in cores]}")


class TRLinear(ModeFactored, nn.Module):
    """A Linear layer whose weight is a tensor ring of ``2d`` cores (see the module doc for the convention).

    Args:
        in_shape: ``(i_1, …, i_d)`` with ``Π i_k = in_features``.
        out_shape: ``(o_1, …, o_d)`` with ``Π o_k = out_features``, same length ``d``.
        ranks: an int (every bond) or the ``2d`` ring ranks ``r_0 … r_{2d-1}``.
        bias: add a bias of size ``out_features``.
        name: layer name used in error messages only.

    Parameters: ``in_cores.0 … in_cores.{d-1}`` (``r_{k-1} × i_k × r_k``), ``out_cores.0 … out_cores.{d-1}``
    (``r_{d+k-1} × o_k × r_{d+k}``), ``bias``. Random init: normal cores scaled so that the represented weight has
    entry variance ``1/in_features``; zero bias.
    """

    def __init__(self, in_shape: Sequence[int], out_shape: Sequence[int], ranks: int | Sequence[int],
                 bias: bool = True, *, name: str | None = None):
        super().__init__()
        label = layer_label(name, self)
        set_feature_factors(self, label, in_shape, out_shape)
        d = len(self.in_shape)
        self.ranks = tr_ring_ranks(ranks, 2 * d, name=label)
        shapes = _ring_core_shapes(self.in_shape, self.out_shape, self.ranks)
        std = _tt_init_std(self.in_features, self.ranks, 2 * d)
        self.in_cores = _random_ring(shapes[:d], std)
        self.out_cores = _random_ring(shapes[d:], std)
        self.bias = nn.Parameter(torch.zeros(self.out_features)) if bias else None
        #: Relative Frobenius error of the TR decomposition when built by :meth:`from_linear`, else ``None``.
        self.rel_error: float | None = None

    @classmethod
    def from_cores(cls, in_cores: Sequence[torch.Tensor], out_cores: Sequence[torch.Tensor],
                   bias: torch.Tensor | None = None, *, name: str | None = None) -> TRLinear:
        """Build the layer from given ring cores (``d`` input then ``d`` output cores) and an optional bias."""
        label = layer_label(name, cls)
        cores = [*in_cores, *out_cores]
        check_finite(label, bias, *cores, what="TR cores")
        if not in_cores or len(in_cores) != len(out_cores):
            raise DecompositionError(label, "a TR Linear needs d input and d output cores, d >= 1")
        _check_given_cores(label, cores)
        layer = cls([c.shape[1] for c in in_cores], [c.shape[1] for c in out_cores], [c.shape[0] for c in cores],
                    bias=bias is not None, name=label)
        layer.to(device=cores[0].device, dtype=cores[0].dtype)
        _copy_ring(layer.ring_cores(), cores)
        if bias is not None:
            with torch.no_grad():
                layer.bias.copy_(bias.detach())  # type: ignore[union-attr]
        return layer

    @classmethod
    def from_linear(cls, linear: nn.Linear, in_shape: Sequence[int], out_shape: Sequence[int],
                    ranks: int | Sequence[int], *, name: str | None = None, **fit_options: Any) -> TRLinear:
        """TR-ALS (``decompose.tensor_ring.tr_als``) of a trained ``nn.Linear``; sets ``rel_error``.

        The weight ``out × in`` is reshaped to ``(o_1…o_d, i_1…i_d)`` and permuted to ``(i_1…i_d, o_1…o_d)``, the
        ring order of the cores. ``fit_options``: ``n_iter_max``, ``tol``, ``init`` (``"svd"``: TR-SVD start where
        the ranks allow it), ``seed``. Exact (up to round-off) at ranks where TR-SVD is exact.
        """
        label = layer_label(name, linear)
        check_module(label, linear, nn.Linear)
        check_finite(label, linear.weight, linear.bias)
        in_shape, out_shape = _check_mode_shapes(label, in_shape, out_shape, linear.in_features,
                                                 linear.out_features, "features")
        _check_fit_options(label, fit_options)
        probe = cls(in_shape, out_shape, ranks, bias=False, name=label)  # validates the ranks first
        d = len(in_shape)
        tensor = as_float64(linear.weight).reshape(*out_shape, *in_shape)
        tensor = tensor.permute(*range(d, 2 * d), *range(d))
        result = _fit(label, tensor, probe.ranks, fit_options)
        cores = [like(c, linear.weight) for c in result.cores]
        layer = cls.from_cores(cores[:d], cores[d:], linear.bias, name=label)
        layer.rel_error = float(result.rel_error)
        return layer

    def ring_cores(self) -> list[torch.Tensor]:
        """The ``2d`` cores in ring order (``U_1 … U_d, V_1 … V_d``)."""
        return [*self.in_cores, *self.out_cores]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        cols = x.reshape(-1, self.in_features).transpose(0, 1).reshape(1, self.in_features, -1)  # (1, N_in, B)
        z = _apply_inputs(cols, list(self.in_cores), self.in_shape)
        y = _apply_outputs(z, list(self.out_cores), 1, self.ranks[0])  # (1, N_out, B)
        y = y.reshape(self.out_features, -1).transpose(0, 1)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*lead, self.out_features)

    def params(self) -> int:
        """``Σ_k r_{k-1} i_k r_k + Σ_k r_{d+k-1} o_k r_{d+k}`` plus ``out_features`` for the bias."""
        return tr_linear_params(self.in_shape, self.out_shape, self.ranks, bias=self.bias is not None)

    def macs(self, input_shape: Sequence[int]) -> int:
        """Multiply-accumulates of the core contractions for one sample of shape ``(…, in_features)``:
        ``r_0 r_1 N_in + Σ_{k≥2} r_0 r_{k-1} r_k Π_{j≥k} i_j + Σ_{k<d} r_0 r_{d+k-1} r_{d+k} Π_{j≤k} o_j
        + r_{2d-1} r_0 N_out`` per vector."""
        vectors = feature_input(input_shape, self.in_features, type(self).__name__)
        return vectors * tr_linear_macs(self.in_shape, self.out_shape, self.ranks)


class TRConv2d(ModeFactored, nn.Module):
    """A convolution whose kernel is a tensor ring: ``d`` input-channel cores, one spatial core, ``d``
    output-channel cores (Wang et al. 2018; see the module doc for the convention and the forward pass).

    Args:
        in_shape: ``(c_1…c_d)`` with ``Π c_k = in_channels``; out_shape: ``(t_1…t_d)`` with ``Π t_k = out_channels``.
        kernel_size, stride, padding, dilation: as in ``nn.Conv2d``.
        ranks: an int (every bond) or the ``2d + 1`` ring ranks ``r_0 … r_{2d}``.
        bias: add a bias of size ``out_channels``.
        name: layer name used in error messages only.

    Parameters: ``in_cores.0 … in_cores.{d-1}`` (``r_{k-1} × c_k × r_k``), ``spatial.weight`` (the spatial core
    ``r_d × kh·kw × r_{d+1}`` as a Conv2d weight ``r_{d+1} × r_d × kh × kw``), ``out_cores.0 … out_cores.{d-1}``
    (``r_{d+k} × t_k × r_{d+k+1}``), ``bias``.
    """

    def __init__(self, in_shape: Sequence[int], out_shape: Sequence[int], kernel_size: int | Sequence[int],
                 ranks: int | Sequence[int], stride: int | Sequence[int] = 1, padding: Padding = 0,
                 dilation: int | Sequence[int] = 1, bias: bool = True, *, name: str | None = None):
        super().__init__()
        label = layer_label(name, self)
        g = set_channel_factors(self, label, in_shape, out_shape, kernel_size, stride, padding, dilation)
        kh, kw = g.kernel_size
        d = len(self.in_shape)
        self.ranks = tr_ring_ranks(ranks, 2 * d + 1, name=label)
        shapes = _ring_core_shapes(self.in_shape, self.out_shape, self.ranks, kh * kw)
        std = _tt_init_std(self.in_channels * kh * kw, self.ranks, 2 * d + 1)
        self.in_cores = _random_ring(shapes[:d], std)
        self.spatial = nn.Conv2d(self.ranks[d], self.ranks[d + 1], g.kernel_size, stride=g.stride, padding=g.padding,
                                 dilation=g.dilation, bias=False)
        normal_(self.spatial.weight, std)
        self.out_cores = _random_ring(shapes[d + 1:], std)
        self.bias = nn.Parameter(torch.zeros(self.out_channels)) if bias else None
        #: Relative Frobenius error of the TR decomposition when built by :meth:`from_conv`, else ``None``.
        self.rel_error: float | None = None

    @classmethod
    def from_cores(cls, in_cores: Sequence[torch.Tensor], spatial: torch.Tensor, out_cores: Sequence[torch.Tensor],
                   bias: torch.Tensor | None = None, *, stride: int | Sequence[int] = 1, padding: Padding = 0,
                   dilation: int | Sequence[int] = 1, name: str | None = None) -> TRConv2d:
        """Build the layer from ring cores: ``d`` input cores, a spatial core ``r_d × kh × kw × r_{d+1}`` (the
        ``r_d × kh·kw × r_{d+1}`` core with its window unflattened), ``d`` output cores, an optional bias."""
        label = layer_label(name, cls)
        check_finite(label, spatial, bias, *in_cores, *out_cores, what="TR cores")
        if not in_cores or len(in_cores) != len(out_cores) or spatial.dim() != 4:
            raise DecompositionError(label, "a TR conv needs d input cores, a 4-way spatial core and d output cores")
        r, kh, kw, r_next = spatial.shape
        cores = [*in_cores, spatial.reshape(r, kh * kw, r_next), *out_cores]
        _check_given_cores(label, cores)
        layer = cls([c.shape[1] for c in in_cores], [c.shape[1] for c in out_cores], (kh, kw),
                    [c.shape[0] for c in cores], stride=stride, padding=padding, dilation=dilation,
                    bias=bias is not None, name=label)
        layer.to(device=spatial.device, dtype=spatial.dtype)
        _copy_ring([*layer.in_cores, *layer.out_cores], [*in_cores, *out_cores])
        with torch.no_grad():
            layer.spatial.weight.copy_(spatial.permute(3, 0, 1, 2))
            if bias is not None:
                layer.bias.copy_(bias.detach())  # type: ignore[union-attr]
        return layer

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, in_shape: Sequence[int], out_shape: Sequence[int],
                  ranks: int | Sequence[int], *, name: str | None = None, **fit_options: Any) -> TRConv2d:
        """TR-ALS of the kernel of a trained ``nn.Conv2d``; sets ``rel_error``. ``fit_options`` as in
        :meth:`TRLinear.from_linear`.

        The kernel ``T × C × kh × kw`` is reshaped to ``(t_1…t_d, c_1…c_d, kh·kw)`` and permuted to
        ``(c_1…c_d, kh·kw, t_1…t_d)``, the ring order of the cores.
        """
        label = layer_label(name, conv)
        check_conv2d(label, conv)
        in_shape, out_shape = _check_mode_shapes(label, in_shape, out_shape, conv.in_channels, conv.out_channels,
                                                 "channels")
        _check_fit_options(label, fit_options)
        probe = cls(in_shape, out_shape, conv.kernel_size, ranks, stride=conv.stride, padding=conv.padding,
                    dilation=conv.dilation, bias=False, name=label)  # validates geometry and ranks first
        d = len(in_shape)
        kh, kw = conv.kernel_size
        tensor = as_float64(conv.weight).reshape(*out_shape, *in_shape, kh * kw)
        tensor = tensor.permute(*range(d, 2 * d + 1), *range(d))
        result = _fit(label, tensor, probe.ranks, fit_options)
        cores = [like(c, conv.weight) for c in result.cores]
        spatial = cores[d].reshape(cores[d].shape[0], kh, kw, cores[d].shape[2])
        layer = cls.from_cores(cores[:d], spatial, cores[d + 1:], conv.bias, stride=conv.stride,
                               padding=conv.padding, dilation=conv.dilation, name=label)
        layer.rel_error = float(result.rel_error)
        return layer

    def spatial_core(self) -> torch.Tensor:
        """The spatial core ``r_d × kh·kw × r_{d+1}`` (a view of ``spatial.weight``)."""
        w = self.spatial.weight  # r_{d+1} × r_d × kh × kw
        return w.permute(1, 2, 3, 0).reshape(w.shape[1], -1, w.shape[0])

    def ring_cores(self) -> list[torch.Tensor]:
        """The ``2d + 1`` cores in ring order (``U_1 … U_d, S, V_1 … V_d``)."""
        return [*self.in_cores, self.spatial_core(), *self.out_cores]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        d, r0 = len(self.in_shape), self.ranks[0]
        z = _apply_inputs(x.reshape(b, c, h * w), list(self.in_cores), self.in_shape)  # (B·r_0, r_d, H·W)
        z = self.spatial(z.reshape(b * r0, self.ranks[d], h, w))                        # (B·r_0, r_{d+1}, Ho, Wo)
        ho, wo = z.shape[-2:]
        y = _apply_outputs(z.reshape(b * r0, self.ranks[d + 1], ho * wo), list(self.out_cores), b, r0)
        y = y.reshape(b, self.out_channels, ho, wo)
        if self.bias is not None:
            y = y + self.bias.reshape(1, -1, 1, 1)
        return y

    def params(self) -> int:
        """Input cores + ``r_d·kh·kw·r_{d+1}`` + output cores, plus ``out_channels`` for the bias."""
        return tr_conv_params(self.in_shape, self.out_shape, self.geometry.kernel_size, self.ranks,
                              bias=self.bias is not None)

    def macs(self, input_shape: Sequence[int]) -> int:
        """The input chain at every input pixel, ``r_0·r_d·r_{d+1}·kh·kw`` per output pixel for the spatial
        convolution, and the output chain at every output pixel (see :func:`tr_conv_macs`)."""
        h, w = image_input(input_shape, self.in_channels, type(self).__name__)
        return tr_conv_macs(self.in_shape, self.out_shape, self.geometry.kernel_size, self.ranks, (h, w),
                            self.geometry.output_hw(h, w))
