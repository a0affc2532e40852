"""Explore's budgets and pick by hand values (fronts and hypervolume: tests/study/test_study_pareto.py)."""

import pytest

from tensorslim.explore import ExploreError, parse_budget, pick


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
