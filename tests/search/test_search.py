"""The search loop in one process: trial counts, recorded costs vs an independent profile, the Pareto set,
final retraining into model directories, study/space checks and storage errors."""

from __future__ import annotations

import json

import optuna
import pytest
from search_testutil import DATA_OPTIONS, LOW, tiny_space

from tensorslim import modeldir
from tensorslim.cost import profile
from tensorslim.report import write_report
from tensorslim.search import (
    Fidelity,
    SearchConfig,
    SearchSpaceError,
    StorageError,
    build_network,
    open_storage,
    search,
)
from tensorslim.search.run import ATTR, run_study
from tensorslim.search.space import head_from_fractions
from tensorslim.study.pareto import dominates


def _run(tmp_path, **kw):
    args = dict(space=tiny_space(), n_trials=3, strategy="random", low_fidelity=LOW, dataset_options=DATA_OPTIONS,
                log=None, storage=f"journal://{tmp_path / 's.journal'}", study="t")
    args.update(kw)
    return run_study("synthetic", **args)


def test_trials_record_true_costs_and_the_front_is_nondominated(tmp_path):
    st = _run(tmp_path)
    done = [t for t in st.trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(done) == 3 and len({t.number for t in done}) == 3
    complete = [t for t in st.trials if t.state.name == "COMPLETE"]
    assert complete
    for t in complete:
        arch = t.user_attrs["arch"]
        total = profile(build_network(**arch), arch["input_shape"]).total  # independent rebuild
        assert t.values == [t.user_attrs["values"]["accuracy"], total.params, total.macs]
    from tensorslim.search import pareto_trials

    front = pareto_trials(st)
    vec = {t.number: (-t.values[0], t.values[1], t.values[2]) for t in complete}
    for t in front:
        assert not any(dominates(v, vec[t.number]) for v in vec.values())
    assert st.user_attrs[ATTR]["space"] == tiny_space().to_dict()


def test_fixed_rank_mode_uses_the_given_fractions_and_latency_objective(tmp_path):
    st = _run(tmp_path, rank_mode="fixed", fixed_ranks=(0.5, 0.5, 0.5), n_trials=2, objectives=("accuracy", "latency"))
    assert [d.name for d in st.directions] == ["MAXIMIZE", "MINIMIZE"]
    for t in st.trials:
        if t.state.name == "COMPLETE":
            assert len(t.values) == 2 and t.values[1] == t.user_attrs["values"]["latency"] > 0
        arch = t.user_attrs["arch"]
        from tensorslim.search.space import feature_shape

        assert arch["head"] == head_from_fractions("tcl", feature_shape(arch), 3, (0.5, 0.5, 0.5))


def test_rerun_continues_and_other_space_is_refused(tmp_path):
    _run(tmp_path, n_trials=2)
    st = _run(tmp_path, n_trials=3)  # a restarted worker continues the same study
    assert sum(t.state.name in ("COMPLETE", "PRUNED") for t in st.trials) == 3
    with pytest.raises(SearchSpaceError, match="another search definition") as err:
        _run(tmp_path, space=tiny_space(kernels=[3, 5]))
    assert "\n" not in str(err.value)
    with pytest.raises(SearchSpaceError, match="another search definition"):
        _run(tmp_path, rank_mode="fixed", fixed_ranks=(0.5, 0.5, 0.5))


def test_sqlite_storage_with_heartbeat_continues(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    _run(tmp_path, storage=url, n_trials=1)
    st = _run(tmp_path, storage=url, n_trials=2)
    assert sum(t.state.name in ("COMPLETE", "PRUNED") for t in st.trials) == 2
    from optuna.storages._heartbeat import is_heartbeat_enabled

    storage = open_storage(url, heartbeat_interval=5)  # Optuna's heartbeat + retry callback are on
    assert is_heartbeat_enabled(storage) and storage.get_heartbeat_stale_trial_callback() is not None


@pytest.mark.parametrize("url,match", [
    ("sqlite:////nonexistent-dir/x/s.db", "cannot be opened"),
    ("postgresql://user:secret@127.0.0.1:1/db", "cannot be opened"),
    ("ftp://host/file", "unknown scheme"),
    ("/nonexistent-dir/x/s.journal", "cannot be opened"),
])
def test_bad_storage_is_one_line_error(url, match):
    with pytest.raises(StorageError, match=match) as err:
        open_storage(url)
    assert "\n" not in str(err.value) and "secret" not in str(err.value)


def test_search_writes_pareto_model_dirs_and_report(tmp_path):
    out = tmp_path / "out"
    res = search("synthetic", space=tiny_space(), n_trials=3, strategy="tpe", low_fidelity=LOW,
                 final=Fidelity(epochs=1, max_batches=1, val_batches=1, batch_size=32), final_top=1,
                 baselines=("lenet5",), dataset_options=DATA_OPTIONS, out=out, log=None, seed=1, report=write_report)
    doc = json.loads((out / "pareto.json").read_text())
    assert len(doc["pareto"]) == 1 and doc["baselines"][0]["model"] == "lenet5"
    for p in doc["pareto"]:
        model = modeldir.load(p["dir"])
        assert modeldir.read_meta(p["dir"])["spec"]["builder"] == "tensorslim.search.space:build_network"
        assert profile(model, (1, 12, 12)).total.params == p["params"]
        metrics = json.loads((out / "pareto" / f"trial-{p['trial']:04d}" / "metrics.json").read_text())
        assert metrics["accuracy"]["test"] == p["test_accuracy"]
    assert (out / "report" / "index.html").is_file()
    assert res.counts.get("complete", 0) + res.counts.get("pruned", 0) == 3
    # the finalists' own estimate, said before their training, names every model that then trained
    est = doc["final_estimate_s"]
    assert set(est) == {f"trial {p['trial']}" for p in doc["pareto"]} | {"baseline lenet5"}
    assert all(s > 0 for s in est.values())
    # rerunning is a no-op that finds everything done (so there is nothing left to estimate)
    lines: list[str] = []
    again = search("synthetic", SearchConfig(  # the same, as a config object
        space=tiny_space(), n_trials=3, strategy="tpe", low_fidelity=LOW,
        final=Fidelity(epochs=1, max_batches=1, val_batches=1, batch_size=32), final_top=1,
        baselines=("lenet5",), dataset_options=DATA_OPTIONS, out=out, log=lines.append, seed=1, report=False))
    assert [p["test_accuracy"] for p in again.pareto] == [p["test_accuracy"] for p in doc["pareto"]]
    assert not any(line.startswith("final training: ~") for line in lines)
    assert json.loads((out / "pareto.json").read_text())["final_estimate_s"] == {}


def test_over_budget_architectures_are_pruned_untrained(tmp_path):
    with pytest.raises(SearchSpaceError, match="exceeded max_params"):
        _run(tmp_path, space=tiny_space(max_params=1), n_trials=1)
    st = optuna.load_study(study_name="t", storage=open_storage(str(tmp_path / "s.journal")))
    assert all(t.user_attrs.get("over_budget") and "val_curve" not in t.user_attrs for t in st.trials)


def test_command_runs_and_reports_errors_in_one_line(tmp_path, capsys):
    from tensorslim.cli.search import main

    main(["--data", "synthetic", "--trials", "1", "--storage", f"journal://{tmp_path / 'c.journal'}",
          "--worker-only", "--epochs", "1", "--max-batches", "1", "--val-batches", "1", "--strategy", "random",
          "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert doc["counts"].get("complete", 0) + doc["counts"].get("pruned", 0) == 1
    for argv in (["--data", "synthetic", "--storage", "sqlite:////no/such/dir/x.db", "--worker-only"],
                 ["--data", "synthetic", "--out", str(tmp_path / "o"), "--rank-mode", "fixed"],
                 ["--data", "synthetic", "--worker-only", "--storage", "memory", "--strategy", "annealing"]):
        with pytest.raises(SystemExit) as code:
            main(argv)
        assert code.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1


def test_config_is_checked_when_made_and_not_mixed_with_keywords():
    from tensorslim.errors import TensorSlimError

    with pytest.raises(TensorSlimError, match="n_trials must be a positive integer, got 0"):
        SearchConfig(n_trials=0)
    with pytest.raises(TensorSlimError, match="objectives must include accuracy"):
        SearchConfig(objectives=("params",))
    with pytest.raises(TypeError, match="a config or keyword options, not both"):
        run_study("synthetic", SearchConfig(), n_trials=3)


def test_final_augmentation_reaches_the_training_split_only(tmp_path, monkeypatch):
    """``Fidelity.augment`` augments the finalists' training images (the dataset's standard 2-pixel translation
    for synthetic data, whose default is none), never the validation or test images, is recorded in
    metrics.json, and a finished directory trained with another setting is retrained, not reused."""
    from tensorslim import data
    from tensorslim.data import Augment
    from tensorslim.search import final as final_mod

    seen = []
    real_train = final_mod.train

    def spy(model, train_set, val_set, cfg, **kw):
        seen.append((train_set.augment, None if val_set is None else val_set.augment))
        return real_train(model, train_set, val_set, cfg, **kw)

    loads = []
    real_load = data.load

    def load_spy(dataset, split, *a, **kw):
        ds = real_load(dataset, split, *a, **kw)
        loads.append((split, ds.augment))
        return ds

    monkeypatch.setattr(final_mod, "train", spy)
    monkeypatch.setattr(data, "load", load_spy)
    arch = tiny_space().max_architecture()
    dest = tmp_path / "m"
    for augment, expected in ((None, None), (True, Augment(pad=2, flip=False)), (False, None)):
        model = modeldir.build(final_mod.spec(arch), arch["input_shape"])
        m = final_mod.train_final(model, dest, "synthetic", Fidelity(epochs=1, max_batches=1, val_batches=None,
                                                                     batch_size=32, augment=augment),
                                  dataset_options=DATA_OPTIONS, log=lambda s: None)
        assert seen[-1] == (expected, None)
        assert dict(loads[-3:]) == {"train": expected, "val": None, "test": None}
        assert json.loads((dest / "metrics.json").read_text())["final_augment"] is augment is m["final_augment"]
    assert len(seen) == 3  # each setting trained anew


def test_search_command_passes_augmentation_to_both_fidelities(monkeypatch):
    from tensorslim.cli import search as cli_search

    got = {}

    def fake_search(dataset, **kw):
        got.update(low=kw["low_fidelity"].augment, final=kw["final"].augment)
        raise SystemExit(0)

    monkeypatch.setattr(cli_search, "search", fake_search)
    for argv, want in (([], (None, None)), (["--augment", "--final-augment"], (True, True)),
                       (["--no-augment", "--final-augment"], (False, True))):
        with pytest.raises(SystemExit):
            cli_search.main(["--data", "synthetic", "--out", "unused", *argv])
        assert (got["low"], got["final"]) == want


def test_a_finalist_that_diverges_is_recorded_and_the_rest_finish(tmp_path, monkeypatch):
    """A final model whose training blows up (its weights set to NaN here, so train() itself detects the
    divergence) is listed in pareto.json as diverged, with no finished model directory; the other finalist and
    the baseline are still trained instead of the whole run failing."""
    import math

    import torch

    from tensorslim.search import final as final_mod

    real_train = final_mod.train
    calls = []

    def first_one_diverges(model, *a, **kw):
        calls.append(type(model).__name__)
        if len(calls) == 1:
            with torch.no_grad():
                next(model.parameters()).fill_(math.nan)
        return real_train(model, *a, **kw)

    monkeypatch.setattr(final_mod, "train", first_one_diverges)
    out = tmp_path / "out"
    res = search("synthetic", space=tiny_space(), n_trials=4, strategy="random", low_fidelity=LOW,
                 final=Fidelity(epochs=1, max_batches=1, val_batches=1, batch_size=32), final_top=2,
                 baselines=("lenet5",), dataset_options=DATA_OPTIONS, out=out, log=None, seed=3, report=False)
    doc = json.loads((out / "pareto.json").read_text())
    assert len(calls) == len(doc["pareto"]) + 1  # every finalist and the baseline were attempted
    bad = [p for p in doc["pareto"] if p.get("diverged")]
    good = [p for p in doc["pareto"] if not p.get("diverged")]
    assert len(bad) == 1 and bad[0]["test_accuracy"] is None and "diverged" in bad[0]["diverged"]
    assert good and all(isinstance(p["test_accuracy"], float) for p in good)
    assert doc["baselines"][0]["test_accuracy"] is not None
    assert not (out / "pareto" / f"trial-{bad[0]['trial']:04d}" / "metrics.json").exists()
    assert [p["trial"] for p in res.pareto] == [p["trial"] for p in doc["pareto"]]

