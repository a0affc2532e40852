"""explore() end to end on a tiny model: Pareto set, saved model directories, resume, errors, CLI."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tensorslim import data, modeldir, surgery
from tensorslim.cli.explore import explore_cmd
from tensorslim.cost import profile
from tensorslim.errors import TensorSlimError
from tensorslim.explore import ExploreConfig, ExploreError, StorageError, explore
from tensorslim.train import evaluate

from .conftest import SYNTH

FAST = dict(methods=["svd", "tucker2", "tt", "tcl"], max_evals=12, full_evals=3, finetune_batches=5,
            val_samples=60, max_error=0.7, data_options=SYNTH, log=None)


@pytest.fixture(scope="module")
def run(tiny_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("explore") / "out"
    return explore(tiny_dir, "synthetic", out=out, **FAST)


def test_pareto_json_matches_reevaluation_of_saved_models(run):
    pareto = json.loads((run.out / "pareto.json").read_text())
    assert pareto["format"] == "tensorslim-explore" and pareto["points"]
    test_set = data.load("synthetic", "test", **SYNTH)
    val_set = data.load("synthetic", "val", **SYNTH)
    for p in pareto["points"]:
        model = modeldir.load(run.out / p["path"])
        assert evaluate(model, test_set)["accuracy"] == p["accuracy"]
        assert evaluate(model, val_set)["accuracy"] == p["val_accuracy"]
        prof = profile(model, (1, 8, 8))
        assert (prof.total.params, prof.total.macs) == (p["params"], p["macs"])
        assert prof.total.weight_bytes + prof.total.output_bytes == p["memory"]
        metrics = modeldir.read_metrics(run.out / p["path"])
        assert metrics["accuracy"]["test"] == p["accuracy"]
    # the saved set is non-dominated on (macs, memory, val accuracy), checked pair by pair
    for a in pareto["points"]:
        for b in pareto["points"]:
            no_worse = a["macs"] <= b["macs"] and a["memory"] <= b["memory"] and a["val_accuracy"] >= b["val_accuracy"]
            better = a["macs"] < b["macs"] or a["memory"] < b["memory"] or a["val_accuracy"] > b["val_accuracy"]
            assert not (no_worse and better), f"{a['id']} dominates {b['id']}"
    assert (run.out / "plots" / "front.png").read_bytes()[:4] == b"\x89PNG"
    assert (run.out / "plots" / "methods.png").is_file()
    assert pareto["search"]["full_evaluations"] <= 3


def test_low_fidelity_values_match_an_independent_compress(run, tiny_dir):
    """A trial's choices, applied through surgery.compress (the plan path), give the same costs."""
    trials = json.loads((run.out / "trials.json").read_text())
    space_json = json.loads((run.out / "space.json").read_text())
    rules = {(layer["layer"], p["key"]): p for layer in space_json["layers"] for p in layer["survivors"]}
    model = modeldir.load(tiny_dir)
    for t in trials[:4]:
        plan = [{"layers": n, "method": rules[(n, k)]["method"], "rank": rules[(n, k)]["rank"],
                 **({"options": rules[(n, k)]["options"]} if rules[(n, k)]["options"] else {})}
                for n, k in t["choices"].items() if k != "dense"]
        compressed = surgery.compress(model, {"rules": plan}, (1, 8, 8)) if plan else model
        prof = profile(compressed, (1, 8, 8))
        assert (prof.total.params, prof.total.macs) == (t["params"], t["macs"])
        assert prof.total.weight_bytes + prof.total.output_bytes == t["memory"]


def test_rerun_resumes_the_study(run, tiny_dir):
    """A rerun, here given as an ExploreConfig rather than keywords, finds the same study complete."""
    msgs = []
    again = explore(tiny_dir, "synthetic", ExploreConfig(out=run.out, **{**FAST, "log": msgs.append}))
    assert any("12 trials done, running 0 more" in m for m in msgs)
    assert again.pareto["search"]["trials"] == 12
    assert again.pareto["search"]["study"] == run.pareto["search"]["study"]


def test_budget_picks_a_point_or_names_the_closest(run, tiny_dir, tmp_path):
    pts = run.points
    loose = explore(tiny_dir, "synthetic", out=run.out, budget="macs<=1.0,drop<=100", **FAST)
    best = max(pts, key=lambda p: (p["accuracy"], -p["macs"]))
    assert loose.selected["id"] == best["id"]
    # a budget no point meets: its own study (the constraints steer the sampler), in a folder of its own
    out = tmp_path / "missed"
    with pytest.raises(ExploreError, match=r"no Pareto point meets the budget macs<=1e-06; closest is p\d\d") as err:
        explore(tiny_dir, "synthetic", out=out, budget="macs<=0.000001", **FAST)
    assert "\n" not in str(err.value) and "pareto.json" in str(err.value)
    # the front is written anyway, as a normal run writes it (its models, its plot), with nothing selected
    missed = json.loads((out / "pareto.json").read_text())
    assert missed["selected"] is None and missed["budget"] == "macs<=1e-06"
    ids = [p["id"] for p in missed["points"]]
    assert ids == [f"p{i:02d}" for i in range(len(ids))] and ids
    assert all((out / p["path"] / "model.json").is_file() for p in missed["points"])
    assert (out / "plots" / "front.png").read_bytes()[:4] == b"\x89PNG"
    closest = str(err.value).split("closest is ")[1][:3]
    assert any(k != "dense" for k in next(p for p in missed["points"] if p["id"] == closest)["choices"].values())


def test_bad_storage_and_bad_input(tiny_dir, tmp_path):
    with pytest.raises(StorageError, match="cannot open storage") as err:
        explore(tiny_dir, "synthetic", out=tmp_path / "o", storage="sqlite:////nonexistent/dir/x.db", **FAST)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "o" / "pareto.json").exists()
    with pytest.raises(ExploreError, match="stage \\(c\\)"):
        explore(tiny_dir, "synthetic", out=tmp_path / "o2", **{**FAST, "max_error": 1e-12})
    with pytest.raises(ExploreError, match="budget term 'flops<=2'"):
        explore(tiny_dir, "synthetic", out=tmp_path / "o3", budget="flops<=2", **FAST)
    with pytest.raises(TypeError, match="a config or keyword options, not both"):
        explore(tiny_dir, "synthetic", ExploreConfig(out=tmp_path / "o6"), max_evals=3)
    with pytest.raises(ExploreError, match="unknown objective 'speed'"):
        explore(tiny_dir, "synthetic", out=tmp_path / "o4", objectives=["macs", "speed", "accuracy"], **FAST)
    with pytest.raises(ExploreError, match="latency objective needs latency_timer="):  # no timer: before any work
        explore(tiny_dir, "synthetic", out=tmp_path / "o5", objectives=["latency", "accuracy"], **FAST)
    assert not (tmp_path / "o5").exists()


def test_cli_command(tiny_dir, tmp_path):
    runner = CliRunner()
    res = runner.invoke(explore_cmd, [str(tiny_dir), "--data", "synthetic", "--out", str(tmp_path / "o"),
                                      "--storage", "nonsense://x"], standalone_mode=False)
    assert isinstance(res.exception, TensorSlimError) and "cannot open storage" in str(res.exception)
    res = runner.invoke(explore_cmd, [str(tiny_dir), "--data", "synthetic", "--out", str(tmp_path / "o"),
                                      "--low-fidelity", "soon"], standalone_mode=False)
    assert isinstance(res.exception, TensorSlimError) and "--low-fidelity 'soon'" in str(res.exception)
    res = runner.invoke(explore_cmd, [str(tiny_dir), "--data", "synthetic", "--out", str(tmp_path / "o")],
                        standalone_mode=False)  # synthetic's default 28×28 images do not fit the 8×8 model
    assert isinstance(res.exception, ExploreError) and "takes 1,8,8 inputs" in str(res.exception)


def test_latency_objective_is_measured_cached_per_machine_and_summed(tiny_dir, tmp_path):
    """Latency bookkeeping with a deterministic stand-in for the ORT timer (no timing in assertions)."""
    from tensorslim.explore.latency import machine_key

    calls = []

    def fake_ms(module, input_shape, **kw):
        calls.append(type(module).__name__)
        return 1e-3 * sum(p.numel() for p in module.parameters())

    fast = {**FAST, "methods": ["svd"], "max_evals": 4, "full_evals": 2, "finetune_batches": 2,
            "latency_timer": fake_ms}
    res = explore(tiny_dir, "synthetic", out=tmp_path / "o", objectives=["macs", "latency", "accuracy"], **fast)
    table = json.loads((tmp_path / "o" / "cache" / "latency.json").read_text())[machine_key(1)]
    assert res.pareto["pruning"]["latency"]["measured_now"] == len(table) == len(calls) > 0
    base = res.pareto["original"]["latency"]
    assert base == pytest.approx(1e-3 * res.pareto["original"]["params"])
    for t in json.loads((tmp_path / "o" / "trials.json").read_text()):
        # fake latency is additive in params, so the summed estimate must equal it for the whole model
        assert t["latency"] == pytest.approx(1e-3 * t["params"])
    n = len(calls)
    again = explore(tiny_dir, "synthetic", out=tmp_path / "o", objectives=["macs", "latency", "accuracy"], **fast)
    assert again.pareto["pruning"]["latency"]["measured_now"] == 0 and len(calls) == n  # all from the cache


def test_latency_stage_is_counted_per_method_and_names_a_vanished_method(tiny_dir, tmp_path):
    """Stage (d) removes the points not faster than their dense layer; the report counts them per method, and a
    method it removes entirely is named with that stage (a stand-in timer: Tucker-2 layers are slow)."""
    def tucker_slow(module, input_shape, **kw):
        slow = any(type(m).__name__ == "Tucker2Conv2d" for m in module.modules())
        return 1e3 if slow else 1e-3 * sum(p.numel() for p in module.parameters())

    fast = {**FAST, "methods": ["svd", "tucker2"], "max_evals": 3, "full_evals": 1, "finetune_batches": 2}
    res = explore(tiny_dir, "synthetic", out=tmp_path / "o", objectives=["macs", "latency", "accuracy"],
                  latency_timer=tucker_slow, **fast)
    pr = res.pareto["pruning"]
    assert pr["stages"][-1] == "slower"
    tucker = pr["methods"]["tucker2"]
    before = tucker["points"] - sum(v for k, v in tucker["removed"].items() if k != "slower")
    assert before > 0 and tucker["removed"]["slower"] == before and tucker["survivors"] == 0
    assert tucker["vanished"]["stage"] == "slower" and "measured latency" in tucker["vanished"]["reason"]
    assert pr["methods"]["svd"]["survivors"] > 0 and pr["methods"]["svd"]["removed"]["slower"] == 0
    assert pr["points"]["slower"] == sum(v["survivors"] for v in pr["methods"].values())
    assert sum(pr["latency"]["removed"].values()) == tucker["removed"]["slower"]
    with pytest.raises(ExploreError, match=r"stage \(d\) measured latency below the original layer's removed the "
                                           "last"):
        explore(tiny_dir, "synthetic", out=tmp_path / "o2", objectives=["macs", "latency", "accuracy"],
                latency_timer=lambda module, shape, **kw: 1e3 if sum(1 for _ in module.modules()) > 1 else 1.0,
                **{**fast, "methods": ["tucker2"]})


def test_the_rung_b_screen_makes_its_best_combinations_the_first_trials(tiny_dir, tmp_path):
    """With ``screen``, the first low-fidelity trials after the dense one are the feasible combinations with the
    smallest summed layer error, checked against the errors space.json records and the trials' measured params."""
    fast = {**FAST, "max_evals": 8, "full_evals": 1, "finetune_batches": 2}
    res = explore(tiny_dir, "synthetic", out=tmp_path / "o", screen=400, budget="params<=0.8", **fast)
    info = res.pareto["search"]["screen"]
    k = info["picked"]
    assert k == 4 and info["evaluated"] > 0  # max_evals // 2
    layers = json.loads((tmp_path / "o" / "space.json").read_text())["layers"]
    errors = {(layer["layer"], p["key"]): p["error"] for layer in layers for p in layer["survivors"]}
    trials = json.loads((tmp_path / "o" / "trials.json").read_text())
    assert all(v == "dense" for v in trials[0]["choices"].values())
    summed = [sum(errors[(n, c)] for n, c in t["choices"].items() if c != "dense") for t in trials[1:1 + k]]
    assert [round(e, 4) for e in summed] == info["summed_error"] == sorted(info["summed_error"])
    base = res.pareto["original"]["params"]
    assert all(t["params"] <= 0.8 * base for t in trials[1:1 + k])  # measured on the built models


def test_real_layer_latency_is_measured_with_onnx_runtime():
    from torch import nn

    from tensorslim.cli.explore import ort_layer_ms

    ms = ort_layer_ms(nn.Linear(8, 4), (8,), repeats=3, warmup=1)
    assert isinstance(ms, float) and ms > 0


def test_pick_names_the_best_model_under_a_budget(run, capsys):
    """`tensorslim pick DIR --budget ...`: the documented one-liner for "best model under X"."""
    from tensorslim.cli import main

    main(["pick", str(run.out), "--budget", "macs<=1.0,drop<=100", "--json"])
    chosen = json.loads(capsys.readouterr().out)
    # by hand: of the points within the budget, the most accurate, then the one with fewest MACs
    within = [p for p in run.pareto["points"] if p["relative"]["macs"] <= 1.0 and p["relative"]["drop"] <= 100]
    expected = max(within, key=lambda p: (p["accuracy"], -p["macs"]))
    assert chosen["id"] == expected["id"] and (Path(chosen["dir"]) / "model.json").is_file()
    with pytest.raises(SystemExit) as info:
        main(["pick", str(run.out), "--budget", "macs<=0.000001"])
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and err.startswith("error: no Pareto point meets") and "\n" not in err


def test_the_command_writes_the_report_over_the_front(tmp_path):
    """`tensorslim explore` gives explore() the report writer: OUT/report covers the original and each point."""
    from tensorslim.cli import main

    base = tmp_path / "base"
    modeldir.save(modeldir.build({"builder": "lenet5", "kwargs": {}}, (1, 28, 28)), base, dataset="synthetic")
    main(["explore", str(base), "--data", "synthetic", "--methods", "svd", "--objectives", "macs,accuracy",
          "--max-evals", "2", "--full-evals", "1", "--finetune-batches", "1", "--val-samples", "16",
          "--out", str(tmp_path / "ex")])
    pareto = json.loads((tmp_path / "ex" / "pareto.json").read_text())
    report = json.loads((tmp_path / "ex" / "report" / "report.json").read_text())
    assert len(report["models"]) == 1 + len(pareto["points"])
    assert (tmp_path / "ex" / "report" / "index.html").is_file()
