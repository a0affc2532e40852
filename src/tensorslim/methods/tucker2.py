"""Tucker-2 of a k×k conv: ``1×1 (S → r_in) → k×k core (r_in → r_out) → 1×1 (r_out → T)`` (Kim et al. 2016).

Ranks are ``[r_in, r_out]`` everywhere; EVBMF ranks come from the two channel unfoldings (mode 1 for r_in,
mode 0 for r_out). The scalar rank knob of ratio searches is a percentage of both channel counts.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ..layers import Tucker2Conv2d
from ..layers.tucker import TUCKER1_MAX_IN_CHANNELS
from .base import LayerContext, Method, conv_kwargs, conv_reason, percent_of, positive_int_list, unique
from .spectral import spectral_rank

GRID_PERCENTS = (10, 25, 50, 75, 100)  # of each channel mode


class Tucker2(Method):
    name = "tucker2"
    layer_types = (Tucker2Conv2d,)
    rank_kinds = ("rank", "ratio", "macs_ratio", "energy", "vbmf")
    option_names = frozenset({"k", "min_rank"})  # weakened EVBMF
    rank_form = "[r_in, r_out]"

    def accepts(self, ctx: LayerContext) -> str | None:
        return conv_reason(ctx, self.name)

    def check_rank(self, value: Any) -> None:
        if not positive_int_list(value, 2):
            raise ValueError(f"a tucker2 rank is {self.rank_form}, not {value!r}")

    def _bounds(self, ctx: LayerContext) -> tuple[int, int]:
        m = ctx.module
        kk = m.kernel_size[0] * m.kernel_size[1]
        return min(m.in_channels, m.out_channels * kk), min(m.out_channels, m.in_channels * kk)

    def rank_space(self, ctx: LayerContext, options: dict[str, Any]) -> tuple[int, int]:
        return 1, 100

    def knob_rank(self, ctx: LayerContext, knob: int, options: dict[str, Any]) -> list[int]:
        s, t = ctx.channels
        top_in, top_out = self._bounds(ctx)
        return [percent_of(s, knob, top_in), percent_of(t, knob, top_out)]

    def spectral_rank(self, ctx: LayerContext, kind: str, value: Any, options: dict[str, Any]) -> list[int]:
        weight = ctx.module.weight.detach()
        t, s = weight.shape[:2]
        return [spectral_rank(ctx.name, weight.transpose(0, 1).reshape(s, -1), kind, value, options),
                spectral_rank(ctx.name, weight.reshape(t, -1), kind, value, options)]

    def channel_ranks(self, ctx: LayerContext, rank: Any):
        """``r_in`` and ``r_out``: the core's input and output channels (``r_in`` None or unused: Tucker-1)."""
        top_in, top_out = self._bounds(ctx)
        r_in, r_out = rank
        s = ctx.channels[0]
        tucker1 = r_in is None or r_in == s or s <= TUCKER1_MAX_IN_CHANNELS
        return [(None if tucker1 else r_in, top_in), (r_out, top_out)], lambda values: [
            r_in if tucker1 else values[0], values[1]]

    def structure(self, ctx: LayerContext, rank: Any, options: dict[str, Any]) -> nn.Module:
        return Tucker2Conv2d(**conv_kwargs(ctx.module), ranks=tuple(rank))

    def design_points(self, ctx: LayerContext, settings=None):
        """One point per structure: Tucker-1 (few input channels) ignores r_in."""
        points, seen = [], set()
        for p in super().design_points(ctx, settings):
            if (p.params, p.macs) not in seen:
                seen.add((p.params, p.macs))
                points.append(p)
        return points

    def grid(self, ctx: LayerContext) -> list[tuple[Any, dict[str, Any]]]:
        s, t = ctx.channels
        top_in, top_out = self._bounds(ctx)
        r_ins = unique(percent_of(s, p, top_in) for p in GRID_PERCENTS)
        r_outs = unique(percent_of(t, p, top_out) for p in GRID_PERCENTS)
        return [([ri, ro], {}) for ri in r_ins for ro in r_outs]

    def fit(self, ctx: LayerContext, rank: Any, options: dict[str, Any]) -> nn.Module:
        return Tucker2Conv2d.from_conv(ctx.module, ranks=tuple(rank), name=ctx.name)
