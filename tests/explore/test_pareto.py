"""Pareto indices, hypervolume and budgets against brute force and hand values."""

import itertools
import random

import pytest

from tensorslim.explore import ExploreError, hypervolume, pareto_indices, parse_budget, pick


def _brute_pareto(points):
    out = []
    for i, p in enumerate(points):
        dominated = any(all(a <= b for a, b in zip(q, p)) and any(a < b for a, b in zip(q, p)) for q in points)
        if not dominated and all(points[j] != p for j in out):
            out.append(i)
    return out


def _brute_hypervolume(points, ref):
    """Union of boxes [p, ref] by coordinate compression: sum the cells covered by at least one box."""
    pts = [p for p in points if all(a < r for a, r in zip(p, ref))]
    axes = [sorted({p[k] for p in pts} | {ref[k]}) for k in range(len(ref))]
    volume = 0.0
    for cell in itertools.product(*[range(len(a) - 1) for a in axes]):
        lo = [axes[k][c] for k, c in enumerate(cell)]
        if any(all(p[k] <= lo[k] for k in range(len(ref))) for p in pts):
            size = 1.0
            for k, c in enumerate(cell):
                size *= axes[k][c + 1] - axes[k][c]
            volume += size
    return volume


@pytest.mark.parametrize("dims", [2, 3, 4])
def test_pareto_and_hypervolume_match_brute_force(dims):
    rng = random.Random(dims)
    for _ in range(15):
        pts = [tuple(rng.choice([0.1, 0.2, 0.3, 0.5, 0.7, 0.9]) for _ in range(dims)) for _ in range(rng.randint(1, 9))]
        assert pareto_indices(pts) == _brute_pareto(pts)
        ref = [1.0] * dims
        assert hypervolume(pts, ref) == pytest.approx(_brute_hypervolume(pts, ref), abs=1e-12)


def test_hypervolume_hand_values():
    assert hypervolume([(0.5, 0.5)], (1, 1)) == pytest.approx(0.25)
    assert hypervolume([(0.0, 0.5), (0.5, 0.0)], (1, 1)) == pytest.approx(0.75)
    assert hypervolume([(2.0, 0.0)], (1, 1)) == 0.0


def test_budget_parse_pick_and_closest():
    b = parse_budget("macs<=0.25, params<=0.1,drop<=0.5")
    assert b.limits == (("macs", 0.25), ("params", 0.1), ("drop", 0.5))
    pts = [{"id": "p00", "accuracy": 90.0, "macs": 10, "relative": {"macs": 0.2, "params": 0.05, "drop": 0.4}},
           {"id": "p01", "accuracy": 91.0, "macs": 20, "relative": {"macs": 0.3, "params": 0.08, "drop": 0.0}},
           {"id": "p02", "accuracy": 89.0, "macs": 5, "relative": {"macs": 0.1, "params": 0.02, "drop": 1.0}}]
    assert pick(pts, b)["id"] == "p00"
    with pytest.raises(ExploreError, match=r"closest is p00 \(macs 0.2, params 0.05, drop 0.4\)"):
        pick(pts, parse_budget("macs<=0.15,drop<=0.5"))
    # the closest point is a compressed one: the all-dense point (the original model) is never suggested
    front = [{"id": "p00", "accuracy": 89.5, "macs": 50, "choices": {"a": "svd:r2", "b": "dense"},
              "relative": {"macs": 0.5, "drop": 0.5}},
             {"id": "p01", "accuracy": 88.0, "macs": 30, "choices": {"a": "svd:r1", "b": "tt:x"},
              "relative": {"macs": 0.3, "drop": 2.0}},
             {"id": "p02", "accuracy": 90.0, "macs": 100, "choices": {"a": "dense", "b": "dense"},
              "relative": {"macs": 1.0, "drop": 0.0}}]  # p02 (violation 0.25) is nearer than p00 (0.4)
    with pytest.raises(ExploreError, match=r"closest is p00 \(macs 0.5, drop 0.5\)"):
        pick(front, parse_budget("macs<=0.8,drop<=0.1"))
    for bad in ("macs<0.2", "speed<=2", "macs<=-1", ""):
        with pytest.raises(ExploreError):
            parse_budget(bad)
