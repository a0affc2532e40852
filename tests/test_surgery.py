"""Surgery: plans applied to whole models, checked against the dense model and the closed-form rank rules."""

import json

import pytest
import torch
from torch import nn

import tensorslim
from tensorslim import modeldir, plan
from tensorslim.decompose import ranks
from tensorslim.errors import DecompositionError, TensorSlimError
from tensorslim.surgery import compress, compress_with_report


def lenet():
    torch.manual_seed(0)
    return modeldir.build({"builder": "lenet5", "kwargs": {}}, (1, 28, 28)).eval()


def rel(a, b):
    return ((a - b).norm() / b.norm()).item()


def test_full_rank_plan_reproduces_the_model_and_leaves_the_original_alone():
    model = lenet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    # full ranks make larger layers: "force" applies them anyway (the not-smaller check is tested below)
    plan = {"rules": [{"layers": "classifier.fc1", "method": "svd", "rank": 120, "force": True},
                      {"layers": "features.conv2", "method": "tucker2", "rank": [6, 16], "force": True},
                      {"layers": "classifier.fc2", "method": "tt", "rank": 100, "force": True,
                       "options": {"in_shape": [10, 12], "out_shape": [7, 12]}}]}
    new = compress(model, plan)
    x = torch.randn(5, 1, 28, 28)
    assert rel(new(x), model(x)) < 1e-4
    assert type(new.get_submodule("classifier.fc1")).__name__ == "SVDLinear"
    assert isinstance(model.get_submodule("classifier.fc1"), nn.Linear)  # original untouched
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_compressed_model_directory_round_trip(tmp_path):
    model = lenet()
    new = compress(model, {"rules": [{"layers": "features.*", "method": "cp", "rank": 4},
                                     {"layers": "classifier.fc1", "method": "tcl", "rank": [8, 3, 3]}]})
    tensorslim.save(new, tmp_path / "c")
    meta = json.loads((tmp_path / "c" / "model.json").read_text())
    assert [e["type"] for e in meta["compression"]["layers"]] == ["CPConv2d", "CPConv2d", "TCLHead"]
    again = tensorslim.load(tmp_path / "c")
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(new(x), again(x))


def test_ratio_rank_meets_the_budget_and_agrees_with_the_closed_form():
    """CP-3 on a 64→64 3×3 conv at ratio 0.25: the searched rank is the largest within the parameter budget
    (bias counted), which is the nnabla rule's rank or one below it (the rule ignores the bias)."""
    conv = nn.Sequential(nn.Conv2d(64, 64, 3, padding=1))
    new, report = compress_with_report(conv, {"rules": [{"layers": "0", "method": "cp", "ratio": 0.25}]},
                                       (64, 8, 8), target="none")  # the search itself, no rounding
    r = report.layers[0]["rank"]
    dense = 64 * 64 * 9 + 64
    assert r * (64 + 9 + 64) + 64 <= 0.25 * dense < (r + 1) * (64 + 9 + 64) + 64  # hand count
    assert ranks.cp_rank_for_ratio(64, 64, 3, 3, 0.25) - r in (0, 1)
    assert report.layers[0]["params_after"] == sum(p.numel() for p in new.parameters())


def test_macs_ratio_is_met_on_every_replaced_layer():
    model = lenet()
    _, report = compress_with_report(model, {"rules": [{"layers": "*", "method": "tucker2", "macs_ratio": 0.3}]})
    assert report.layers
    for entry in report.layers:
        assert entry["macs_after"] <= 0.3 * entry["macs_before"]


def test_skip_rule_agrees_with_reference_formula():
    """A wildcard rule skips layers that would not get faster; the decision matches REFERENCE.md's rule."""
    conv = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1))
    rank = 60  # R(S·HW + k²·HW + T·HW) = 60·41·64 ≥ T·S·k²·HW = 2304·64: not faster

    def not_faster(r: int) -> bool:  # the reference rule, by hand
        return r * (16 + 9 + 16) * 64 >= 16 * 16 * 9 * 64

    assert not_faster(rank)
    _, report = compress_with_report(conv, {"rules": [{"layers": "*", "method": "cp", "rank": rank}]}, (16, 8, 8))
    assert not report.layers and "would not get faster" in report.skipped[0]["reason"]
    _, report = compress_with_report(conv, {"rules": [{"layers": "*", "method": "cp", "rank": 8}]}, (16, 8, 8))
    assert not not_faster(8) and len(report.layers) == 1


def test_unsuitable_layers_are_skipped_with_reasons_under_a_wildcard():
    torch.manual_seed(0)
    model = modeldir.build({"builder": "mobilenetv2", "kwargs": {"width_mult": 0.25}}, (3, 32, 32))
    _, report = compress_with_report(model, {"rules": [{"layers": "*", "method": "cp", "ratio": 0.5}]})
    reasons = {s["reason"].split(" (")[0] for s in report.skipped}
    assert any("grouped or depthwise" in r for r in reasons)
    assert any("1x1 conv" in r for r in reasons)


@pytest.mark.parametrize("rule, message", [
    ({"layers": "features.conv1", "method": "svd", "rank": 2}, "features.conv1"),
    ({"layers": "classifier.fc1", "method": "svd", "rank": 500}, "classifier.fc1"),
    ({"layers": "classifier.fc2", "method": "tt", "rank": 2, "options": {"in_shape": [7, 7], "out_shape": [12, 7]}},
     "classifier.fc2"),
])
def test_explicit_rule_that_cannot_apply_names_the_layer(rule, message):
    with pytest.raises(DecompositionError) as info:
        compress(lenet(), {"rules": [rule]})
    assert message in str(info.value) and "\n" not in str(info.value)


def test_plan_naming_a_missing_layer_fails():
    with pytest.raises(TensorSlimError, match="nosuch"):
        compress(lenet(), {"rules": [{"layers": "nosuch", "method": "svd", "rank": 2}]})


def test_nan_weights_are_refused_with_the_layer_name():
    model = lenet()
    with torch.no_grad():
        model.get_submodule("classifier.fc1").weight[0, 0] = float("nan")
    with pytest.raises(DecompositionError, match="classifier.fc1"):
        compress(model, {"rules": [{"layers": "classifier.fc1", "method": "svd", "rank": 4}]})


def _noise_linear_model():
    """A Linear layer of pure Gaussian noise: EVBMF finds rank 0 (nothing above noise)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(384, 384))
    with torch.no_grad():
        model[1].weight.normal_()
    return model


@pytest.mark.parametrize("vbmf", [True, "weakened"])
def test_evbmf_rank_zero_skips_the_layer_with_its_reason(vbmf):
    from tensorslim.decompose import ranks

    model = _noise_linear_model()
    assert ranks.evbmf(model[1].weight.detach())[0] == 0  # the independent reference: no component above noise
    new, report = compress_with_report(model, {"rules": [{"layers": "*", "method": "svd", "vbmf": vbmf}]}, (384,))
    assert not report.layers
    assert report.skipped == [{"name": "1", "reason": "EVBMF finds no component above noise"}]
    assert isinstance(new[1], nn.Linear)
    with pytest.raises(TensorSlimError, match="EVBMF finds no component above noise"):  # a rule naming the layer
        compress_with_report(model, {"rules": [{"layers": "1", "method": "svd", "vbmf": vbmf}]}, (384,))


@pytest.mark.parametrize("spec", [
    {"rank": 1}, {"rank": [1, 1]}, {"rank": [1, 1, 1]}, {"ratio": 0.3}, {"macs_ratio": 0.3}, {"energy": 0.99},
    {"vbmf": True}, {"vbmf": "weakened"},
])
@pytest.mark.parametrize("method", ["svd", "cp", "tucker2", "tt", "tcl"])
def test_no_rank_rule_grows_a_layer(method, spec):
    """Whatever the rule, every replaced layer has at most the dense layer's params and MACs (hand count)."""
    model = lenet()
    try:
        plan.parse({"rules": [{"layers": "*", "method": method, **spec}]})
    except plan.PlanError:
        pytest.skip(f"{method} takes no {spec}")
    _, report = compress_with_report(model, {"rules": [{"layers": "*", "method": method, **spec}]})
    for e in report.layers:
        dense = model.get_submodule(e["name"])
        assert e["params_after"] <= sum(p.numel() for p in dense.parameters())
        assert e["params_after"] <= e["params_before"] and e["macs_after"] <= e["macs_before"], e


def test_explicit_rule_that_would_grow_the_layer_is_skipped_unless_forced():
    model = lenet()  # classifier.fc1: 400 -> 120; rank 110 SVD has 110·520 + 120 > 48,120 params and MACs
    rule = {"layers": "classifier.fc1", "method": "svd", "rank": 110}
    new, report = compress_with_report(model, {"rules": [rule]})
    assert not report.layers and "would not get faster (57,200 MACs > dense 48,000)" in report.skipped[0]["reason"]
    assert '"force": true' in report.skipped[0]["reason"]
    assert isinstance(new.get_submodule("classifier.fc1"), nn.Linear)
    new, report = compress_with_report(model, {"rules": [{**rule, "force": True}]})
    assert report.layers[0]["params_after"] == 110 * (400 + 120) + 120
    assert type(new.get_submodule("classifier.fc1")).__name__ == "SVDLinear"
