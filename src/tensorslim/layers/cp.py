"""CP (CANDECOMP/PARAFAC) factorization of a 2-D convolution.

The kernel ``W`` of shape ``T × S × kh × kw`` (out, in, height, width) is approximated by ``R`` rank-one terms.

* ``form="cp3"`` (Astrid & Lee): CP of ``W`` reshaped to ``T × S × (kh·kw)``,
  ``W[t, s, i, j] = Σ_r A[t, r] B[s, r] C[i·kw + j, r]``, realised as
  1×1 conv ``S → R`` (weights ``Bᵀ``) → depthwise ``kh × kw`` conv on ``R`` channels (filter ``r`` is
  ``C[:, r]``; the original stride / padding / dilation) → 1×1 conv ``R → T`` (weights ``A``, the bias).
  Params ``R(S + kh·kw + T)``.
* ``form="cp4"`` (Lebedev et al.): CP of the 4-way kernel,
  ``W[t, s, i, j] = Σ_r A[t, r] B[s, r] H[i, r] V[j, r]``, realised as 1×1 ``S → R`` → depthwise ``kh × 1``
  (stride / padding / dilation of the height axis) → depthwise ``1 × kw`` (those of the width axis) →
  1×1 ``R → T``. Params ``R(S + kh + kw + T)``.

Zero padding commutes with the bias-free 1×1 projection in front, so the layer equals the dense convolution
with the reconstructed kernel exactly, padding included.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from tensorslim.errors import DecompositionError

from .. import decompose
from ._common import (
    ConvGeometry,
    Padding,
    as_float64,
    balance_cp,
    check_conv2d,
    check_finite,
    check_positive_int,
    check_rank,
    image_input,
    layer_label,
    like,
    numel,
    run_decomposition,
)

FORMS = ("cp3", "cp4")
ALGORITHMS = ("power", "als")


def _cp_function(algorithm: str) -> Callable[..., Any]:
    """The ``tensorslim.decompose`` function behind ``algorithm`` (looked up at call time)."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {list(ALGORITHMS)}, got {algorithm!r}")
    return decompose.cp_power if algorithm == "power" else decompose.cp_als


def cp_option_names(algorithm: str) -> frozenset[str]:
    """The decomposition options :meth:`CPConv2d.from_conv` accepts with ``algorithm`` ("power" or "als").

    Derived from the keyword-only parameters of the real function (``decompose.cp_power`` or
    ``decompose.cp_als``), so it cannot drift from what the function takes; deprecated spellings (such as
    ``max_iter``) are not listed. ``algorithm`` and ``form`` are :meth:`~CPConv2d.from_conv`'s own arguments
    and not part of this set. Unknown ``algorithm``: ValueError.
    """
    params = inspect.signature(_cp_function(algorithm)).parameters.values()
    return frozenset(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY)


def check_cp_options(algorithm: str, options: Mapping[str, Any]) -> None:
    """Raise ValueError naming every option in ``options`` that ``algorithm`` does not take, and listing
    those it takes (what a plan validator needs per method and algorithm)."""
    accepted = cp_option_names(algorithm)
    unknown = sorted(set(options) - accepted)
    if unknown:
        names = ", ".join(repr(u) for u in unknown)
        raise ValueError(f"unknown option{'s' if len(unknown) > 1 else ''} {names} for CP algorithm "
                         f"{algorithm!r} (accepted: {', '.join(sorted(accepted))})")


def cp_full_rank(dims: Sequence[int]) -> int:
    """An upper bound on the CP rank of a tensor with these dimensions: the product of all but the largest."""
    return numel(dims) // max(dims)


class CPConv2d(nn.Module):
    """A ``kh × kw`` convolution as a CP-3 or CP-4 chain of standard convolutions (see the module doc).

    Args:
        in_channels, out_channels, kernel_size: sizes of the replaced convolution (``kernel_size`` int or
            (kh, kw); a 1×1 kernel is refused, use :class:`~tensorslim.layers.SVDLinear`-style 1×1 splits).
        rank: the CP rank ``R``; at most the product of all but the largest dimension of the decomposed tensor.
        form: ``"cp3"`` or ``"cp4"``.
        stride, padding, dilation: as in ``nn.Conv2d`` (padding int, pair, ``"same"`` or ``"valid"``).
        bias: whether the last 1×1 conv has a bias.
        name: layer name used in error messages only.

    Submodules: ``pointwise_in``, then ``depthwise`` (cp3) or ``depthwise_h`` and ``depthwise_w`` (cp4), then
    ``pointwise_out``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | Sequence[int], rank: int,
                 form: str = "cp3", stride: int | Sequence[int] = 1, padding: Padding = 0,
                 dilation: int | Sequence[int] = 1, bias: bool = True, *, name: str | None = None):
        super().__init__()
        label = layer_label(name, self)
        if form not in FORMS:
            raise DecompositionError(label, f"form must be one of {list(FORMS)}, got {form!r}")
        self.in_channels = check_positive_int(label, in_channels, "in_channels")
        self.out_channels = check_positive_int(label, out_channels, "out_channels")
        self.geometry = ConvGeometry.make(label, kernel_size, stride, padding, dilation)
        kh, kw = self.geometry.kernel_size
        if (kh, kw) == (1, 1):
            raise DecompositionError(label, "CP of a 1x1 convolution is a matrix factorization; use SVD instead")
        self.form = form
        self.rank = check_rank(label, rank, cp_full_rank(self.tensor_dims()))
        g, r = self.geometry, self.rank
        self.pointwise_in = nn.Conv2d(self.in_channels, r, 1, bias=False)
        if form == "cp3":
            self.depthwise = nn.Conv2d(r, r, g.kernel_size, stride=g.stride, padding=g.padding,
                                       dilation=g.dilation, groups=r, bias=False)
        else:
            self.depthwise_h = nn.Conv2d(r, r, (kh, 1), stride=(g.stride[0], 1), padding=g.axis_padding(0),
                                         dilation=(g.dilation[0], 1), groups=r, bias=False)
            self.depthwise_w = nn.Conv2d(r, r, (1, kw), stride=(1, g.stride[1]), padding=g.axis_padding(1),
                                         dilation=(1, g.dilation[1]), groups=r, bias=False)
        self.pointwise_out = nn.Conv2d(r, self.out_channels, 1, bias=bool(bias))
        #: Relative Frobenius error of the CP decomposition when built by :meth:`from_conv`, else ``None``.
        self.rel_error: float | None = None

    def tensor_dims(self) -> tuple[int, ...]:
        """Dimensions of the tensor the CP decomposes: (T, S, kh·kw) for cp3, (T, S, kh, kw) for cp4."""
        kh, kw = self.geometry.kernel_size
        if self.form == "cp3":
            return (self.out_channels, self.in_channels, kh * kw)
        return (self.out_channels, self.in_channels, kh, kw)

    @classmethod
    def from_factors(cls, factors: Sequence[torch.Tensor], weights: torch.Tensor | None = None, *,
                     kernel_size: int | Sequence[int], form: str = "cp3", stride: int | Sequence[int] = 1,
                     padding: Padding = 0, dilation: int | Sequence[int] = 1, bias: torch.Tensor | None = None,
                     name: str | None = None) -> CPConv2d:
        """Build the layer realising ``W = Σ_r λ_r a_r ∘ b_r ∘ …`` from given CP factors.

        ``factors`` are ``(A: T×R, B: S×R, C: kh·kw×R)`` for cp3 or ``(A: T×R, B: S×R, H: kh×R, V: kw×R)``
        for cp4, ``weights`` the optional λ (length R). The scale is balanced across the factors.
        """
        label = layer_label(name, cls)
        expected = 3 if form == "cp3" else 4
        if form in FORMS and len(factors) != expected:
            raise DecompositionError(label, f"{form} needs {expected} factors, got {len(factors)}")
        check_finite(label, weights, *factors, what="CP factors")
        t, s = factors[0].shape[0], factors[1].shape[0]
        rank = factors[0].shape[1]
        layer = cls(s, t, kernel_size, rank, form=form, stride=stride, padding=padding, dilation=dilation,
                    bias=bias is not None, name=label)
        dims = tuple(f.shape[0] for f in factors)
        if dims != layer.tensor_dims() or any(f.shape[1] != rank for f in factors):
            raise DecompositionError(
                label, f"factor shapes {[tuple(f.shape) for f in factors]} do not fit a kernel {layer.tensor_dims()}")
        ref = factors[0]
        a, b, *spatial = balance_cp(weights, factors)
        kh, kw = layer.geometry.kernel_size
        layer.to(device=ref.device, dtype=ref.dtype)
        with torch.no_grad():
            layer.pointwise_in.weight.copy_(b.t().reshape(rank, s, 1, 1))
            if form == "cp3":
                layer.depthwise.weight.copy_(spatial[0].t().reshape(rank, 1, kh, kw))
            else:
                layer.depthwise_h.weight.copy_(spatial[0].t().reshape(rank, 1, kh, 1))
                layer.depthwise_w.weight.copy_(spatial[1].t().reshape(rank, 1, 1, kw))
            layer.pointwise_out.weight.copy_(a.reshape(t, rank, 1, 1))
            if bias is not None:
                layer.pointwise_out.bias.copy_(bias.detach())
        return layer

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, rank: int, *, algorithm: str = "power", form: str = "cp3",
                  name: str | None = None, **options: Any) -> CPConv2d:
        """CP-decompose a trained ``nn.Conv2d`` at ``rank``.

        ``algorithm="power"`` uses ``decompose.cp_power`` (tensor power method with deflation, Astrid & Lee),
        ``"als"`` uses ``decompose.cp_als``; ``options`` are passed to that function. Both take ``init``,
        ``n_iter_max``, ``tol`` and ``seed``; power also ``stop``, ALS also ``linesearch`` and ``precision``
        (:func:`cp_option_names` lists them). Grouped convolutions, 1×1 kernels, NaN/inf weights,
        out-of-range ranks and options the algorithm does not take raise :class:`DecompositionError` naming
        ``name`` (and the option).
        """
        label = layer_label(name, conv)
        check_conv2d(label, conv)
        if algorithm not in ALGORITHMS:
            raise DecompositionError(label, f"algorithm must be one of {list(ALGORITHMS)}, got {algorithm!r}")
        try:
            check_cp_options(algorithm, options)
        except ValueError as err:
            raise DecompositionError(label, str(err)) from err
        # Validate sizes and rank before the (possibly long) decomposition.
        probe = cls(conv.in_channels, conv.out_channels, conv.kernel_size, rank, form=form, stride=conv.stride,
                    padding=conv.padding, dilation=conv.dilation, bias=False, name=label)
        weight = as_float64(conv.weight).reshape(probe.tensor_dims())
        result = run_decomposition(label, _cp_function(algorithm), weight, rank, **options)
        check_finite(label, result.weights, *result.factors, what="CP result")
        factors = [like(f, conv.weight) for f in result.factors]
        weights = None if result.weights is None else like(result.weights, conv.weight)
        layer = cls.from_factors(factors, weights, kernel_size=conv.kernel_size, form=form, stride=conv.stride,
                                 padding=conv.padding, dilation=conv.dilation, bias=conv.bias, name=label)
        layer.rel_error = float(result.rel_error)
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pointwise_in(x)
        if self.form == "cp3":
            x = self.depthwise(x)
        else:
            x = self.depthwise_w(self.depthwise_h(x))
        return self.pointwise_out(x)

    @property
    def has_bias(self) -> bool:
        return self.pointwise_out.bias is not None

    def params(self) -> int:
        """``R(S + kh·kw + T)`` for cp3, ``R(S + kh + kw + T)`` for cp4, plus ``T`` for the bias."""
        kh, kw = self.geometry.kernel_size
        spatial = kh * kw if self.form == "cp3" else kh + kw
        bias = self.out_channels if self.has_bias else 0
        return self.rank * (self.in_channels + spatial + self.out_channels) + bias

    def macs(self, input_shape: Sequence[int]) -> int:
        """Multiply-accumulates for one (C, H, W) sample, stage by stage as ``forward`` runs them."""
        h, w = image_input(input_shape, self.in_channels, type(self).__name__)
        ho, wo = self.geometry.output_hw(h, w)
        r = self.rank
        kh, kw = self.geometry.kernel_size
        total = self.in_channels * r * h * w
        if self.form == "cp3":
            total += r * kh * kw * ho * wo
        else:
            total += r * kh * ho * w  # kh×1 depthwise: height already at output size, width untouched
            total += r * kw * ho * wo
        return total + r * self.out_channels * ho * wo

    def config(self) -> dict[str, Any]:
        return {"in_channels": self.in_channels, "out_channels": self.out_channels, "rank": self.rank,
                "form": self.form, **self.geometry.config(), "bias": self.has_bias}

    def extra_repr(self) -> str:
        return f"{self.in_channels} -> {self.out_channels}, form={self.form}, rank={self.rank}"
