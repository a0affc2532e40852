"""Truncated-SVD factorization of a Linear layer: ``Linear(in → r, no bias)`` then ``Linear(r → out, bias)``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .. import decompose
from ._common import (
    as_float64,
    check_finite,
    check_module,
    check_positive_int,
    check_rank,
    feature_input,
    layer_label,
    like,
    run_decomposition,
)


class SVDLinear(nn.Module):
    """``W ≈ U_r S_r V_rᵀ`` as two Linear layers; ``down`` (in → rank, no bias) and ``up`` (rank → out, bias).

    Params ``rank·(in + out) (+ out)``; MACs per feature vector ``rank·(in + out)``. Built by
    :meth:`from_linear`, each factor carries ``√S`` so both have the same scale.

    Args:
        in_features, out_features: sizes of the replaced Linear.
        rank: inner dimension, ``1 ≤ rank ≤ min(in_features, out_features)``.
        bias: whether ``up`` has a bias.
        name: layer name used in error messages only.
    """

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = True, *,
                 name: str | None = None):
        super().__init__()
        label = layer_label(name, self)
        self.in_features = check_positive_int(label, in_features, "in_features")
        self.out_features = check_positive_int(label, out_features, "out_features")
        self.rank = check_rank(label, rank, min(self.in_features, self.out_features))
        self.down = nn.Linear(self.in_features, self.rank, bias=False)
        self.up = nn.Linear(self.rank, self.out_features, bias=bool(bias))
        #: Relative Frobenius error of the truncated SVD when built by :meth:`from_linear`, else ``None``.
        self.rel_error: float | None = None

    @classmethod
    def from_linear(cls, linear: nn.Linear, rank: int, *, name: str | None = None) -> SVDLinear:
        """Factorize a trained ``nn.Linear`` by truncated SVD at ``rank`` (exact at full rank)."""
        label = layer_label(name, linear)
        check_module(label, linear, nn.Linear)
        check_finite(label, linear.weight, linear.bias)
        layer = cls(linear.in_features, linear.out_features, rank, bias=linear.bias is not None, name=label)
        result = run_decomposition(label, decompose.truncated_svd, as_float64(linear.weight), rank)
        check_finite(label, result.U, result.S, result.Vh, what="SVD result")
        root = result.S.clamp_min(0).sqrt()
        w = linear.weight
        layer.to(device=w.device, dtype=w.dtype)
        with torch.no_grad():
            layer.down.weight.copy_(like(root[:, None] * result.Vh, w))
            layer.up.weight.copy_(like(result.U * root[None, :], w))
            if linear.bias is not None:
                layer.up.bias.copy_(linear.bias.detach())
        layer.rel_error = float(result.rel_error)
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x))

    @property
    def has_bias(self) -> bool:
        return self.up.bias is not None

    def params(self) -> int:
        """Number of parameters: ``rank·(in + out)`` plus ``out`` for the bias."""
        return self.rank * (self.in_features + self.out_features) + (self.out_features if self.has_bias else 0)

    def macs(self, input_shape: Sequence[int]) -> int:
        """Multiply-accumulates for one sample of shape ``(…, in_features)`` (bias additions not counted)."""
        vectors = feature_input(input_shape, self.in_features, type(self).__name__)
        return vectors * self.rank * (self.in_features + self.out_features)

    def config(self) -> dict[str, Any]:
        return {"in_features": self.in_features, "out_features": self.out_features, "rank": self.rank,
                "bias": self.has_bias}

    def extra_repr(self) -> str:
        return f"{self.in_features} -> {self.rank} -> {self.out_features}, bias={self.has_bias}"
