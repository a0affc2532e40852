"""Truncated SVD of a matrix (the building block of SVD-factorized Linear and 1×1 conv layers)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ._common import check_int, prepare, relative_error_from_squares, thin_svd
from ._common import singular_values as _singular_values


@dataclass(frozen=True)
class SVDResult:
    """``A ≈ U @ diag(S) @ Vh`` with ``U`` m×r (orthonormal columns), ``S`` (r,) descending, ``Vh`` r×n.

    ``rel_error`` is ``||A - U diag(S) Vh||_F / ||A||_F``, computed from the discarded singular values.
    """

    U: torch.Tensor
    S: torch.Tensor
    Vh: torch.Tensor
    rel_error: float

    @property
    def rank(self) -> int:
        return int(self.S.shape[0])

    def to_matrix(self) -> torch.Tensor:
        """The rank-r approximation ``U diag(S) Vh``."""
        return (self.U * self.S) @ self.Vh


def truncated_svd(matrix: torch.Tensor, rank: int) -> SVDResult:
    """Best rank-``rank`` approximation of ``matrix`` in the Frobenius norm (Eckart–Young).

    Computed in float64 with a thin SVD; the factors come back in the input's dtype.
    ``rank`` must satisfy ``1 <= rank <= min(m, n)``; anything else raises ValueError.
    """
    work, dtype = prepare(matrix, "matrix", ndim=2)
    rows, cols = work.shape
    rank = check_int(rank, "rank", high=min(rows, cols), what=f"min of the matrix shape {rows}×{cols}")
    u, s, vh = thin_svd(work)
    total_sq = float((s * s).sum())
    tail_sq = float((s[rank:] * s[rank:]).sum())
    return SVDResult(
        U=u[:, :rank].to(dtype).contiguous(),
        S=s[:rank].to(dtype).contiguous(),
        Vh=vh[:rank].to(dtype).contiguous(),
        rel_error=relative_error_from_squares(tail_sq, total_sq),
    )


def singular_values(matrix: torch.Tensor) -> torch.Tensor:
    """All singular values of ``matrix`` in float64, descending (input checked like :func:`truncated_svd`).

    Computed on the tall orientation of the matrix: torch's CPU SVD of a wide row-major matrix (e.g. a conv
    kernel's mode-0 unfolding T × S·k²) is several times slower than of its transpose.
    """
    work, _ = prepare(matrix, "matrix", ndim=2)
    return _singular_values(work)
