"""search's time budget, progress lines with an ETA, and trials per hour recorded in the study."""

from __future__ import annotations

import json

import pytest
from search_testutil import DATA_OPTIONS, LOW, tiny_space

from tensorslim.errors import TensorSlimError
from tensorslim.search import search
from tensorslim.search.run import WORKER_ATTR, run_study, throughput


def _run(tmp_path, **kw):
    args = dict(space=tiny_space(), n_trials=4, strategy="random", low_fidelity=LOW, dataset_options=DATA_OPTIONS,
                storage=f"journal://{tmp_path / 's.journal'}", study="t")
    args.update(kw)
    return run_study("synthetic", **args)


def test_a_spent_budget_stops_after_one_trial_and_a_rerun_finishes(tmp_path):
    msgs = []
    st = _run(tmp_path, time_budget=1e-6, log=msgs.append)
    finished = [t for t in st.trials if t.state.is_finished()]
    assert len(finished) == 1  # the budget is checked before each new trial: the first always runs
    assert any("time budget" in m and "no new trial started" in m for m in msgs)
    assert any(m.startswith("trials: about 1/4 finished") and "ETA" in m for m in msgs)
    st = _run(tmp_path, log=None)
    assert len([t for t in st.trials if t.state.is_finished()]) == 4
    runs = [v for k, v in st.user_attrs.items() if k.startswith(WORKER_ATTR)]
    assert sorted(r["trials"] for r in runs) == [1, 3]  # one entry per worker run, trials counted by hand
    tp = throughput(st)
    assert tp["trials"] == 4 and tp["worker_runs"] == 2
    assert tp["trials_per_hour"] == pytest.approx(3600 * 4 / sum(r["seconds"] for r in runs), rel=0.01)


def test_pareto_json_records_throughput(tmp_path):
    res = search("synthetic", space=tiny_space(), n_trials=2, strategy="random", low_fidelity=LOW,
                 dataset_options=DATA_OPTIONS, out=tmp_path / "o", baselines=(), final_top=1,
                 final=LOW, log=None)
    doc = json.loads((tmp_path / "o" / "pareto.json").read_text())
    assert doc["throughput"]["trials"] == 2 and doc["throughput"]["trials_per_hour"] > 0
    assert res.study == doc["study"]


@pytest.mark.parametrize("bad", ["5", "1w", "0m"])
def test_bad_time_budget(bad):
    with pytest.raises(TensorSlimError, match="time budget"):
        search("synthetic", time_budget=bad, log=None)
