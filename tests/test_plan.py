"""Compression plans: first matching rule wins; malformed plans fail with one line naming the rule and field."""

import json

import pytest

from tensorslim import plan
from tensorslim.plan import PlanError


def test_first_matching_rule_wins_and_exclude_applies():
    p = plan.parse({"rules": [
        {"layers": "features.0", "method": "tucker2", "rank": [2, 4]},
        {"layers": "features.*", "method": "cp", "ratio": 0.25, "exclude": ["features.9"]},
        {"layers": "*", "method": "svd", "energy": 0.9},
    ]})
    assert p.rule_for("features.0").method == "tucker2"
    assert p.rule_for("features.3").method == "cp"
    assert p.rule_for("features.9").method == "svd"  # excluded from the cp rule, falls through
    assert p.rule_for("classifier.1").method == "svd"
    assert p.rules[0].explicit and not p.rules[1].explicit


def test_round_trip_through_json():
    raw = {"rules": [{"layers": "fc*", "method": "tt", "rank": 4,
                      "options": {"in_shape": [7, 4, 7, 4], "out_shape": [5, 5, 5, 5]}}]}
    assert plan.parse(json.loads(json.dumps(plan.parse(raw).to_dict()))).to_dict() == raw


@pytest.mark.parametrize("rules, message", [
    ([{"method": "nope", "rank": 2}], "method must be one of"),
    ([{"method": "svd"}], "exactly one of"),
    ([{"method": "svd", "rank": 2, "ratio": 0.5}], "exactly one of"),
    ([{"method": "svd", "ratio": 1.5}], "ratio must be a number in (0, 1]"),
    ([{"method": "svd", "rank": 0}], "rank must be >= 1"),
    ([{"method": "cp", "rank": 2.5}], "rank must be an integer"),
    ([{"method": "cp", "vbmf": True}], "vbmf ranks apply to svd and tucker2"),
    ([{"method": "svd", "rank": 2, "options": {"form": "cp3"}}], "option 'form' does not apply to svd"),
    ([{"method": "svd", "rank": 2, "colour": "red"}], "unknown key 'colour'"),
])
def test_malformed_rules_name_the_rule_and_field(rules, message):
    with pytest.raises(PlanError) as info:
        plan.parse({"rules": [{"layers": "*", "method": "svd", "rank": 1}, *rules]}, "p.json")
    assert message in str(info.value) and "rule 2" in str(info.value) and "\n" not in str(info.value)


def test_plan_file_errors(tmp_path):
    with pytest.raises(PlanError, match="plan file not found"):
        plan.read(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(PlanError, match="not valid JSON"):
        plan.read(tmp_path / "bad.json")
    (tmp_path / "empty.json").write_text('{"rules": []}')
    with pytest.raises(PlanError, match="non-empty 'rules'"):
        plan.read(tmp_path / "empty.json")


def test_single_rule_plan_from_cli_options():
    p = plan.single("tucker2", layers="features.*", vbmf="weakened", exclude=["features.0"])
    rule = p.rules[0]
    assert (rule.method, rule.rank_kind, rule.rank_value, rule.exclude) == (
        "tucker2", "vbmf", "weakened", ("features.0",))


@pytest.mark.parametrize("options, ok", [
    ({"algorithm": "power", "n_iter_max": 5}, True),
    ({"algorithm": "als", "n_iter_max": 5, "tol": 1e-6}, True),
    ({"n_iter_max": 5}, True),  # power, the default algorithm, takes the same option name as ALS
    ({"algorithm": "power", "max_iter": 5}, False),  # the old power-method spelling is not an option name
    ({"algorithm": "als", "bogus": 1}, False),
    ({"algorithm": "newton"}, False),
    ({"form": "cp5"}, False),
])
def test_cp_options_are_validated_per_algorithm_from_the_real_signature(options, ok):
    from tensorslim.layers.cp import cp_option_names

    rule = {"layers": "*", "method": "cp", "rank": 2, "options": options}
    if ok:
        parsed = plan.parse({"rules": [rule]})
        extra = set(options) - {"algorithm", "form"}
        assert extra <= cp_option_names(options.get("algorithm", "power"))
        assert parsed.rules[0].options == options
    else:
        with pytest.raises(plan.PlanError, match="rule 1"):
            plan.parse({"rules": [rule]})


def test_plan_options_reach_the_decomposition_with_either_algorithm():
    """n_iter_max=1 (validated by the plan) changes the fit of both algorithms: the option is really passed."""
    import torch
    from torch import nn

    from tensorslim.surgery import compress_with_report

    torch.manual_seed(0)
    conv = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1))
    for algorithm in ("power", "als"):
        errors = []
        for n_iter in (1, 50):
            rule = {"layers": "0", "method": "cp", "rank": 3, "options": {"algorithm": algorithm, "n_iter_max": n_iter}}
            _, report = compress_with_report(conv, {"rules": [rule]}, (8, 6, 6))
            errors.append(report.layers[0]["rel_error"])
        assert errors[0] != errors[1], algorithm


def test_plan_target_is_validated_and_kept():
    from tensorslim import plan as plan_mod

    p = plan_mod.parse({"rules": [{"method": "cp", "ratio": 0.5}], "target": "xnnpack-arm"})
    assert p.target == "xnnpack-arm" and p.to_dict()["target"] == "xnnpack-arm"
    assert "target" not in plan_mod.parse({"rules": [{"method": "cp", "ratio": 0.5}]}).to_dict()
    assert p.with_target(None).target == "xnnpack-arm" and p.with_target("none").target == "none"
    with pytest.raises(plan_mod.PlanError, match="plan: target must be one of ort-x86, .*not 'gpu'"):
        plan_mod.parse({"rules": [{"method": "cp", "ratio": 0.5}], "target": "gpu"})
    assert plan_mod.single("cp", ratio=0.5, target="none").target == "none"
