"""Tucker and partial Tucker decompositions (HOSVD start, HOOI iterations).

``X ≈ core ×_{m_1} U_1 ×_{m_2} U_2 …`` where each factor ``U_k`` (``I_{m_k} × R_k``) has orthonormal columns
and ``core = X ×_{m_k} U_kᵀ`` keeps the untouched modes at full size. Tucker-2 of a conv kernel T×S×k×k is
``partial_tucker(kernel, modes=(0, 1), ranks=(R_out, R_in))``: ``core`` is R_out×R_in×k×k, ``factors[0]`` is
T×R_out (the last 1×1 conv) and ``factors[1]`` is S×R_in (the first 1×1 conv, transposed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ._common import (
    check_int,
    check_positive_float,
    leading_left_vectors,
    mode_dot,
    prepare,
    relative_error,
    relative_error_from_squares,
    unfold,
)


@dataclass(frozen=True)
class TuckerResult:
    """``X ≈ core ×_{modes[k]} factors[k]`` (factors with orthonormal columns; ``factors[k]`` is
    ``I_{modes[k]} × R_k``). ``rel_error = ||X - X̂||_F / ||X||_F``; ``n_iter`` counts HOOI sweeps."""

    core: torch.Tensor
    factors: tuple[torch.Tensor, ...]
    rel_error: float
    modes: tuple[int, ...] = ()
    n_iter: int = 0

    @property
    def ranks(self) -> tuple[int, ...]:
        return tuple(int(f.shape[1]) for f in self.factors)

    def to_tensor(self) -> torch.Tensor:
        """The full tensor ``core ×_{modes[k]} factors[k]``."""
        modes = self.modes or tuple(range(len(self.factors)))
        return tucker_to_tensor(self.core, self.factors, modes)


def tucker_to_tensor(core: torch.Tensor, factors: Sequence[torch.Tensor],
                     modes: Sequence[int] | None = None) -> torch.Tensor:
    """``core ×_{modes[k]} factors[k]`` (all modes in order when ``modes`` is None)."""
    modes = tuple(range(len(factors))) if modes is None else tuple(modes)
    out = core
    for mode, factor in zip(modes, factors):
        out = mode_dot(out, factor, mode)
    return out


def tucker(tensor: torch.Tensor, ranks: int | Sequence[int], *, n_iter_max: int = 50,
           tol: float = 1e-5) -> TuckerResult:
    """Full Tucker decomposition (every mode) with multilinear ranks ``ranks`` (an int applies to all modes).

    Same algorithm as :func:`partial_tucker` with ``modes = all``.
    """
    work, _ = prepare(tensor, "tensor", min_ndim=2)
    ndim = work.ndim
    if isinstance(ranks, int):
        ranks = [ranks] * ndim
    return partial_tucker(tensor, tuple(range(ndim)), ranks, n_iter_max=n_iter_max, tol=tol)


def partial_tucker(tensor: torch.Tensor, modes: Sequence[int], ranks: int | Sequence[int], *,
                   n_iter_max: int = 50, tol: float = 1e-5) -> TuckerResult:
    """Tucker decomposition of the chosen ``modes`` only (the other modes stay in the core at full size).

    Start (HOSVD): ``U_k`` = the ``R_k`` leading left singular vectors of the mode-``m_k`` unfolding.
    HOOI sweep: for each chosen mode, project the tensor on all the *other* current factors and take the
    leading left singular vectors of that projection's unfolding. The error is tracked exactly as
    ``||X||² - ||core||²`` (orthonormal factors); stops when the relative error changes by less than ``tol``
    between sweeps or after ``n_iter_max`` sweeps (0 gives the plain truncated HOSVD). HOOI creeps: on
    trained-like kernels the error still falls by ~1e-4 (absolute) between tol=1e-5 and 1e-8 at 4× the
    sweeps, so the default 1e-5 stops once further sweeps no longer pay.

    ``ranks`` must satisfy ``1 <= R_k <= I_{m_k}``; modes must be distinct and in range.
    """
    work, dtype = prepare(tensor, "tensor", min_ndim=1)
    ndim = work.ndim
    modes_t = _check_modes(modes, ndim)
    if isinstance(ranks, int):
        ranks = [ranks] * len(modes_t)
    ranks_l = list(ranks)
    if len(ranks_l) != len(modes_t):
        raise ValueError(f"got {len(ranks_l)} ranks for {len(modes_t)} modes {modes_t}")
    ranks_t = tuple(
        check_int(r, f"rank of mode {m}", high=work.shape[m], what=f"the size of mode {m}")
        for m, r in zip(modes_t, ranks_l)
    )
    n_iter_max = check_int(n_iter_max, "n_iter_max", low=0)
    tol = check_positive_float(tol, "tol", allow_zero=True)

    norm_sq = float((work * work).sum())
    factors = [leading_left_vectors(unfold(work, m), r) for m, r in zip(modes_t, ranks_t)]
    prev_err = relative_error_from_squares(norm_sq - _core_norm_sq(work, modes_t, factors), norm_sq)
    sweeps = 0
    for _ in range(n_iter_max):
        sweeps += 1
        proj = work
        for k, (mode, rank) in enumerate(zip(modes_t, ranks_t)):
            proj = work
            for j, (other, factor) in enumerate(zip(modes_t, factors)):
                if j != k:
                    proj = mode_dot(proj, factor.transpose(0, 1), other)
            factors[k] = leading_left_vectors(unfold(proj, mode), rank)
        core = mode_dot(proj, factors[-1].transpose(0, 1), modes_t[-1])  # the last projection gives the core
        err = relative_error_from_squares(norm_sq - float((core * core).sum()), norm_sq)
        if abs(prev_err - err) < tol:
            break
        prev_err = err

    core = work
    for mode, factor in zip(modes_t, factors):
        core = mode_dot(core, factor.transpose(0, 1), mode)
    rel = relative_error(work, tucker_to_tensor(core, factors, modes_t))
    return TuckerResult(
        core=core.to(dtype).contiguous(),
        factors=tuple(f.to(dtype).contiguous() for f in factors),
        rel_error=rel,
        modes=modes_t,
        n_iter=sweeps,
    )


def _core_norm_sq(tensor: torch.Tensor, modes: Sequence[int], factors: Sequence[torch.Tensor]) -> float:
    core = tensor
    for mode, factor in zip(modes, factors):
        core = mode_dot(core, factor.transpose(0, 1), mode)
    return float((core * core).sum())


def _check_modes(modes: Sequence[int] | int, ndim: int) -> tuple[int, ...]:
    if isinstance(modes, int):
        modes = (modes,)
    out = []
    for m in modes:
        m = check_int(m, "mode", low=-ndim, high=ndim - 1, what=f"the tensor has {ndim} modes")
        out.append(m % ndim)
    if not out:
        raise ValueError("modes must name at least one mode")
    if len(set(out)) != len(out):
        raise ValueError(f"modes must be distinct, got {tuple(modes)}")
    return tuple(out)
