"""Latency budgets in finetune: the allocation against a synthetic latency table (a stand-in timer returning
hand-chosen milliseconds per layer signature) and hand-computed or brute-force references; no timing is
asserted anywhere."""

from __future__ import annotations

import itertools
import json

import pytest
from torch import nn

from tensorslim.finetune import BudgetError, FinetuneError, finetune
from tensorslim.finetune.schedules import RECORD
from tensorslim.finetune.sensitivity import allocate, allocate_for_latency, estimate_latency, measure_latency
from tensorslim.layers import SVDLinear
from tensorslim.study import latency as latency_mod
from tensorslim.study.latency import LatencyCache, machine_key
from tensorslim.surgery import candidates

SHAPE = (1, 28, 28)
DATA = {"num_samples": 1200, "num_test": 400, "noise": 0.8}  # as in conftest.py
#: hand-chosen ms: the dense model, the dense Linear layers (by in_features) and their SVD replacements
MODEL_MS = 10.0
DENSE_MS = {400: 4.0, 120: 2.0, 84: 0.5}
SVD_MS = {(400, 40): 2.0, (400, 10): 1.0, (400, 4): 0.8, (120, 30): 1.5, (120, 8): 0.5, (84, 6): 0.4}
#: per layer: (rank, drop) of the hand-made sensitivity points
POINTS = {"classifier.fc1": [(40, 0.1), (10, 0.6), (4, 3.0)], "classifier.fc2": [(30, 0.4), (8, 2.5)],
          "classifier.fc3": [(6, 1.5)]}


def fake_timer(calls: list | None = None):
    def timer(module, input_shape, **kw):
        if calls is not None:
            calls.append(type(module).__name__)
        if isinstance(module, SVDLinear):
            return SVD_MS[(module.in_features, module.rank)]
        if isinstance(module, nn.Linear):
            return DENSE_MS[module.in_features]
        return MODEL_MS  # the whole model
    return timer


def _table(model):
    ctx = {c.name: c for c in candidates(model, SHAPE)}
    layers = {}
    for name, pts in POINTS.items():
        m = ctx[name].module
        layers[name] = {"kind": "linear", "dense_params": ctx[name].dense_params, "dense_macs": ctx[name].dense_macs,
                        "points": [{"method": "svd", "rank": r, "options": {}, "drop": d,
                                    "params": r * (m.in_features + m.out_features) + m.out_features,
                                    "macs": r * (m.in_features + m.out_features)} for r, d in pts]}
    return {"layers": layers, "samples": 100}


def _measured_table(model, tmp_path):
    return measure_latency(model, _table(model), LatencyCache(tmp_path / "lat.json", fake_timer()), input_shape=SHAPE)


def _hand_ms(choice: dict[str, int]) -> float:
    """Reference: the dense model's ms + Σ (replacement − dense), from the constants above."""
    ins = {"classifier.fc1": 400, "classifier.fc2": 120, "classifier.fc3": 84}
    return MODEL_MS + sum(SVD_MS[(ins[n], r)] - DENSE_MS[ins[n]] for n, r in choice.items())


def _brute_force(limit: float, cap: float | None = None) -> tuple[float, dict[str, int]] | None:
    """Reference: every combination; the least summed drop whose hand-summed latency meets ``limit``."""
    best = None
    for combo in itertools.product(*[[None, *pts] for pts in POINTS.values()]):
        choice = {n: p[0] for n, p in zip(POINTS, combo) if p is not None}
        drop = sum(p[1] for p in combo if p is not None)
        if _hand_ms(choice) <= limit * MODEL_MS + 1e-9 and (cap is None or drop <= cap + 1e-9):
            if best is None or drop < best[0] - 1e-12:
                best = (drop, choice)
    return best


def _choice(plan) -> dict[str, int]:
    return {r["layers"]: r["rank"] for r in plan["rules"]}


@pytest.mark.parametrize("budget, limit, cap", [
    ("latency<=0.6", 0.6, None), ("latency<=0.75", 0.75, None), ("latency<=0.9", 0.9, None),
    ("latency<=0.75,drop<=1", 0.75, 1.0), ("latency<=0.6,drop<=3.2", 0.6, 3.2)])
def test_allocation_meets_the_synthetic_table_with_the_least_drop(base, tmp_path, budget, limit, cap):
    table = _measured_table(base, tmp_path)
    plan = allocate(base, budget, table, input_shape=SHAPE)
    got = _choice(plan)
    # the estimate is the hand sum of the table's entries, within the budget
    assert estimate_latency(table, plan["rules"]) == pytest.approx(_hand_ms(got) / MODEL_MS)
    assert _hand_ms(got) <= limit * MODEL_MS + 1e-9
    assert f"latency {_hand_ms(got) / MODEL_MS:.4f}" in plan["comment"]
    # the best accuracy for that latency among every hand-computable combination
    best_drop, best = _brute_force(limit, cap)
    drop = sum(d for n, r in got.items() for rr, d in POINTS[n] if rr == r)
    assert drop == pytest.approx(best_drop) and got == best
    if cap is not None:
        assert drop <= cap + 1e-9


def test_greedy_alone_is_not_enough_the_exchange_pass_reaches_the_optimum(base, tmp_path):
    """latency<=0.6 by hand: greedy by drop per ms saved takes fc1 r40, fc1 r10, fc2 r30, fc3 r6, fc2 r8 (4.6 pt,
    5.4 ms); undoing fc3 keeps 5.5 ms <= 6 and saves 1.5 pt: {fc1 r10, fc2 r8}, 3.1 pt."""
    plan = allocate(base, "latency<=0.6", _measured_table(base, tmp_path), input_shape=SHAPE)
    assert _choice(plan) == {"classifier.fc1": 10, "classifier.fc2": 8}
    assert "predicted drop 3.10 pt" in plan["comment"]


def test_drop_cap_that_cannot_be_met_and_a_table_without_latency(base, tmp_path):
    with pytest.raises(BudgetError, match=r"cannot be met within drop<=3 ") as info:
        allocate(base, "latency<=0.6,drop<=3", _measured_table(base, tmp_path), input_shape=SHAPE)
    assert "\n" not in str(info.value)
    with pytest.raises(BudgetError, match="needs the measured latency table"):
        allocate(base, "latency<=0.6", _table(base), input_shape=SHAPE)


def test_a_measured_miss_corrects_the_estimate_and_reallocates(base, tmp_path):
    """latency<=0.7: round 1 allocates {fc1 r10} (estimate 0.7); the stand-in measures 0.84 (> 0.77), so round 2
    scales the estimate by 0.84 / 0.7 = 1.2 and needs 0.7 / 1.2 = 0.583: {fc1 r10, fc2 r8} (0.55), measured 0.66."""
    table = _measured_table(base, tmp_path)
    measured = iter([0.84, 0.66])
    seen = []

    def model_latency(model, dense, input_shape):
        seen.append((type(model.classifier.fc1).__name__, type(dense.classifier.fc1).__name__, input_shape))
        return {"ratio": next(measured), "ms": 1.0, "dense_ms": 1.0}

    plan, rec = allocate_for_latency(base, "latency<=0.7", table, model_latency=model_latency, input_shape=SHAPE)
    assert seen == [("SVDLinear", "Linear", SHAPE)] * 2  # the allocated model against the dense one
    assert [r["estimate"] for r in rec["rounds"]] == pytest.approx([0.7, 0.55])
    assert [r["measured"] for r in rec["rounds"]] == [0.84, 0.66]
    assert rec["rounds"][1]["scale"] == pytest.approx(1.2)
    assert rec["rounds"][1]["corrected_estimate"] == pytest.approx(0.66)
    assert rec["chosen_round"] == 2 and rec["met"] and rec["measured"] == 0.66
    assert _choice(plan) == {"classifier.fc1": 10, "classifier.fc2": 8}
    # within the tolerance at once: one round; never within: the fastest measured round, met False
    plan, rec = allocate_for_latency(base, "latency<=0.7", table, input_shape=SHAPE,
                                     model_latency=lambda *a: {"ratio": 0.76})
    assert len(rec["rounds"]) == 1 and rec["met"] and _choice(plan) == {"classifier.fc1": 10}
    # latency<=0.9 by hand: {fc1 r40} 0.8, measured 1.1 -> limit 0.9 / 1.375: {fc1 r10, fc2 r30} 0.65, measured
    # 1.0 -> limit 0.9 / (1.0 / 0.65): {fc1 r10, fc2 r8} 0.55, measured 1.2; round 2 was the fastest
    slow = iter([1.1, 1.0, 1.2])
    plan, rec = allocate_for_latency(base, "latency<=0.9", table, input_shape=SHAPE,
                                     model_latency=lambda *a: {"ratio": next(slow)})
    assert [r["estimate"] for r in rec["rounds"]] == pytest.approx([0.8, 0.65, 0.55])
    assert not rec["met"] and rec["chosen_round"] == 2 and _choice(plan) == {"classifier.fc1": 10, "classifier.fc2": 30}
    # a correction no allocation can meet: the rounds made so far are kept
    lines: list[str] = []
    plan, rec = allocate_for_latency(base, "latency<=0.9", table, input_shape=SHAPE, log=lines.append,
                                     model_latency=lambda *a: {"ratio": 2.0})
    assert len(rec["rounds"]) == 1 and not rec["met"] and any("keeping the earlier rounds" in ln for ln in lines)


def test_the_table_is_cached_per_machine(base, tmp_path, monkeypatch):
    calls: list[str] = []
    path = tmp_path / "lat.json"
    cache = LatencyCache(path, fake_timer(calls))
    measure_latency(base, _table(base), cache, input_shape=SHAPE)
    cache.save()
    n = len(calls)
    assert n == 1 + 3 + 6  # the model, 3 dense layers, 6 points
    again = LatencyCache(path, fake_timer(calls))
    measure_latency(base, _table(base), again, input_shape=SHAPE)
    assert len(calls) == n and again.measured == 0  # same machine: all from the file
    monkeypatch.setattr(latency_mod, "cpu_model", lambda: "Another CPU")
    other = LatencyCache(path, fake_timer(calls))
    table = measure_latency(base, _table(base), other, input_shape=SHAPE)
    other.save()
    assert len(calls) == 2 * n and other.machine != cache.machine and other.machine.startswith("Another CPU|")
    assert set(json.loads(path.read_text())) == {cache.machine, other.machine}
    assert table["latency"]["machine"] == other.machine and table["latency"]["model_ms"] == MODEL_MS
    # threads and target are part of the key too
    monkeypatch.undo()
    assert len({machine_key(1), machine_key(2), machine_key(1, target="none")}) == 3


def test_latency_budget_needs_a_timer_one_line_before_any_work(base_dir, tmp_path):
    with pytest.raises(FinetuneError, match="latency budget needs latency_timer=") as info:
        finetune(base_dir, "synthetic", budget="latency<=0.5", out=tmp_path / "o", dataset_options=DATA, log=None)
    assert "\n" not in str(info.value) and not (tmp_path / "o").exists()


def test_finetune_with_a_latency_budget_records_estimate_measurement_and_rounds(base_dir, tmp_path):
    """A stand-in timer additive in parameters (1 µs each): the table's estimate of any plan is then exactly the
    compressed model's parameter ratio, a count independent of the latency code."""
    def timer(module, input_shape, **kw):
        return 1e-3 * sum(p.numel() for p in module.parameters())

    measured = []

    def model_latency(model, dense, input_shape):
        ratio = sum(p.numel() for p in model.parameters()) / sum(p.numel() for p in dense.parameters())
        measured.append(ratio)
        return {"ratio": ratio, "ms": 1e-3 * ratio, "dense_ms": 1e-3}

    kw = {"budget": "latency<=0.3", "sensitivity_methods": ["svd", "tucker2"], "rank_grid": (0.05, 0.2),
          "sensitivity_samples": 100, "epochs": 0, "evaluate_test": False, "dataset_options": DATA, "log": None,
          "latency_timer": timer, "model_latency": model_latency, "latency_cache": tmp_path / "lat.json",
          "batch_size": 32, "max_batches": 2}
    res = finetune(base_dir, "synthetic", out=tmp_path / "o", **kw)
    rec = json.loads((tmp_path / "o" / RECORD).read_text())["latency"]
    params = res.record["compressed"]["params"] / res.record["original"]["params"]
    assert rec["estimate"] == pytest.approx(params) and rec["measured"] == pytest.approx(params) and params <= 0.3
    assert rec["met"] and len(rec["rounds"]) == 1 and measured == [pytest.approx(params)]
    assert rec["table"]["machine"] == machine_key(1) and rec["table"]["measured_now"] > 0
    table = json.loads((tmp_path / "lat.json").read_text())[machine_key(1)]
    assert len(table) == rec["table"]["measured_now"]


def test_explore_meets_a_latency_budget_from_the_table_and_measures_the_pick(base_dir, tmp_path):
    """explore --budget latency<=F: latency becomes an objective (from the same table), the pick meets the table's
    estimate, and the picked model is measured against the original. Stand-ins additive in parameters: the
    estimate and the measurement must both equal the picked model's parameter ratio (a plain count)."""
    from tensorslim.explore import explore

    def timer(module, input_shape, **kw):
        return 1e-3 * sum(p.numel() for p in module.parameters())

    def model_latency(model, dense, input_shape):
        return {"ratio": sum(p.numel() for p in model.parameters()) / sum(p.numel() for p in dense.parameters())}

    res = explore(base_dir, "synthetic", out=tmp_path / "x", methods=["svd"], objectives=["macs", "accuracy"],
                  budget="latency<=0.8,drop<=100", max_evals=8, full_evals=3, max_error=0.99, finetune_batches=2,
                  val_samples=60, calibration=0, data_options=DATA, latency_timer=timer, model_latency=model_latency,
                  latency_cache=tmp_path / "lat.json", plots=False, log=None)
    assert "latency" in res.pareto["objectives"]
    sel = res.selected
    params = sel["params"] / res.pareto["original"]["params"]
    assert sel["relative"]["latency"] == pytest.approx(params) and params <= 0.8
    measured = res.pareto["selected_latency"]
    assert measured["estimate"] == pytest.approx(params) and measured["measured"] == pytest.approx(params)
    assert measured["within_10_percent"] and measured["budget"] == 0.8


def test_the_allocation_is_made_once_per_run_and_reused_on_resume(base, tmp_path):
    """A resumed run (and every process under torchrun) reads steps/latency.json instead of re-measuring, so it
    keeps the plan its finished steps were made with."""
    from tensorslim.distributed import current
    from tensorslim.finetune.schedules import LATENCY, STEPS_DIR, _latency_plan

    calls = []

    def model_latency(model, dense, input_shape):
        calls.append(1)
        return {"ratio": 0.7}

    kw = {"timer": fake_timer(), "model_latency": model_latency, "cache_path": tmp_path / "lat.json", "repeats": 1}
    budget = {"latency": 0.7}
    plan, rec = _latency_plan(base, budget, _table(base), SHAPE, tmp_path / "o", current(), None, **kw)
    assert (tmp_path / "o" / STEPS_DIR / LATENCY).is_file() and len(calls) == 1
    again = _latency_plan(base, budget, _table(base), SHAPE, tmp_path / "o", current(), lambda m: None, **kw)
    assert again == (plan, rec) and len(calls) == 1 and _choice(plan) == {"classifier.fc1": 10}
