"""Fine-tuning schedules against hand-built references: surgery.compress + train.train, step by step."""

from __future__ import annotations

import json

import pytest
import torch

from tensorslim import modeldir
from tensorslim.finetune import FinetuneError, finetune, plan_phases
from tensorslim.finetune.schedules import PROGRESS, RECORD, STEPS_DIR, split_steps
from tensorslim.surgery import compress
from tensorslim.train import TrainConfig, evaluate, train

DATA = {"num_samples": 1200, "num_test": 400, "noise": 0.8}  # as in conftest.py

PLAN = {"rules": [{"layers": "features.conv2", "method": "tucker2", "rank": [3, 8]},
                  {"layers": "classifier.fc1", "method": "svd", "rank": 12}]}
FAST = {"batch_size": 32, "max_batches": 4, "dataset_options": DATA, "log": None}


def _max_diff(a: torch.nn.Module, b: torch.nn.Module) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    return max((sa[k].float() - sb[k].float()).abs().max().item() for k in sa)


@pytest.mark.parametrize("schedule", ["one-shot", "iterative", "hybrid-conv-iterative", "hybrid-factors-first"])
@pytest.mark.parametrize(("total", "spe"), [(0, 5), (7, 5), (23, 4), (100, 34)])
def test_budget_split_is_equal_across_schedules(schedule, total, spe):
    n = {"one-shot": 1}.get(schedule, 3)
    phases = plan_phases(schedule, n, total, spe, 0.25)
    assert len(phases) == n
    assert sum(p["steps"] for step in phases for p in step) == total
    for step in phases:
        for p in step:
            # each phase runs epochs × max_batches optimizer steps: at least its share, at most epochs-1 more
            assert p["steps"] <= p["optimizer_steps"] < p["steps"] + p["epochs"]
            assert p["max_batches"] <= spe
    assert split_steps(10, 3) == [4, 3, 3]


def test_one_shot_equals_compress_then_train(base_dir, base, sets):
    res = finetune(base_dir, "synthetic", plan=PLAN, epochs=1, evaluate_test=False, **FAST)
    ref = compress(base, PLAN, (1, 28, 28))
    train(ref, sets[0], None, TrainConfig(epochs=1, batch_size=32, max_batches=4, lr=0.01, seed=0), log=None)
    assert _max_diff(res.model, ref) < 1e-6
    assert res.record["optimizer_steps"] == 4


def test_one_shot_distillation_equals_train_with_teacher(base_dir, base, sets):
    res = finetune(base_dir, "synthetic", plan=PLAN, epochs=1, distill=True, evaluate_test=False, **FAST)
    ref = compress(base, PLAN, (1, 28, 28))
    cfg = TrainConfig(epochs=1, batch_size=32, max_batches=4, lr=0.01, seed=0, distill_alpha=0.5)
    train(ref, sets[0], None, cfg, teacher=modeldir.load(_src(base_dir)), log=None)
    assert _max_diff(res.model, ref) < 1e-6


def _src(path):
    return path


def test_iterative_without_training_equals_one_shot_decomposition(base_dir, base):
    for schedule in ("iterative", "hybrid-conv-iterative", "hybrid-factors-first"):
        res = finetune(base_dir, "synthetic", plan=PLAN, schedule=schedule, epochs=0, evaluate_test=False, **FAST)
        assert _max_diff(res.model, compress(base, PLAN, (1, 28, 28))) < 1e-6
        assert [s["layers"] for s in res.record["steps"]] == [["features.conv2"], ["classifier.fc1"]]


def test_iterative_steps_follow_the_reference_loop(base_dir, base, sets):
    res = finetune(base_dir, "synthetic", plan=PLAN, schedule="iterative", epochs=2, order="backward",
                   evaluate_test=False, **FAST)
    # reference: fc1 first (backward), 4 steps each (total 2 epochs × 4 batches split over 2 layers)
    ref = base
    for k, rule in enumerate(reversed(PLAN["rules"])):
        ref = compress(ref, {"rules": [rule]}, (1, 28, 28))
        before = evaluate(ref, sets[1])["accuracy"]
        assert res.record["steps"][k]["val_before"] == pytest.approx(before)
        train(ref, sets[0], None, TrainConfig(epochs=1, batch_size=32, max_batches=4, lr=0.01, seed=1009 * k),
              log=None)
    assert _max_diff(res.model, ref) < 1e-6


def test_hybrid_conv_iterative_does_fc_layers_together_at_the_end(base_dir):
    plan = {"rules": [*PLAN["rules"], {"layers": "classifier.fc2", "method": "svd", "rank": 8},
                      {"layers": "features.conv1", "method": "tucker2", "rank": [1, 4]}]}
    res = finetune(base_dir, "synthetic", plan=plan, schedule="hybrid-conv-iterative", epochs=0,
                   evaluate_test=False, **FAST)
    assert [s["layers"] for s in res.record["steps"]] == [["features.conv1"], ["features.conv2"],
                                                          ["classifier.fc1", "classifier.fc2"]]


def test_factors_first_phase_trains_only_the_new_factors(base_dir, base):
    plan = {"rules": [PLAN["rules"][1]]}
    # 0.2 epoch of 5 batches = 1 optimizer step; factor_fraction 0.6 gives it to the factors-only phase
    res = finetune(base_dir, "synthetic", plan=plan, schedule="hybrid-factors-first", epochs=0.2,
                   factor_fraction=0.6, evaluate_test=False, **{**FAST, "max_batches": 5})
    phases = res.record["steps"][0]["phases"]
    assert [(p["kind"], p["steps"]) for p in phases] == [("factors", 1)]
    start = compress(base, plan, (1, 28, 28)).state_dict()
    after = res.model.state_dict()
    changed = {k for k in start if not torch.equal(start[k], after[k])}
    assert changed and all(k.startswith("classifier.fc1.") for k in changed)


def test_sensitivity_order_is_least_sensitive_first(base_dir, base, sets):
    res = finetune(base_dir, "synthetic", plan=PLAN, schedule="iterative", epochs=0, order="sensitivity",
                   sensitivity_samples=120, evaluate_test=False, **FAST)
    base_acc = evaluate(base, sets[1])["accuracy"]
    drops = {r["layers"]: base_acc - evaluate(compress(base, {"rules": [r]}, (1, 28, 28)), sets[1])["accuracy"]
             for r in PLAN["rules"]}
    expected = sorted(drops, key=lambda n: (drops[n], [r["layers"] for r in PLAN["rules"]].index(n)))
    assert [s["layers"][0] for s in res.record["steps"]] == expected
    assert res.record["order_drops"] == pytest.approx(drops)


def test_interrupted_run_resumes_to_the_same_model(base_dir, tmp_path):
    kw = dict(plan=PLAN, schedule="iterative", epochs=4, evaluate_test=False, **{**FAST, "max_batches": 3})
    whole = finetune(base_dir, "synthetic", out=tmp_path / "whole", **kw)

    seen = []

    def interrupt(msg: str) -> None:
        if msg.startswith("epoch"):
            seen.append(msg)
            if len(seen) == 4:  # step 2, epoch 2 (before it is saved)
                raise KeyboardInterrupt

    out = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        finetune(base_dir, "synthetic", out=out, **{**kw, "log": interrupt})
    progress = json.loads((out / PROGRESS).read_text())
    assert len(progress["steps"]) == 1
    modeldir.load(out / STEPS_DIR / "01")  # the last completed step is a loadable model directory
    logs = []
    resumed = finetune(base_dir, "synthetic", out=out, **{**kw, "log": logs.append})
    assert any("resuming" in line and "after epoch 1/2" in line for line in logs)
    assert _max_diff(resumed.model, whole.model) < 1e-6
    assert modeldir.is_model_dir(out) and (out / RECORD).is_file() and not (out / STEPS_DIR).exists()
    assert _max_diff(modeldir.load(out), whole.model) < 1e-6
    again = finetune(base_dir, "synthetic", out=out, **kw)  # finished: nothing to do
    assert again.record["steps"] == resumed.record["steps"]
    with pytest.raises(FinetuneError, match="other settings"):
        finetune(base_dir, "synthetic", out=out, **{**kw, "epochs": 3})


def test_record_and_costs(base_dir, base, sets):
    from tensorslim.cost import profile

    res = finetune(base_dir, "synthetic", plan=PLAN, epochs=0, **FAST)
    ref = compress(base, PLAN, (1, 28, 28))
    assert res.record["compressed"]["params"] == profile(ref, (1, 28, 28)).total.params
    assert res.record["test"]["before"] == pytest.approx(evaluate(ref, sets[2])["accuracy"])
    assert res.record["test"]["original"] == pytest.approx(evaluate(base, sets[2])["accuracy"])


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"plan": PLAN, "schedule": "twice"}, "schedule must be"),
    ({"plan": PLAN, "order": "random"}, "order must be"),
    ({}, "exactly one of plan or budget"),
    ({"plan": PLAN, "budget": "params=0.5"}, "exactly one of plan or budget"),
    ({"plan": PLAN, "momentum_typo": 1}, "unknown training option"),
    ({"budget": "params=2"}, "fraction kept"),
    ({"plan": {"rules": [{"layers": "nothing.*", "method": "svd", "rank": 2}]}}, "compresses no layer"),
])
def test_bad_arguments(base_dir, kwargs, match):
    from tensorslim.errors import TensorSlimError

    with pytest.raises(TensorSlimError, match=match):
        finetune(base_dir, "synthetic", epochs=0, **{**FAST, **kwargs})


def test_foreign_output_directory_is_refused(base_dir, tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "notes.txt").write_text("mine")
    with pytest.raises(FinetuneError, match="not a fine-tuning run"):
        finetune(base_dir, "synthetic", plan=PLAN, epochs=0, out=tmp_path / "x", **FAST)


def test_budget_goes_through_sensitivity_and_allocation(base_dir, base, sets, tmp_path):
    from tensorslim.cost import profile
    from tensorslim.finetune import allocate, sensitivity

    out = tmp_path / "b"
    res = finetune(base_dir, "synthetic", budget="params=0.5", sensitivity_methods=["svd"], rank_grid=(0.1, 0.3),
                   sensitivity_samples=60, epochs=0, out=out, evaluate_test=False, **FAST)
    table = sensitivity(base, sets[1], ["svd"], (0.1, 0.3), max_samples=60, log=None)
    plan = allocate(base, {"params": 0.5}, table, input_shape=(1, 28, 28))
    assert res.record["plan"]["rules"] == plan["rules"]
    assert json.loads((out / "sensitivity.json").read_text())["layers"] == table["layers"]
    assert profile(res.model, (1, 28, 28)).total.params <= 0.5 * profile(base, (1, 28, 28)).total.params


def _svd_points(table) -> list[tuple[int, int, float, int]]:
    """(in, out, ratio, rank) of every SVD point of a sensitivity table (lenet5's Linear layers)."""
    dims = {"classifier.fc1": (400, 120), "classifier.fc2": (120, 84), "classifier.fc3": (84, 10)}
    return [(*dims[name], p["ratio"], p["rank"]) for name, e in table["layers"].items() if name in dims
            for p in e["points"] if p["method"] == "svd"]


def test_a_target_rounds_the_budget_ranks_and_is_recorded_in_the_model(base_dir, tmp_path):
    from tensorslim.export.realise import model_target

    runs = {}
    for target in ("xnnpack-arm", "none"):
        out = tmp_path / target
        runs[target] = finetune(base_dir, "synthetic", budget="params<=0.5", sensitivity_methods=["svd"],
                                rank_grid=(0.1, 0.3), sensitivity_samples=60, epochs=0, out=out,
                                evaluate_test=False, target=target, **FAST)
        table = json.loads((out / "sensitivity.json").read_text())
        assert table["target"] == target
        assert model_target(modeldir.load(out)) == target  # what export reads
        assert runs[target].record["settings"]["target"] == target
    arm = _svd_points(json.loads((tmp_path / "xnnpack-arm" / "sensitivity.json").read_text()))
    plain = _svd_points(json.loads((tmp_path / "none" / "sensitivity.json").read_text()))
    assert arm and plain
    for i, o, ratio, rank in arm:  # a multiple of 8, unless no multiple of 8 fits the ratio (hand count)
        assert rank % 8 == 0 or 8 * (i + o) + o > ratio * (i * o + o), (i, o, ratio, rank)
    assert any(rank % 8 for *_, rank in plain)  # without a target the rule's own ranks: some are off
    table = json.loads((tmp_path / "xnnpack-arm" / "sensitivity.json").read_text())
    chosen = [(r["layers"], r["rank"]) for r in runs["xnnpack-arm"].record["plan"]["rules"]]
    assert chosen and all(rank in [p["rank"] for p in table["layers"][name]["points"]] for name, rank in chosen)


def test_an_unknown_target_is_a_one_line_error(base_dir, tmp_path):
    with pytest.raises(FinetuneError, match="unknown target 'riscv'"):
        finetune(base_dir, "synthetic", plan=PLAN, epochs=0, out=tmp_path / "t", target="riscv", **FAST)
