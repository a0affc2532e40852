"""Tucker-2 (and Tucker-1) factorization of a 2-D convolution (Kim et al., ICLR 2016).

Only the channel modes of the kernel ``W`` (``T × S × kh × kw``) are decomposed:
``W = G ×₀ U_out ×₁ U_in`` with core ``G`` of shape ``R_out × R_in × kh × kw``, ``U_out``: ``T × R_out``,
``U_in``: ``S × R_in``. Realised as

    1×1 conv S → R_in (weights U_inᵀ, no bias)
    kh×kw conv R_in → R_out (weights G; the original stride / padding / dilation, no bias)
    1×1 conv R_out → T (weights U_out; the original bias)

**Tucker-1.** When the input has few channels (``in_channels <= TUCKER1_MAX_IN_CHANNELS``, e.g. an RGB or
grayscale first layer), when ``R_in`` is ``None``, or when ``R_in == S``, the input mode is not decomposed and
the first 1×1 conv is left out: a projection of so few channels saves nothing and costs a layer. The layer is
then ``kh×kw conv S → R_out`` followed by ``1×1 conv R_out → T``; ``ranks`` is recorded as ``(None, R_out)``.
"""

from __future__ import annotations

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
    check_positive_int,
    check_rank,
    image_input,
    layer_label,
    like,
    run_decomposition,
)

#: Convolutions with at most this many input channels always get Tucker-1 (no first 1×1 conv).
TUCKER1_MAX_IN_CHANNELS = 4


class Tucker2Conv2d(nn.Module):
    """A convolution as 1×1 → core kh×kw → 1×1 (Tucker-2), or core → 1×1 (Tucker-1); see the module doc.

    Args:
        in_channels, out_channels, kernel_size: sizes of the replaced convolution (1×1 kernels are refused).
        ranks: ``(R_in, R_out)`` — the input-channel rank first. ``R_in`` may be ``None`` (Tucker-1);
            ``1 ≤ R_in ≤ min(S, T·kh·kw)`` and ``1 ≤ R_out ≤ min(T, S·kh·kw)``.
        stride, padding, dilation: as in ``nn.Conv2d``; they go to the core convolution.
        bias: whether the last 1×1 conv has a bias.
        name: layer name used in error messages only.

    Submodules: ``pointwise_in`` (``None`` for Tucker-1), ``core``, ``pointwise_out``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | Sequence[int],
                 ranks: Sequence[int | None], stride: int | Sequence[int] = 1, padding: Padding = 0,
                 dilation: int | Sequence[int] = 1, bias: bool = True, *, name: str | None = None):
        super().__init__()
        label = layer_label(name, self)
        self.in_channels = s = check_positive_int(label, in_channels, "in_channels")
        self.out_channels = t = check_positive_int(label, out_channels, "out_channels")
        self.geometry = ConvGeometry.make(label, kernel_size, stride, padding, dilation)
        kh, kw = self.geometry.kernel_size
        if (kh, kw) == (1, 1):
            raise DecompositionError(label, "Tucker of a 1x1 convolution is a matrix factorization; use SVD")
        if isinstance(ranks, (str, bytes)) or not isinstance(ranks, Sequence) or len(ranks) != 2:
            raise DecompositionError(label, f"ranks must be a pair (rank_in, rank_out), got {ranks!r}")
        r_in, r_out = ranks
        r_out = check_rank(label, r_out, min(t, s * kh * kw), "rank_out")
        if r_in is not None and not (isinstance(r_in, int) and r_in == s):
            r_in = check_rank(label, r_in, min(s, t * kh * kw), "rank_in")
        self.tucker1 = r_in is None or r_in == s or s <= TUCKER1_MAX_IN_CHANNELS
        self.ranks: tuple[int | None, int] = (None if self.tucker1 else r_in, r_out)
        core_in = s if self.tucker1 else int(r_in)  # type: ignore[arg-type]
        g = self.geometry
        self.pointwise_in = None if self.tucker1 else nn.Conv2d(s, core_in, 1, bias=False)
        self.core = nn.Conv2d(core_in, r_out, g.kernel_size, stride=g.stride, padding=g.padding,
                              dilation=g.dilation, bias=False)
        self.pointwise_out = nn.Conv2d(r_out, t, 1, bias=bool(bias))
        #: Relative Frobenius error of the Tucker decomposition when built by :meth:`from_conv`, else ``None``.
        self.rel_error: float | None = None

    @property
    def rank_in(self) -> int:
        """Channels entering the core: ``R_in``, or ``S`` for Tucker-1."""
        return self.core.in_channels

    @property
    def rank_out(self) -> int:
        return self.core.out_channels

    @classmethod
    def from_factors(cls, core: torch.Tensor, out_factor: torch.Tensor, in_factor: torch.Tensor | None = None,
                     *, stride: int | Sequence[int] = 1, padding: Padding = 0, dilation: int | Sequence[int] = 1,
                     bias: torch.Tensor | None = None, name: str | None = None) -> Tucker2Conv2d:
        """Build the layer realising ``W = core ×₀ out_factor ×₁ in_factor``.

        ``core``: ``R_out × R_in × kh × kw``; ``out_factor``: ``T × R_out``; ``in_factor``: ``S × R_in``, or
        ``None`` when ``core`` already spans the input channels (Tucker-1). When the layer is Tucker-1 by the
        small-input rule, a given ``in_factor`` is folded into the core (exactly).
        """
        label = layer_label(name, cls)
        check_finite(label, core, out_factor, in_factor, what="Tucker factors")
        if core.dim() != 4 or out_factor.dim() != 2 or out_factor.shape[1] != core.shape[0] or (
                in_factor is not None and (in_factor.dim() != 2 or in_factor.shape[1] != core.shape[1])):
            shapes = [None if f is None else tuple(f.shape) for f in (core, out_factor, in_factor)]
            raise DecompositionError(label, f"inconsistent Tucker factor shapes {shapes}")
        s = core.shape[1] if in_factor is None else in_factor.shape[0]
        r_in = None if in_factor is None else core.shape[1]
        layer = cls(s, out_factor.shape[0], tuple(core.shape[2:]), (r_in, core.shape[0]), stride=stride,
                    padding=padding, dilation=dilation, bias=bias is not None, name=label)
        layer.to(device=core.device, dtype=core.dtype)
        with torch.no_grad():
            if layer.tucker1 and in_factor is not None:
                core = torch.einsum("oakl,sa->oskl", core, in_factor)
            elif in_factor is not None:
                assert layer.pointwise_in is not None
                layer.pointwise_in.weight.copy_(in_factor.t().reshape(*in_factor.t().shape, 1, 1))
            layer.core.weight.copy_(core)
            layer.pointwise_out.weight.copy_(out_factor.reshape(*out_factor.shape, 1, 1))
            if bias is not None:
                layer.pointwise_out.bias.copy_(bias.detach())
        return layer

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, ranks: Sequence[int | None], *, name: str | None = None) -> Tucker2Conv2d:
        """Tucker-decompose the channel modes of a trained ``nn.Conv2d`` (``decompose.partial_tucker``).

        ``ranks = (R_in, R_out)``; exact at full ranks. Tucker-1 (only the output mode) when the module-doc rule
        applies. Grouped convolutions, 1×1 kernels, NaN/inf weights and out-of-range ranks raise
        :class:`DecompositionError` naming ``name``.
        """
        label = layer_label(name, conv)
        check_conv2d(label, conv)
        probe = cls(conv.in_channels, conv.out_channels, conv.kernel_size, ranks, stride=conv.stride,
                    padding=conv.padding, dilation=conv.dilation, bias=False, name=label)
        weight = as_float64(conv.weight)
        partial_tucker = decompose.partial_tucker
        if probe.tucker1:
            result = run_decomposition(label, partial_tucker, weight, (0,), (probe.rank_out,))
            out_factor, in_factor = result.factors[0], None
        else:
            result = run_decomposition(label, partial_tucker, weight, (0, 1), (probe.rank_out, probe.rank_in))
            out_factor, in_factor = result.factors
        check_finite(label, result.core, *result.factors, what="Tucker result")
        layer = cls.from_factors(
            like(result.core, conv.weight), like(out_factor, conv.weight),
            None if in_factor is None else like(in_factor, conv.weight),
            stride=conv.stride, padding=conv.padding, dilation=conv.dilation, bias=conv.bias, name=label)
        layer.rel_error = float(result.rel_error)
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pointwise_in is not None:
            x = self.pointwise_in(x)
        return self.pointwise_out(self.core(x))

    @property
    def has_bias(self) -> bool:
        return self.pointwise_out.bias is not None

    def params(self) -> int:
        """``S·R_in + R_in·R_out·kh·kw + R_out·T`` (no ``S·R_in`` for Tucker-1), plus ``T`` for the bias."""
        kh, kw = self.geometry.kernel_size
        first = 0 if self.tucker1 else self.in_channels * self.rank_in
        bias = self.out_channels if self.has_bias else 0
        return first + self.rank_in * self.rank_out * kh * kw + self.rank_out * self.out_channels + bias

    def macs(self, input_shape: Sequence[int]) -> int:
        """Multiply-accumulates for one (C, H, W) sample, stage by stage as ``forward`` runs them."""
        h, w = image_input(input_shape, self.in_channels, type(self).__name__)
        ho, wo = self.geometry.output_hw(h, w)
        kh, kw = self.geometry.kernel_size
        first = 0 if self.tucker1 else self.in_channels * self.rank_in * h * w
        return first + (self.rank_in * kh * kw + self.out_channels) * self.rank_out * ho * wo

    def config(self) -> dict[str, Any]:
        return {"in_channels": self.in_channels, "out_channels": self.out_channels, "ranks": list(self.ranks),
                **self.geometry.config(), "bias": self.has_bias}

    def extra_repr(self) -> str:
        kind = "tucker1" if self.tucker1 else "tucker2"
        return f"{self.in_channels} -> {self.out_channels}, {kind}, ranks={self.ranks}"
