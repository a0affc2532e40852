"""Tensor-Train decomposition (TT-SVD, Oseledets 2011) of tensors and of matrices in TT-matrix format.

A TT tensor of shape ``n_1 × … × n_d`` is a list of cores ``G_k`` of shape ``r_{k-1} × n_k × r_k`` with
``r_0 = r_d = 1``; entry ``X[i_1, …, i_d] = G_1[:, i_1, :] G_2[:, i_2, :] … G_d[:, i_d, :]``.

A TT matrix (Novikov et al. 2015, the T3F layout) of shape ``M × N`` with ``M = Π m_k`` (out factors) and
``N = Π n_k`` (in factors) has cores ``r_{k-1} × m_k × n_k × r_k`` and
``W[(i_1…i_d), (j_1…j_d)] = G_1[:, i_1, j_1, :] … G_d[:, i_d, j_d, :]`` with row and column multi-indices
in C order (the first factor varies slowest), i.e. ``W.reshape(m_1, …, m_d, n_1, …, n_d)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ._common import as_shape, check_int, check_positive_float, prepare, relative_error, thin_svd


@dataclass(frozen=True)
class TTResult:
    """TT cores (``r_{k-1} × n_k × r_k``, or ``r_{k-1} × m_k × n_k × r_k`` for a TT matrix) and the relative
    error ``||X - X̂||_F / ||X||_F`` of the approximation they represent."""

    cores: tuple[torch.Tensor, ...]
    rel_error: float

    @property
    def ranks(self) -> tuple[int, ...]:
        """``(r_0, r_1, …, r_d)`` with ``r_0 = r_d = 1``."""
        return tuple(int(c.shape[0]) for c in self.cores) + (int(self.cores[-1].shape[-1]),)

    @property
    def num_params(self) -> int:
        """Total number of entries in the cores."""
        return sum(int(c.numel()) for c in self.cores)

    def to_tensor(self) -> torch.Tensor:
        """The full tensor (TT tensor) or the full matrix (TT matrix, 4-way cores)."""
        if self.cores[0].ndim == 4:
            return tt_matrix_to_matrix(self.cores)
        return tt_to_tensor(self.cores)


def max_tt_ranks(shape: Sequence[int]) -> tuple[int, ...]:
    """The TT ranks of an exact TT-SVD: ``r_k = min(n_1⋯n_k, n_{k+1}⋯n_d)`` (with ``r_0 = r_d = 1``)."""
    shape = [int(s) for s in shape]
    return tuple(min(math.prod(shape[:k]), math.prod(shape[k:])) for k in range(len(shape) + 1))


def tt_svd(tensor: torch.Tensor, max_rank: int | Sequence[int] | None = None, *,
           ranks: Sequence[int] | None = None, rel_tol: float | None = None) -> TTResult:
    """TT-SVD: sequential truncated SVDs of the unfoldings, left to right.

    Choose the ranks in one of three ways:

    * ``max_rank`` (int): every bond rank is ``min(max_rank, r_{k-1}·n_k, n_{k+1}⋯n_d)`` — fixed by the
      shape alone, even where the data has lower rank (predictable layer sizes; use ``rel_tol`` for ranks
      read from the data).
    * ``ranks`` (or a sequence passed as ``max_rank``): exact ranks, either all ``d+1`` of them with
      ``r_0 = r_d = 1`` or just the ``d-1`` inner ones. Each must be achievable:
      ``r_k <= r_{k-1}·n_k`` and ``r_k <= n_{k+1}·r_{k+1}``.
    * ``rel_tol``: the smallest ranks with ``||X - X̂||_F <= rel_tol·||X||_F`` (each SVD drops a tail of norm
      at most ``rel_tol·||X|| / sqrt(d-1)``); combinable with ``max_rank`` as a cap.

    Computed in float64; cores come back in the input's dtype.
    """
    work, dtype = prepare(tensor, "tensor", min_ndim=1)
    shape = tuple(int(s) for s in work.shape)
    cores = _tt_svd_cores(work, shape, max_rank, ranks, rel_tol)
    rel = relative_error(work, tt_to_tensor(cores))
    return TTResult(cores=tuple(c.to(dtype).contiguous() for c in cores), rel_error=rel)


def _resolve_rank_spec(shape: tuple[int, ...], max_rank: int | Sequence[int] | None,
                       ranks: Sequence[int] | None, rel_tol: float | None) -> tuple[int | None,
                                                                                      list[int] | None,
                                                                                      float | None]:
    if max_rank is not None and not isinstance(max_rank, int) and isinstance(max_rank, Sequence):
        if ranks is not None:
            raise ValueError("give the TT ranks once: either ranks= or a sequence as max_rank, not both")
        ranks, max_rank = max_rank, None
    if max_rank is None and ranks is None and rel_tol is None:
        raise ValueError("tt_svd needs max_rank, ranks or rel_tol")
    if ranks is not None and (max_rank is not None or rel_tol is not None):
        raise ValueError("explicit TT ranks cannot be combined with max_rank or rel_tol")
    if max_rank is not None:
        max_rank = check_int(max_rank, "max_rank")
    if rel_tol is not None:
        rel_tol = check_positive_float(rel_tol, "rel_tol", allow_zero=True)
    full: list[int] | None = None
    if ranks is not None:
        d = len(shape)
        given = [check_int(r, f"ranks[{i}]") for i, r in enumerate(ranks)]
        if len(given) == d + 1:
            if given[0] != 1 or given[-1] != 1:
                raise ValueError(f"TT ranks must start and end with 1, got {tuple(given)}")
            full = given
        elif len(given) == d - 1:
            full = [1, *given, 1]
        else:
            raise ValueError(f"expected {d + 1} TT ranks (or the {d - 1} inner ones) for shape {shape}, "
                             f"got {len(given)}")
        for k in range(1, d):
            if full[k] > full[k - 1] * shape[k - 1] or full[k] > shape[k] * full[k + 1]:
                limit = min(full[k - 1] * shape[k - 1], shape[k] * full[k + 1])
                raise ValueError(f"TT rank r_{k}={full[k]} is above the largest meaningful value {limit} for "
                                 f"shape {shape} and ranks {tuple(full)}")
    return max_rank, full, rel_tol


def _tt_svd_cores(work: torch.Tensor, shape: tuple[int, ...], max_rank: int | Sequence[int] | None,
                  ranks: Sequence[int] | None, rel_tol: float | None) -> list[torch.Tensor]:
    max_rank, full, rel_tol = _resolve_rank_spec(shape, max_rank, ranks, rel_tol)
    d = len(shape)
    delta_sq = 0.0
    if rel_tol is not None and d > 1:
        delta_sq = (rel_tol ** 2) * float((work * work).sum()) / (d - 1)
    cores: list[torch.Tensor] = []
    rest = work.reshape(-1)
    r_prev = 1
    for k in range(d - 1):
        mat = rest.reshape(r_prev * shape[k], -1)
        u, s, vh = thin_svd(mat)
        if full is not None:
            r = full[k + 1]
        else:
            r = int(s.shape[0])
            if max_rank is not None:
                r = min(r, max_rank)
            if rel_tol is not None:
                # tails[j] = sum of s_i² for i >= j; keep the smallest j with tails[j] <= delta².
                tails = torch.flip(torch.cumsum(torch.flip(s * s, [0]), 0), [0])
                ok = torch.nonzero(tails <= delta_sq).flatten()
                needed = int(ok[0]) if ok.numel() else int(s.shape[0])
                r = min(r, max(needed, 1))
        cores.append(u[:, :r].reshape(r_prev, shape[k], r))
        rest = s[:r, None] * vh[:r]
        r_prev = r
    cores.append(rest.reshape(r_prev, shape[-1], 1))
    return cores


def tt_to_tensor(cores: Sequence[torch.Tensor]) -> torch.Tensor:
    """Full tensor of shape ``(n_1, …, n_d)`` from TT cores ``r_{k-1} × n_k × r_k`` (``r_0 = r_d = 1``)."""
    _check_cores(cores, 3)
    shape = [int(c.shape[1]) for c in cores]
    out = cores[0].reshape(shape[0], -1)
    for core in cores[1:]:
        r, n, r_next = core.shape
        out = (out @ core.reshape(r, n * r_next)).reshape(-1, r_next)
    return out.reshape(shape)


def tt_matrix(matrix: torch.Tensor, out_shape: Sequence[int], in_shape: Sequence[int],
              max_rank: int | Sequence[int] | None = None, *, ranks: Sequence[int] | None = None,
              rel_tol: float | None = None) -> TTResult:
    """TT-matrix decomposition of ``matrix`` (``prod(out_shape) × prod(in_shape)``, e.g. a Linear weight).

    The matrix is reshaped to ``(m_1, …, m_d, n_1, …, n_d)``, permuted to ``(m_1, n_1, …, m_d, n_d)``, merged
    to ``(m_1 n_1, …, m_d n_d)`` and TT-SVD'd; each core ``r × (m_k n_k) × r'`` is returned as
    ``r × m_k × n_k × r'``. Ranks as in :func:`tt_svd`. Example (T3F): out (5,5,5,5), in (7,4,7,4),
    ``max_rank=4`` gives cores with 1,100 parameters for a 625 × 784 matrix.
    """
    work, dtype = prepare(matrix, "matrix", ndim=2)
    out_t = as_shape(out_shape, "out_shape")
    in_t = as_shape(in_shape, "in_shape")
    if len(out_t) != len(in_t):
        raise ValueError(f"out_shape {out_t} and in_shape {in_t} must have the same number of factors")
    rows, cols = (int(s) for s in work.shape)
    if rows != math.prod(out_t) or cols != math.prod(in_t):
        raise ValueError(f"matrix shape {rows}×{cols} does not match out_shape {out_t} (product "
                         f"{math.prod(out_t)}) × in_shape {in_t} (product {math.prod(in_t)})")
    d = len(out_t)
    order = [i for k in range(d) for i in (k, d + k)]
    merged = work.reshape(*out_t, *in_t).permute(order).reshape([m * n for m, n in zip(out_t, in_t)])
    cores = _tt_svd_cores(merged, tuple(int(s) for s in merged.shape), max_rank, ranks, rel_tol)
    cores4 = [c.reshape(c.shape[0], m, n, c.shape[-1]) for c, m, n in zip(cores, out_t, in_t)]
    rel = relative_error(work, tt_matrix_to_matrix(cores4))
    return TTResult(cores=tuple(c.to(dtype).contiguous() for c in cores4), rel_error=rel)


def tt_matrix_to_matrix(cores: Sequence[torch.Tensor]) -> torch.Tensor:
    """Full ``prod(m_k) × prod(n_k)`` matrix from TT-matrix cores ``r_{k-1} × m_k × n_k × r_k``."""
    _check_cores(cores, 4)
    out_t = [int(c.shape[1]) for c in cores]
    in_t = [int(c.shape[2]) for c in cores]
    d = len(cores)
    merged = tt_to_tensor([c.reshape(c.shape[0], c.shape[1] * c.shape[2], c.shape[3]) for c in cores])
    interleaved = merged.reshape([s for k in range(d) for s in (out_t[k], in_t[k])])
    order = [2 * k for k in range(d)] + [2 * k + 1 for k in range(d)]
    return interleaved.permute(order).reshape(math.prod(out_t), math.prod(in_t))


def _check_cores(cores: Sequence[torch.Tensor], ndim: int) -> None:
    if len(cores) == 0:
        raise ValueError("need at least one TT core")
    for k, core in enumerate(cores):
        if core.ndim != ndim:
            raise ValueError(f"TT core {k} must have {ndim} dimensions, got shape {tuple(core.shape)}")
        if k > 0 and core.shape[0] != cores[k - 1].shape[-1]:
            raise ValueError(f"TT core {k} has left rank {core.shape[0]} but core {k - 1} has right rank "
                             f"{cores[k - 1].shape[-1]}")
    if cores[0].shape[0] != 1 or cores[-1].shape[-1] != 1:
        raise ValueError(f"TT cores must start and end with rank 1, got {cores[0].shape[0]} and "
                         f"{cores[-1].shape[-1]}")
