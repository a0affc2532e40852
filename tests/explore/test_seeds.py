"""Warm starts: a plan's off-grid layer choices join the space, survive pruning with their errors measured, and
are (with their one-layer neighbours) the first low-fidelity trials; a model directory's recorded plan does the
same; bad warm starts are one-line errors before any work."""

import json

import pytest

from tensorslim import modeldir, surgery
from tensorslim.explore import ExploreConfig, ExploreError, explore
from tensorslim.workflows import compress_model

from .conftest import SYNTH

# ranks off explore's grids (tucker2: 10/25/50/75/100 % of each mode; svd: fractions of 12)
PLAN = {"rules": [{"layers": "conv2", "method": "tucker2", "rank": [3, 5]},
                  {"layers": "fc1", "method": "svd", "rank": 7}]}
FAST = dict(methods=["svd", "tucker2"], objectives=["params", "accuracy"], max_evals=6, full_evals=1,
            finetune_batches=2, val_samples=40, data_options=SYNTH, log=None)


def _space(out):
    return {layer["layer"]: layer for layer in json.loads((out / "space.json").read_text())["layers"]}


def test_a_warm_start_joins_the_space_and_survives_pruning_with_its_errors_measured(tiny_dir, tmp_path):
    # max_error 0.02 removes every point this aggressive; the seeds stay, with their errors measured
    res = explore(tiny_dir, "synthetic", out=tmp_path / "o", warm_start=PLAN, max_error=0.02, **FAST)
    space = _space(tmp_path / "o")
    seeds = {name: [p for p in space[name]["survivors"] if p.get("seed")] for name in space}
    assert [p["key"] for p in seeds["conv2"]] == ["tucker2:3x5"] and [p["key"] for p in seeds["fc1"]] == ["svd:7"]
    assert all(p["error"] > 0.02 for p in seeds["conv2"] + seeds["fc1"])
    assert all(p.get("seed") for layer in space.values() for p in layer["survivors"])  # nothing else survived
    model = modeldir.load(tiny_dir)
    by_hand = {e["name"]: e["params_after"] for e in surgery.predict(model, PLAN, (1, 8, 8)).layers}
    assert {n: seeds[n][0]["params"] for n in by_hand} == by_hand  # the costs compress would give
    trials = json.loads((tmp_path / "o" / "trials.json").read_text())
    assert all(v == "dense" for v in trials[0]["choices"].values())
    assert trials[1]["choices"] == {n: "dense" for n in trials[0]["choices"]} | {"conv2": "tucker2:3x5",
                                                                                   "fc1": "svd:7"}
    assert res.pareto["search"]["warm_start"]["plans"] == [{"conv2": "tucker2:3x5", "fc1": "svd:7"}]


def test_the_warm_start_and_its_one_layer_neighbours_are_the_first_trials(tiny_dir, tmp_path):
    res = explore(tiny_dir, "synthetic", out=tmp_path / "o", warm_start=PLAN, max_error=1.0, **FAST)
    space = _space(tmp_path / "o")
    trials = json.loads((tmp_path / "o" / "trials.json").read_text())
    seed = {n: "dense" for n in trials[0]["choices"]} | {"conv2": "tucker2:3x5", "fc1": "svd:7"}
    # by hand: one layer moved to the most params-keeping cheaper survivor of the same method
    expected = [seed]
    for name, key in (("conv2", "tucker2:3x5"), ("fc1", "svd:7")):
        mine = next(p for p in space[name]["survivors"] if p["key"] == key)
        cheaper = [p for p in space[name]["survivors"]
                   if p["method"] == mine["method"] and p["params"] < mine["params"]]
        if cheaper:
            expected.append({**seed, name: max(cheaper, key=lambda p: (p["params"], -p["macs"]))["key"]})
    assert len(expected) == 3  # both layers have a cheaper point at max_error 1.0
    assert [t["choices"] for t in trials[1:1 + len(expected)]] == expected
    assert res.pareto["search"]["warm_start"]["trials"] == expected


def test_a_model_directory_warm_starts_with_its_recorded_plan(tiny_dir, tmp_path):
    compressed = tmp_path / "compressed"
    compress_model(tiny_dir, PLAN, compressed, evaluate_on=None, log=lambda _m: None, warn=lambda _m: None)
    cfg = ExploreConfig(out=tmp_path / "o", warm_start=[compressed], **FAST)
    assert [p.to_dict()["rules"] for p in cfg.warm_start] == [PLAN["rules"]]  # (compress records its target too)
    res = explore(tiny_dir, "synthetic", config=cfg)
    assert res.pareto["search"]["warm_start"]["plans"] == [{"conv2": "tucker2:3x5", "fc1": "svd:7"}]


@pytest.mark.parametrize("warm, match", [
    ("nosuchfile.json", "no such warm-start plan file or model directory"),
    ({"rules": []}, "non-empty 'rules' list"),
    ({"rules": [{"layers": "conv2", "method": "svd", "rank": 2}]}, "conv2"),
    ({"rules": [{"layers": "nosuch", "method": "svd", "rank": 2}]}, "nosuch"),
])
def test_a_bad_warm_start_is_one_line_before_any_work(tiny_dir, tmp_path, warm, match):
    out = tmp_path / "o"
    with pytest.raises(Exception, match=match) as info:
        explore(tiny_dir, "synthetic", out=out, warm_start=warm, **FAST)
    assert "\n" not in str(info.value)
    assert not (out / "space.json").exists()


def test_a_model_directory_without_one_plan_is_refused(tiny_dir, tmp_path):
    with pytest.raises(ExploreError, match="must record one compression plan, it records 0"):
        ExploreConfig(out=tmp_path / "o", warm_start=tiny_dir)
