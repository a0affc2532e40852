"""Tensor Ring of a Linear layer or of a conv's channel modes (Wang et al. 2018, Tensor Ring Nets).

The weight is a ring of cores ``r_{k-1} × n_k × r_k`` closed by ``r_0`` (:mod:`tensorslim.layers.tensor_ring`),
fitted to the pretrained weight by TR-ALS. Options: ``in_shape`` / ``out_shape`` (both or neither; default: the
most balanced factorization with at most ``max_factors`` factors, as for TT) and the fit's ``n_iter_max``,
``tol``, ``init``, ``seed``. The rank is the uniform ring rank (an int), or the list of every bond.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from ..layers.tensor_ring import (
    FIT_OPTIONS,
    TRConv2d,
    TRLinear,
    tr_conv_macs,
    tr_conv_params,
    tr_linear_macs,
    tr_linear_params,
)
from .base import FLOAT_BYTES, Candidate, LayerContext
from .tt import TT, balanced_tt_shapes

GRID_RANKS = (2, 4, 8, 16)
GRID_FACTORS = (2, 3)  # the most balanced shape with this many factors, where the sizes allow it


class TensorRing(TT):
    """TT's shapes, rank forms and option checks; its own ring layers, costs, grid and fit."""

    name = "tr"
    layer_types = (TRLinear, TRConv2d)
    option_names = frozenset({"in_shape", "out_shape", "max_factors", *FIT_OPTIONS})
    rank_form = "an integer >= 1 (every bond) or the list of ring ranks"
    explored_by_default = False  # TR-ALS is slow: explore tries it when --methods names it
    fit_defaults = {"n_iter_max": 30, "tol": 1e-5}  # TR-ALS sweeps: enough for an initialisation to fine-tune

    def rank_space(self, ctx: LayerContext, options: dict[str, Any]) -> tuple[int, int]:
        return 1, max(ctx.channels)

    def _ring(self, ctx: LayerContext, rank: Any, d: int) -> list[int]:
        count = 2 * d + (0 if isinstance(ctx.module, nn.Linear) else 1)
        return [rank] * count if isinstance(rank, int) else list(rank)

    def cost(self, ctx: LayerContext, rank: Any, options: dict[str, Any]) -> dict[str, int]:
        """Closed-form counts of the TR layers (the same products their forward runs)."""
        in_shape, out_shape = self.shapes(ctx, options)
        ring = self._ring(ctx, rank, len(in_shape))
        m = ctx.module
        bias = m.bias is not None
        if isinstance(m, nn.Linear):
            params, macs = tr_linear_params(in_shape, out_shape, ring, bias), tr_linear_macs(in_shape, out_shape, ring)
        else:
            params = tr_conv_params(in_shape, out_shape, m.kernel_size, ring, bias)
            macs = tr_conv_macs(in_shape, out_shape, m.kernel_size, ring, ctx.input_shape[-2:],
                                ctx.output_shape[-2:])
        return {"params": params, "macs": macs, "bytes": FLOAT_BYTES * params}

    def design_points(self, ctx: LayerContext, settings: Mapping[str, Any] | None = None) -> list[Candidate]:
        points = []
        for d in GRID_FACTORS:
            try:
                in_shape, out_shape = balanced_tt_shapes(*ctx.channels, d)
            except ValueError:
                continue
            if len(in_shape) != d:
                continue
            opts = {"in_shape": list(in_shape), "out_shape": list(out_shape)}
            for r in GRID_RANKS:
                c = self.cost(ctx, r, opts)
                points.append(Candidate(r, opts, c["params"], c["macs"]))
        return points

    def fit_options(self, options: dict[str, Any]) -> dict[str, Any]:
        return {**self.fit_defaults, **{k: v for k, v in options.items() if k in FIT_OPTIONS}}
