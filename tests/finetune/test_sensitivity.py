"""Sensitivity tables and budget allocation against independent references (direct evaluation, brute force)."""

from __future__ import annotations

import importlib
import itertools
import math

import pytest
import torch

from tensorslim.cost import profile
from tensorslim.finetune import BudgetError, allocate, parse_budget, predicted_cost, sensitivity
from tensorslim.surgery import candidates, compress

SHAPE = (1, 28, 28)
sens_mod = importlib.import_module("tensorslim.finetune.sensitivity")  # the package re-exports the function


def _accuracy_first(model, ds, n: int) -> float:
    """Reference: plain loop over the first n samples with __getitem__."""
    model.eval()
    with torch.no_grad():
        xs = torch.stack([ds[i][0] for i in range(n)])
        ys = torch.tensor([ds[i][1] for i in range(n)])
        return 100.0 * (model(xs).argmax(1) == ys).float().mean().item()


def test_each_point_is_the_drop_of_that_layer_alone(base, sets, tmp_path):
    val = sets[1]
    table = sensitivity(base, val, ["svd", "tucker2"], (0.05, 0.3), max_samples=100, log=None)
    base_acc = _accuracy_first(base, val, 100)
    assert table["baseline_accuracy"] == pytest.approx(base_acc)
    ctxs = {c.name: c for c in candidates(base, SHAPE)}
    assert set(table["layers"]) == set(ctxs)
    checked = 0
    for name, entry in table["layers"].items():
        assert entry["dense_params"] == ctxs[name].dense_params
        for p in entry["points"]:
            assert p["macs"] < ctxs[name].dense_macs  # the not-faster rule: never a point that saves no MACs
            if p["method"] == "svd" and name == "classifier.fc1" or p["method"] == "tucker2":
                rule = {"layers": name, "method": p["method"], "rank": p["rank"]}
                acc = _accuracy_first(compress(base, {"rules": [rule]}, SHAPE), val, 100)
                assert p["drop"] == pytest.approx(base_acc - acc, abs=1e-9)
                checked += 1
    assert checked >= 3
    fc1 = {p["method"] for p in table["layers"]["classifier.fc1"]["points"]}
    assert fc1 == {"svd"}  # tucker2 does not apply to Linear layers


def test_cache_is_reused_and_invalidated(base, sets, tmp_path, monkeypatch):
    cache = tmp_path / "sens.json"
    first = sensitivity(base, sets[1], ["svd"], (0.1,), max_samples=60, cache=cache, log=None)
    calls = []
    real = sens_mod._eval_subset
    monkeypatch.setattr(sens_mod, "_eval_subset", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = sensitivity(base, sets[1], ["svd"], (0.1,), max_samples=60, cache=cache, log=None)
    assert again == first and not calls
    with torch.no_grad():
        base.classifier.fc3.weight.mul_(0.5)
    sensitivity(base, sets[1], ["svd"], (0.1,), max_samples=60, cache=cache, log=None)
    assert calls  # other weights: recomputed


def _table(model):
    """A hand-made sensitivity table for lenet5's three Linear layers (fc1 cheap to compress, fc2 costly)."""
    ctx = {c.name: c for c in candidates(model, SHAPE)}

    def point(name, rank, drop):
        m = ctx[name].module
        params = rank * (m.in_features + m.out_features) + m.out_features
        return {"method": "svd", "rank": rank, "options": {}, "params": params,
                "macs": rank * (m.in_features + m.out_features), "drop": drop}

    layers = {}
    for name, pts in {"classifier.fc1": [(40, 0.1), (10, 0.6), (4, 3.0)],
                      "classifier.fc2": [(30, 0.4), (8, 2.5)],
                      "classifier.fc3": [(6, 1.5)]}.items():
        c = ctx[name]
        layers[name] = {"kind": "linear", "dense_params": c.dense_params, "dense_macs": c.dense_macs,
                        "points": [point(name, r, d) for r, d in pts]}
    return {"layers": layers, "samples": 100}


def _brute_force(model, table, budget):
    """Reference: every combination of options; the least summed drop that meets the budget."""
    total = profile(model, SHAPE).total
    names = list(table["layers"])
    options = [[None, *table["layers"][n]["points"]] for n in names]
    best = None
    for combo in itertools.product(*options):
        params, macs, drop = total.params, total.macs, 0.0
        for n, p in zip(names, combo):
            if p is None:
                continue
            params += p["params"] - table["layers"][n]["dense_params"]
            macs += p["macs"] - table["layers"][n]["dense_macs"]
            drop += max(0.0, p["drop"])
        ok = all(v * {"params": total.params, "macs": total.macs}[k] >= {"params": params, "macs": macs}[k]
                 for k, v in budget.items() if k != "max_drop")
        if "max_drop" in budget:
            ok = drop <= budget["max_drop"] + 1e-9
            key = (params / total.params + macs / total.macs, drop)
        else:
            key = (drop, params)
        if ok and (best is None or key < best[0]):
            best = (key, {n: p["rank"] for n, p in zip(names, combo) if p is not None})
    return best[1]


def _uniform_table(model, drops):
    """One SVD point per Linear layer, each saving exactly 1,000 params and MACs: greedy is then optimal."""
    layers = {}
    for c in candidates(model, SHAPE):
        if c.name in drops:
            layers[c.name] = {"kind": "linear", "dense_params": c.dense_params, "dense_macs": c.dense_macs,
                              "points": [{"method": "svd", "rank": 2, "options": {}, "drop": drops[c.name],
                                          "params": c.dense_params - 1000, "macs": c.dense_macs - 1000}]}
    return {"layers": layers, "samples": 100}


@pytest.mark.parametrize("budget", [{"params": 0.5}, {"params": 0.3}, {"macs": 0.9}, {"max_drop": 1.0},
                                    {"max_drop": 3.5}])
def test_allocation_meets_the_budget_near_the_brute_force_optimum(base, budget):
    table = _table(base)
    plan = allocate(base, budget, table, input_shape=SHAPE)
    got = {r["layers"]: r["rank"] for r in plan["rules"]}
    drop = sum(p["drop"] for n, r in got.items() for p in table["layers"][n]["points"] if p["rank"] == r)
    best = _brute_force(base, table, budget)
    best_drop = sum(p["drop"] for n, r in best.items() for p in table["layers"][n]["points"] if p["rank"] == r)
    assert f"predicted drop {drop:.2f} pt" in plan["comment"]
    if "max_drop" in budget:
        assert drop <= budget["max_drop"] + 1e-9
    else:  # greedy is a heuristic: never better than the optimum, and within 0.5 pt of it on this table
        assert best_drop - 1e-9 <= drop <= best_drop + 0.5
    # the plan is real: compressing with it gives the predicted cost, within the budget
    compressed = compress(base, plan, SHAPE)
    total, after = profile(base, SHAPE).total, profile(compressed, SHAPE).total
    assert predicted_cost(base, plan, SHAPE) == {"params": after.params, "macs": after.macs}
    if "params" in budget:
        assert after.params <= budget["params"] * total.params
    if "macs" in budget:
        assert after.macs <= budget["macs"] * total.macs


def test_allocation_is_optimal_when_savings_are_equal(base):
    drops = {"classifier.fc1": 0.7, "classifier.fc2": 0.2, "classifier.fc3": 0.4}
    table = _uniform_table(base, drops)
    total = profile(base, SHAPE).total.params
    for k in (1, 2, 3):
        budget = {"params": (total - 1000 * k) / total}
        plan = allocate(base, budget, table, input_shape=SHAPE)
        got = {r["layers"] for r in plan["rules"]}
        assert got == set(_brute_force(base, table, budget))
        assert got == set(sorted(drops, key=drops.get)[:k])


def test_allocation_from_a_measured_table(base, sets):
    table = sensitivity(base, sets[1], ["svd", "tucker2"], (0.05, 0.2, 0.5), max_samples=100, log=None)
    plan = allocate(base, "params=0.3,macs=0.6", table, input_shape=SHAPE)
    total, after = profile(base, SHAPE).total, profile(compress(base, plan, SHAPE), SHAPE).total
    assert after.params <= 0.3 * total.params and after.macs <= 0.6 * total.macs
    assert "predicted drop" in plan["comment"]


def test_unreachable_budget_and_bad_budgets(base):
    with pytest.raises(BudgetError, match="cannot be met"):
        allocate(base, {"params": 0.01}, _table(base), input_shape=SHAPE)
    assert parse_budget("params=0.1,macs=0.3") == {"params": 0.1, "macs": 0.3}
    assert parse_budget("max-drop=0.5") == {"max_drop": 0.5}
    assert parse_budget("drop<=1,params<=0.5") == {"max_drop": 1.0, "params": 0.5}  # a cap under a cost budget
    for bad in ("params", "params=x", "flops=0.1", "params=1.5", "max-drop=-1", "latency<=1.5", "latency<=0"):
        with pytest.raises(BudgetError):
            parse_budget(bad)
    assert not math.isnan(parse_budget({"macs": 0.3})["macs"])


def test_points_that_would_not_be_smaller_are_left_out(base, sets):
    """TT/TCL at a params ratio can cost more MACs than the dense layer: surgery skips them, and the scan records
    no such point (it once crashed on the empty report)."""
    table = sensitivity(base, sets[1], ["svd", "tt", "tcl"], (0.5, 0.9), max_samples=50, log=None)
    for entry in table["layers"].values():
        for p in entry["points"]:
            assert p["macs"] <= entry["dense_macs"] and p["params"] <= entry["dense_params"]
