"""Tensor contraction and tensor regression layers (Kossaifi et al. 2017, 2020).

* :class:`TCL` — ``X ×₁ V_C ×₂ V_H ×₃ V_W`` on a ``(C, H, W)`` activation (the batch mode is not contracted),
  ``V_k`` of shape ``R_k × D_k``; output ``(R_C, R_H, R_W)``; optional BatchNorm before or after.
* :class:`TRL` — replaces flatten + Linear by a low-rank regression weight ``W`` of shape ``C × H × W × O``, as a
  Tucker (core ``R_C × R_H × R_W × R_O`` and four factors) or a CP (four factors of rank ``R``), applied to the
  activation by successive contractions; the full weight is never formed.
* :class:`TCLHead` — a drop-in for a Linear fed by a flattened ``(C, H, W)`` activation: reshape → TCL → flatten →
  smaller Linear. :meth:`TCLHead.from_linear` initialises it from the trained Linear by a Tucker decomposition of
  its weight reshaped ``O × C × H × W`` over the C, H, W modes, so that at full rank it reproduces the Linear.

Every contraction is a ``matmul`` (ONNX MatMul) on a permuted view; the mode order is chosen to minimise the
multiply-accumulates and ``macs()`` counts exactly the products ``forward`` runs. BatchNorm is an elementwise
affine map and is not counted as MACs (as in ``torch.utils.flop_counter``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from tensorslim.errors import DecompositionError, ModelError

from .. import decompose
from ._common import (
    as_float64,
    balance_cp,
    check_finite,
    check_module,
    check_positive_int,
    check_rank,
    check_shape,
    layer_label,
    like,
    normal_,
    run_decomposition,
)
from .cp import ALGORITHMS, cp_full_rank

BN_CHOICES = ("none", "before", "after")
TRL_KINDS = ("tucker", "cp")


def _best_mode_order(dims: Sequence[int], ranks: Sequence[int]) -> tuple[tuple[int, ...], list[int]]:
    """Order of the mode products ``X ×_k V_k`` with the fewest MACs per sample, and the MACs of each step.

    Contracting mode ``k`` of a tensor of current sizes ``s`` costs ``Π s · R_k`` and leaves ``s_k = R_k``.
    """
    best: tuple[int, tuple[int, ...], list[int]] | None = None
    for order in itertools.permutations(range(len(dims))):
        sizes, costs = list(dims), []
        for k in order:
            costs.append(math.prod(sizes) * ranks[k])
            sizes[k] = ranks[k]
        if best is None or sum(costs) < best[0]:
            best = (sum(costs), order, costs)
    assert best is not None
    return best[1], best[2]


def _mode_product(x: torch.Tensor, matrix: torch.Tensor, axis: int) -> torch.Tensor:
    """Contract axis ``axis`` of ``x`` with the rows of ``matrix`` (``D × R``); the result has ``R`` there.

    Explicit non-negative permutations (not ``movedim``) so that every exporter writes valid ONNX Transposes.
    """
    n = x.dim()
    to_last = [i for i in range(n) if i != axis] + [axis]
    back = list(range(axis)) + [n - 1] + list(range(axis, n - 1))
    return torch.matmul(x.permute(to_last), matrix).permute(back)


def _image_shape(input_shape: Sequence[int], chw: tuple[int, int, int], what: str) -> None:
    """Accept ``(C, H, W)`` or the flattened ``(C·H·W,)``; :class:`ModelError` otherwise."""
    shape = tuple(int(v) for v in input_shape)
    if shape != chw and shape != (math.prod(chw),):
        raise ModelError(f"{what} expects an input shape {list(chw)} or [{math.prod(chw)}], got {list(shape)}")


def _check_input_shape(label: str, input_shape: Any) -> tuple[int, int, int]:
    return check_shape(label, input_shape, "input_shape", length=3)  # type: ignore[return-value]


def _check_flattening_linear(label: str, linear: Any, input_shape: Any) -> tuple[int, int, int]:
    """Check a trained Linear fed by a flattened ``input_shape`` activation; return that shape ``(C, H, W)``."""
    check_module(label, linear, nn.Linear)
    check_finite(label, linear.weight, linear.bias)
    chw = _check_input_shape(label, input_shape)
    if math.prod(chw) != linear.in_features:
        raise DecompositionError(label, f"input_shape {list(chw)} has {math.prod(chw)} elements, "
                                        f"not in_features={linear.in_features}")
    return chw


class TCL(nn.Module):
    """Tensor contraction layer ``(B, C, H, W) → (B, R_C, R_H, R_W)``: ``X ×₁ V_C ×₂ V_H ×₃ V_W``.

    Args:
        input_shape: ``(C, H, W)``; the input may also come flattened as ``(B, C·H·W)``.
        rank: ``(R_C, R_H, R_W)`` with ``1 ≤ R_k ≤ D_k``.
        bn: ``"none"``, ``"before"`` (BatchNorm2d over the C channels of the input) or ``"after"`` (BatchNorm2d over
            the R_C channels of the output).
        name: layer name used in error messages only.

    Parameters: ``factors.0 … factors.2`` (``V_k``, ``R_k × D_k``), plus the BatchNorm affine parameters.
    Random init: ``V_k`` normal with variance ``1/D_k`` (each product keeps the activation scale).
    """

    def __init__(self, input_shape: Sequence[int], rank: Sequence[int], bn: str = "none", *,
                 name: str | None = None):
        super().__init__()
        label = layer_label(name, self)
        self.input_shape = _check_input_shape(label, input_shape)
        rank_t = check_shape(label, rank, "rank", length=3)
        self.rank = tuple(check_rank(label, r, d, f"rank[{k}]")
                          for k, (r, d) in enumerate(zip(rank_t, self.input_shape)))
        if bn not in BN_CHOICES:
            raise DecompositionError(label, f"bn must be one of {list(BN_CHOICES)}, got {bn!r}")
        self.bn_position = bn
        self.factors = nn.ParameterList([
            nn.Parameter(normal_(torch.empty(r, d), 1.0 / math.sqrt(d))) for r, d in zip(self.rank, self.input_shape)])
        channels = self.input_shape[0] if bn == "before" else self.rank[0]
        self.bn = None if bn == "none" else nn.BatchNorm2d(channels)
        self.order, self._step_macs = _best_mode_order(self.input_shape, self.rank)
        #: Not a decomposition by itself; set by converters that build one (see :class:`TCLHead`).
        self.rel_error: float | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(-1, *self.input_shape)
        if self.bn is not None and self.bn_position == "before":
            x = self.bn(x)
        for k in self.order:
            x = _mode_product(x, self.factors[k].t(), k + 1)
        if self.bn is not None and self.bn_position == "after":
            x = self.bn(x)
        return x

    def params(self) -> int:
        """``Σ R_k·D_k`` plus ``2·channels`` for the BatchNorm affine parameters when present."""
        bn = 0 if self.bn is None else 2 * self.bn.num_features
        return sum(r * d for r, d in zip(self.rank, self.input_shape)) + bn

    def macs(self, input_shape: Sequence[int]) -> int:
        """Multiply-accumulates of the three mode products, in the order ``forward`` runs them."""
        _image_shape(input_shape, self.input_shape, type(self).__name__)
        return sum(self._step_macs)

    def config(self) -> dict[str, Any]:
        return {"input_shape": list(self.input_shape), "rank": list(self.rank), "bn": self.bn_position}

    def extra_repr(self) -> str:
        return f"input_shape={list(self.input_shape)}, rank={list(self.rank)}, bn={self.bn_position}"


class TRL(nn.Module):
    """Tensor regression layer ``(B, C, H, W) → (B, O)`` with a low-rank weight ``W`` (``C × H × W × O``).

    ``y[b, o] = Σ_{c,h,w} X[b, c, h, w] · W[c, h, w, o] + bias[o]`` where

    * ``kind="tucker"``: ``W = G ×₁ U_C ×₂ U_H ×₃ U_W ×₄ U_O``, ``rank = (R_C, R_H, R_W, R_O)``; computed as the
      three mode products of ``X`` with ``U_kᵀ``, a matmul with the core unfolded ``(R_C·R_H·R_W) × R_O``, and one
      with ``U_Oᵀ``.
    * ``kind="cp"``: ``W = Σ_r U_C[:, r] ∘ U_H[:, r] ∘ U_W[:, r] ∘ U_O[:, r]``, ``rank = R``; computed as one matmul
      over the first mode, then per-component (batched over ``r``) matmuls over the other two, and a matmul with
      ``U_Oᵀ``.

    Args:
        input_shape: ``(C, H, W)``; the input may also come flattened as ``(B, C·H·W)``.
        out_features: ``O``.
        rank: 4 ints for Tucker (each at most its dimension), one int for CP (at most the product of all but the
            largest of ``C, H, W, O``).
        kind: ``"tucker"`` or ``"cp"``. bias: add a bias. name: used in error messages only.

    Parameters: ``factors.0 … factors.2`` (``U_C, U_H, U_W``, each ``D_k × R_k``), ``out_factor`` (``O × R_O``),
    ``core`` (Tucker only), ``bias``. Random init: the represented weight has entry variance ``1/(C·H·W)``.
    """

    def __init__(self, input_shape: Sequence[int], out_features: int, rank: int | Sequence[int],
                 kind: str = "tucker", bias: bool = True, *, name: str | None = None):
        super().__init__()
        label = layer_label(name, self)
        self.input_shape = _check_input_shape(label, input_shape)
        self.out_features = check_positive_int(label, out_features, "out_features")
        if kind not in TRL_KINDS:
            raise DecompositionError(label, f"kind must be one of {list(TRL_KINDS)}, got {kind!r}")
        self.kind = kind
        dims = (*self.input_shape, self.out_features)
        fan_in = math.prod(self.input_shape)
        if kind == "tucker":
            rank_t = check_shape(label, rank, "rank", length=4)
            self.rank: int | tuple[int, ...] = tuple(
                check_rank(label, r, min(d, math.prod(dims) // d), f"rank[{k}]")
                for k, (r, d) in enumerate(zip(rank_t, dims)))
            ranks = self.rank
            std = 1.0 / math.sqrt(fan_in)
            self.core: nn.Parameter | None = nn.Parameter(normal_(torch.empty(*ranks), std))
            factor_stds = [1.0 / math.sqrt(r) for r in ranks]
        else:
            r = check_rank(label, rank, cp_full_rank(dims))
            self.rank = r
            ranks = (r,) * 4
            self.core = None
            factor_stds = [(1.0 / (fan_in * r)) ** 0.25] * 4
        self.factors = nn.ParameterList([
            nn.Parameter(normal_(torch.empty(d, rk), s))
            for d, rk, s in zip(self.input_shape, ranks[:3], factor_stds[:3])])
        self.out_factor = nn.Parameter(normal_(torch.empty(self.out_features, ranks[3]), factor_stds[3]))
        self.bias = nn.Parameter(torch.zeros(self.out_features)) if bias else None
        if kind == "tucker":
            self.order, mode_macs = _best_mode_order(self.input_shape, ranks[:3])
            self._macs = sum(mode_macs) + math.prod(ranks[:3]) * ranks[3] + ranks[3] * self.out_features
        else:
            self.order, self._macs = self._best_cp_order()
        #: Relative Frobenius error of the decomposition when built by :meth:`from_linear`, else ``None``.
        self.rel_error: float | None = None

    def _best_cp_order(self) -> tuple[tuple[int, ...], int]:
        """CP: the first mode costs ``C·H·W·R``, the second ``R·D_2·D_3``, the third ``R·D_3``; then ``R·O``."""
        r, dims = int(self.rank), self.input_shape  # type: ignore[arg-type]
        best: tuple[int, tuple[int, ...]] | None = None
        for order in itertools.permutations(range(3)):
            cost = r * (math.prod(dims) + dims[order[1]] * dims[order[2]] + dims[order[2]] + self.out_features)
            if best is None or cost < best[0]:
                best = (cost, order)
        assert best is not None
        return best[1], best[0]

    @classmethod
    def from_linear(cls, linear: nn.Linear, input_shape: Sequence[int], rank: int | Sequence[int],
                    kind: str = "tucker", *, algorithm: str = "als", name: str | None = None,
                    **options: Any) -> TRL:
        """Low-rank regression weight from a trained Linear fed by a flattened ``(C, H, W)`` activation.

        The weight (``O × C·H·W``) is reshaped to ``O × C × H × W`` (row-major, as ``flatten`` lays it out) and
        decomposed by ``decompose.partial_tucker`` over all four modes (Tucker; exact at full ranks), or by
        ``decompose.cp_als`` / ``cp_power`` (``algorithm``; ``options`` are passed on).
        """
        label = layer_label(name, linear)
        chw = _check_flattening_linear(label, linear, input_shape)
        if algorithm not in ALGORITHMS:
            raise DecompositionError(label, f"algorithm must be one of {list(ALGORITHMS)}, got {algorithm!r}")
        layer = cls(chw, linear.out_features, rank, kind=kind, bias=linear.bias is not None, name=label)
        w = as_float64(linear.weight).reshape(linear.out_features, *chw)
        ref = linear.weight
        if kind == "tucker":
            r_c, r_h, r_w, r_o = layer.rank  # type: ignore[misc]
            result = run_decomposition(label, decompose.partial_tucker, w, (0, 1, 2, 3), (r_o, r_c, r_h, r_w))
            check_finite(label, result.core, *result.factors, what="Tucker result")
            u_o, *u_chw = result.factors
            core = result.core.permute(1, 2, 3, 0)
        else:
            fn = decompose.cp_als if algorithm == "als" else decompose.cp_power
            result = run_decomposition(label, fn, w, layer.rank, **options)
            check_finite(label, result.weights, *result.factors, what="CP result")
            u_o, *u_chw = balance_cp(result.weights, result.factors)
            core = None
        layer.to(device=ref.device, dtype=ref.dtype)
        with torch.no_grad():
            for p, u in zip(layer.factors, u_chw):
                p.copy_(like(u, ref))
            layer.out_factor.copy_(like(u_o, ref))
            if core is not None:
                layer.core.copy_(like(core, ref))  # type: ignore[union-attr]
            if linear.bias is not None:
                layer.bias.copy_(linear.bias.detach())  # type: ignore[union-attr]
        layer.rel_error = float(result.rel_error)
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(-1, *self.input_shape)
        if self.core is not None:
            for k in self.order:
                x = _mode_product(x, self.factors[k], k + 1)
            y = torch.matmul(x.reshape(x.shape[0], -1), self.core.reshape(-1, self.core.shape[-1]))
        else:
            first, second, third = self.order
            rest = [k for k in range(3) if k != first]                             # the other modes, a < b
            to_last = [0] + [k + 1 for k in rest] + [first + 1]
            z = torch.matmul(x.permute(to_last), self.factors[first])              # (B, a, b, R)
            z = z.permute(3, 0, 1 + rest.index(third), 1 + rest.index(second))    # (R, B, third, second)
            r, b = z.shape[0], z.shape[1]
            z = torch.matmul(z.reshape(r, -1, z.shape[-1]), self.factors[second].t().unsqueeze(-1))
            z = torch.matmul(z.reshape(r, b, -1), self.factors[third].t().unsqueeze(-1))  # (R, B, 1)
            y = z.reshape(r, b).t()
        y = torch.matmul(y, self.out_factor.t())
        if self.bias is not None:
            y = y + self.bias
        return y

    def params(self) -> int:
        """Tucker: ``Π R + Σ D_k R_k + O·R_O``; CP: ``R(C + H + W + O)``; plus ``O`` for the bias."""
        bias = self.out_features if self.bias is not None else 0
        if self.kind == "tucker":
            ranks = self.rank
            assert isinstance(ranks, tuple)
            factors = sum(d * r for d, r in zip((*self.input_shape, self.out_features), ranks))
            return math.prod(ranks) + factors + bias
        return int(self.rank) * (sum(self.input_shape) + self.out_features) + bias  # type: ignore[arg-type]

    def macs(self, input_shape: Sequence[int]) -> int:
        """Multiply-accumulates of the contractions ``forward`` runs for one sample."""
        _image_shape(input_shape, self.input_shape, type(self).__name__)
        return self._macs

    def config(self) -> dict[str, Any]:
        rank = list(self.rank) if isinstance(self.rank, tuple) else self.rank
        return {"input_shape": list(self.input_shape), "out_features": self.out_features, "rank": rank,
                "kind": self.kind, "bias": self.bias is not None}

    def extra_repr(self) -> str:
        return f"input_shape={list(self.input_shape)}, out_features={self.out_features}, kind={self.kind}, " \
               f"rank={self.rank}"


class TCLHead(nn.Module):
    """Drop-in for ``Linear(C·H·W → O)`` fed by a flattened activation: reshape → :class:`TCL` → flatten →
    ``Linear(R_C·R_H·R_W → O)``.

    Args:
        input_shape: ``(C, H, W)`` of the activation before flattening; the input may be ``(B, C·H·W)`` or
            ``(B, C, H, W)``.
        out_features: ``O``. rank: ``(R_C, R_H, R_W)``. bias: bias of the Linear. bn: passed to the TCL.
        name: used in error messages only.

    Submodules ``tcl`` and ``linear``.
    """

    def __init__(self, input_shape: Sequence[int], out_features: int, rank: Sequence[int], bias: bool = True,
                 bn: str = "none", *, name: str | None = None):
        super().__init__()
        label = layer_label(name, self)
        self.tcl = TCL(input_shape, rank, bn=bn, name=label)
        self.out_features = check_positive_int(label, out_features, "out_features")
        self.linear = nn.Linear(math.prod(self.tcl.rank), self.out_features, bias=bool(bias))
        #: Relative Frobenius error of the Tucker decomposition when built by :meth:`from_linear`, else ``None``.
        self.rel_error: float | None = None

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.tcl.input_shape

    @property
    def rank(self) -> tuple[int, ...]:
        return self.tcl.rank

    @classmethod
    def from_linear(cls, linear: nn.Linear, input_shape: Sequence[int], rank: Sequence[int], bn: str = "none", *,
                    name: str | None = None) -> TCLHead:
        """Initialise from a trained Linear: Tucker decomposition (``decompose.partial_tucker`` over the C, H, W
        modes) of its weight reshaped ``O × C × H × W``: ``W = G ×₁ U_C ×₂ U_H ×₃ U_W``. The TCL gets
        ``V_k = U_kᵀ``, the Linear gets ``G`` unfolded ``O × (R_C·R_H·R_W)`` and the original bias, so that
        ``Linear(flatten(X)) = G_(0) · vec(X ×₁ U_Cᵀ ×₂ U_Hᵀ ×₃ U_Wᵀ)``: exact at full rank. A BatchNorm (``bn``)
        starts as (almost) the identity, so it perturbs this only by its ``eps``.
        """
        label = layer_label(name, linear)
        chw = _check_flattening_linear(label, linear, input_shape)
        layer = cls(chw, linear.out_features, rank, bias=linear.bias is not None, bn=bn, name=label)
        w = as_float64(linear.weight).reshape(linear.out_features, *chw)
        result = run_decomposition(label, decompose.partial_tucker, w, (1, 2, 3), tuple(layer.rank))
        check_finite(label, result.core, *result.factors, what="Tucker result")
        ref = linear.weight
        layer.to(device=ref.device, dtype=ref.dtype)
        with torch.no_grad():
            for p, u in zip(layer.tcl.factors, result.factors):
                p.copy_(like(u.t(), ref))
            layer.linear.weight.copy_(like(result.core.reshape(linear.out_features, -1), ref))
            if linear.bias is not None:
                layer.linear.bias.copy_(linear.bias.detach())
        layer.rel_error = float(result.rel_error)
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.tcl(x)
        return self.linear(z.reshape(z.shape[0], -1))

    def params(self) -> int:
        """TCL parameters plus ``R_C·R_H·R_W·O`` (plus ``O`` for the bias)."""
        bias = self.out_features if self.linear.bias is not None else 0
        return self.tcl.params() + math.prod(self.rank) * self.out_features + bias

    def macs(self, input_shape: Sequence[int]) -> int:
        """TCL MACs plus those of the smaller Linear, for one sample of shape ``(C, H, W)`` or ``(C·H·W,)``."""
        return self.tcl.macs(input_shape) + math.prod(self.rank) * self.out_features

    def config(self) -> dict[str, Any]:
        return {"input_shape": list(self.input_shape), "out_features": self.out_features, "rank": list(self.rank),
                "bias": self.linear.bias is not None, "bn": self.tcl.bn_position}

    def extra_repr(self) -> str:
        return f"input_shape={list(self.input_shape)}, rank={list(self.rank)}, out_features={self.out_features}"
