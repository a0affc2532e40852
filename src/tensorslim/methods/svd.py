"""Truncated SVD of a Linear layer: ``Linear(in → r) → Linear(r → out)`` (the Eckart–Young optimum)."""

from __future__ import annotations

from typing import Any

from torch import nn

from ..errors import DecompositionError
from ..layers import SVDLinear
from .base import LayerContext, Method, linear_reason, unique
from .spectral import spectral_rank

GRID_FRACTIONS = (1 / 16, 1 / 8, 1 / 4, 3 / 8, 1 / 2, 3 / 4, 1.0)  # of min(in, out)


class SVD(Method):
    name = "svd"
    layer_types = (SVDLinear,)
    rank_kinds = ("rank", "ratio", "macs_ratio", "energy", "vbmf")
    option_names = frozenset({"k", "min_rank"})  # weakened EVBMF

    def accepts(self, ctx: LayerContext) -> str | None:
        return linear_reason(ctx, self.name)

    def rank_space(self, ctx: LayerContext, options: dict[str, Any]) -> tuple[int, int]:
        return 1, min(ctx.module.in_features, ctx.module.out_features)

    def spectral_rank(self, ctx: LayerContext, kind: str, value: Any, options: dict[str, Any]) -> int:
        return spectral_rank(ctx.name, ctx.module.weight.detach(), kind, value, options)

    def channel_ranks(self, ctx: LayerContext, rank: Any):
        """The SVD rank: the inner size of the two MatMuls."""
        return [(rank, min(ctx.module.in_features, ctx.module.out_features))], lambda values: values[0]

    def structure(self, ctx: LayerContext, rank: Any, options: dict[str, Any]) -> nn.Module:
        m = ctx.module
        return SVDLinear(m.in_features, m.out_features, rank, bias=m.bias is not None)

    def grid(self, ctx: LayerContext) -> list[tuple[Any, dict[str, Any]]]:
        """Ranks at ``GRID_FRACTIONS`` of the full rank; on the layer that writes the model's output (a
        classifier's logits) at least half the outputs: below that the logits live in a subspace too thin for the
        classes, a capacity loss that fine-tuning does not recover and that the output error does not show (on
        the convnet's 10-class head in benchmarks/bench_proxy.py, rank 1 ended at 22–36 % after fine-tuning and
        rank 2 at 72–86 %, ranks 4–10 at 87–93 %, for a saving of ~1 % of the model's params)."""
        full = min(ctx.channels)
        floor = min(full, -(-ctx.channels[1] // 2)) if ctx.is_output else 1
        return [(r, {}) for r in unique(max(floor, round(f * full)) for f in GRID_FRACTIONS)]

    def fit(self, ctx: LayerContext, rank: Any, options: dict[str, Any]) -> nn.Module:
        if not isinstance(rank, int):
            raise DecompositionError(ctx.name, f"an svd rank is one integer, not {rank!r}")
        return SVDLinear.from_linear(ctx.module, rank, name=ctx.name)
