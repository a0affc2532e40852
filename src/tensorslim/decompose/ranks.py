"""Rank *selection*: how large a rank to ask for. Nothing here performs a decomposition.

Conventions used throughout:

* ``ratio`` is the **kept fraction of parameters**: ``params(factorized) / params(dense)``, in ``(0, 1]``.
  nnabla's "compression ratio" CR is the removed fraction, ``CR = 1 - ratio``; a "compression factor" of
  ``c×`` is ``ratio = 1 / c``. Biases are left out of both counts (they are the same before and after).
* Every ``*_for_ratio`` rule returns the **largest** rank whose parameter count is ``<= ratio · dense``, but
  at least 1 (a ratio below what rank 1 costs still gives rank 1).
* Conv kernels are ``T × S × kh × kw`` (out channels, in channels, kernel height, width); Linear weights are
  ``out × in``.

Contents: :func:`energy_rank`; :func:`evbmf` (empirical variational Bayes matrix factorisation, the analytic
solution of Nakajima et al. 2013 with the noise variance estimated as in Nakajima et al. 2015);
:func:`weakened_evbmf` (MUSCO); :func:`tucker2_ranks_evbmf` (Kim et al. 2016); the closed-form rank-for-ratio
rules of CP, Tucker-2 and TT (the library meets a ratio by searching the replacement's own ``params()``; these
rules serve the decomposition benchmark) with the parameter counts they rely on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ._common import as_shape, check_int, prepare, singular_values, unfold

# ------------------------------------------------------------------------------------------------------------
# Energy
# ------------------------------------------------------------------------------------------------------------


def energy_rank(singular_values: torch.Tensor | Sequence[float], energy: float) -> int:
    """Smallest r whose r largest singular values keep at least ``energy`` of the total energy.

    Energy is the sum of *squared* singular values (the squared Frobenius norm), so the rank-r truncated SVD
    has relative error ``sqrt(1 - kept)``. ``energy`` must lie in ``(0, 1]``; the values need not be sorted.
    All-zero input gives 1.
    """
    s, _ = prepare(torch.as_tensor(singular_values), "singular_values", ndim=1)
    if bool((s < 0).any()):
        raise ValueError("singular_values must be non-negative")
    energy = float(energy)
    if not (0.0 < energy <= 1.0):
        raise ValueError(f"energy must lie in (0, 1], got {energy}")
    sq = torch.sort(s * s, descending=True).values
    total = float(sq.sum())
    if total == 0.0:
        return 1
    kept = torch.cumsum(sq, 0) / total
    # tolerate rounding in the cumulative sum so that energy=1 selects the last non-zero value
    hit = torch.nonzero(kept >= energy - 1e-12).flatten()
    return int(hit[0]) + 1 if hit.numel() else int(s.shape[0])


# ------------------------------------------------------------------------------------------------------------
# Empirical variational Bayes matrix factorisation (EVBMF)
# ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EVBMFDetails:
    """What :func:`evbmf` found.

    ``shape`` is ``(L, M)`` after orienting the matrix so that ``L <= M`` (``transposed`` says whether that
    took a transpose). ``sigma2`` is the noise variance (estimated unless given), ``threshold`` the singular
    value below which a component is pruned, ``tau_lower``/``x_lower`` the constants τ̲ and
    x̲ = (1+τ̲)(1+α/τ̲) of the threshold ``sqrt(M·σ²·x̲)``, ``singular_values`` the observed values
    (descending) and ``estimates`` the EVB-shrunk values of the kept components.
    """

    rank: int
    sigma2: float
    threshold: float
    tau_lower: float
    x_lower: float
    singular_values: tuple[float, ...]
    estimates: tuple[float, ...]
    shape: tuple[int, int]
    transposed: bool
    sigma2_estimated: bool


def evbmf(matrix: torch.Tensor, *, sigma2: float | None = None) -> tuple[int, EVBMFDetails]:
    """Rank of ``matrix`` by empirical variational Bayes matrix factorisation (analytic global solution).

    Model ``V = B Aᵀ + E`` with Gaussian noise of variance σ² and Gaussian priors whose variances are
    estimated too (empirical Bayes). With ``V`` oriented as L × M, ``L <= M``, ``α = L/M`` and singular values
    ``γ_h``, the EVB solution (Nakajima, Sugiyama, Babacan & Tomioka, JMLR 2013; in the form of Nakajima,
    Tomioka, Sugiyama & Babacan, JMLR 2015) keeps component h iff ``γ_h > γ̲ = sqrt(M σ² x̲)`` with
    ``x̲ = (1 + τ̲)(1 + α/τ̲)``, where τ̲ is the positive zero of ``Ψ(τ) = log(τ+1) + α log(τ/α + 1) - τ``
    (found numerically here; ``2.5129·sqrt(α)`` is only an approximation of it). A kept component is shrunk to
    ``γ̂ = γ/2 · (1 - (L+M)σ²/γ² + sqrt((1 - (L+M)σ²/γ²)² - 4LMσ⁴/γ⁴))``.

    Unless ``sigma2`` is given it is estimated by minimising the EVB free energy, which as a function of σ²
    is ``Σ_h ψ(γ_h²/(Mσ²))`` with ``ψ(x) = x - log x + [x > x̲]·ψ₁(x)``,
    ``ψ₁(x) = log(τ(x)+1) + α log(τ(x)/α + 1) - τ(x)`` and
    ``τ(x) = (x - (1+α) + sqrt((x - (1+α))² - 4α)) / 2``, over the interval the 2015 paper proves contains
    the minimiser: ``[max(γ²_{H̄+1}/(M x̲), Σ_{h>H̄} γ_h² / (M(L-H̄))), Σ_h γ_h²/(LM)]`` with
    ``H̄ = min(⌈L/(1+α)⌉ - 1, L)``. The objective is not convex, so it is scanned on a log-spaced grid,
    then more finely around the best grid point, and finally refined with a bounded scalar search. The lower
    end is floored at ``1e-12`` times the upper end so that an exactly low-rank matrix (no noise) gets its
    exact rank rather than σ² = 0.

    Returns ``(rank, details)``; rank 0 means no component stands out of the noise.
    """
    work, _ = prepare(matrix, "matrix", ndim=2)
    transposed = work.shape[0] > work.shape[1]
    if transposed:
        work = work.transpose(0, 1)
    L, M = (int(s) for s in work.shape)
    alpha = L / M
    s = singular_values(work)
    gammas = [float(g) for g in s]
    tau_lower = _evb_tau_lower(alpha)
    x_lower = (1.0 + tau_lower) * (1.0 + alpha / tau_lower)

    estimated = sigma2 is None
    if sigma2 is None:
        sigma2 = _evb_sigma2(gammas, L, M, alpha, x_lower)
    else:
        sigma2 = float(sigma2)
        if not math.isfinite(sigma2) or sigma2 <= 0:
            raise ValueError(f"sigma2 must be a finite number > 0, got {sigma2!r}")

    if sigma2 <= 0.0:  # the zero matrix
        threshold = 0.0
        kept: list[float] = []
    else:
        threshold = math.sqrt(M * sigma2 * x_lower)
        kept = [g for g in gammas if g > threshold]
    estimates = tuple(_evb_shrink(g, L, M, sigma2) for g in kept)
    details = EVBMFDetails(
        rank=len(kept), sigma2=sigma2, threshold=threshold, tau_lower=tau_lower, x_lower=x_lower,
        singular_values=tuple(gammas), estimates=estimates, shape=(L, M), transposed=transposed,
        sigma2_estimated=estimated,
    )
    return len(kept), details


def _evb_tau_lower(alpha: float) -> float:
    """Positive zero of Ψ(τ) = log(τ+1) + α log(τ/α + 1) − τ (Ψ > 0 below it, < 0 above it)."""

    def psi(tau: float) -> float:
        return math.log1p(tau) + alpha * math.log1p(tau / alpha) - tau

    lo, hi = 1e-12, 1.0
    while psi(hi) > 0:
        hi *= 2.0
    for _ in range(200):  # bisection: plenty for float64
        mid = 0.5 * (lo + hi)
        if psi(mid) > 0:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-15 * hi:
            break
    return 0.5 * (lo + hi)


def _evb_shrink(gamma: float, L: int, M: int, sigma2: float) -> float:
    """EVB estimate of a kept singular value γ (Nakajima et al.)."""
    a = 1.0 - (L + M) * sigma2 / gamma ** 2
    disc = max(a * a - 4.0 * L * M * sigma2 ** 2 / gamma ** 4, 0.0)
    return 0.5 * gamma * (a + math.sqrt(disc))


def _evb_objective(sigma2: torch.Tensor, gammas_sq: torch.Tensor, L: int, M: int, alpha: float,
                   x_lower: float) -> torch.Tensor:
    """EVB free energy as a function of σ² (up to constants that do not depend on σ²), for a batch of σ².

    ``Σ_h [x_h - log x_h]`` is written as ``Σ_h [γ_h²/(Mσ²) + log(Mσ²)]`` (dropping ``Σ log γ_h²``), which
    stays finite for zero singular values.
    """
    sigma2 = sigma2.reshape(-1, 1)
    x = gammas_sq.reshape(1, -1) / (M * sigma2)
    value = x.sum(1) + L * torch.log(M * sigma2[:, 0])
    b = x - (1.0 + alpha)
    tau = 0.5 * (b + torch.sqrt(torch.clamp(b * b - 4.0 * alpha, min=0.0)))
    psi1 = torch.log1p(tau) + alpha * torch.log1p(tau / alpha) - tau
    return value + torch.where(x > x_lower, psi1, torch.zeros_like(psi1)).sum(1)


def _evb_sigma2(gammas: list[float], L: int, M: int, alpha: float, x_lower: float) -> float:
    g2 = torch.tensor(gammas, dtype=torch.float64) ** 2
    total = float(g2.sum())
    if total == 0.0:
        return 0.0
    upper = total / (L * M)
    h_bar = min(math.ceil(L / (1.0 + alpha)) - 1, L)
    tail = g2[h_bar:]
    lower = 0.0
    if tail.numel():
        lower = max(float(tail[0]) / (M * x_lower), float(tail.sum()) / (M * (L - h_bar)))
    lower = max(lower, upper * 1e-12)
    if lower >= upper:
        return upper

    # Coarse log-spaced scan of the whole interval, then a finer scan between the best point's neighbours,
    # then a bounded scalar search there.
    lo, hi = math.log(lower), math.log(upper)
    best = lower
    for _ in range(2):
        grid = torch.exp(torch.linspace(lo, hi, 257, dtype=torch.float64))
        values = _evb_objective(grid, g2, L, M, alpha, x_lower)
        i = int(torch.argmin(values))
        best, best_val = float(grid[i]), float(values[i])
        lo, hi = math.log(float(grid[max(i - 1, 0)])), math.log(float(grid[min(i + 1, grid.numel() - 1)]))
    try:
        from scipy.optimize import minimize_scalar

        def objective(v: float) -> float:
            return float(_evb_objective(torch.tensor([v], dtype=torch.float64), g2, L, M, alpha, x_lower)[0])

        res = minimize_scalar(objective, bounds=(math.exp(lo), math.exp(hi)), method="bounded",
                              options={"xatol": math.exp(lo) * 1e-12})
        if res.success and float(res.fun) <= best_val:
            best = float(res.x)
    except ImportError:  # scipy is a dependency; the grid point is a fine answer without it
        pass
    return best


def weakened_evbmf(rank_full: int, rank_vbmf: int, k: float = 0.8, min_rank: int = 21) -> int:
    """MUSCO's weakened EVBMF rank: ``R ← R − k·(R − R_vbmf)``, i.e. only a fraction ``k`` of the way from the
    current rank R down to the EVBMF rank (Gusak et al. 2019, "Automated multi-stage compression").

    Follows MUSCO's ``weaken_rank`` (musco-pytorch, ``rank_selection/estimator.py``):

    * ``rank_full <= min_rank`` → ``rank_full`` unchanged (small layers are left alone; MUSCO's default
      ``min_rank`` is 21 — an earlier MUSCO version used ``rank < 21``, and its newest ``estimate_vbmf_ranks``
      defaults to 8);
    * ``rank_vbmf == 0`` (EVBMF found no signal) → ``rank_full`` unchanged;
    * otherwise ``max(int(R − k·(R − R_vbmf)), min_rank)`` (truncation toward zero, as ``int`` in MUSCO; a
      1e-9 slack keeps float round-off from dropping an exact integer).

    ``rank_full`` is the rank before this step (the channel count the first time; in MUSCO's multi-stage
    loop, the previous rank); ``k`` is in ``[0, 1]``: 0 keeps R, 1 gives the EVBMF rank.
    """
    rank_full = check_int(rank_full, "rank_full")
    rank_vbmf = check_int(rank_vbmf, "rank_vbmf", low=0, high=rank_full, what="rank_full")
    min_rank = check_int(min_rank, "min_rank", low=0)
    k = float(k)
    if not (0.0 <= k <= 1.0):
        raise ValueError(f"k must lie in [0, 1], got {k}")
    if rank_full <= min_rank or rank_vbmf == 0:
        return rank_full
    weakened = int(rank_full - k * (rank_full - rank_vbmf) + 1e-9)
    return max(weakened, min_rank)


def tucker2_ranks_evbmf(kernel: torch.Tensor, *, k: float | None = None,
                        min_rank: int = 21) -> tuple[int, int]:
    """Tucker-2 ranks ``(R_in, R_out)`` of a conv kernel T×S×kh×kw by EVBMF (Kim et al. 2016).

    R_in is the EVBMF rank of the mode-1 unfolding (S × T·kh·kw), R_out that of the mode-0 unfolding
    (T × S·kh·kw). With ``k`` given, each is weakened with :func:`weakened_evbmf` against the channel count
    (``min_rank`` applies then). A mode with nothing above the noise gets rank 0, weakened or not: the caller
    decides what that means (``tensorslim.surgery`` skips the layer and says why).
    """
    work, _ = prepare(kernel, "kernel", ndim=4)
    out: list[int] = []
    for mode in (1, 0):
        rank, _ = evbmf(unfold(work, mode))
        full = int(work.shape[mode])
        if k is not None and rank > 0:
            rank = weakened_evbmf(full, rank, k=k, min_rank=min_rank)
        out.append(rank)
    return out[0], out[1]


# ------------------------------------------------------------------------------------------------------------
# Parameter counts
# ------------------------------------------------------------------------------------------------------------


def tucker2_params(T: int, S: int, kh: int, kw: int, ranks: tuple[int, int] | Sequence[int]) -> int:
    """Tucker-2 conv weights ``S·R_in + kh·kw·R_in·R_out + T·R_out`` for ``ranks = (R_in, R_out)``."""
    r_in, r_out = (int(r) for r in ranks)
    return S * r_in + kh * kw * r_in * r_out + T * r_out


def tt_params(sizes: Sequence[int], ranks: int | Sequence[int]) -> int:
    """Entries of TT cores ``Σ r_{k-1}·sizes[k]·r_k``.

    ``sizes`` are the per-core mode sizes (``n_k`` for a TT tensor, ``m_k·n_k`` for a TT matrix). ``ranks`` is
    either a max rank (bond k gets ``min(max_rank, n_1⋯n_k, n_{k+1}⋯n_d)``, as TT-SVD gives) or all ``d+1``
    ranks.
    """
    sizes_t = as_shape(sizes, "sizes")
    full = _tt_ranks(sizes_t, ranks)
    return sum(full[k] * sizes_t[k] * full[k + 1] for k in range(len(sizes_t)))


def _tt_ranks(sizes: tuple[int, ...], ranks: int | Sequence[int]) -> list[int]:
    d = len(sizes)
    if isinstance(ranks, int):
        cap = check_int(ranks, "max_rank")
        return [min(cap, math.prod(sizes[:k]), math.prod(sizes[k:])) for k in range(d + 1)]
    full = [int(r) for r in ranks]
    if len(full) != d + 1:
        raise ValueError(f"expected {d + 1} TT ranks for {d} cores, got {len(full)}")
    return full


def _cp_spatial(kh: int, kw: int, form: str) -> int:
    if form == "cp3":
        return kh * kw
    if form == "cp4":
        return kh + kw
    raise ValueError(f"form must be 'cp3' or 'cp4', got {form!r}")


# ------------------------------------------------------------------------------------------------------------
# Rank for a target kept fraction of parameters
# ------------------------------------------------------------------------------------------------------------


def _check_ratio(ratio: float) -> float:
    ratio = float(ratio)
    if not (0.0 < ratio <= 1.0) or math.isnan(ratio):
        raise ValueError(f"ratio (kept fraction of parameters) must lie in (0, 1], got {ratio}")
    return ratio


def _dims(**dims: int) -> None:
    for name, value in dims.items():
        check_int(value, name)




def cp_rank_for_ratio(T: int, S: int, kh: int, kw: int, ratio: float, form: str = "cp3") -> int:
    """Largest CP rank keeping at most ``ratio`` of the conv weights (at least 1).

    CP-3 (nnabla's ``cpd3_convolution`` rule with ``CR = 1 − ratio``):
    ``R = ⌊ratio·T·S·kh·kw/(T + S + kh·kw)⌋``.
    CP-4 analogue: ``R = ⌊ratio·T·S·kh·kw/(T + S + kh + kw)⌋``.
    """
    _dims(T=T, S=S, kh=kh, kw=kw)
    ratio = _check_ratio(ratio)
    dense = T * S * kh * kw
    return max(1, math.floor(ratio * dense / (T + S + _cp_spatial(kh, kw, form)) + 1e-9))


def tucker2_ranks_for_ratio(T: int, S: int, kh: int, kw: int, ratio: float, *,
                            balance: str = "proportional") -> tuple[int, int]:
    """Tucker-2 ranks ``(R_in, R_out)`` keeping at most ``ratio`` of the conv weights.

    ``balance="proportional"`` (default) keeps the same fraction ρ of both channel counts, ``R_out = ⌊ρT⌋``,
    ``R_in = ⌊ρS⌋``; substituting into ``S·R_in + k²·R_in·R_out + T·R_out = ratio·T·S·k²`` (k² = kh·kw) gives
    ``k²ST·ρ² + (S² + T²)·ρ − ratio·k²ST = 0``, solved for its positive root (for T = S:
    ``ρ = (sqrt(1 + ratio·k⁴) − 1)/k²``).
    ``balance="equal"`` uses one rank R for both: the largest R with ``k²R² + (S + T)R <= ratio·T·S·k²``.
    Ranks are clipped to ``[1, T]`` and ``[1, S]``; when clipping a rank up to 1 overshoots the budget (a
    tiny channel count such as S = 3), the other rank is lowered until it fits (at worst ``(1, 1)``).
    """
    _dims(T=T, S=S, kh=kh, kw=kw)
    ratio = _check_ratio(ratio)
    k2 = kh * kw
    if balance == "proportional":
        a, b, c = k2 * S * T, S * S + T * T, ratio * k2 * S * T
        rho = (-b + math.sqrt(b * b + 4.0 * a * c)) / (2.0 * a)
        r_out, r_in = math.floor(rho * T + 1e-9), math.floor(rho * S + 1e-9)
    elif balance == "equal":
        a, b, c = k2, S + T, -ratio * T * S * k2
        r = math.floor((-b + math.sqrt(b * b - 4 * a * c)) / (2 * a) + 1e-9)
        r_out = r_in = r
    else:
        raise ValueError(f"balance must be 'proportional' or 'equal', got {balance!r}")
    r_out, r_in = min(max(r_out, 1), T), min(max(r_in, 1), S)
    # Clipping a rank up to 1 (tiny channel counts, e.g. S = 3) can overshoot: shrink the other rank to fit.
    budget = ratio * T * S * k2 + 1e-9
    while r_out > 1 and tucker2_params(T, S, kh, kw, (r_in, r_out)) > budget:
        r_out -= 1
    while r_in > 1 and tucker2_params(T, S, kh, kw, (r_in, r_out)) > budget:
        r_in -= 1
    return r_in, r_out


def tt_rank_for_ratio(shape: Sequence[int], ratio: float, *, in_shape: Sequence[int] | None = None) -> int:
    """Largest TT max-rank whose cores keep at most ``ratio`` of the dense parameters (at least 1).

    ``shape`` is the tensor shape for a TT tensor; for a TT matrix pass the out factors as ``shape`` and the
    in factors as ``in_shape`` (cores then have ``m_k·n_k`` entries per rank pair). Bond ranks are capped as
    TT-SVD caps them (:func:`tt_params`), so beyond the exact ranks a larger max-rank changes nothing and
    the smallest max-rank reaching that count is returned.
    """
    sizes = as_shape(shape, "shape")
    if in_shape is not None:
        ins = as_shape(in_shape, "in_shape")
        if len(ins) != len(sizes):
            raise ValueError(f"shape {sizes} and in_shape {ins} must have the same number of factors")
        sizes = tuple(m * n for m, n in zip(sizes, ins))
    ratio = _check_ratio(ratio)
    budget = ratio * math.prod(sizes)
    cap = max(max(min(math.prod(sizes[:k]), math.prod(sizes[k:])) for k in range(len(sizes) + 1)), 1)
    best = 1
    lo, hi = 1, cap  # tt_params is non-decreasing in the max rank: binary search
    while lo <= hi:
        mid = (lo + hi) // 2
        if tt_params(sizes, mid) <= budget + 1e-9:
            best, lo = mid, mid + 1
        else:
            hi = mid - 1
    # smallest max-rank with the same parameter count (ranks above the exact TT ranks change nothing)
    while best > 1 and tt_params(sizes, best - 1) == tt_params(sizes, best):
        best -= 1
    return best
