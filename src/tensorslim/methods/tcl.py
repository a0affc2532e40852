"""A Tensor Contraction Layer head: a Linear fed by a flattened C×H×W activation becomes
``TCL(C×H×W → R_C×R_H×R_W) → Linear`` (Kossaifi et al. 2017), initialised from the Linear's weights.

Ranks are ``[R_C, R_H, R_W]``; the scalar rank knob of ratio searches is a percentage of every mode. Option
``bn``: where a BatchNorm goes (``none``, ``before``, ``after``).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ..layers import TCLHead
from .base import LayerContext, Method, linear_reason, percent_of, positive_int_list

GRID_PERCENTS = (25, 50, 75, 100)  # of C, and of H and W together


class TCL(Method):
    name = "tcl"
    layer_types = (TCLHead,)
    option_names = frozenset({"bn"})
    rank_form = "[R_C, R_H, R_W]"

    def accepts(self, ctx: LayerContext) -> str | None:
        return linear_reason(ctx, self.name) or (
            None if ctx.flatten_from else "tcl needs a Linear fed by an nn.Flatten of a C×H×W activation")

    def check_rank(self, value: Any) -> None:
        if not positive_int_list(value, 3):
            raise ValueError(f"a tcl rank is {self.rank_form}, not {value!r}")

    def rank_space(self, ctx: LayerContext, options: dict[str, Any]) -> tuple[int, int]:
        return 1, 100

    def knob_rank(self, ctx: LayerContext, knob: int, options: dict[str, Any]) -> list[int]:
        return [percent_of(d, knob) for d in ctx.flatten_from]

    def structure(self, ctx: LayerContext, rank: Any, options: dict[str, Any]) -> nn.Module:
        m = ctx.module
        return TCLHead(ctx.flatten_from, m.out_features, tuple(rank), bias=m.bias is not None,
                       bn=options.get("bn", "none"))

    def grid(self, ctx: LayerContext) -> list[tuple[Any, dict[str, Any]]]:
        c, h, w = ctx.flatten_from
        return [([percent_of(c, pc), percent_of(h, ps), percent_of(w, ps)], {})
                for pc in GRID_PERCENTS for ps in GRID_PERCENTS]

    def fit(self, ctx: LayerContext, rank: Any, options: dict[str, Any]) -> nn.Module:
        return TCLHead.from_linear(ctx.module, ctx.flatten_from, tuple(rank), name=ctx.name,
                                   bn=options.get("bn", "none"))
