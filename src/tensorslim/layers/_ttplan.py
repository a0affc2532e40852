"""Contraction plan for applying a TT-matrix to a batch of inputs without ever forming the matrix.

The TT-matrix has cores ``G_k`` of shape ``r_k × m_k × n_k × r_{k+1}`` (k = 0 … d-1, 0-based here) and acts on
inputs reshaped to ``(P, n_0, …, n_{d-1})`` — or ``(P, r_0, n_0, …)`` when the left bond ``r_0`` is carried by the
input, as in TT convolution where it is the spatial rank. Contracting core ``k`` with the current intermediate
tensor sums over ``n_k`` and over whichever of its bonds the intermediate already holds; it is one ``permute`` +
``reshape`` of the intermediate, one of the (small) core, and one 2-D ``matmul``.

The order in which the cores are contracted changes the cost a lot (the two sweeps can differ by the ratio of
the mode sizes). :func:`best_order` finds the cheapest order over *all* orders by dynamic programming over
subsets of contracted cores (the cost of a step depends only on which cores are already in), for up to
``MAX_DP_CORES`` cores; beyond that it takes the cheaper of the left-to-right and right-to-left sweeps. The MAC
count reported is that of exactly the steps :meth:`TTContraction.apply` runs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

MAX_DP_CORES = 12

Label = tuple[str, int]  # ("n", k), ("m", k) or ("r", bond); the batch axis is ("b", 0)
_BATCH: Label = ("b", 0)


@dataclass(frozen=True)
class _Step:
    core: int
    state_perm: tuple[int, ...]   # permutation of the intermediate: kept axes, then contracted axes
    contracted: int               # product of the contracted sizes
    core_perm: tuple[int, ...]    # permutation of the core: contracted axes, then free axes
    free: int                     # product of the free core sizes
    out_shape: tuple[int, ...]    # shape of the new intermediate without the batch axis


def _state_size(mask: int, in_modes: Sequence[int], out_modes: Sequence[int], ranks: Sequence[int],
                left_in_input: bool) -> int:
    """Per-row size of the intermediate once the cores in ``mask`` are contracted."""
    d = len(in_modes)
    size = 1
    for k in range(d):
        size *= out_modes[k] if mask >> k & 1 else in_modes[k]
    for b in range(1, d):  # bond b joins cores b-1 and b; it is open when exactly one side is contracted
        if (mask >> (b - 1) & 1) != (mask >> b & 1):
            size *= ranks[b]
    first_in = bool(mask & 1)
    if left_in_input != first_in:  # carried by the input and not yet consumed, or left dangling by core 0
        size *= ranks[0]
    if mask >> (d - 1) & 1:
        size *= ranks[d]
    return size


def _free_size(mask: int, k: int, out_modes: Sequence[int], ranks: Sequence[int], left_in_input: bool) -> int:
    """Product of the axes core ``k`` adds to the intermediate when contracted after the cores in ``mask``."""
    d = len(out_modes)
    size = out_modes[k]
    left_open = left_in_input if k == 0 else bool(mask >> (k - 1) & 1)
    right_open = k < d - 1 and bool(mask >> (k + 1) & 1)
    if not left_open:
        size *= ranks[k]
    if not right_open:
        size *= ranks[k + 1]
    return size


def best_order(in_modes: Sequence[int], out_modes: Sequence[int], ranks: Sequence[int],
               left_in_input: bool = False) -> tuple[int, ...]:
    """The order of cores with the fewest multiply-accumulates per input row (ties: lexicographically first)."""
    d = len(in_modes)
    if d > MAX_DP_CORES:
        sweeps = [tuple(range(d)), tuple(reversed(range(d)))]
        costs = [TTContraction(in_modes, out_modes, ranks, left_in_input, order=o).macs_per_row for o in sweeps]
        return sweeps[0] if costs[0] <= costs[1] else sweeps[1]
    full = (1 << d) - 1
    best: dict[int, tuple[int, tuple[int, ...]]] = {0: (0, ())}
    for mask in range(full + 1):  # every subset is reached only from smaller masks
        if mask not in best:
            continue
        cost, order = best[mask]
        size = _state_size(mask, in_modes, out_modes, ranks, left_in_input)
        for k in range(d):
            if mask >> k & 1:
                continue
            new = mask | (1 << k)
            candidate = (cost + size * _free_size(mask, k, out_modes, ranks, left_in_input), order + (k,))
            if new not in best or candidate < best[new]:
                best[new] = candidate
    return best[full][1]


class TTContraction:
    """A fixed sequence of core contractions applying a TT-matrix to inputs of shape ``(P, [r_0,] n_0…n_{d-1})``.

    Args:
        in_modes, out_modes: ``n_k`` and ``m_k``.
        ranks: ``r_0 … r_d`` (length d+1).
        left_in_input: whether the input carries the bond ``r_0`` (axis 1); otherwise ``r_0`` must be 1.
        order: the order of cores; by default :func:`best_order`.
    """

    def __init__(self, in_modes: Sequence[int], out_modes: Sequence[int], ranks: Sequence[int],
                 left_in_input: bool = False, order: Sequence[int] | None = None):
        d = len(in_modes)
        self.in_modes, self.out_modes, self.ranks = tuple(in_modes), tuple(out_modes), tuple(ranks)
        self.left_in_input = left_in_input
        self.order = tuple(order) if order is not None else best_order(in_modes, out_modes, ranks, left_in_input)
        size: dict[Label, int] = {_BATCH: 1}
        for k in range(d):
            size[("n", k)], size[("m", k)] = in_modes[k], out_modes[k]
        for b in range(d + 1):
            size[("r", b)] = ranks[b]
        state: list[Label] = [_BATCH] + ([("r", 0)] if left_in_input else []) + [("n", k) for k in range(d)]
        steps: list[_Step] = []
        macs = 0
        for k in self.order:
            core_labels: list[Label] = [("r", k), ("m", k), ("n", k), ("r", k + 1)]
            contracted = [lab for lab in core_labels if lab in state]
            kept = [lab for lab in state if lab not in contracted]
            free = [lab for lab in core_labels if lab not in contracted]
            k_size = math.prod(size[lab] for lab in contracted)
            f_size = math.prod(size[lab] for lab in free)
            macs += math.prod(size[lab] for lab in kept) * k_size * f_size
            state_perm = tuple(state.index(lab) for lab in kept + contracted)
            state = kept + free
            steps.append(_Step(core=k, state_perm=state_perm, contracted=k_size,
                               core_perm=tuple(core_labels.index(lab) for lab in contracted + free),
                               free=f_size, out_shape=tuple(size[lab] for lab in state[1:])))
        self.steps = steps
        self.macs_per_row = macs
        target = [_BATCH] + [("m", k) for k in range(d)]
        dangling = [lab for lab in state if lab not in target]
        assert all(size[lab] == 1 for lab in dangling), "open TT bonds left after contraction"
        self.final_perm = tuple(state.index(lab) for lab in target + dangling)
        self.out_features = math.prod(out_modes)

    def apply(self, x: torch.Tensor, cores: Sequence[torch.Tensor]) -> torch.Tensor:
        """``x`` of shape ``(P, [r_0,] n_0, …, n_{d-1})`` → ``(P, m_0·…·m_{d-1})``."""
        for step in self.steps:
            core = cores[step.core].permute(step.core_perm).reshape(step.contracted, step.free)
            x = x.permute(step.state_perm).reshape(-1, step.contracted)
            x = torch.matmul(x, core).reshape(-1, *step.out_shape)
        return x.permute(self.final_perm).reshape(-1, self.out_features)
