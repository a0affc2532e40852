"""The wall-time estimate search prints before its first trial: architectures drawn within the space's limits,
the arithmetic against a hand count (batch times fixed), the line's place in the log, and the ETA under a time
budget."""

from __future__ import annotations

import pytest
from search_testutil import DATA_OPTIONS, LOW, tiny_space

from tensorslim.search import Fidelity, search
from tensorslim.search import estimate as est_mod
from tensorslim.search.space import count


def test_drawn_architectures_respect_the_space_limits_and_the_seed():
    space = tiny_space(max_params=400)
    archs = est_mod.draw(space, 5, seed=3)
    assert archs and all(count(a)[0] <= 400 for a in archs)
    assert archs == est_mod.draw(space, 5, seed=3)
    assert est_mod.draw(tiny_space(max_params=1), 3) == []  # nothing fits: none drawn


def test_the_estimate_is_the_hand_count_of_the_work(monkeypatch):
    # every drawn architecture trains at 10 ms per batch of 32; the baseline named "big" at 1 s per batch of 64
    def fake(model, shape, classes, batch_size, batches=2):
        return 1.0 if getattr(model, "big", False) else 0.01

    monkeypatch.setattr(est_mod, "batch_seconds", fake)

    class Big:
        big = True

    low = Fidelity(epochs=2, max_batches=5, val_batches=1, batch_size=32)
    final = Fidelity(epochs=3, max_batches=None, val_batches=None, batch_size=64)
    e = est_mod.estimate(tiny_space(), trials_left=7, low=low, final=final, final_top=2,
                         baselines=[("big", Big)], train_images=640, val_images=300)
    trial = 0.01 * (2 * 5 + 2 * 300 / 32 / 3)  # 2 epochs x 5 batches, + 300 val images a third of a batch each
    assert e["trial_s"] == pytest.approx(trial) and e["search_s"] == pytest.approx(7 * trial)
    final_model = 0.02 * (3 * 10 + 3 * 300 / 64 / 3)  # 64-image batches twice as long; 640 / 64 = 10 per epoch
    assert e["final_s"] == pytest.approx(2 * final_model)
    assert e["baselines_s"]["big"] == pytest.approx(1.0 * (3 * 10 + 3 * 300 / 64 / 3))
    assert e["total_s"] == pytest.approx(7 * trial + 2 * final_model + e["baselines_s"]["big"])
    capped = est_mod.estimate(tiny_space(), trials_left=7, low=low, final=None, final_top=2, baselines=[],
                              train_images=640, val_images=300, time_budget=0.5)
    assert capped["capped_by_time_budget"] and capped["search_s"] == 0.5 and capped["total_s"] == 0.5
    line = est_mod.describe(capped, lambda s: f"{s:g} s", None, 2)
    assert line.startswith("estimated wall time: ~0.5 s") and "the time budget" in line


def test_search_prints_the_estimate_before_the_first_trial_and_the_eta_of_its_budget(tmp_path):
    msgs = []
    search("synthetic", space=tiny_space(), n_trials=3, strategy="random", low_fidelity=LOW,
           dataset_options=DATA_OPTIONS, out=tmp_path / "o", baselines=("resnet20",), final_top=1, final=LOW,
           time_budget="1h", log=msgs.append)
    first_trial = next(i for i, m in enumerate(msgs) if m.startswith("trial 0"))
    estimate = [i for i, m in enumerate(msgs) if m.startswith("estimated wall time")]
    assert len(estimate) == 1 and estimate[0] < first_trial
    assert "final retraining" in msgs[estimate[0]] and "baseline resnet20" in msgs[estimate[0]]
    etas = [m for m in msgs if m.startswith("trials: about")]
    assert len(etas) == 3 and all("ETA" in m and "time budget" not in m for m in etas)  # 3 trials end first
    msgs.clear()
    search("synthetic", space=tiny_space(), n_trials=10_000, strategy="random", low_fidelity=LOW,
           dataset_options=DATA_OPTIONS, out=tmp_path / "p", study="p", baselines=(), final_top=1, final=LOW,
           time_budget="2s", log=msgs.append)
    etas = [m for m in msgs if m.startswith("trials: about")]
    assert etas and all("(time budget 2 s)" in m for m in etas)  # the budget ends first: its ETA is said
