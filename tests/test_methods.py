"""The method registry: every method keeps its promises, checked against independent counts.

For each registered method on each layer it accepts: analytic costs equal the parameters actually allocated
and the MACs of tensorslim.cost.profile; a ratio rank meets its budget; the fitted layer maps the same shapes
and saves / loads exactly. Tensor Ring, added as one file and one registry line, goes through compress,
explore and finetune like the others.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import tensorslim
from tensorslim import methods, modeldir
from tensorslim.cost import profile
from tensorslim.surgery import candidates, compress_with_report


def lenet():
    torch.manual_seed(0)
    return modeldir.build({"builder": "lenet5", "kwargs": {}}, (1, 28, 28)).eval()


def _pairs():
    model = lenet()
    return [(name, ctx) for ctx in candidates(model, (1, 28, 28)) for name in methods.applicable(ctx)]


def test_registry_lists_every_method_once():
    assert methods.names() == ("svd", "cp", "tucker2", "tt", "tcl", "tr")
    assert all(methods.get(n).name == n for n in methods.names())
    with pytest.raises(tensorslim.TensorSlimError, match="unknown method 'nope'"):
        methods.get("nope")


@pytest.mark.parametrize("name, ctx", _pairs(), ids=lambda v: v if isinstance(v, str) else v.name)
def test_design_point_costs_are_the_layers_own_counts(name, ctx):
    method = methods.get(name)
    points = method.design_points(ctx)
    assert points, f"{name} has no design point on {ctx.name}"
    for p in points[:: max(1, len(points) // 4)]:  # a spread of each grid
        layer = method.structure(ctx, p.rank, p.options)
        assert p.params == sum(t.numel() for t in layer.parameters())  # allocated, not analytic
        assert p.macs == profile(nn.Sequential(layer), ctx.input_shape).total.macs


@pytest.mark.parametrize("name, ctx", _pairs(), ids=lambda v: v if isinstance(v, str) else v.name)
def test_ratio_rank_meets_its_budget_and_the_fit_keeps_the_shapes(name, ctx):
    method = methods.get(name)
    rank = method.rank_for(ctx, "ratio", 0.5, {})
    cost = method.cost(ctx, rank, {})
    assert cost["params"] <= 0.5 * ctx.dense_params
    if name == "tr":  # TR-ALS is slow: one sweep at the smallest ring on the small layers shows that the fit runs
        if ctx.dense_params > 20_000:
            return
        rank, fit_options = 2, {"n_iter_max": 1}
    else:
        fit_options = {}
    layer = method.fit(ctx, rank, fit_options)
    x = torch.randn(2, *ctx.input_shape)
    assert layer(x).shape == ctx.module(x).shape
    assert layer.rel_error is not None and 0 <= layer.rel_error


def test_tensor_ring_in_compress_save_load_and_the_cli(tmp_path, capsys):
    model = lenet()
    fast = {"n_iter_max": 3}
    plan = {"rules": [{"layers": "features.conv2", "method": "tr", "rank": 3, "options": fast},
                      {"layers": "classifier.fc2", "method": "tr", "macs_ratio": 0.5, "options": fast}]}
    small, report = compress_with_report(model, plan)
    assert [e["type"] for e in report.layers] == ["TRConv2d", "TRLinear"]
    assert report.layers[1]["macs_after"] <= 0.5 * report.layers[1]["macs_before"]
    total = profile(small, (1, 28, 28)).total
    assert total.params == sum(p.numel() for p in small.parameters())
    tensorslim.save(small, tmp_path / "tr")
    again = tensorslim.load(tmp_path / "tr")
    x = torch.randn(3, 1, 28, 28)
    assert torch.equal(again(x), small(x))

    from tensorslim.cli import main

    try:
        main(["compress", str(tmp_path / "tr"), "--method", "tr", "--rank", "2", "--layers", "classifier.fc3",
              "--no-evaluate", "--out", str(tmp_path / "tr2")])
    except SystemExit as err:
        pytest.fail(f"exit {err.code}: {capsys.readouterr().err}")
    meta = modeldir.read_meta(tmp_path / "tr2")
    assert [e["type"] for e in meta["compression"]["layers"]] == ["TRConv2d", "TRLinear", "TRLinear"]


def test_tensor_ring_in_the_design_space():
    from tensorslim.explore.space import enumerate_space

    model = lenet()
    spaces = enumerate_space(candidates(model, (1, 28, 28)), ["tr", "svd"])
    tr_layers = {s.name for s in spaces if any(p.method == "tr" for p in s.points)}
    assert tr_layers == {"features.conv2", "classifier.fc1", "classifier.fc2", "classifier.fc3"}
    default = enumerate_space(candidates(model, (1, 28, 28)))  # TR's slow fit keeps it out unless named
    assert not any(p.method == "tr" for s in default for p in s.points)


def test_tensor_ring_in_finetune(tmp_path):
    from tensorslim import data
    from tensorslim.finetune import finetune

    torch.manual_seed(0)
    model = modeldir.build({"builder": "lenet5", "kwargs": {}}, (1, 28, 28))
    tensorslim.save(model, tmp_path / "base", dataset="digits")
    plan = {"rules": [{"layers": "classifier.fc2", "method": "tr", "rank": 2, "options": {"n_iter_max": 3}}]}
    result = finetune(tmp_path / "base", "digits", plan=plan, epochs=0.2, out=tmp_path / "ft", log=None,
                      evaluate_test=False)
    loaded = tensorslim.load(result.out)
    assert type(loaded.get_submodule("classifier.fc2")).__name__ == "TRLinear"
    assert data.info("digits").num_classes == 10
