"""CP of a k×k conv (tensor power method with deflation, or ALS), as CP-3 or CP-4 chains of standard convs.

Options: ``algorithm`` (``power`` or ``als``), ``form`` (``cp3`` or ``cp4``) and the chosen algorithm's own
options, whose names come from the real function signatures (``tensorslim.layers.cp.cp_option_names``).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ..layers import CPConv2d
from ..layers.cp import ALGORITHMS, FORMS, check_cp_options
from .base import LayerContext, Method, conv_kwargs, conv_reason, unique

GRID_FRACTIONS = (1 / 8, 1 / 4, 1 / 2, 3 / 4, 1.0, 1.5)  # of max(in, out) channels
GRID_VARIANTS = (("cp3", "power"), ("cp3", "als"), ("cp4", "power"), ("cp4", "als"))


def rank_bound(conv: nn.Conv2d) -> int:
    """A rank at which an exact CP of the T×S×(kh·kw) kernel always exists: the smallest two-mode product."""
    t, s, kk = conv.out_channels, conv.in_channels, conv.kernel_size[0] * conv.kernel_size[1]
    return min(t * s, t * kk, s * kk)


class CP(Method):
    name = "cp"
    layer_types = (CPConv2d,)

    def accepts(self, ctx: LayerContext) -> str | None:
        return conv_reason(ctx, self.name)

    def check_options(self, options: dict[str, Any]) -> None:
        algorithm = options.get("algorithm", "power")
        if algorithm not in ALGORITHMS:
            raise ValueError(f"cp option 'algorithm' must be one of {', '.join(ALGORITHMS)}, not {algorithm!r}")
        if options.get("form", "cp3") not in FORMS:
            raise ValueError(f"cp option 'form' must be one of {', '.join(FORMS)}, not {options['form']!r}")
        check_cp_options(algorithm, {k: v for k, v in options.items() if k not in ("algorithm", "form")})

    def explicit_options(self, options) -> dict[str, Any]:
        return {"algorithm": "power", "form": "cp3", **options}  # the defaults of check_options and fit

    def rank_space(self, ctx: LayerContext, options: dict[str, Any]) -> tuple[int, int]:
        return 1, rank_bound(ctx.module)

    def channel_ranks(self, ctx: LayerContext, rank: Any):
        """The CP rank: the channels of the depthwise convs."""
        return [(rank, rank_bound(ctx.module))], lambda values: values[0]

    def structure(self, ctx: LayerContext, rank: Any, options: dict[str, Any]) -> nn.Module:
        return CPConv2d(**conv_kwargs(ctx.module), rank=rank, form=options.get("form", "cp3"))

    def grid(self, ctx: LayerContext) -> list[tuple[Any, dict[str, Any]]]:
        n_in, n_out = ctx.channels
        bound = rank_bound(ctx.module)
        ranks = unique(min(bound, max(1, round(f * max(n_in, n_out)))) for f in GRID_FRACTIONS)
        return [(r, {"algorithm": algorithm, "form": form}) for form, algorithm in GRID_VARIANTS for r in ranks]

    def fit(self, ctx: LayerContext, rank: Any, options: dict[str, Any]) -> nn.Module:
        return CPConv2d.from_conv(ctx.module, rank, name=ctx.name, **options)
