"""Tensor-Train of a Linear layer (TT-matrix) or of a conv's channel modes (with a spatial core).

Options: ``in_shape`` / ``out_shape`` (the factorizations of the input and output sizes; both or neither), else
the most balanced factorization with at most ``max_factors`` factors. The rank is the uniform TT-rank, capped
per bond at what the shapes can use.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from ..layers import TTConv2d, TTLinear, tt_design_points, tt_full_ranks
from ..layers.tt import tt_conv_macs, tt_conv_params, tt_conv_ranks
from .base import Candidate, LayerContext, Method, conv_reason, positive_int_list

GRID_RANKS = (1, 2, 4, 8, 16)


def balanced_tt_shapes(n_in: int, n_out: int, max_factors: int = 3) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The TT shapes with the most factors (up to ``max_factors``), most balanced first: the default design."""
    points = tt_design_points(n_in, n_out, max_factors=max_factors)
    if not points:
        raise ValueError(f"no TT factorization of {n_in}→{n_out} with at most {max_factors} factors")

    def spread(shape: tuple[int, ...]) -> float:
        return max(shape) / min(shape)

    best = max(points, key=lambda p: (p.d, -spread(p.in_shape) - spread(p.out_shape)))
    return tuple(best.in_shape), tuple(best.out_shape)


class TT(Method):
    name = "tt"
    layer_types = (TTLinear, TTConv2d)
    option_names = frozenset({"in_shape", "out_shape", "max_factors"})
    rank_form = "an integer >= 1 or a list of bond ranks"

    def accepts(self, ctx: LayerContext) -> str | None:
        reason = None if isinstance(ctx.module, nn.Linear) else conv_reason(ctx, self.name, allow_1x1=True)
        if reason is None and min(ctx.channels) < 2:
            reason = f"{self.name} needs at least 2 inputs and 2 outputs to factor into cores"
        return reason

    def check_rank(self, value: Any) -> None:
        if not (positive_int_list(value) or (isinstance(value, int) and not isinstance(value, bool) and value >= 1)):
            raise ValueError(f"a {self.name} rank is {self.rank_form}, not {value!r}")

    def check_options(self, options: dict[str, Any]) -> None:
        super().check_options(options)
        if ("in_shape" in options) != ("out_shape" in options):
            raise ValueError(f"{self.name} options in_shape and out_shape go together")
        for key in ("in_shape", "out_shape"):
            if key in options and not positive_int_list(options[key]):
                raise ValueError(f"{self.name} option {key!r} must be a list of positive integers")

    def shapes(self, ctx: LayerContext, options: dict[str, Any]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        if "in_shape" in options or "out_shape" in options:
            return tuple(options["in_shape"]), tuple(options["out_shape"])
        return balanced_tt_shapes(*ctx.channels, options.get("max_factors", 3))

    def rank_space(self, ctx: LayerContext, options: dict[str, Any]) -> tuple[int, int]:
        in_shape, out_shape = self.shapes(ctx, options)
        return 1, max(tt_full_ranks([i * o for i, o in zip(in_shape, out_shape)]))

    def structure(self, ctx: LayerContext, rank: Any, options: dict[str, Any]) -> nn.Module:
        m = ctx.module
        in_shape, out_shape = self.shapes(ctx, options)
        linear, conv = self.layer_types
        if isinstance(m, nn.Linear):
            return linear(in_shape, out_shape, rank, bias=m.bias is not None)
        return conv(in_shape, out_shape, m.kernel_size, rank, stride=m.stride, padding=m.padding,
                    dilation=m.dilation, bias=m.bias is not None)

    def design_points(self, ctx: LayerContext, settings: Mapping[str, Any] | None = None) -> list[Candidate]:
        """Every TT shape with up to ``max_factors`` (3) factors × ``tt_ranks`` (:data:`GRID_RANKS`), costed by the
        closed-form counts (building the layers, even on the meta device, is slow for the thousands of points a
        large layer has)."""
        settings = settings or {}
        max_factors, grid_ranks = settings.get("max_factors", 3), settings.get("tt_ranks", GRID_RANKS)
        n_in, n_out = ctx.channels
        if n_in < 2 or n_out < 2:
            return []
        points: list[Candidate] = []
        m = ctx.module
        bias = m.bias is not None
        for shape in tt_design_points(n_in, n_out, max_factors=max_factors):
            seen = set()
            opts = {"in_shape": list(shape.in_shape), "out_shape": list(shape.out_shape)}
            for r in grid_ranks:
                if isinstance(m, nn.Linear):
                    resolved = shape.ranks(r)
                    params, macs = shape.params(r, bias=bias), shape.macs(r)
                else:
                    resolved = tt_conv_ranks(shape.in_shape, shape.out_shape, m.kernel_size, r)
                    params = tt_conv_params(shape.in_shape, shape.out_shape, m.kernel_size, resolved, bias=bias)
                    macs = tt_conv_macs(shape.in_shape, shape.out_shape, m.kernel_size, resolved,
                                        ctx.output_shape[-2:])
                if resolved in seen:
                    continue
                seen.add(resolved)
                points.append(Candidate(r, opts, params, macs))
        return points

    def fit_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """The options that go to the layer's converter (none for TT: TT-SVD has no options)."""
        return {}

    def fit(self, ctx: LayerContext, rank: Any, options: dict[str, Any]) -> nn.Module:
        m = ctx.module
        in_shape, out_shape = self.shapes(ctx, options)
        linear, conv = self.layer_types
        fit = self.fit_options(options)
        if isinstance(m, nn.Linear):
            return linear.from_linear(m, in_shape, out_shape, rank, name=ctx.name, **fit)
        return conv.from_conv(m, in_shape, out_shape, rank, name=ctx.name, **fit)
