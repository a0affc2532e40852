"""What both CP algorithms share: the result type, the reconstruction, argument checks, option renames."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ._common import (
    check_int,
    prepare,
    relative_error,
)


@dataclass(frozen=True)
class CPResult:
    """``X ≈ Σ_r weights[r] · factors[0][:, r] ∘ factors[1][:, r] ∘ …`` (columns of every factor unit-norm).

    ``rel_error`` is ``||X - X̂||_F / ||X||_F``; ``n_iter`` the number of sweeps the algorithm ran (summed over
    the components for the power method); ``method`` names the algorithm.
    """

    weights: torch.Tensor
    factors: tuple[torch.Tensor, ...]
    rel_error: float
    n_iter: int = 0
    method: str = ""

    @property
    def rank(self) -> int:
        return int(self.weights.shape[0])

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(f.shape[0]) for f in self.factors)

    def to_tensor(self) -> torch.Tensor:
        """The full tensor ``Σ_r w_r a_r ∘ b_r ∘ …``."""
        return cp_to_tensor(self.weights, self.factors)


def max_cp_rank(shape: Sequence[int]) -> int:
    """Largest CP rank worth asking for: ``prod(shape) / max(shape)``, an upper bound on the rank of any
    tensor of that shape (it is the number of mode fibres along the longest mode)."""
    sizes = [int(s) for s in shape]
    return math.prod(sizes) // max(sizes)


def cp_to_tensor(weights: torch.Tensor | None, factors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Rebuild the full tensor from CP weights (``None`` means all ones) and factors.

    The modes are split in two groups of balanced size; each group's Khatri–Rao product is formed and the two
    are multiplied, so memory stays at about the size of the result (never ``prod(shape) × R``).
    """
    factors = list(factors)
    if not factors:
        raise ValueError("cp_to_tensor needs at least one factor")
    rank = int(factors[0].shape[1])
    if weights is None:
        weights = torch.ones(rank, dtype=factors[0].dtype, device=factors[0].device)
    shape = [int(f.shape[0]) for f in factors]
    if len(factors) == 1:
        return factors[0] @ weights
    split = _balanced_split(shape)
    left = _khatri_rao(factors[:split]) * weights
    right = _khatri_rao(factors[split:])
    return (left @ right.transpose(0, 1)).reshape(shape)


def _balanced_split(shape: Sequence[int]) -> int:
    """Index p in 1..N-1 that makes prod(shape[:p]) and prod(shape[p:]) as even as possible."""
    best, best_cost = 1, None
    for p in range(1, len(shape)):
        cost = max(math.prod(shape[:p]), math.prod(shape[p:]))
        if best_cost is None or cost < best_cost:
            best, best_cost = p, cost
    return best


def _khatri_rao(factors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Column-wise Kronecker product, row index in C order (the first factor's index varies slowest)."""
    out = factors[0]
    for f in factors[1:]:
        out = (out[:, None, :] * f[None, :, :]).reshape(-1, out.shape[1])
    return out


def _kron_vectors(vectors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Kronecker product of vectors in C order (the first vector's index varies slowest)."""
    out = vectors[0]
    for v in vectors[1:]:
        out = torch.outer(out, v).reshape(-1)
    return out


DEPRECATED_OPTIONS = {"max_iter": "n_iter_max", "random_state": "seed"}
"""Old option names of :func:`cp_power` / :func:`cp_als` and the names that replace them."""


def _renamed(fn_name: str, deprecated: dict[str, Any], **current: Any) -> tuple[Any, ...]:
    """The values of ``current`` (in order) after applying deprecated spellings from ``deprecated``.

    An old name warns (DeprecationWarning) and overrides the new one; any other extra keyword is a TypeError,
    exactly as if the function had no ``**`` parameter.
    """
    for old, value in deprecated.items():
        new = DEPRECATED_OPTIONS.get(old)
        if new is None or new not in current:
            raise TypeError(f"{fn_name}() got an unexpected keyword argument {old!r}")
        warnings.warn(f"{fn_name}(): option {old!r} is deprecated, use {new!r}", DeprecationWarning,
                      stacklevel=3)
        current[new] = value
    return tuple(current.values())


def _check_cp_args(tensor: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.dtype, int]:
    work, dtype = prepare(tensor, "tensor", min_ndim=2)
    shape = tuple(work.shape)
    rank = check_int(rank, "rank", high=max_cp_rank(shape),
                     what=f"no tensor of shape {shape} has a higher CP rank")
    return work, dtype, rank


def _finish(tensor: torch.Tensor, weights: torch.Tensor, factors: Sequence[torch.Tensor], dtype: torch.dtype,
            n_iter: int, method: str, rel_error: float | None = None) -> CPResult:
    if rel_error is None:
        rel_error = relative_error(tensor, cp_to_tensor(weights, factors))
    return CPResult(
        weights=weights.to(dtype).contiguous(),
        factors=tuple(f.to(dtype).contiguous() for f in factors),
        rel_error=rel_error,
        n_iter=n_iter,
        method=method,
    )


# ------------------------------------------------------------------------------------------------------------
# Tensor power method with deflation
# ------------------------------------------------------------------------------------------------------------
