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


# --- deployment targets: ranks rounded to the runtime's channel multiple --------------------------------------


def _ctx(conv: nn.Module, shape=(64, 8, 8)):
    return candidates(nn.Sequential(conv), shape)[0]


def test_targets_registry_and_default():
    from tensorslim.methods import targets

    assert targets.names() == ("ort-x86", "ort-arm", "xnnpack-x86", "xnnpack-arm", "none")
    assert [targets.get(n).multiple for n in targets.names()] == [16, 16, 16, 8, 1]
    assert targets.get("ort-x86").pad_block == 16 and targets.get("none").pad_block == 0
    assert targets.get(None).name == targets.default_target()
    with pytest.raises(tensorslim.TensorSlimError, match="unknown target 'tpu'; targets: ort-x86"):
        targets.get("tpu")


def test_cp_rank_is_rounded_to_the_nearest_multiple_within_the_budget():
    """CP-3 of a 64→64 3×3 conv at 8×8 at macs_ratio 0.25. By hand: dense 36,864·64 MACs, CP-3 R·(64+9+64)·64,
    so the budget allows R <= 9216/137 = 67.3: rank 67 unrounded, 64 for a multiple of 16 or 8 (the nearest
    multiple under the budget), 67 with no target."""
    cp = methods.get("cp")
    ctx = _ctx(nn.Conv2d(64, 64, 3, padding=1))
    assert cp.rank_for(ctx, "macs_ratio", 0.25, {}) == 67
    assert cp.rank_for(ctx, "macs_ratio", 0.25, {}, multiple=16) == 64
    assert cp.rank_for(ctx, "macs_ratio", 0.25, {}, multiple=8) == 64
    # explicit ranks are the user's own: never rounded
    assert cp.rank_for(ctx, "rank", 67, {}, multiple=16) == 67


def test_tucker2_ranks_round_each_mode_within_the_budget_and_bounds():
    """Tucker-2 64→64 3×3 at macs_ratio 0.25: unrounded (25, 25) (9·25² + 128·25 = 8,825 <= 9,216 per pixel).
    Multiples of 16: (32, 32) costs 13,312 > 9,216; (16, 16) 4,352 fits; (16, 32) and (32, 16) cost
    9·512 + 64·48 = 7,680 and fit, and are nearer to (25, 25) in log distance: (16, 32) wins (ties: smaller first).
    """
    t2 = methods.get("tucker2")
    ctx = _ctx(nn.Conv2d(64, 64, 3, padding=1))
    assert t2.rank_for(ctx, "macs_ratio", 0.25, {}) == [25, 25]
    r_in, r_out = t2.rank_for(ctx, "macs_ratio", 0.25, {}, multiple=16)
    assert (r_in, r_out) == (16, 32)
    assert 9 * r_in * r_out + 64 * (r_in + r_out) <= 0.25 * 64 * 64 * 9
    assert t2.rank_for(ctx, "macs_ratio", 0.25, {}, multiple=8) == [24, 24]  # 9·576 + 128·24 = 8,256
    # a layer narrower than the multiple keeps its rank (never 0, never above the bound): 12 channels, bound 12
    narrow = _ctx(nn.Conv2d(12, 12, 3, padding=1), (12, 8, 8))
    unrounded = t2.rank_for(narrow, "macs_ratio", 0.5, {})
    assert t2.rank_for(narrow, "macs_ratio", 0.5, {}, multiple=16) == unrounded
    # Tucker-1 (3 input channels): only r_out is a rounded channel count
    rgb = _ctx(nn.Conv2d(3, 64, 3, padding=1), (3, 8, 8))
    r = t2.rank_for(rgb, "energy", 0.9, {}, multiple=16)
    assert r[1] % 16 == 0 and r[0] == t2.rank_for(rgb, "energy", 0.9, {})[0]


def test_rounding_never_makes_a_layer_larger_than_the_dense_one():
    """Energy ranks of a 32→32 conv, rounded to 16: a rank that rounding changed is never larger than the dense
    layer (the not_smaller rule); at energy 0.9 (unrounded around (27, 27)) rounding up to (32, 32) would be, so
    the nearest allowed candidate is taken instead."""
    t2 = methods.get("tucker2")
    torch.manual_seed(0)
    ctx = _ctx(nn.Conv2d(32, 32, 3, padding=1), (32, 8, 8))
    for energy in (0.5, 0.8, 0.9, 0.95):
        unrounded = t2.rank_for(ctx, "energy", energy, {})
        rank = t2.rank_for(ctx, "energy", energy, {}, multiple=16)
        if rank != unrounded:
            cost = t2.cost(ctx, rank, {})
            assert all(v % 16 == 0 for v in rank)
            assert cost["params"] <= ctx.dense_params and cost["macs"] <= ctx.dense_macs
            assert rank != [32, 32]


def test_target_is_recorded_and_reaches_every_rule(tmp_path):
    model = nn.Sequential(nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(64 * 4 * 4, 100))
    plan = {"rules": [{"layers": "0", "method": "cp", "macs_ratio": 0.25},
                      {"layers": "3", "method": "svd", "ratio": 0.3}]}
    new, report = compress_with_report(model, plan, (64, 4, 4), target="xnnpack-arm")
    assert [e["rank"] for e in report.layers] == [64, 24]  # svd: 0.3·1024·100/1124 = 27.3 -> 27 -> 24 (32 is over)
    assert new.tensorslim_compression["plans"][-1]["target"] == "xnnpack-arm"
    _, none = compress_with_report(model, plan, (64, 4, 4), target="none")
    assert [e["rank"] for e in none.layers] == [67, 27]
    # the plan's own target applies when the call names none; the default target otherwise
    _, own = compress_with_report(model, {**plan, "target": "none"}, (64, 4, 4))
    assert [e["rank"] for e in own.layers] == [67, 27]
    from tensorslim.methods import targets

    default, _ = compress_with_report(model, plan, (64, 4, 4))
    assert default.tensorslim_compression["plans"][-1]["target"] == targets.default_target()
    net = modeldir.build({"builder": "convnet", "kwargs": {}}, (1, 28, 28)).eval()  # saved and loaded
    saved = compress_with_report(net, {"rules": [{"layers": "features.conv5", "method": "cp", "macs_ratio": 0.25}]},
                                 (1, 28, 28), target="ort-x86")[0]
    modeldir.save(saved, tmp_path / "m", input_shape=(1, 28, 28))
    loaded = modeldir.load(tmp_path / "m").tensorslim_compression
    assert loaded["plans"][-1]["target"] == "ort-x86" and loaded["layers"][0]["rank"] % 16 == 0


class _LogSoftmaxHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(64, 32)
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        return torch.log_softmax(self.head(torch.relu(self.body(x.flatten(1)))), dim=1)


def test_the_layer_writing_the_logits_is_marked_and_its_svd_grid_keeps_half_the_classes():
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    hidden, head = candidates(model, (1, 8, 8))
    assert (hidden.is_output, head.is_output) == (False, True)
    svd = methods.get("svd")
    # fractions 1/16 .. 1 of min(32, 10) = 10: 1, 1, 2, 4, 5, 8, 10; the head floors them at ceil(10 / 2) = 5
    assert [r for r, _ in svd.grid(head)] == [5, 8, 10]
    assert [r for r, _ in svd.grid(hidden)] == [2, 4, 8, 12, 16, 24, 32]  # of min(64, 32) = 32
    # an output computed from the layer's (log-softmax) is not the layer's own tensor: no floor, said as is
    assert not any(c.is_output for c in candidates(_LogSoftmaxHead(), (1, 8, 8)))
