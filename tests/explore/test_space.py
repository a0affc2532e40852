"""Design points and pruning, checked against hand counts, brute force and tensorslim.cost.profile."""

import itertools
import math

import pytest
import torch
from torch import nn

from tensorslim import modeldir, surgery
from tensorslim.cost import profile
from tensorslim.explore import layer_errors, pruning, space
from tensorslim.explore.evaluate import _Evaluator
from tensorslim.layers import TTLinear


def _ctx(module: nn.Module, input_shape, name="layer", output=False):
    """The layer's context in a model of it alone; a hidden layer (a ReLU after it) unless ``output``."""
    model = nn.Sequential()
    model.add_module(name, module)
    if not output:
        model.add_module("after", nn.ReLU())
    return surgery.candidates(model, input_shape)[0]


def _factorizations(n, d):
    """Independent enumeration: ordered d-tuples of integers >= 2 multiplying to n."""
    if d == 1:
        return [(n,)] if n >= 2 else []
    return [(f, *rest) for f in range(2, n + 1) if n % f == 0 for rest in _factorizations(n // f, d - 1)]


def test_svd_points_hand_counts():
    torch.manual_seed(0)
    ctx = _ctx(nn.Linear(12, 8), (12,))  # a hidden layer
    pts = space.layer_points(ctx, ["svd"])
    # round(f*8) for f in 1/16..1 -> 0(->1),1,2,3,4,6,8: six distinct ranks
    assert sorted(p.rank for p in pts) == [1, 2, 3, 4, 6, 8]
    # the same layer writing the model's output: ranks below half its 8 outputs are left out
    assert sorted(p.rank for p in space.layer_points(_ctx(nn.Linear(12, 8), (12,), output=True), ["svd"])) == [4, 6, 8]
    for p in pts:
        assert p.params == p.rank * (12 + 8) + 8
        assert p.macs == p.rank * (12 + 8)
        assert p.memory == 4 * p.params + 4 * 8


def test_tt_points_cover_every_shape_up_to_max_factors():
    ctx = _ctx(nn.Linear(12, 8), (12,))
    pts = space.layer_points(ctx, ["tt"], max_factors=3, tt_ranks=(1, 2, 4))
    shapes = {(tuple(p.options["in_shape"]), tuple(p.options["out_shape"])) for p in pts}
    expected = {(i, o) for d in (2, 3) for i in _factorizations(12, d) for o in _factorizations(8, d)}
    assert shapes == expected
    assert len(expected) == 4 * 2 + 3 * 1  # 12: 4 two-factor, 3 three-factor shapes; 8: 2 and 1
    for p in pts[:10]:  # analytic cost = the built layer's
        layer = TTLinear(p.options["in_shape"], p.options["out_shape"], p.rank)
        assert (p.params, p.macs) == (layer.params(), layer.macs((12,)))


def test_conv_points_methods_and_costs():
    ctx = _ctx(nn.Conv2d(4, 6, 3, padding=1), (4, 6, 6))
    pts = space.layer_points(ctx, ["cp", "tucker2", "tt"])
    labels = {p.label for p in pts}
    assert labels == {"cp3-power", "cp3-als", "cp4-power", "cp4-als", "tucker2", "tt"}
    cp3 = [p for p in pts if p.label == "cp3-power"]
    for p in cp3:  # hand formula R(S + k² + T) + T bias
        assert p.params == p.rank * (4 + 9 + 6) + 6
        assert p.memory == 4 * p.params + 4 * 6 * 6 * 6


def test_tt_linear_error_matches_the_layer():
    torch.manual_seed(1)
    lin = nn.Linear(24, 12)
    for in_shape, out_shape, r in [((4, 6), (3, 4), 2), ((2, 3, 4), (2, 2, 3), 3), ((6, 4), (4, 3), 12)]:
        ref = TTLinear.from_linear(lin, in_shape, out_shape, r).rel_error
        assert layer_errors.tt_linear_error(lin.weight, in_shape, out_shape, r) == pytest.approx(ref, abs=1e-7)


def _brute_force_prune(points, dense, max_error):
    a = [p for p in points if p.macs < dense["macs"] and p.memory < dense["memory"]]
    b = []
    for p in a:
        vp = (p.params, p.macs, p.memory, p.error)
        dominated = any(all(x <= y for x, y in zip((q.params, q.macs, q.memory, q.error), vp)) and
                        (q.params, q.macs, q.memory, q.error) != vp for q in a)
        if not dominated and vp not in [(q.params, q.macs, q.memory, q.error) for q in b]:
            b.append(p)
    return a, b, [p for p in b if p.error <= max_error]


def test_prune_matches_brute_force(tiny_dir):
    model = modeldir.load(tiny_dir)
    spaces = space.enumerate_space(surgery.candidates(model, (1, 8, 8)), ["svd", "cp", "tucker2", "tt", "tcl"])
    report = pruning.prune(spaces, max_error=0.6)
    for s in spaces:
        a, b, c = _brute_force_prune(s.points, s.dense_cost(), 0.6)
        assert [p.key for p in s.survivors] == [p.key for p in c]
        assert s.removed == {"not-cheaper": len(s.points) - len(a), "dominated": len(a) - len(b),
                             "error-bound": len(b) - len(c)}
        for p in s.survivors:  # the error is the real decomposition's
            assert p.error == pytest.approx(space.convert(s.ctx, p).rel_error, abs=1e-9)
    assert report["space_size"]["all"] == str(math.prod(1 + len(s.points) for s in spaces))
    assert report["space_size"]["error-bound"] == str(math.prod(1 + len(s.survivors) for s in spaces))
    assert report["points"]["all"] == sum(len(s.points) for s in spaces)


def test_whole_model_costs_equal_profile_of_the_compressed_model(tiny_dir):
    model = modeldir.load(tiny_dir)
    spaces = space.enumerate_space(surgery.candidates(model, (1, 8, 8)), ["svd", "tucker2", "tt", "tcl"])
    for s in spaces:  # no decomposition needed for costs: take a spread of points per layer
        s.survivors = s.points[:: max(1, len(s.points) // 4)]
    ev = _Evaluator(model, spaces, (1, 8, 8))
    live = [s for s in spaces if s.survivors]
    assert len(live) == 4
    combos = list(itertools.product(*[["dense", *[p.key for p in s.survivors]] for s in live]))
    for picks in combos[:: max(1, len(combos) // 40)]:
        choice = dict(zip([s.name for s in live], picks))
        built = ev.build(choice)
        prof = profile(built, (1, 8, 8))
        est = ev.estimate(choice)
        assert ev.costs(built) == {"params": prof.total.params, "macs": prof.total.macs,
                                   "memory": prof.total.weight_bytes + prof.total.output_bytes}
        assert (est["params"], est["macs"]) == (prof.total.params, prof.total.macs)
        # memory estimate is exact unless a TT conv's non-contiguous output makes flatten copy
        tt_conv = any(k.startswith("tt:") and n.startswith("conv") for n, k in choice.items())
        assert est["memory"] == ev.costs(built)["memory"] or (tt_conv and est["memory"] < ev.costs(built)["memory"])


def test_empty_space_names_the_stage(tiny_dir):
    model = modeldir.load(tiny_dir)
    spaces = space.enumerate_space(surgery.candidates(model, (1, 8, 8)), ["svd"])
    report = pruning.prune(spaces, max_error=1e-9)
    with pytest.raises(space.ExploreError, match=r"stage \(c\).*max_error=1e-09"):
        pruning.check_not_empty(spaces, report)
    with pytest.raises(space.ExploreError, match="unknown method 'qr'"):
        space.enumerate_space(surgery.candidates(model, (1, 8, 8)), ["qr"])


def test_tt_conv_costs_equal_the_built_layer():
    from tensorslim.layers import TTConv2d

    conv = nn.Conv2d(4, 6, 3, padding=1, stride=2)
    ctx = _ctx(conv, (4, 7, 7))
    pts = space.layer_points(ctx, ["tt"])
    assert pts
    for p in pts:
        layer = TTConv2d(p.options["in_shape"], p.options["out_shape"], 3, p.rank, stride=2, padding=1)
        assert (p.params, p.macs) == (layer.params(), layer.macs((4, 7, 7)))


def test_a_targets_multiple_rounds_every_channel_rank_within_the_dense_cost():
    conv, fc = _ctx(nn.Conv2d(32, 64, 3, padding=1), (32, 8, 8)), _ctx(nn.Linear(4096, 40), (4096,))
    for ctx in (conv, fc):
        plain = space.layer_points(ctx, ["svd", "cp", "tucker2"])
        rounded = space.layer_points(ctx, ["svd", "cp", "tucker2"], multiple=8)
        assert rounded and len({p.key for p in rounded}) == len(rounded)
        entries = lambda pts: [r for p in pts for r in (p.rank if isinstance(p.rank, list) else [p.rank])]  # noqa: E731
        assert any(r % 8 for r in entries(plain))  # the grids' own ranks are not all multiples of 8
        assert all(r % 8 == 0 for r in entries(rounded))  # every layer here is wider than 8
        for p in rounded:  # a rank that rounding moved never makes a layer larger than the dense one
            if p.key not in {q.key for q in plain}:
                assert p.params <= ctx.dense_params and p.macs <= ctx.dense_macs
    for p in space.layer_points(fc, ["svd"], multiple=8):  # hand counts hold for the rounded ranks
        assert p.params == p.rank * (4096 + 40) + 40 and p.macs == p.rank * (4096 + 40)
    assert sorted(p.rank for p in space.layer_points(fc, ["svd"], multiple=8)) == [8, 16, 24, 32, 40]
    narrow = _ctx(nn.Linear(12, 6), (12,))  # no multiple of 8 fits under the dense layer: ranks stay
    assert ([p.key for p in space.layer_points(narrow, ["svd"], multiple=8)]
            == [p.key for p in space.layer_points(narrow, ["svd"])])
