"""Tensor Ring decomposition (Zhao et al. 2016, "Tensor Ring Decomposition"): sequential TR-SVD and TR-ALS.

A TR tensor of shape ``n_1 × … × n_N`` is a ring of cores ``G_k`` of shape ``r_k × n_k × r_{k+1}`` with
``r_{N+1} ≡ r_1`` (0-based below: core ``k`` is ``r_k × n_k × r_{k+1}``, ``r_N ≡ r_0``); entry
``X[i_1, …, i_N] = trace(G_1[:, i_1, :] G_2[:, i_2, :] ⋯ G_N[:, i_N, :])``. With ``r_0 = 1`` it is a tensor train.

Ranks are given as an int (every bond the same) or as the ``N`` bond ranks ``r_0 … r_{N-1}`` (``r_k`` is the left
rank of core ``k``); ``N+1`` values whose last equals the first are accepted too (TensorLy's convention).

* :func:`tr_svd`: the first unfolding ``n_1 × (n_2⋯n_N)`` is split by a truncated SVD of rank ``r_0·r_1``; its left
  factor becomes core 1 (``r_0 × n_1 × r_1``) and the ``r_0`` index of the remainder is carried to the end, where it
  closes the ring on the last core; the middle cores come from TT-SVD-like steps. Exact when every truncation keeps
  the full rank of its unfolding (:func:`max_tr_ranks`).
* :func:`tr_als`: alternating least squares over the cores, each the least-squares solution given the merged rest
  of the ring, started from :func:`tr_svd` where the ranks allow it (from a rotation of the ring if need be)
  and, unless that start is already exact, raced for a few sweeps against random starts. The normal equations
  are formed without the design matrix (its Gram from ``r² × r²`` transfer matrices, its right-hand side by
  contracting the tensor with the other cores one at a time, in row chunks), so memory stays within a small
  multiple of the tensor.

Computed in float64; cores come back in the input's dtype.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ._common import WORK_DTYPE, check_int, check_positive_float, prepare, relative_error, thin_svd

#: Eigenvalues of a normal-equation matrix below this fraction of its largest are treated as zero.
_RCOND = 1e-13
#: Relative size of the perturbation added to an embedded TR-SVD start.
_PAD = 0.3
#: Sweeps each of the two starts gets when TR-SVD cannot reach the ranks.
_BURN_IN = 15
#: Random starts raced against the TR-SVD start.
_RANDOM_STARTS = 3
#: A TR-SVD start this close to the tensor is kept without a race.
_EXACT = 1e-10


def _start_error(work: torch.Tensor, cores: Sequence[torch.Tensor]) -> float:
    return relative_error(work, tr_to_tensor(cores))


@dataclass(frozen=True)
class TRResult:
    """TR cores (``r_k × n_k × r_{k+1}``, ``r_N ≡ r_0``), the relative error ``||X - X̂||_F / ||X||_F`` of the
    tensor they represent, and the number of ALS sweeps run (0 for :func:`tr_svd`)."""

    cores: tuple[torch.Tensor, ...]
    rel_error: float
    n_iter: int = 0

    @property
    def ranks(self) -> tuple[int, ...]:
        """The bond ranks ``(r_0, …, r_{N-1})`` (``r_k`` is the left rank of core ``k``)."""
        return tuple(int(c.shape[0]) for c in self.cores)

    @property
    def num_params(self) -> int:
        """Total number of entries in the cores."""
        return sum(int(c.numel()) for c in self.cores)

    def to_tensor(self) -> torch.Tensor:
        """The full tensor."""
        return tr_to_tensor(self.cores)


def resolve_tr_ranks(shape: Sequence[int], ranks: int | Sequence[int]) -> tuple[int, ...]:
    """The ``N`` bond ranks ``r_0 … r_{N-1}`` of a TR of ``shape`` from an int or a sequence (ValueError if bad)."""
    n = len(shape)
    if isinstance(ranks, bool):
        raise ValueError(f"TR ranks must be an int or a sequence of ints, got {ranks!r}")
    if isinstance(ranks, int):
        return (check_int(ranks, "TR rank"),) * n
    if isinstance(ranks, (str, bytes)) or not isinstance(ranks, Sequence):
        raise ValueError(f"TR ranks must be an int or a sequence of ints, got {ranks!r}")
    values = [check_int(r, f"ranks[{i}]") for i, r in enumerate(ranks)]
    if len(values) == n + 1:
        if values[0] != values[-1]:
            raise ValueError(f"a ring closes: the last TR rank must equal the first, got {tuple(values)}")
        values = values[:-1]
    if len(values) != n:
        raise ValueError(f"expected {n} TR ranks (or {n + 1} with the last equal to the first) for shape "
                         f"{tuple(shape)}, got {len(values)}")
    return tuple(values)


def max_tr_ranks(shape: Sequence[int], r0: int = 1) -> tuple[int, ...]:
    """The largest ranks :func:`tr_svd` can use with first bond ``r0``: ``r_1 = ⌊min(n_1, n_2⋯n_N) / r0⌋`` and then
    ``r_{k+1} = min(r_k n_k, n_{k+1}⋯n_N · r0)``. TR-SVD is exact at these ranks when ``r0`` divides
    ``min(n_1, n_2⋯n_N)`` (every truncation then keeps the full rank of its unfolding)."""
    shape = [int(s) for s in shape]
    if len(shape) < 2:
        raise ValueError(f"TR-SVD needs at least 2 modes, got shape {tuple(shape)}")
    r0 = check_int(r0, "r0")
    first = min(shape[0], math.prod(shape[1:]))
    if r0 > first:
        raise ValueError(f"r0={r0} is above min(n_1, n_2⋯n_N) = {first} for shape {tuple(shape)}")
    ranks = [r0, first // r0]
    for k in range(1, len(shape) - 1):
        ranks.append(min(ranks[k] * shape[k], math.prod(shape[k + 1:]) * r0))
    return tuple(ranks)


def _svd_rank_problem(shape: Sequence[int], ranks: Sequence[int]) -> str | None:
    """Why the sequential TR-SVD cannot produce exactly ``ranks`` for ``shape`` (None when it can)."""
    n = len(shape)
    first = min(shape[0], math.prod(shape[1:]))
    if ranks[0] * ranks[1] > first:
        return (f"TR-SVD needs r_0·r_1 = {ranks[0] * ranks[1]} <= min(n_1, n_2⋯n_N) = {first} for shape "
                f"{tuple(shape)} (ranks {tuple(ranks)})")
    for k in range(1, n - 1):
        limit = min(ranks[k] * shape[k], math.prod(shape[k + 1:]) * ranks[0])
        if ranks[k + 1] > limit:
            return (f"TR-SVD needs r_{k + 1}={ranks[k + 1]} <= {limit} for shape {tuple(shape)} "
                    f"(ranks {tuple(ranks)})")
    return None


def tr_svd(tensor: torch.Tensor, ranks: int | Sequence[int]) -> TRResult:
    """Sequential TR-SVD with exactly the given bond ranks (see the module doc).

    ``ranks``: an int or the ``N`` ranks ``r_0 … r_{N-1}``. They must be achievable: ``r_0·r_1 <= min(n_1,
    n_2⋯n_N)`` and ``r_{k+1} <= min(r_k n_k, n_{k+1}⋯n_N · r_0)``; otherwise ValueError (:func:`tr_als` fits any
    ranks). Exact at :func:`max_tr_ranks`.
    """
    work, dtype = prepare(tensor, "tensor", min_ndim=2)
    shape = tuple(int(s) for s in work.shape)
    full = resolve_tr_ranks(shape, ranks)
    problem = _svd_rank_problem(shape, full)
    if problem is not None:
        raise ValueError(problem)
    cores = _tr_svd_cores(work, shape, full)
    rel = relative_error(work, tr_to_tensor(cores))
    return TRResult(cores=tuple(c.to(dtype).contiguous() for c in cores), rel_error=rel)


def _tr_svd_cores(work: torch.Tensor, shape: tuple[int, ...], ranks: Sequence[int]) -> list[torch.Tensor]:
    n = len(shape)
    r0 = ranks[0]
    u, s, vh = thin_svd(work.reshape(shape[0], -1))
    r01 = r0 * ranks[1]
    cores = [u[:, :r01].reshape(shape[0], r0, ranks[1]).permute(1, 0, 2)]
    # The remainder (r_0 r_1) × (n_2⋯n_N): r_0 moves to the end, where the last core closes the ring with it.
    rest = (s[:r01, None] * vh[:r01]).reshape(r0, ranks[1], -1).permute(1, 2, 0)
    for k in range(1, n - 1):
        u, s, vh = thin_svd(rest.reshape(ranks[k] * shape[k], -1))
        r = ranks[k + 1]
        cores.append(u[:, :r].reshape(ranks[k], shape[k], r))
        rest = s[:r, None] * vh[:r]
    cores.append(rest.reshape(ranks[n - 1], shape[n - 1], r0))
    return [c.contiguous() for c in cores]


def tr_to_tensor(cores: Sequence[torch.Tensor]) -> torch.Tensor:
    """Full tensor ``(n_1, …, n_N)`` from TR cores ``r_k × n_k × r_{k+1}`` (``r_N ≡ r_0``).

    The ring is cut at its smallest bond and summed over that bond's index, each term a tensor-train
    product, so no intermediate exceeds the tensor times the largest rank ratio of one step.
    """
    _check_ring(cores)
    n = len(cores)
    cut = min(range(n), key=lambda k: int(cores[k].shape[0]))
    ring = list(cores[cut:]) + list(cores[:cut])
    shape = [int(c.shape[1]) for c in ring]
    out = None
    for a in range(int(ring[0].shape[0])):
        chain = ring[0][a]  # (n, r)
        for core in ring[1:-1]:
            r, m, r_next = core.shape
            chain = (chain @ core.reshape(r, m * r_next)).reshape(-1, r_next)
        last = ring[-1][:, :, a] if n > 1 else None
        term = chain @ last if last is not None else chain[:, a]
        out = term if out is None else out + term
    full = out.reshape(shape)  # type: ignore[union-attr]
    if cut:  # modes are in the order cut, …, N-1, 0, …, cut-1: put them back
        full = full.permute([(k - cut) % n for k in range(n)])
    return full.contiguous()


def _check_ring(cores: Sequence[torch.Tensor]) -> None:
    if len(cores) == 0:
        raise ValueError("need at least one TR core")
    for k, core in enumerate(cores):
        if core.ndim != 3:
            raise ValueError(f"TR core {k} must have 3 dimensions, got shape {tuple(core.shape)}")
        nxt = cores[(k + 1) % len(cores)]
        if core.shape[2] != nxt.shape[0]:
            raise ValueError(f"TR core {k} has right rank {core.shape[2]} but core {(k + 1) % len(cores)} has "
                             f"left rank {nxt.shape[0]} (the ring must close)")


def _transfer(core: torch.Tensor) -> torch.Tensor:
    """``E[(a,a'),(b,b')] = Σ_i G[a,i,b] G[a',i,b']``, the Gram of one core as an ``r² × r'²`` matrix."""
    r, _, r_next = core.shape
    return torch.einsum("aib,cid->acbd", core, core).reshape(r * r, r_next * r_next)


def _ring_norm_sq(cores: Sequence[torch.Tensor]) -> float:
    """``||X̂||_F²`` of a TR tensor: the trace of the product of its transfer matrices."""
    prod = _transfer(cores[0])
    for core in cores[1:]:
        prod = prod @ _transfer(core)
    return float(torch.trace(prod))


def _gram(cores: Sequence[torch.Tensor], k: int) -> torch.Tensor:
    """Gram matrix ``(r_k r_{k+1})²`` of the design matrix of core ``k`` (the merged rest of the ring)."""
    n = len(cores)
    ra, rb = int(cores[k].shape[0]), int(cores[k].shape[2])
    prod = _transfer(cores[(k + 1) % n])
    for j in range(2, n):
        prod = prod @ _transfer(cores[(k + j) % n])
    # prod[(b,b'),(a,a')] -> gram[(a,b),(a',b')]
    gram = prod.reshape(rb, rb, ra, ra).permute(2, 0, 3, 1).reshape(ra * rb, ra * rb)
    return 0.5 * (gram + gram.transpose(0, 1))


def _rhs(work: torch.Tensor, cores: Sequence[torch.Tensor], k: int) -> torch.Tensor:
    """``R[i, (a, b)] = Σ X[…, i_k = i, …] Q[b, …, a]`` with ``Q = G_{k+1} ⋯ G_{k-1}`` (the ring without core k).

    The tensor (mode ``k`` first, the others in ring order) is contracted with ``G_{k-1}`` first, then with the
    cores before it down to ``G_{k+1}``; the rows ``i_k`` are processed in chunks that keep the first (largest)
    intermediate within the size of the tensor where the ranks allow it.
    """
    n = len(cores)
    perm = [(k + j) % n for j in range(n)]
    x = work.permute(perm)
    nk = int(work.shape[k])
    ra, rb = int(cores[k].shape[0]), int(cores[k].shape[2])
    last = cores[(k - 1) % n]  # r_{k-1} × n_{k-1} × r_k
    r_prev, n_prev, _ = (int(v) for v in last.shape)
    first_mat = last.permute(1, 0, 2).reshape(n_prev, r_prev * ra)
    others = [cores[(k + j) % n] for j in range(n - 2, 0, -1)]  # G_{k-2}, …, G_{k+1}
    mats = [c.permute(1, 2, 0).reshape(-1, int(c.shape[0])).transpose(0, 1) for c in others]  # r × (n·r')
    chunk = max(1, min(nk, (nk * n_prev) // max(1, r_prev * ra)))
    pieces = []
    for start in range(0, nk, chunk):
        rows = x[start:start + chunk]
        c = int(rows.shape[0])
        z = rows.reshape(-1, n_prev) @ first_mat  # (c·M, r_{k-1}·r_k)
        r_cur = r_prev
        for core, mat in zip(others, mats):
            m = int(core.shape[1])
            z = mat @ z.reshape(-1, m * r_cur, ra)  # (c·M', r_j, r_k)
            r_cur = int(core.shape[0])
        # z: (c, r_{k+1}, r_k) -> (c, r_k·r_{k+1})
        pieces.append(z.reshape(c, rb, ra).permute(0, 2, 1).reshape(c, ra * rb))
    return torch.cat(pieces, 0)


def _solve_psd(gram: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """``gram⁺ rhs`` for a symmetric positive semi-definite ``gram`` (minimum-norm where it is singular)."""
    evals, evecs = torch.linalg.eigh(gram)
    top = float(evals[-1]) if evals.numel() else 0.0
    keep = evals > _RCOND * max(top, 0.0)
    if not bool(keep.any()):
        return torch.zeros(gram.shape[1], rhs.shape[1], dtype=rhs.dtype, device=rhs.device)
    v = evecs[:, keep]
    return v @ ((v.transpose(0, 1) @ rhs) / evals[keep, None])


def _random_ring(shape: Sequence[int], ranks: Sequence[int], norm: float, seed: int) -> list[torch.Tensor]:
    """Normal cores scaled so that the TR tensor they represent has Frobenius norm ``norm``."""
    gen = torch.Generator().manual_seed(int(seed))
    n = len(shape)
    cores = [torch.randn(ranks[k], shape[k], ranks[(k + 1) % n], generator=gen, dtype=WORK_DTYPE)
             for k in range(n)]
    current = math.sqrt(max(_ring_norm_sq(cores), 0.0))
    if current > 0 and norm > 0:
        scale = (norm / current) ** (1.0 / n)
        cores = [c * scale for c in cores]
    return cores


def _capped_ranks(shape: Sequence[int], ranks: Sequence[int]) -> list[int]:
    """The requested ranks lowered, bond by bond, to what the sequential TR-SVD of ``shape`` can reach."""
    first = min(shape[0], math.prod(shape[1:]))
    capped = [min(ranks[0], first)]
    capped.append(min(ranks[1], first // capped[0]))
    for k in range(1, len(shape) - 1):
        capped.append(min(ranks[k + 1], capped[k] * shape[k], math.prod(shape[k + 1:]) * capped[0]))
    return capped


def _svd_start(work: torch.Tensor, shape: tuple[int, ...], ranks: Sequence[int],
               seed: int) -> tuple[list[torch.Tensor], bool]:
    """The TR-SVD start of :func:`tr_als`, and whether TR-SVD reached the ranks.

    TR-SVD is run from the first mode at which the ranks are reachable (the ring rotated to start there, the
    cores rotated back). Where no mode reaches them, it runs at the rotation keeping the most parameters with
    the ranks lowered to the reachable ones, and the cores are embedded in the requested ranks (zero blocks,
    the same tensor) plus a small random perturbation that lets ALS use the extra ranks.
    """
    n = len(shape)
    best: tuple[int, int, list[int]] | None = None
    for k in range(n):
        order = [(k + j) % n for j in range(n)]
        rot_shape = tuple(shape[i] for i in order)
        rot_ranks = [ranks[i] for i in order]
        capped = _capped_ranks(rot_shape, rot_ranks)
        kept = sum(capped[j] * rot_shape[j] * capped[(j + 1) % n] for j in range(n))
        if capped == rot_ranks:
            best = (k, kept, capped)
            break
        if best is None or kept > best[1]:
            best = (k, kept, capped)
    assert best is not None
    k, _, capped = best
    order = [(k + j) % n for j in range(n)]
    rot = _tr_svd_cores(work.permute(order), tuple(shape[i] for i in order), capped)
    cores: list[torch.Tensor] = [torch.empty(0)] * n
    for j, core in enumerate(rot):
        cores[order[j]] = core
    if all(int(c.shape[0]) == ranks[i] for i, c in enumerate(cores)):
        return cores, True
    gen = torch.Generator().manual_seed(int(seed))
    out = []
    for i, core in enumerate(cores):
        a, m, b = core.shape
        scale = float(core.norm()) / math.sqrt(core.numel()) if core.numel() else 1.0
        big = _PAD * scale * torch.randn(ranks[i], m, ranks[(i + 1) % n], generator=gen, dtype=WORK_DTYPE)
        big[:a, :, :b] += core
        out.append(big)
    return out, False


def tr_als(tensor: torch.Tensor, ranks: int | Sequence[int], *, n_iter_max: int = 200, tol: float = 1e-8,
           init: str = "svd", seed: int = 0) -> TRResult:
    """TR-ALS: each sweep updates every core in turn to the least-squares solution given the rest of the ring.

    Args:
        tensor: at least 2 modes.
        ranks: an int or the ``N`` bond ranks ``r_0 … r_{N-1}`` (any positive values).
        n_iter_max: maximum number of sweeps (0: the start only).
        tol: stop when the relative error changes by less than ``tol`` between two sweeps.
        init: ``"svd"`` starts from :func:`tr_svd` where the ranks allow it — from the first mode, else from
            the first rotation of the ring that reaches them. Where none does, a TR-SVD at lowered ranks,
            embedded in the requested ones and perturbed, and a random start each run a few sweeps and the
            better goes on. ``"random"`` starts from normal cores (scaled to the tensor's norm) drawn with
            ``seed``.
        seed: seed of the random start.

    The least-squares problems are solved through their normal equations (pseudo-inverse of the Gram, so
    redundant ranks are fine), whose Gram comes from ``r² × r'²`` transfer matrices and whose right-hand side
    contracts the tensor with the other cores; the design matrix is never formed. ``rel_error`` is computed
    from the final cores' full tensor.
    """
    work, dtype = prepare(tensor, "tensor", min_ndim=2)
    shape = tuple(int(s) for s in work.shape)
    full = resolve_tr_ranks(shape, ranks)
    n_iter_max = check_int(n_iter_max, "n_iter_max", low=0)
    tol = check_positive_float(tol, "tol", allow_zero=True)
    if init not in ("svd", "random"):
        raise ValueError(f"init must be 'svd' or 'random', got {init!r}")
    seed = check_int(seed, "seed", low=0)
    norm_sq = float((work * work).sum())
    if init == "random":
        cores, reached = _random_ring(shape, full, math.sqrt(norm_sq), seed), True
    else:
        cores, reached = _svd_start(work, shape, full, seed)
    sweeps = 0
    if init == "svd" and n_iter_max > 0 and not (reached and _start_error(work, cores) <= _EXACT):
        # ALS from one start is often caught in a slow "swamp" far from the best fit, from a TR-SVD start as much
        # as from a random one: race the TR-SVD start against a few random ones for a few sweeps and go on from
        # the best.
        burn_in = min(n_iter_max, _BURN_IN)
        candidates = [cores] + [_random_ring(shape, full, math.sqrt(norm_sq), seed + i) for i in range(_RANDOM_STARTS)]
        starts = [_sweeps(work, norm_sq, c, full, burn_in, tol) for c in candidates]
        cores, err, sweeps = min(starts, key=lambda s: s[1])
        if sweeps < burn_in:  # it had converged
            n_iter_max = sweeps
    if n_iter_max > sweeps:
        cores, _, more = _sweeps(work, norm_sq, cores, full, n_iter_max - sweeps, tol)
        sweeps += more
    rel = relative_error(work, tr_to_tensor(cores))
    return TRResult(cores=tuple(c.to(dtype).contiguous() for c in cores), rel_error=rel, n_iter=sweeps)


def _sweeps(work: torch.Tensor, norm_sq: float, cores: list[torch.Tensor], ranks: Sequence[int], n_iter_max: int,
            tol: float) -> tuple[list[torch.Tensor], float, int]:
    """Up to ``n_iter_max`` ALS sweeps; stops when the relative error changes by less than ``tol``.

    Returns the cores, the relative error after the last sweep (from the normal equations of its last core,
    ``||X||² - 2⟨R, g⟩ + gᵀ M g``) and the number of sweeps run.
    """
    shape = tuple(int(s) for s in work.shape)
    n = len(shape)
    cores = list(cores)
    previous = err = math.inf
    sweeps = 0
    for _ in range(n_iter_max):
        sweeps += 1
        for k in range(n):
            gram = _gram(cores, k)
            rhs = _rhs(work, cores, k)
            sol = _solve_psd(gram, rhs.transpose(0, 1))  # (r_k r_{k+1}, n_k)
            cores[k] = sol.transpose(0, 1).reshape(shape[k], ranks[k], ranks[(k + 1) % n]).permute(1, 0, 2) \
                .contiguous()
        fit_sq = float((sol * (gram @ sol)).sum())
        cross = float((rhs.transpose(0, 1) * sol).sum())
        err = math.sqrt(max(norm_sq - 2.0 * cross + fit_sq, 0.0) / norm_sq) if norm_sq > 0 else 0.0
        if abs(previous - err) < tol:
            break
        previous = err
    return cores, err, sweeps
