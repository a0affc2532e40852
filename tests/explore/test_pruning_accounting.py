"""Pruning judged by output errors on real activations, and its per-method accounting (no method vanishes
silently). References: brute force over the points, and surgery.output_errors on a compressed model."""

import math

import pytest
import torch
from tests.explore.conftest import SYNTH

from tensorslim import data, modeldir, surgery
from tensorslim.explore import layer_errors, pruning, space

METHODS = ["svd", "cp", "tucker2", "tt", "tcl"]


def _pruned(tiny_dir, images: int, max_error: float):
    """The tiny model's design space pruned on the activations of its first ``images`` training images."""
    model = modeldir.load(tiny_dir).eval()
    train = data.load("synthetic", "train", **SYNTH)
    x = torch.stack([train[i][0] for i in range(images)])
    spaces = space.enumerate_space(surgery.candidates(model, (1, 8, 8)), METHODS)
    inputs = layer_errors.capture_inputs(model, [s.name for s in spaces], x)
    return model, x, spaces, pruning.prune(spaces, max_error=max_error, calibration=inputs)


@pytest.fixture(scope="module")
def calibrated(tiny_dir):
    return _pruned(tiny_dir, 64, 0.6)


def _front(points, err):
    """Brute force: not dominated on (params, MACs, memory, err); the first of equal ones."""
    out = []
    for p in points:
        vp = (p.params, p.macs, p.memory, err(p))
        if any(all(a <= b for a, b in zip((q.params, q.macs, q.memory, err(q)), vp)) and
               (q.params, q.macs, q.memory, err(q)) != vp for q in points):
            continue
        if vp not in [(q.params, q.macs, q.memory, err(q)) for q in out]:
            out.append(p)
    return out


def test_errors_are_output_errors_on_the_real_activations(calibrated):
    model, x, spaces, _ = calibrated
    checked = 0
    for s in spaces:
        for p in s.survivors[:3]:
            compressed = surgery.compress(model, {"rules": [p.rule()]}, (1, 8, 8))
            ref = surgery.output_errors(model, compressed, x, [s.name])[s.name]
            assert p.error == pytest.approx(ref, rel=1e-6, abs=1e-9)
            assert p.weight_error == pytest.approx(space.convert(s.ctx, p).rel_error, abs=1e-9)
            checked += 1
    assert checked >= 6
    # the two measures really differ: ranking by weight error is not what pruning did
    assert any(abs(p.error - p.weight_error) > 0.01 for s in spaces for p in s.survivors)


def test_calibrated_stages_match_brute_force(calibrated):
    _, _, spaces, _ = calibrated
    for s in spaces:
        dense = s.dense_cost()
        a = [p for p in s.points if p.macs < dense["macs"] and p.memory < dense["memory"]]
        kept = {q.key for m in {p.method for p in a}
                for q in _front([p for p in a if p.method == m], lambda p: p.weight_error)}
        a1 = [p for p in a if p.key in kept]
        b = _front(a1, lambda p: p.error)
        c = [p for p in b if p.error <= 0.6]
        assert [p.key for p in s.survivors] == [p.key for p in c]
        assert s.removed == {"not-cheaper": len(s.points) - len(a), "method-dominated": len(a) - len(a1),
                             "dominated": len(a1) - len(b), "error-bound": len(b) - len(c)}


def test_every_point_is_accounted_for_per_method(calibrated):
    _, _, spaces, report = calibrated
    assert report["judged_by"] == "output error"
    assert report["stages"] == ["not-cheaper", "method-dominated", "dominated", "error-bound"]
    labels = {p.label for s in spaces for p in s.points}
    assert set(report["methods"]) == labels  # every method of the space appears in the accounting
    for label, m in report["methods"].items():
        assert m["points"] == sum(p.label == label for s in spaces for p in s.points)
        assert m["survivors"] == sum(p.label == label for s in spaces for p in s.survivors)
        assert m["points"] == m["survivors"] + sum(m["removed"].values())
        assert ("vanished" in m) == (m["survivors"] == 0)
    for lay, s in zip(report["layers"], spaces):
        for stage in report["stages"]:
            assert sum(lay["removed_by_method"][stage].values()) == s.removed[stage]
    total = sum(len(s.points) for s in spaces)
    assert report["points_removed_share"] == pytest.approx(1 - sum(len(s.survivors) for s in spaces) / total)
    assert report["space_size"]["error-bound"] == str(math.prod(1 + len(s.survivors) for s in spaces))


def test_a_method_that_vanishes_is_named_with_its_stage(tiny_dir):
    _, _, spaces, report = _pruned(tiny_dir, 32, 1e-9)
    assert report["methods"] and all(m["survivors"] == 0 for m in report["methods"].values())
    for label, m in report["methods"].items():
        stage = m["vanished"]["stage"]
        assert m["removed"][stage] > 0 and label in m["vanished"]["reason"]
        later = report["stages"][report["stages"].index(stage) + 1:]
        assert all(m["removed"][k] == 0 for k in later)
    with pytest.raises(space.ExploreError, match="error <= max_error"):
        pruning.check_not_empty(spaces, report)
