"""SVDLinear against the dense nn.Linear it replaces."""

from __future__ import annotations

import random

import pytest
import torch
from layers_testutil import check_accounting, check_roundtrip, rel_err
from torch import nn

from tensorslim.errors import DecompositionError
from tensorslim.layers import SVDLinear


def _linear(seed: int) -> tuple[nn.Linear, torch.Tensor]:
    rng = random.Random(seed)
    torch.manual_seed(seed)
    lin = nn.Linear(rng.randint(3, 24), rng.randint(3, 24), bias=rng.random() < 0.7)
    return lin, torch.randn(4, lin.in_features)


@pytest.mark.parametrize("seed", range(5))
def test_full_rank_reproduces_linear(seed):
    lin, x = _linear(seed)
    layer = SVDLinear.from_linear(lin, min(lin.in_features, lin.out_features))
    with torch.no_grad():
        assert rel_err(layer(x), lin(x)) < 1e-4
    assert layer.rel_error < 1e-5
    assert layer.has_bias == (lin.bias is not None)


@pytest.mark.parametrize("seed", range(3))
def test_truncated_is_eckart_young(seed):
    lin, x = _linear(seed)
    rank = max(1, min(lin.in_features, lin.out_features) // 2)
    layer = SVDLinear.from_linear(lin, rank)
    u, s, vh = torch.linalg.svd(lin.weight.detach().double(), full_matrices=False)
    best = (u[:, :rank] * s[:rank]) @ vh[:rank]
    effective = (layer.up.weight @ layer.down.weight).detach().double()
    assert rel_err(effective, best) < 1e-5
    expected_err = float(s[rank:].norm() / s.norm())
    assert layer.rel_error == pytest.approx(expected_err, rel=1e-5, abs=1e-7)
    # Balanced factors: both carry sqrt(S).
    assert torch.allclose(layer.up.weight.norm(dim=0), layer.down.weight.norm(dim=1), rtol=1e-4)
    with torch.no_grad():
        ref = x @ best.float().t() + (0 if lin.bias is None else lin.bias)
        assert rel_err(layer(x), ref) < 1e-4


@pytest.mark.parametrize("seed", range(3))
def test_accounting_and_config(seed):
    lin, x = _linear(seed)
    layer = SVDLinear(lin.in_features, lin.out_features, 2, bias=seed % 2 == 0)
    check_accounting(layer, x)
    check_roundtrip(layer, x)
    # Leading axes (tokens): MACs scale with the number of feature vectors.
    x3 = torch.randn(2, 5, lin.in_features)
    check_accounting(layer, x3)
    assert layer.macs((5, lin.in_features)) == 5 * layer.macs((lin.in_features,))


def test_params_formula():
    layer = SVDLinear(100, 40, 8)
    assert layer.params() == 8 * (100 + 40) + 40


@pytest.mark.parametrize(
    "make",
    [
        lambda lin: SVDLinear.from_linear(lin, 0, name="fc9"),
        lambda lin: SVDLinear.from_linear(lin, 9, name="fc9"),
        lambda lin: SVDLinear.from_linear(nn.Conv2d(3, 3, 3), 2, name="fc9"),
        lambda lin: SVDLinear(8, 6, 7, name="fc9"),
    ],
)
def test_bad_inputs(make):
    lin = nn.Linear(8, 6)
    with pytest.raises(DecompositionError, match="fc9"):
        make(lin)


def test_nan_weights_refused():
    lin = nn.Linear(8, 6)
    with torch.no_grad():
        lin.weight[0, 0] = float("nan")
    with pytest.raises(DecompositionError, match="'head'.*NaN"):
        SVDLinear.from_linear(lin, 2, name="head")
    lin.weight.data.fill_(1.0)
    lin.bias.data[0] = float("inf")
    with pytest.raises(DecompositionError, match="head"):
        SVDLinear.from_linear(lin, 2, name="head")
