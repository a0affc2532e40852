"""The Tensor-Train design space of a Linear layer: mode factorizations of its sizes, paired core by core.

A TT-matrix of size ``M × N`` needs ``M = Π m_k`` and ``N = Π n_k`` with the same number of cores ``d``; core ``k``
pairs ``m_k`` with ``n_k``, so the order of the factors matters. :func:`enumerate_tt_shapes` lists the ordered
factorizations of one size, :func:`tt_design_points` pairs those of the input and output sizes, and each
:class:`TTDesignPoint` gives the analytic parameter and MAC counts of the resulting :class:`~.TTLinear` for a rank
without building it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ._ttplan import TTContraction
from .tt import _resolve_ranks, tt_core_params, tt_full_ranks


def _divisors(n: int) -> list[int]:
    """Divisors of ``n`` in increasing order."""
    small, large = [], []
    f = 1
    while f * f <= n:
        if n % f == 0:
            small.append(f)
            if f * f != n:
                large.append(n // f)
        f += 1
    return small + large[::-1]


def _ordered_factorizations(n: int, d: int, min_factor: int) -> list[tuple[int, ...]]:
    """Ordered ``d``-factor factorizations of ``n`` with every factor ``≥ min_factor``, lexicographic."""
    if d == 1:
        return [(n,)] if n >= min_factor else []
    out = []
    for f in _divisors(n):
        if f >= min_factor and n // f >= min_factor ** (d - 1):
            out.extend((f, *rest) for rest in _ordered_factorizations(n // f, d - 1, min_factor))
    return out


def enumerate_tt_shapes(n: int, max_factors: int = 4, min_factor: int = 2, *,
                        min_factors: int = 2) -> list[tuple[int, ...]]:
    """All ordered factorizations of ``n`` into ``d`` factors, ``min_factors ≤ d ≤ max_factors``, each factor at
    least ``min_factor``. Sorted by ``d``, then lexicographically.

    ``enumerate_tt_shapes(12, 2) == [(2, 6), (3, 4), (4, 3), (6, 2)]``. A single factor (``d = 1``, the dense
    layer) is included only when ``min_factors=1``. A prime ``n`` has no shape with ``d ≥ 2``. Invalid arguments
    raise ``ValueError``.
    """
    for value, what in ((n, "n"), (max_factors, "max_factors"), (min_factor, "min_factor"),
                        (min_factors, "min_factors")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{what} must be a positive integer, got {value!r}")
    shapes: list[tuple[int, ...]] = []
    for d in range(min_factors, max_factors + 1):
        shapes.extend(_ordered_factorizations(n, d, max(min_factor, 1)))
    return shapes


@dataclass(frozen=True)
class TTDesignPoint:
    """One TT shape for a Linear layer: ``in_shape`` (the ``n_k``) and ``out_shape`` (the ``m_k``), same length."""

    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]

    @property
    def d(self) -> int:
        return len(self.in_shape)

    def full_ranks(self) -> list[int]:
        """Full TT-ranks ``r_0 … r_d`` of this shape."""
        return tt_full_ranks([m * n for m, n in zip(self.out_shape, self.in_shape)])

    def ranks(self, rank: int | Sequence[int]) -> tuple[int, ...]:
        """The TT-ranks :class:`~.TTLinear` would use for ``rank`` (an int is capped per bond)."""
        return _resolve_ranks("TTDesignPoint", rank, self.full_ranks(), fixed_left=True)

    def params(self, rank: int | Sequence[int], bias: bool = True) -> int:
        """Parameters of the TTLinear of this shape and rank."""
        cores = tt_core_params(self.ranks(rank), self.out_shape, self.in_shape)
        return cores + (math.prod(self.out_shape) if bias else 0)

    def macs(self, rank: int | Sequence[int]) -> int:
        """Multiply-accumulates per input vector of the TTLinear of this shape and rank (cheapest order)."""
        return TTContraction(self.in_shape, self.out_shape, self.ranks(rank)).macs_per_row


def tt_design_points(in_features: int, out_features: int, max_factors: int = 4,
                     min_factor: int = 2) -> list[TTDesignPoint]:
    """Every pair (in_shape, out_shape) of ordered factorizations of the two sizes with the same number of cores
    ``2 ≤ d ≤ max_factors`` — the TT shape design space of a Linear layer (ranks are the other axis).

    The list grows quickly with ``max_factors``. Invalid sizes raise ``ValueError`` (programming errors, as in
    :func:`enumerate_tt_shapes`).
    """
    ins = enumerate_tt_shapes(in_features, max_factors, min_factor)
    outs = enumerate_tt_shapes(out_features, max_factors, min_factor)
    by_d: dict[int, list[tuple[int, ...]]] = {}
    for o in outs:
        by_d.setdefault(len(o), []).append(o)
    return [TTDesignPoint(i, o) for i in ins for o in by_d.get(len(i), [])]
