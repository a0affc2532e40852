"""TTLinear / TTConv2d against dense layers built from independently reconstructed weights; TT shapes."""

from __future__ import annotations

import itertools
import math
import random

import pytest
import torch
import torch.nn.functional as F
from layers_testutil import check_accounting, check_roundtrip, counted_macs, rel_err
from torch import nn

from tensorslim.errors import DecompositionError
from tensorslim.layers import TTConv2d, TTDesignPoint, TTLinear, enumerate_tt_shapes, tt_design_points
from tensorslim.layers._ttplan import TTContraction


def dense_from_cores(cores) -> torch.Tensor:
    """``W[(i_1…i_d), (j_1…j_d)]`` (row-major multi-indices) from cores ``r × m × n × r'``, by einsum."""
    d = len(cores)
    letters = "abcdefghijklmnopqrstuvwxyz"
    rs, ms, ns = letters[:d + 1], letters[d + 1:2 * d + 1], letters[2 * d + 1:3 * d + 1]
    spec = ",".join(f"{rs[k]}{ms[k]}{ns[k]}{rs[k + 1]}" for k in range(d)) + f"->{rs[0]}{ms}{ns}{rs[d]}"
    full = torch.einsum(spec, *cores)
    return full.reshape(math.prod(c.shape[1] for c in cores), math.prod(c.shape[2] for c in cores))


def _random_shapes(rng: random.Random, d: int) -> tuple[list[int], list[int]]:
    return [rng.randint(1, 4) for _ in range(d)], [rng.randint(1, 4) for _ in range(d)]


# ----------------------------------------------------------------------------------------------- TTLinear


def test_t3f_parameter_count():
    layer = TTLinear((7, 4, 7, 4), (5, 5, 5, 5), 4)
    assert sum(c.numel() for c in layer.cores) == 1100
    assert layer.params() == 1725 == sum(p.numel() for p in layer.parameters())
    assert layer.ranks == (1, 4, 4, 4, 1)
    assert TTDesignPoint((7, 4, 7, 4), (5, 5, 5, 5)).params(4) == 1725


def test_t3f_from_linear_784_to_625():
    torch.manual_seed(0)
    lin = nn.Linear(784, 625)
    layer = TTLinear.from_linear(lin, (7, 4, 7, 4), (5, 5, 5, 5), 4, name="fc1")
    assert layer.params() == 1725
    assert 0 < layer.rel_error < 1
    x = torch.randn(3, 784)
    expected = x @ dense_from_cores(list(layer.cores)).t() + lin.bias
    with torch.no_grad():
        assert rel_err(layer(x), expected) < 1e-5
    check_accounting(layer, x)


@pytest.mark.parametrize("seed", range(6))
def test_full_tt_ranks_reproduce_linear(seed):
    rng = random.Random(seed)
    torch.manual_seed(seed)
    in_shape, out_shape = _random_shapes(rng, rng.randint(2, 3))
    lin = nn.Linear(math.prod(in_shape), math.prod(out_shape), bias=seed % 2 == 0)
    layer = TTLinear.from_linear(lin, in_shape, out_shape, 10_000)
    x = torch.randn(4, lin.in_features)
    with torch.no_grad():
        assert rel_err(layer(x), lin(x)) < 1e-4
    assert layer.rel_error < 1e-5


@pytest.mark.parametrize("seed", range(6))
def test_given_cores_equal_dense_matrix_and_macs(seed):
    rng = random.Random(10 + seed)
    torch.manual_seed(seed)
    d = rng.randint(1, 4)
    in_shape, out_shape = _random_shapes(rng, d)
    probe = TTLinear(in_shape, out_shape, rng.randint(1, 5))
    cores = [torch.randn(c.shape, dtype=torch.float64) for c in probe.cores]
    bias = torch.randn(probe.out_features, dtype=torch.float64)
    layer = TTLinear.from_cores(cores, bias)
    x = torch.randn(3, 2, layer.in_features, dtype=torch.float64)  # leading axes are kept
    expected = x @ dense_from_cores(cores).t() + bias
    with torch.no_grad():
        assert rel_err(layer(x), expected) < 1e-12
    check_accounting(layer, x)
    check_roundtrip(layer, x)


@pytest.mark.parametrize("seed", range(4))
def test_contraction_order_is_optimal_and_counted(seed):
    rng = random.Random(20 + seed)
    d = 4
    in_shape, out_shape = [rng.randint(2, 6) for _ in range(d)], [rng.randint(2, 6) for _ in range(d)]
    ranks = [1] + [rng.randint(1, 6) for _ in range(d - 1)] + [1]
    plan = TTContraction(in_shape, out_shape, ranks)
    cores = [torch.randn(ranks[k], out_shape[k], in_shape[k], ranks[k + 1]) for k in range(d)]
    x = torch.randn(2, *in_shape)
    expected = x.reshape(2, -1) @ dense_from_cores(cores).t()
    for order in itertools.permutations(range(d)):
        other = TTContraction(in_shape, out_shape, ranks, order=order)
        assert other.macs_per_row >= plan.macs_per_row
        if order in (tuple(range(d)), plan.order):
            assert rel_err(other.apply(x, cores), expected) < 1e-5
    layer = TTLinear.from_cores(cores)
    assert layer.plan.order == plan.order
    assert layer.macs((layer.in_features,)) == plan.macs_per_row == counted_macs(layer, x.reshape(2, -1))


def test_int_rank_is_capped_per_bond():
    layer = TTLinear((2, 3, 4), (2, 2, 2), 100)
    assert layer.ranks == (1, 4, 8, 1)  # min(left, right) products of the m_k n_k = (4, 6, 8)
    assert TTLinear((2, 3, 4), (2, 2, 2), [3, 5]).ranks == (1, 3, 5, 1)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda lin: TTLinear.from_linear(lin, (4, 5), (2, 3), 2, name="fc2"), "multiplies to 20"),
        (lambda lin: TTLinear.from_linear(lin, (4, 6), (2, 5), 2, name="fc2"), "out_shape"),
        (lambda lin: TTLinear.from_linear(lin, (4, 6), (2, 3, 1), 2, name="fc2"), "must have 2 entries"),
        (lambda lin: TTLinear.from_linear(lin, (4, 6), (2, 3), 0, name="fc2"), "at least 1"),
        (lambda lin: TTLinear.from_linear(lin, (4, 6), (2, 3), [9], name="fc2"), "above the full rank 8"),
        (lambda lin: TTLinear.from_linear(lin, (4, 6), (2, 3), [2, 2, 1], name="fc2"), "r_0 must be 1"),
        (lambda lin: TTLinear.from_linear(lin, (4, 0, 6), (2, 1, 3), 2, name="fc2"), "positive"),
        (lambda lin: TTLinear.from_linear(nn.Conv2d(1, 1, 1), (4, 6), (2, 3), 2, name="fc2"), "Linear"),
        (lambda lin: TTLinear((4, 6), (2, 3), "two", name="fc2"), "int or a sequence"),
    ],
)
def test_linear_bad_inputs(call, message):
    with pytest.raises(DecompositionError, match=f"'fc2'.*{message}"):
        call(nn.Linear(24, 6))


def test_linear_nan_refused():
    lin = nn.Linear(24, 6)
    with torch.no_grad():
        lin.weight[2, 3] = float("nan")
    with pytest.raises(DecompositionError, match="'fc'.*NaN"):
        TTLinear.from_linear(lin, (4, 6), (2, 3), 2, name="fc")


# ----------------------------------------------------------------------------------------------- TTConv2d


def _tt_conv_kernel(spatial: torch.Tensor, cores) -> torch.Tensor:
    """Dense kernel T × C × kh × kw: ``W[t, c, i, j] = Σ_r F[r, i, j] TT[t, c, r]``, TT with open left bond r."""
    d = len(cores)
    letters = "abcdefghijklmnopqrstuvwxy"
    rs, ms, ns = letters[:d + 1], letters[d + 1:2 * d + 1], letters[2 * d + 1:3 * d + 1]
    spec = ",".join(f"{rs[k]}{ms[k]}{ns[k]}{rs[k + 1]}" for k in range(d)) + f"->{ms}{ns}{rs[0]}"
    tt = torch.einsum(spec, *cores)  # (t_1..t_d, c_1..c_d, r_0), r_d = 1 summed away
    t = math.prod(c.shape[1] for c in cores)
    c = math.prod(c.shape[2] for c in cores)
    return torch.einsum("tcr,rij->tcij", tt.reshape(t, c, -1), spatial)


def _random_conv_geometry(rng: random.Random) -> dict:
    return {"kernel_size": rng.choice([3, (3, 1), (2, 3), (1, 1), (3, 5)]), "stride": rng.choice([1, 2, (1, 2)]),
            "padding": rng.choice([0, 1, (1, 2)]), "dilation": rng.choice([1, 2, (2, 1)])}


@pytest.mark.parametrize("seed", range(6))
def test_conv_given_cores_equal_dense_conv(seed):
    rng = random.Random(40 + seed)
    torch.manual_seed(seed)
    d = rng.randint(1, 3)
    in_shape, out_shape = _random_shapes(rng, d)
    geo = _random_conv_geometry(rng)
    probe = TTConv2d(in_shape, out_shape, ranks=rng.randint(1, 4), **geo)
    spatial = torch.randn(probe.spatial.weight.shape[0], *probe.geometry.kernel_size, dtype=torch.float64)
    cores = [torch.randn(c.shape, dtype=torch.float64) for c in probe.cores]
    bias = torch.randn(probe.out_channels, dtype=torch.float64) if seed % 2 else None
    layer = TTConv2d.from_cores(spatial, cores, bias, stride=geo["stride"], padding=geo["padding"],
                                dilation=geo["dilation"])
    x = torch.randn(2, layer.in_channels, 10, 9, dtype=torch.float64)
    expected = F.conv2d(x, _tt_conv_kernel(spatial, cores), bias, geo["stride"], geo["padding"], geo["dilation"])
    with torch.no_grad():
        assert rel_err(layer(x), expected) < 1e-12
    check_accounting(layer, x)
    check_roundtrip(layer, x)


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("padding", ["same", "valid"])
def test_conv_string_padding_even_kernel(padding):
    torch.manual_seed(3)
    conv = nn.Conv2d(6, 4, (2, 4), padding=padding, dilation=(1, 2)).double()
    layer = TTConv2d.from_conv(conv, (2, 3), (2, 2), 10_000)
    x = torch.randn(2, 6, 9, 10, dtype=torch.float64)
    with torch.no_grad():
        assert rel_err(layer(x), conv(x)) < 1e-10
    check_accounting(layer, x)
    check_roundtrip(layer, x)


@pytest.mark.parametrize("seed", range(5))
def test_conv_full_tt_ranks_reproduce_conv(seed):
    rng = random.Random(60 + seed)
    torch.manual_seed(seed)
    in_shape, out_shape = _random_shapes(rng, rng.randint(1, 3))
    geo = _random_conv_geometry(rng)
    conv = nn.Conv2d(math.prod(in_shape), math.prod(out_shape), bias=seed % 2 == 0, **geo)
    layer = TTConv2d.from_conv(conv, in_shape, out_shape, 10_000, name="conv3")
    x = torch.randn(2, conv.in_channels, 11, 10)
    with torch.no_grad():
        assert rel_err(layer(x), conv(x)) < 1e-4
    assert layer.rel_error < 1e-5


def test_conv_truncated_is_its_reconstructed_kernel():
    torch.manual_seed(2)
    conv = nn.Conv2d(12, 16, 3, padding=1, stride=2)
    layer = TTConv2d.from_conv(conv, (3, 4), (4, 4), 3)
    assert layer.ranks == (3, 3, 1)
    spatial = layer.spatial.weight[:, 0].detach()
    kernel = _tt_conv_kernel(spatial, [c.detach() for c in layer.cores])
    assert rel_err(kernel, conv.weight.detach()) == pytest.approx(layer.rel_error, rel=1e-3)
    x = torch.randn(2, 12, 9, 9)
    with torch.no_grad():
        assert rel_err(layer(x), F.conv2d(x, kernel, conv.bias, stride=2, padding=1)) < 1e-5
    assert layer.params() == 3 * 9 + 3 * 4 * 3 * 3 + 3 * 4 * 4 * 1 + 16


@pytest.mark.parametrize(
    "conv, in_shape, out_shape, rank, message",
    [
        (nn.Conv2d(12, 16, 3, groups=4), (3, 4), (4, 4), 2, "grouped"),
        (nn.Conv2d(12, 16, 3), (3, 5), (4, 4), 2, "multiplies to 15"),
        (nn.Conv2d(12, 16, 3), (3, 4), (4, 2), 2, "out_channels=16"),
        (nn.Conv2d(12, 16, 3), (3, 4), (4, 4), 0, "at least 1"),
        (nn.Conv2d(12, 16, 3), (3, 4), (4, 4), [10, 2], "r_0=10 is above the full rank 9"),
        (nn.Conv2d(12, 16, 3), (3, 4), (4, 4), [2, 2, 2], "r_2 must be 1"),
        (nn.Conv2d(12, 16, 3, padding_mode="reflect"), (3, 4), (4, 4), 2, "padding_mode"),
    ],
)
def test_conv_bad_inputs(conv, in_shape, out_shape, rank, message):
    with pytest.raises(DecompositionError, match=f"'features.0'.*{message}"):
        TTConv2d.from_conv(conv, in_shape, out_shape, rank, name="features.0")


def test_conv_nan_refused():
    conv = nn.Conv2d(4, 4, 3)
    with torch.no_grad():
        conv.bias[0] = float("inf")
    with pytest.raises(DecompositionError, match="'c'.*NaN or infinite"):
        TTConv2d.from_conv(conv, (2, 2), (2, 2), 2, name="c")


# --------------------------------------------------------------------------------------------- TT shapes


def _brute_force_shapes(n: int, d: int, min_factor: int) -> list[tuple[int, ...]]:
    divisors = [f for f in range(min_factor, n + 1) if n % f == 0]
    return sorted(s for s in itertools.product(divisors, repeat=d) if math.prod(s) == n)


@pytest.mark.parametrize("n", [1, 7, 12, 64, 120, 625, 784])
def test_enumerate_tt_shapes_matches_brute_force(n):
    shapes = enumerate_tt_shapes(n, max_factors=4)
    expected = [s for d in range(2, 5) for s in _brute_force_shapes(n, d, 2)]
    assert shapes == expected
    assert all(math.prod(s) == n and min(s) >= 2 for s in shapes)


def test_enumerate_tt_shapes_examples_and_options():
    assert enumerate_tt_shapes(12, 2) == [(2, 6), (3, 4), (4, 3), (6, 2)]
    assert enumerate_tt_shapes(12, 3, min_factor=3) == [(3, 4), (4, 3)]
    assert enumerate_tt_shapes(6, 2, min_factors=1) == [(6,), (2, 3), (3, 2)]
    assert enumerate_tt_shapes(13) == []
    assert (7, 4, 7, 4) in enumerate_tt_shapes(784)
    with pytest.raises(ValueError):
        enumerate_tt_shapes(0)


def test_tt_design_points():
    points = tt_design_points(784, 625, max_factors=4)
    assert TTDesignPoint((7, 4, 7, 4), (5, 5, 5, 5)) in points
    assert all(len(p.in_shape) == len(p.out_shape) for p in points)
    n_in = {d: len([s for s in enumerate_tt_shapes(784, 4) if len(s) == d]) for d in (2, 3, 4)}
    n_out = {d: len([s for s in enumerate_tt_shapes(625, 4) if len(s) == d]) for d in (2, 3, 4)}
    assert len(points) == sum(n_in[d] * n_out[d] for d in (2, 3, 4))
    assert len(set(points)) == len(points)
    # The analytic costs of a design point are those of the layer it describes.
    rng = random.Random(0)
    for point in rng.sample(points, 5):
        layer = TTLinear(point.in_shape, point.out_shape, 3)
        assert point.params(3) == layer.params()
        assert point.macs(3) == layer.macs((784,))
        assert list(point.ranks(3)) == list(layer.ranks)
