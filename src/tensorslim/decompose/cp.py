"""CP (CANDECOMP/PARAFAC) decomposition: the tensor power method with deflation and alternating least squares.

A rank-R CP decomposition writes an N-way tensor as a sum of R outer products,
``X ≈ Σ_r w_r · a⁽⁰⁾_r ∘ a⁽¹⁾_r ∘ … ∘ a⁽ᴺ⁻¹⁾_r``. Results are :class:`CPResult` with ``weights`` (R,) and
``factors[n]`` of shape ``I_n × R`` whose columns have unit norm (the scale lives in ``weights``).

For a conv kernel T×S×k×k, CP-3 (Astrid & Lee) decomposes the reshape T×S×k² and CP-4 (Lebedev) the 4-way
kernel itself; both are plain calls of :func:`cp_power` or :func:`cp_als` on the right reshape.

Algorithms (arithmetic in float64 except where :func:`cp_als`'s ``precision`` says otherwise; results in the
input's dtype):

* :func:`cp_power` — the tensor power method with deflation (Astrid & Lee 2017): R times, find the best
  rank-1 approximation of the residual by alternating power updates (higher-order power method, HOPM) and
  subtract it. Each rank-1 search starts from the leading left singular vectors of the residual's unfoldings
  (HOSVD-style, computed from Gram matrices that are kept up to date by rank-2 corrections after each
  deflation), not from random vectors: the start is deterministic and lies close to the dominant rank-1 term.
* :func:`cp_als` — alternating least squares with an MTTKRP that never materialises a Khatri–Rao product,
  columns normalised after every update, a cheap error from Gram matrices, and Bro-style extrapolation
  ("line search") that is accepted only when it lowers the error. It starts from a GEVD (Jennrich) start
  where that fits far better than the SVD start after one sweep (near-low-rank tensors, where ALS from SVD
  often stalls in swamps), else from the SVD start; on large problems the two big GEMMs of a sweep run in
  float32 until the error settles.

Both take the same option names: ``init``, ``n_iter_max``, ``tol``, ``seed``; plus ``stop`` (power) and
``linesearch``, ``precision`` (ALS). This module holds ALS; the power method is in :mod:`.cp_power` and what
both share in :mod:`._cp_common` (all importable from here). ``benchmarks/bench_cp.py`` measures ALS against
TensorLy's ``parafac``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from ._common import (
    WORK_DTYPE,
    check_int,
    check_positive_float,
    leading_left_vectors,
    relative_error_from_squares,
    unfold,
)
from ._cp_common import (  # noqa: F401 - CPResult, cp_to_tensor, max_cp_rank: public names of this module
    CPResult,
    _check_cp_args,
    _finish,
    _khatri_rao,
    _renamed,
    cp_to_tensor,
    max_cp_rank,
)
from .cp_power import cp_power  # noqa: F401

ALS_INITS = ("auto", "gevd", "svd", "random", "power")
"""Start values :func:`cp_als` accepts for ``init``."""


def cp_als(tensor: torch.Tensor, rank: int, *, init: str = "auto", n_iter_max: int = 100, tol: float = 1e-8,
           seed: int = 0, linesearch: bool = True, precision: str = "auto", **deprecated: Any) -> CPResult:
    """Rank-``rank`` CP decomposition by alternating least squares.

    ``init``:

    * ``"auto"`` (default): where ``"gevd"`` applies (order >= 3 and the two longest modes at least ``rank``
      long), one sweep from the SVD start and one from the GEVD start, and ALS goes on from the GEVD one only
      if its error is below ``AUTO_GEVD_MARGIN`` (0.5) × the SVD one's (the trial counts as the first sweep).
      Near-low-rank tensors (planted rank plus noise) give a few percent there and GEVD has then found the
      components; trained kernels, far from any low rank, give 0.75–0.9, and there the SVD start ends a
      little lower after 100 sweeps. Elsewhere: ``"svd"``.
    * ``"gevd"``: an algebraic start (Sanchez & Kowalski's generalised rank annihilation / Jennrich's
      algorithm, as in Tensorlab's ``cpd_gevd``): the tensor is compressed to ``rank`` along its two longest
      modes (leading singular vectors), two mixtures ``S₁ = A D₁ Bᵀ``, ``S₂ = A D₂ Bᵀ`` of the compressed
      slices along the remaining modes are formed, and the eigenvectors of ``S₂ S₁⁻¹ = A (D₂ D₁⁻¹) A⁻¹``
      give the longest mode's factor (complex pairs contribute their real and imaginary parts). Each row of
      ``A⁻¹ X_(0)`` is then a rank-1 matrix in the other modes, whose leading singular pair gives their
      factors. Exact for an exact CP tensor of that rank; with noise it lands next to the planted solution,
      where plain ALS from an SVD start often stalls in a swamp. Falls back to ``"svd"`` where it does
      not apply or the pencil is singular.
    * ``"svd"``: factor n starts as the leading left singular vectors of the mode-n unfolding (padded with
      Gaussian columns drawn from ``seed`` when ``I_n < rank``) — TensorLy's default start.
    * ``"random"``: Gaussian factors from ``seed``.  ``"power"``: the result of :func:`cp_power`.

    One sweep updates the modes in turn, the longest mode first. The tensor is kept with its longest mode
    first and its second longest last, so the longest mode's MTTKRP is one GEMM with the last factor
    followed by a Hadamard-and-sum over the (short) middle modes, and ``X ×₀ A`` (another GEMM) is then
    shared by the MTTKRPs of all the other modes: a sweep costs about ``2·prod(shape)·R`` multiply-adds and
    never forms a Khatri–Rao product of more than the short modes. Each update solves with the Hadamard
    product of the other Gram matrices by Cholesky (pseudo-inverse when singular) and normalises the columns
    into ``weights``. The error is tracked from Gram matrices and the last MTTKRP (no reconstruction).
    With ``linesearch`` (default) the change made by each sweep is extrapolated (Bro 1998: step
    ``it^(1/p)``, p raised after repeated failures) and the extrapolated point is kept only if its error is
    lower; an accepted point's MTTKRP is reused by the next sweep. Stops when the relative error changes by
    less than ``tol`` between sweeps or after ``n_iter_max`` sweeps; the reported ``rel_error`` is
    recomputed exactly from the final factors.

    ``precision``: ``"float64"`` runs everything in float64. ``"mixed"`` runs the two large GEMMs of a sweep
    (the only steps that touch the whole tensor) on a float32 copy of it while the error still drops by
    more than ``MIXED_SWITCH`` (1e-5) per sweep, then switches to float64 for good; the Gram matrices,
    solves, line search and errors stay float64, the stopping test on ``tol`` only applies in the float64
    phase, and the reported error is exact. float32 GEMMs are 2–2.5× faster on CPUs; their rounding
    (~1e-7 relative) is far below what a float32 network layer can hold. ``"auto"`` (default): ``"mixed"``
    where ``numel · rank >= 2^27`` (e.g. a 512×512×3×3 kernel at rank 256; there one sweep takes ~0.1 s in
    float64), ``"float64"`` below.

    TensorLy's ``random_state`` and cp_power's old ``max_iter`` are accepted for ``seed`` / ``n_iter_max``,
    with a DeprecationWarning.
    """
    n_iter_max, seed = _renamed("cp_als", deprecated, n_iter_max=n_iter_max, seed=seed)
    work, dtype, rank = _check_cp_args(tensor, rank)
    if init not in ALS_INITS:
        raise ValueError(f"init must be one of {list(ALS_INITS)}, got {init!r}")
    n_iter_max = check_int(n_iter_max, "n_iter_max", low=0)
    tol = check_positive_float(tol, "tol", allow_zero=True)
    if not isinstance(linesearch, bool):
        raise ValueError(f"linesearch must be True or False, got {linesearch!r}")
    if precision not in ("auto", "float64", "mixed"):
        raise ValueError(f"precision must be 'auto', 'float64' or 'mixed', got {precision!r}")

    shape = tuple(work.shape)
    ndim = len(shape)
    perm = _als_layout(shape)
    x = work.permute(perm).contiguous()
    norm_sq = float((x * x).sum())

    auto = init == "auto"
    weights, factors = _als_init(x, work, rank, "svd" if auto else init, seed, perm)
    if norm_sq == 0.0:
        return _finish(work, torch.zeros(rank, dtype=WORK_DTYPE, device=work.device),
                       [factors[perm.index(n)] for n in range(ndim)], dtype, 0, "als", rel_error=0.0)

    mixed = precision == "mixed" or (precision == "auto" and x.numel() * rank >= MIXED_MIN_WORK)
    big = x.to(torch.float32) if mixed else x  # the operand of the two large GEMMs of a sweep
    grams = [f.transpose(0, 1) @ f for f in factors]
    err = math.inf
    prev_err = math.inf
    lead_mttkrp: torch.Tensor | None = None  # MTTKRP of mode 0 for the current factors, when known
    acc_pow, acc_fail = 3.0, 0
    n_done = 0
    first = 0
    gevd = None
    if auto and n_iter_max > 0 and gevd_applies(shape, rank):
        gevd = _gevd_start(x, rank, factors[0], factors[-1])  # reuses the SVD start's singular vectors
    if gevd is not None:
        # "auto": one sweep from the SVD start and one from the GEVD start; the GEVD start is kept only when
        # it fits far better (the tensor is then close to rank R and GEVD has found its components).
        weights, factors, grams, err = _sweep(big, weights, factors, grams, norm_sq)
        g_w, g_f = _normalise(*gevd)
        g_w, g_f, g_g, g_err = _sweep(big, g_w, g_f, [f.transpose(0, 1) @ f for f in g_f], norm_sq)
        if g_err < AUTO_GEVD_MARGIN * err:
            weights, factors, grams, err = g_w, g_f, g_g, g_err
        n_done, first, prev_err = 1, 1, err  # the trial counts as the first sweep
    for it in range(first, n_iter_max):
        n_done = it + 1
        old_weights, old_factors = weights, list(factors)  # updates replace tensors, never mutate them
        weights, factors, grams, err = _sweep(big, weights, factors, grams, norm_sq, lead_mttkrp)
        lead_mttkrp = None

        if linesearch and it >= 2:
            jump = (it + 1) ** (1.0 / acc_pow)
            cand_w = old_weights + jump * (weights - old_weights)
            cand_f = [o + jump * (f - o) for o, f in zip(old_factors, factors)]
            cand_w, cand_f = _normalise(cand_w, cand_f)
            cand_grams = [f.transpose(0, 1) @ f for f in cand_f]
            cand_m0 = _mttkrp_first(big, cand_f)
            cand_inner = float((cand_m0 * cand_f[0]).sum(0) @ cand_w)
            cand_err = _err_from_parts(norm_sq, cand_inner, cand_w, cand_grams)
            if cand_err < err:
                weights, factors, grams, err = cand_w, cand_f, cand_grams, cand_err
                lead_mttkrp = cand_m0  # the next sweep starts with exactly this MTTKRP
                acc_fail = 0
            else:
                acc_fail += 1
                if acc_fail >= 4:
                    acc_pow += 1.0
                    acc_fail = 0
        if big is not x:
            if abs(prev_err - err) < MIXED_SWITCH:
                big = x  # close to a fixed point: float64 from here on
        elif tol > 0 and abs(prev_err - err) < tol:
            break
        prev_err = err

    # An accepted extrapolation can leave a negative weight: move the sign into the first factor.
    sign = torch.where(weights < 0, -1.0, 1.0).to(weights)
    weights, factors[0] = weights * sign, factors[0] * sign
    order = torch.argsort(weights, descending=True)
    weights = weights[order]
    factors = [f[:, order] for f in factors]
    inverse = [perm.index(n) for n in range(ndim)]
    return _finish(work, weights, [factors[i] for i in inverse], dtype, n_done, "als")


_TINY = torch.finfo(WORK_DTYPE).tiny

MIXED_MIN_WORK = 2 ** 27
"""``precision="auto"`` uses float32 GEMMs from this ``numel · rank`` on."""

MIXED_SWITCH = 1e-5
"""``precision="mixed"`` switches to float64 once the error drops by less than this in a sweep."""


AUTO_GEVD_MARGIN = 0.5
"""``init="auto"`` keeps the GEVD start when its error after one sweep is below this fraction of the SVD
start's (planted low-rank kernels: a few percent; trained kernels, far from any low rank: 0.75–0.9)."""


def _sweep(big: torch.Tensor, weights: torch.Tensor, factors: Sequence[torch.Tensor], grams: Sequence[torch.Tensor],
           norm_sq: float, lead_mttkrp: torch.Tensor | None = None
           ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor], float]:
    """One ALS sweep over all modes of ``big`` (the tensor in ALS layout, float64 or its float32 copy); new
    lists are returned, inputs are not mutated.

    ``lead_mttkrp``: the mode-0 MTTKRP of ``factors`` when already known. Returns (weights, factors, Gram
    matrices, relative error).
    """
    factors, grams = list(factors), list(grams)
    ndim = big.ndim
    # --- the longest mode (mode 0 of the permuted tensor)
    m0 = lead_mttkrp if lead_mttkrp is not None else _mttkrp_first(big, factors)
    weights, factors[0] = _solve_update(m0, grams, 0)
    grams[0] = factors[0].transpose(0, 1) @ factors[0]
    # --- the other modes, sharing X ×₀ A
    shared = _contract_first(big, factors[0])
    mttkrp = m0
    for n in range(1, ndim):
        mttkrp = _mttkrp_from_shared(shared, factors, n)
        weights, factors[n] = _solve_update(mttkrp, grams, n)
        grams[n] = factors[n].transpose(0, 1) @ factors[n]
    del shared
    # error from the last MTTKRP (mode ndim-1) and the Gram matrices
    inner = float((mttkrp * factors[ndim - 1]).sum(0) @ weights)
    return weights, factors, grams, _err_from_parts(norm_sq, inner, weights, grams)


def _als_layout(shape: Sequence[int]) -> list[int]:
    """Mode order of ALS's working copy: the longest mode first, the second longest last."""
    ndim = len(shape)
    lead = max(range(ndim), key=lambda n: shape[n])
    rest = [n for n in range(ndim) if n != lead]
    second = max(rest, key=lambda n: shape[n])
    return [lead] + [n for n in rest if n != second] + [second]


def _als_init(x: torch.Tensor, work: torch.Tensor, rank: int, init: str, seed: int,
              perm: list[int]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Initial (weights, unit-column factors) for the permuted tensor ``x``."""
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    pshape = tuple(x.shape)
    if init == "power":
        res = cp_power(work, rank, seed=seed)
        factors = [res.factors[p].to(WORK_DTYPE) for p in perm]
        return _normalise(res.weights.to(WORK_DTYPE), factors)
    if init == "gevd":
        start = _gevd_start(x, rank)
        if start is not None:
            return _normalise(*start)
    factors = []
    for n, size in enumerate(pshape):
        if init == "random":
            f = torch.randn(size, rank, generator=gen, dtype=WORK_DTYPE).to(x.device)
        else:
            k = min(rank, size)
            f = leading_left_vectors(unfold(x, n), k)
            if k < rank:
                extra = torch.randn(size, rank - k, generator=gen, dtype=WORK_DTYPE).to(x.device)
                f = torch.cat([f, extra], dim=1)
        factors.append(f)
    return _normalise(torch.ones(rank, dtype=WORK_DTYPE, device=x.device), factors)


def gevd_applies(shape: Sequence[int], rank: int) -> bool:
    """Whether ``init="gevd"`` applies: order >= 3 and the two longest modes at least ``rank`` long."""
    sizes = sorted((int(s) for s in shape), reverse=True)
    return len(sizes) >= 3 and sizes[1] >= rank and math.prod(sizes[2:]) >= 2


def _gevd_start(x: torch.Tensor, rank: int, u_first: torch.Tensor | None = None,
                u_last: torch.Tensor | None = None) -> tuple[torch.Tensor, list[torch.Tensor]] | None:
    """GEVD start (weights, factors) for ``x`` in ALS layout (longest mode first, second longest last), or
    ``None`` where it does not apply. ``u_first`` / ``u_last``: the ``rank`` leading left singular vectors
    of the first / last unfolding, when already known."""
    shape = tuple(x.shape)
    if not gevd_applies(shape, rank):
        return None
    first, last = shape[0], shape[-1]
    mid = math.prod(shape[1:-1])
    if u_first is None:
        u_first = leading_left_vectors(x.reshape(first, -1), rank)  # I_0 × R
    if u_last is None:
        u_last = leading_left_vectors(x.reshape(-1, last).transpose(0, 1), rank)  # I_last × R
    core = ((u_first.transpose(0, 1) @ x.reshape(first, -1)).reshape(rank * mid, last) @ u_last)
    core = core.reshape(rank, mid, rank)  # R × (middle modes) × R
    mix = leading_left_vectors(core.permute(1, 0, 2).reshape(mid, -1), 2)  # two leading middle directions
    if mix.shape[1] < 2:  # rank 1: the middle unfolding has a single direction, no pencil to diagonalise
        return None
    s1 = torch.einsum("amb,m->ab", core, mix[:, 0])
    s2 = torch.einsum("amb,m->ab", core, mix[:, 1])
    try:
        pencil = torch.linalg.solve(s1, s2, left=False)  # S₂ S₁⁻¹ = A D A⁻¹
        vals, vecs = torch.linalg.eig(pencil)
        a = torch.cat([vecs.real[:, vals.imag >= 0], vecs.imag[:, vals.imag > 0]], dim=1)
        if a.shape[1] != rank or not bool(torch.isfinite(a).all()):
            return None
        a = a / torch.linalg.vector_norm(a, dim=0).clamp_min(_TINY)
        rows = torch.linalg.solve(a, core.reshape(rank, -1)).reshape(rank, mid, rank)
    except (RuntimeError, torch.linalg.LinAlgError):  # singular mixture or eigenvector matrix
        return None
    u, sv, vh = torch.linalg.svd(rows, full_matrices=False)  # R rank-1 fits of (middle) × (last) matrices
    middle = _split_rank1(u[:, :, 0].transpose(0, 1), shape[1:-1])
    factors = [u_first @ a, *middle, u_last @ vh[:, 0, :].transpose(0, 1)]
    if not all(bool(torch.isfinite(f).all()) for f in factors):
        return None
    return sv[:, 0].contiguous(), factors


def _split_rank1(merged: torch.Tensor, sizes: Sequence[int]) -> list[torch.Tensor]:
    """Columns of ``merged`` (prod(sizes) × R, C order) split into one factor per size by rank-1 fits."""
    out = []
    rest = merged.transpose(0, 1)  # R × prod(sizes)
    for size in sizes[:-1]:
        u, s, vh = torch.linalg.svd(rest.reshape(rest.shape[0], size, -1), full_matrices=False)
        out.append(u[:, :, 0].transpose(0, 1))
        rest = vh[:, 0, :] * s[:, :1]
    out.append(rest.transpose(0, 1))
    return out


def _normalise(weights: torch.Tensor,
               factors: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Move the column norms of every factor into the weights."""
    out = []
    for f in factors:
        norms = torch.linalg.vector_norm(f, dim=0)
        weights = weights * norms
        out.append(f / norms.clamp_min(_TINY))  # a zero column stays zero
    return weights, out


def _solve_update(mttkrp: torch.Tensor, grams: Sequence[torch.Tensor],
                  mode: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares update of factor ``mode``: ``F = M V⁻¹`` with V the Hadamard product of the other Grams.

    Returns ``(weights, unit-column factor)``. Uses a Cholesky solve, and the pseudo-inverse when V is
    singular (collinear columns).
    """
    v = None
    for n, g in enumerate(grams):
        if n != mode:
            v = g if v is None else v * g
    assert v is not None
    chol, info = torch.linalg.cholesky_ex(v)
    if int(info) == 0:
        f = torch.cholesky_solve(mttkrp.transpose(0, 1), chol).transpose(0, 1)
    else:
        f = mttkrp @ torch.linalg.pinv(v, hermitian=True)
    norms = torch.linalg.vector_norm(f, dim=0)
    return norms, f / norms.clamp_min(_TINY)


def _err_from_parts(norm_sq: float, inner: float, weights: torch.Tensor,
                    grams: Sequence[torch.Tensor]) -> float:
    """Relative error ``sqrt(||X||² - 2⟨X, X̂⟩ + ||X̂||²) / ||X||`` with ``||X̂||² = wᵀ (∘ Grams) w``."""
    had = grams[0]
    for g in grams[1:]:
        had = had * g
    model_sq = float(weights @ had @ weights)
    return relative_error_from_squares(norm_sq - 2.0 * inner + model_sq, norm_sq)


def _mttkrp_first(x: torch.Tensor, factors: Sequence[torch.Tensor]) -> torch.Tensor:
    """MTTKRP of mode 0, ``X_(0) (⊙ of the other factors)``, for ``x`` in ALS layout, as float64.

    With ``K`` the product of the middle (short) modes and ``kr`` their Khatri–Rao product (K × R), this is
    ``Σ_k X[:, k, :] · (F_last ∘ kr[k])``: for a small K, K accumulated GEMMs on strided slices of ``x`` (no
    intermediate); otherwise one GEMM with the last factor and a batched Hadamard-and-sum over the middle.
    Runs in ``x``'s dtype (float32 in the mixed phase of :func:`cp_als`).
    """
    rank = int(factors[0].shape[1])
    last = factors[-1].to(x.dtype)
    if x.ndim == 2:
        return (x @ last).to(WORK_DTYPE)
    kr = _khatri_rao(factors[1:-1]).to(x.dtype)  # K × R
    slices = x.reshape(x.shape[0], -1, x.shape[-1])  # I_0 × K × I_last (a view)
    if kr.shape[0] <= _SLICE_LOOP_MAX:
        out = slices[:, 0, :] @ (last * kr[0])
        for k in range(1, kr.shape[0]):
            out.addmm_(slices[:, k, :], last * kr[k])
        return out.to(WORK_DTYPE)
    t = (x.reshape(-1, x.shape[-1]) @ last).reshape(x.shape[0], -1, rank)  # I_0 × K × R
    t = torch.bmm(t.permute(2, 0, 1), kr.transpose(0, 1).unsqueeze(-1)).squeeze(-1).transpose(0, 1)
    return t.to(WORK_DTYPE)


_SLICE_LOOP_MAX = 64
"""Up to this many middle slices, :func:`_mttkrp_first` accumulates one GEMM per slice."""


def _contract_first(x: torch.Tensor, factor0: torch.Tensor) -> torch.Tensor:
    """``X ×₀ factor0ᵀ`` with the R axis first: shape ``(R,) + x.shape[1:]``, in ``x``'s dtype."""
    return (factor0.transpose(0, 1).to(x.dtype) @ x.reshape(x.shape[0], -1)).reshape(-1, *x.shape[1:])


def _mttkrp_from_shared(shared: torch.Tensor, factors: Sequence[torch.Tensor], mode: int) -> torch.Tensor:
    """MTTKRP of ``mode`` (>= 1) from ``shared = X ×₀ Aᵀ`` (R first, then modes 1..N-1), as a float64
    ``I_mode × R`` (computed in ``shared``'s dtype).

    ``shared`` is viewed as ``R × before × I_mode × after``; the Khatri–Rao products of the factors before
    and after ``mode`` are summed out with two batched matrix-vector products.
    """
    rank = int(shared.shape[0])
    sizes = tuple(shared.shape[1:])
    size = sizes[mode - 1]
    t = shared.reshape(rank, -1, math.prod(sizes[mode:]))
    if mode < len(sizes):
        after = _khatri_rao(factors[mode + 1:]).to(shared.dtype)  # after × R
        t = torch.bmm(t, after.transpose(0, 1).unsqueeze(-1))  # R × (before·I_mode) × 1
    t = t.reshape(rank, -1, size)
    if mode > 1:
        before = _khatri_rao(factors[1:mode]).to(shared.dtype)  # before × R
        t = torch.bmm(before.transpose(0, 1).unsqueeze(1), t)  # R × 1 × I_mode
    return t.reshape(rank, size).transpose(0, 1).to(WORK_DTYPE)
