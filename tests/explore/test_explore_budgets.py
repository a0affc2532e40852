"""explore's time budget, up-front estimate and calibrated pruning, end to end on the tiny model."""

import json

import pytest
from click.testing import CliRunner

from tensorslim.cli.explore import explore_cmd
from tensorslim.explore import ExploreError, explore

from .conftest import SYNTH

FAST = dict(methods=["svd", "tucker2", "tt", "tcl"], max_evals=12, full_evals=3, finetune_batches=5,
            val_samples=60, max_error=0.7, data_options=SYNTH)


def test_a_spent_time_budget_still_writes_a_valid_front(tiny_dir, tmp_path):
    msgs = []
    res = explore(tiny_dir, "synthetic", out=tmp_path / "o", time_budget=1e-6, log=msgs.append, **FAST)
    search = res.pareto["search"]
    # the budget is spent before the first trial ends: one trial, one full-fidelity evaluation, a front of it
    assert search["stopped_by_time_budget"] is True and search["time_budget_s"] == 1e-6
    assert search["trials"] == 1 and search["full_evaluations"] == 1 and len(res.points) == 1
    saved = json.loads((tmp_path / "o" / "pareto.json").read_text())
    assert saved["points"][0]["id"] == res.points[0]["id"]
    assert (tmp_path / "o" / saved["points"][0]["path"] / "model.json").is_file()
    assert any("time budget" in m and "reached" in m for m in msgs)
    # the same run without a budget does all its trials (resuming the study)
    full = explore(tiny_dir, "synthetic", out=tmp_path / "o", log=None, **FAST)
    assert full.pareto["search"]["trials"] == FAST["max_evals"] and not full.pareto["search"]["stopped_by_time_budget"]


def test_the_estimate_is_printed_before_the_search_and_recorded(tiny_dir, tmp_path):
    msgs = []
    res = explore(tiny_dir, "synthetic", out=tmp_path / "o", log=msgs.append, **FAST)
    est = next(i for i, m in enumerate(msgs) if m.startswith("estimated wall time:"))
    first_trial_line = next((i for i, m in enumerate(msgs) if "low-fidelity trials:" in m), len(msgs))
    assert est < first_trial_line
    e = res.pareto["search"]["estimate_s"]
    assert e["total_s"] == pytest.approx(e["lowfi_s"] + e["full_s"], abs=0.002) and e["total_s"] > 0
    assert res.pareto["search"]["wall_s"] > 0


def test_pruning_is_judged_on_calibration_activations_and_accounted(tiny_dir, tmp_path):
    res = explore(tiny_dir, "synthetic", out=tmp_path / "o", log=None, calibration=64, **FAST)
    pruning = res.pareto["pruning"]
    assert pruning["judged_by"] == "output error" and pruning["calibration"]["images"] == 64
    assert set(pruning["methods"]) == {"svd", "tucker2", "tt", "tcl"}
    weight = explore(tiny_dir, "synthetic", out=tmp_path / "w", log=None, calibration=0, **FAST)
    assert weight.pareto["pruning"]["judged_by"] == "weight error"
    assert "method-dominated" not in weight.pareto["pruning"]["stages"]


@pytest.mark.parametrize("bad", ["10", "5x", "-1m"])
def test_bad_time_budget_is_one_line(tiny_dir, tmp_path, bad):
    with pytest.raises(ExploreError, match="time budget"):
        explore(tiny_dir, "synthetic", out=tmp_path / "o", time_budget=bad, log=None, **FAST)
    result = CliRunner().invoke(explore_cmd, [str(tiny_dir), "--data", "synthetic", "--out", str(tmp_path / "c"),
                                              "--time-budget", bad], standalone_mode=False)
    assert isinstance(result.exception, ExploreError) and "time budget" in str(result.exception)
    assert "\n" not in str(result.exception) and not (tmp_path / "c" / "pareto.json").exists()


def test_full_fidelity_finetune_spans_epochs_and_distils(monkeypatch):
    import torch

    from tensorslim.explore import evaluate as ev_mod

    seen = []
    monkeypatch.setattr(ev_mod, "train", lambda model, ds, val, cfg, teacher=None, log=None:
                        seen.append((cfg, teacher)))
    ds = torch.utils.data.TensorDataset(torch.zeros(100, 1, 4, 4), torch.zeros(100, dtype=torch.long))
    teacher = torch.nn.Linear(2, 2)
    ev_mod._finetune(lambda: torch.nn.Linear(2, 2), ds, 23, lr=0.1, batch_size=10, seed=0, teacher=teacher)
    cfg, got = seen[-1]
    # 10 batches per epoch: 23 batches = 3 epochs of ceil(23 / 3) = 8 (24 in all), one cosine schedule
    assert (cfg.epochs, cfg.max_batches, cfg.distill_alpha, got) == (3, 8, 0.5, teacher)
    ev_mod._finetune(lambda: torch.nn.Linear(2, 2), ds, 7, lr=0.1, batch_size=10, seed=0)
    cfg, got = seen[-1]
    assert (cfg.epochs, cfg.max_batches, cfg.distill_alpha, got) == (1, 7, 0.0, None)


def test_a_cost_budget_steers_the_search_and_the_front_meets_it(tiny_dir, tmp_path):
    import optuna

    msgs = []
    res = explore(tiny_dir, "synthetic", out=tmp_path / "o", budget="params<=0.6,drop<=100", log=msgs.append,
                  **FAST)
    base = res.pareto["original"]["params"]
    storage = optuna.storages.RDBStorage(f"sqlite:///{(tmp_path / 'o' / 'study.db').resolve()}")
    study = optuna.load_study(study_name=res.pareto["search"]["study"], storage=storage)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    feasible = [t for t in done if t.user_attrs["params"] / base <= 0.6]
    for t in done:  # the constraint Optuna's sampler sees is the budget's, computed by hand here
        assert t.constraints == pytest.approx({"params": t.user_attrs["params"] / base - 0.6})
    assert any(f"{len(feasible)} of {len(done)} trials meet the budget's params<=0.6" in m for m in msgs)
    assert feasible and all(p["relative"]["params"] <= 0.6 for p in res.points)
    assert res.selected is not None and res.selected["relative"]["params"] <= 0.6


def test_explore_takes_your_own_dataloaders(tiny_dir, tmp_path):
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from tensorslim import data, modeldir
    from tensorslim.train import evaluate

    def as_tensors(split):
        ds = data.load("synthetic", split, **SYNTH)
        xs, ys = zip(*(ds[i] for i in range(len(ds))), strict=True)
        return TensorDataset(torch.stack(xs), torch.tensor(ys))

    mine = {"train": DataLoader(as_tensors("train"), batch_size=32), "val": as_tensors("val"),
            "test": DataLoader(as_tensors("test"), batch_size=50)}
    opts = {k: v for k, v in FAST.items() if k != "data_options"}
    res = explore(tiny_dir, mine, out=tmp_path / "o", log=None, **opts)
    assert res.pareto["dataset"]["name"] == "user" and res.pareto["eval_split"] == "test"
    test = as_tensors("test")
    for p in res.points:  # the recorded test accuracy is the saved model's on the user's test tensors
        model = modeldir.load(tmp_path / "o" / p["path"])
        assert p["accuracy"] == pytest.approx(evaluate(model, test)["accuracy"])
        assert modeldir.read_meta(tmp_path / "o" / p["path"]).get("dataset") is None
    with pytest.raises(ExploreError, match="data_options apply to a named dataset"):
        explore(tiny_dir, mine, out=tmp_path / "p", log=None, **FAST)


def test_tensor_ring_reaches_explore_end_to_end(tiny_dir, tmp_path):
    """The method added as one file (methods/tensor_ring.py) goes through explore like the others."""
    opts = {**FAST, "methods": ["tr"], "max_evals": 6, "full_evals": 2, "max_error": 0.9}
    res = explore(tiny_dir, "synthetic", out=tmp_path / "o", log=None, **opts)
    assert "tr" in res.pareto["pruning"]["methods"]
    m = res.pareto["pruning"]["methods"]["tr"]
    assert m["points"] > 0 and m["points"] == m["survivors"] + sum(m["removed"].values())
    tried = json.loads((tmp_path / "o" / "trials.json").read_text())
    assert any("tr" in t["methods"] for t in tried) or "vanished" in m


def test_an_unreachable_budget_is_said_after_pruning(tiny_dir, tmp_path):
    msgs = []
    with pytest.raises(ExploreError):  # no point meets it: the front is written, the error names the closest
        explore(tiny_dir, "synthetic", out=tmp_path / "o", budget="params<=0.0001,drop<=100", log=msgs.append,
                **FAST)
    saved = json.loads((tmp_path / "o" / "pareto.json").read_text())
    reach = saved["pruning"]["reachable"]["params"]
    # by hand: each layer at its cheapest survivor, summed
    space = json.loads((tmp_path / "o" / "space.json").read_text())
    base = saved["original"]["params"]
    by_hand = base - sum(max([lay["dense"]["params"] - p["params"] for p in lay["survivors"]], default=0)
                         for lay in space["layers"])
    assert reach == pytest.approx(by_hand / base) and reach > 0.0001
    assert any("no combination reaches params<=0.0001" in m for m in msgs)


def test_a_target_is_recorded_in_the_front_and_in_every_saved_model(tiny_dir, tmp_path):
    from tensorslim import modeldir
    from tensorslim.export.realise import model_target

    res = explore(tiny_dir, "synthetic", out=tmp_path / "o", log=None, target="xnnpack-arm",
                  **{**FAST, "max_evals": 6, "full_evals": 2})
    assert res.pareto["target"] == "xnnpack-arm" and res.pareto["points"]
    for p in res.pareto["points"]:
        assert model_target(modeldir.load(tmp_path / "o" / p["path"])) == "xnnpack-arm"
    with pytest.raises(ExploreError, match="unknown target 'riscv'"):
        explore(tiny_dir, "synthetic", out=tmp_path / "bad", log=None, target="riscv", **FAST)


def test_a_finalist_whose_timed_batches_exceed_the_budget_is_skipped_and_recorded(tiny_dir, tmp_path, monkeypatch):
    from tensorslim.explore import core

    calls = []
    real = core._time_per_batch

    def timed(model, *args, **kwargs):  # the up-front estimate (plain, distilled), then one call per finalist
        calls.append(model)
        return real(model, *args, **kwargs) if len(calls) != 3 else 1e6  # the first finalist: 1e6 s per batch
    monkeypatch.setattr(core, "_time_per_batch", timed)
    msgs = []
    res = explore(tiny_dir, "synthetic", out=tmp_path / "o", time_budget="1h", log=msgs.append, **FAST)
    search = res.pareto["search"]
    projected = search["full_projected_s"]
    assert len(calls) == 2 + len(projected) and len(projected) == FAST["full_evals"]
    slow = max(projected, key=projected.get)
    assert projected[slow] > 3600 and search["full_skipped_over_budget"] == [int(slow)]
    assert search["full_evaluations"] == FAST["full_evals"] - 1 and search["stopped_by_time_budget"] is True
    assert any(f"trial {slow}: its fine-tuning would take" in m and "skipped" in m for m in msgs)
    assert all(p["trial"] != int(slow) for p in res.points)
