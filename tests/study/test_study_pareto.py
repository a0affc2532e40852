"""The shared Pareto core against independent references: Optuna's own hypervolume (WFG), a grid count of the
dominated cells, a brute-force O(n²) dominance check, and hand values."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
from optuna._hypervolume import compute_hypervolume

from tensorslim.errors import TensorSlimError
from tensorslim.study.budget import BudgetError, parse_budget
from tensorslim.study.pareto import Objective, dominates, hypervolume, minimised, pareto_indices, pick


def _brute_pareto(points):
    """Every point no other point dominates, of equal points the first: the definition, pair by pair."""
    out = []
    for i, p in enumerate(points):
        beaten = any(all(a <= b for a, b in zip(q, p)) and any(a < b for a, b in zip(q, p)) for q in points)
        if not beaten and all(tuple(points[j]) != tuple(p) for j in out):
            out.append(i)
    return out


def _grid_hypervolume(points, ref):
    """Union of the boxes [p, ref] by coordinate compression: the cells covered by at least one box."""
    pts = [p for p in points if all(a < r for a, r in zip(p, ref))]
    axes = [sorted({p[k] for p in pts} | {ref[k]}) for k in range(len(ref))]
    volume = 0.0
    for cell in itertools.product(*[range(len(a) - 1) for a in axes]):
        lo = [axes[k][c] for k, c in enumerate(cell)]
        if any(all(p[k] <= lo[k] for k in range(len(ref))) for p in pts):
            volume += float(np.prod([axes[k][c + 1] - axes[k][c] for k, c in enumerate(cell)]))
    return volume


@pytest.mark.parametrize("dim", [2, 3, 4])
def test_hypervolume_matches_optuna_on_random_fronts(dim):
    rng = random.Random(dim)
    for n in (1, 5, 15, 40):
        pts = [[rng.random() for _ in range(dim)] for _ in range(n)]
        ref = [1.0 + rng.random() for _ in range(dim)]
        expected = compute_hypervolume(np.array(pts), np.array(ref))
        assert hypervolume(pts, ref) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("dim", [2, 3, 4])
def test_hypervolume_matches_a_grid_count_with_ties_and_points_outside(dim):
    rng = random.Random(10 + dim)
    for _ in range(15):
        pts = [tuple(rng.choice([0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.2]) for _ in range(dim))
               for _ in range(rng.randint(1, 9))]
        ref = [1.0] * dim
        assert hypervolume(pts, ref) == pytest.approx(_grid_hypervolume(pts, ref), abs=1e-12)


def test_hypervolume_hand_values():
    assert hypervolume([(1, 2), (2, 1)], (3, 3)) == pytest.approx(3.0)  # two 2×1 boxes sharing a unit square
    assert hypervolume([(0.5, 0.5)], (1, 1)) == pytest.approx(0.25)
    assert hypervolume([(0.0, 0.5), (0.5, 0.0)], (1, 1)) == pytest.approx(0.75)
    assert hypervolume([(2.0, 0.0)], (1, 1)) == 0.0  # outside the box
    assert hypervolume([], (1, 1)) == 0.0


@pytest.mark.parametrize("dim", [1, 2, 3, 4])
def test_pareto_indices_match_brute_force(dim):
    rng = random.Random(dim)
    for _ in range(20):
        pts = [tuple(rng.randint(0, 4) for _ in range(dim)) for _ in range(rng.randint(1, 30))]
        assert pareto_indices(pts) == _brute_pareto(pts)
    assert pareto_indices([]) == []


def test_dominates_and_minimised():
    assert dominates((1, 2), (1, 3)) and not dominates((1, 3), (1, 3)) and not dominates((0, 4), (1, 3))
    objs = [Objective("macs", unit="MACs"), Objective("accuracy", "maximize", "%")]
    assert minimised([10, 91.5], objs) == [10.0, -91.5]
    assert minimised({"accuracy": 80.0, "macs": 3, "params": 7}, objs) == [3.0, -80.0]
    with pytest.raises(TensorSlimError, match="direction must be minimize or maximize"):
        Objective("speed", "faster")


def test_pick_under_a_budget_by_hand():
    pts = [{"id": "p00", "accuracy": 90.0, "macs": 10, "relative": {"macs": 0.2, "drop": 0.4}},
           {"id": "p01", "accuracy": 91.0, "macs": 20, "relative": {"macs": 0.3, "drop": 0.0}},
           {"id": "p02", "accuracy": 91.0, "macs": 15, "relative": {"macs": 0.25, "drop": 0.0}}]
    assert pick(pts, parse_budget("macs<=0.3"))["id"] == "p02"  # p01 and p02 equally accurate: fewer MACs
    assert pick(pts, parse_budget("macs<=0.2"))["id"] == "p00"
    with pytest.raises(BudgetError, match=r"no Pareto point meets the budget macs<=0.1; closest is p00 \(macs 0.2\)"):
        pick(pts, parse_budget("macs<=0.1"), fields=("macs",))
    with pytest.raises(BudgetError, match="latency<=0.5: that quantity was not measured"):
        pick(pts, parse_budget("latency<=0.5"))
    with pytest.raises(BudgetError, match="no Pareto points"):
        pick([], parse_budget("macs<=0.1"))
