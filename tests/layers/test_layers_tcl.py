"""TCL, TRL and TCLHead against einsum references and the dense Linear they replace."""

from __future__ import annotations

import random

import pytest
import torch
from layers_testutil import check_accounting, check_roundtrip, rel_err
from torch import nn

from tensorslim.errors import DecompositionError
from tensorslim.layers import TCL, TRL, TCLHead


def _shape_and_rank(seed: int) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    rng = random.Random(seed)
    shape = (rng.randint(2, 8), rng.randint(2, 6), rng.randint(2, 6))
    return shape, tuple(rng.randint(1, d) for d in shape)


def _trl_weight(layer: TRL) -> torch.Tensor:
    """The C × H × W × O regression weight, reconstructed by einsum from the layer's parameters (tests only)."""
    u_c, u_h, u_w = layer.factors
    if layer.kind == "tucker":
        return torch.einsum("abcd,ia,jb,kc,od->ijko", layer.core, u_c, u_h, u_w, layer.out_factor)
    return torch.einsum("ir,jr,kr,or->ijko", u_c, u_h, u_w, layer.out_factor)


# -------------------------------------------------------------------------------------------------- TCL


@pytest.mark.parametrize("seed", range(5))
def test_tcl_equals_mode_products(seed):
    torch.manual_seed(seed)
    shape, rank = _shape_and_rank(seed)
    layer = TCL(shape, rank)
    x = torch.randn(3, *shape)
    v_c, v_h, v_w = layer.factors
    expected = torch.einsum("bchw,ic,jh,kw->bijk", x, v_c, v_h, v_w)
    with torch.no_grad():
        assert rel_err(layer(x), expected) < 1e-5
        assert rel_err(layer(x.reshape(3, -1)), expected) < 1e-5  # flattened input is accepted
    check_accounting(layer, x)
    check_roundtrip(layer, x)
    assert layer.params() == sum(r * d for r, d in zip(rank, shape))


@pytest.mark.parametrize("bn", ["before", "after"])
def test_tcl_batchnorm(bn):
    torch.manual_seed(1)
    shape, rank = (6, 5, 4), (3, 2, 4)
    layer = TCL(shape, rank, bn=bn)
    x = torch.randn(4, *shape)
    layer.train()
    layer(x)  # update the running statistics
    layer.eval()
    v_c, v_h, v_w = layer.factors
    with torch.no_grad():
        if bn == "before":
            expected = torch.einsum("bchw,ic,jh,kw->bijk", layer.bn(x), v_c, v_h, v_w)
        else:
            expected = layer.bn(torch.einsum("bchw,ic,jh,kw->bijk", x, v_c, v_h, v_w))
        assert rel_err(layer(x), expected) < 1e-5
    assert layer.bn.num_features == (shape[0] if bn == "before" else rank[0])
    check_accounting(layer, x)
    check_roundtrip(layer, x)


def test_tcl_picks_the_cheapest_mode_order():
    layer = TCL((64, 8, 8), (4, 8, 8))
    assert layer.order[0] == 0  # shrinking the channels first is by far the cheapest
    assert layer.macs((64, 8, 8)) == 64 * 8 * 8 * 4 + 4 * 8 * 8 * 8 * 2


# -------------------------------------------------------------------------------------------------- TRL


@pytest.mark.parametrize("kind", ["tucker", "cp"])
@pytest.mark.parametrize("seed", range(4))
def test_trl_equals_regression_with_reconstructed_weight(kind, seed):
    torch.manual_seed(seed)
    shape, rank3 = _shape_and_rank(10 + seed)
    out = random.Random(seed).randint(2, 7)
    rank = (*rank3, min(out, 3)) if kind == "tucker" else random.Random(seed).randint(1, 5)
    layer = TRL(shape, out, rank, kind=kind, bias=seed % 2 == 0)
    x = torch.randn(3, *shape)
    expected = torch.einsum("bchw,chwo->bo", x, _trl_weight(layer))
    if layer.bias is not None:
        expected = expected + layer.bias
    with torch.no_grad():
        assert rel_err(layer(x), expected) < 1e-5
        assert rel_err(layer(x.reshape(3, -1)), expected) < 1e-5
    check_accounting(layer, x)
    check_roundtrip(layer, x)


@pytest.mark.parametrize("seed", range(3))
def test_trl_from_linear_full_tucker_rank_reproduces_linear(seed):
    torch.manual_seed(seed)
    shape, _ = _shape_and_rank(20 + seed)
    lin = nn.Linear(shape[0] * shape[1] * shape[2], 5)
    layer = TRL.from_linear(lin, shape, (*shape, 5), kind="tucker", name="fc")
    x = torch.randn(4, *shape)
    with torch.no_grad():
        assert rel_err(layer(x), lin(x.flatten(1))) < 1e-4
    assert layer.rel_error < 1e-5


def test_trl_from_linear_planted_cp():
    torch.manual_seed(4)
    shape, out, rank = (4, 3, 5), 6, 2
    factors = [torch.randn(d, rank) for d in (out, *shape)]
    weight = torch.einsum("or,cr,hr,wr->ochw", *factors).reshape(out, -1)
    lin = nn.Linear(60, out)
    with torch.no_grad():
        lin.weight.copy_(weight)
    layer = TRL.from_linear(lin, shape, rank, kind="cp", algorithm="als")
    x = torch.randn(3, *shape)
    with torch.no_grad():
        assert rel_err(layer(x), lin(x.flatten(1))) < 1e-4
    assert layer.rel_error < 1e-4


def test_trl_params():
    assert TRL((8, 4, 4), 10, (2, 3, 3, 5)).params() == 2 * 3 * 3 * 5 + 8 * 2 + 4 * 3 + 4 * 3 + 10 * 5 + 10
    assert TRL((8, 4, 4), 10, 6, kind="cp", bias=False).params() == 6 * (8 + 4 + 4 + 10)


# ---------------------------------------------------------------------------------------------- TCLHead


@pytest.mark.parametrize("seed", range(4))
def test_head_full_rank_reproduces_linear(seed):
    torch.manual_seed(seed)
    shape, _ = _shape_and_rank(30 + seed)
    lin = nn.Linear(shape[0] * shape[1] * shape[2], random.Random(seed).randint(2, 9), bias=seed != 1)
    head = TCLHead.from_linear(lin, shape, shape)
    x = torch.randn(3, *shape)
    with torch.no_grad():
        assert rel_err(head(x.flatten(1)), lin(x.flatten(1))) < 1e-4
        assert rel_err(head(x), lin(x.flatten(1))) < 1e-4
    assert head.rel_error < 1e-5


@pytest.mark.parametrize("seed", range(3))
def test_head_truncated_is_its_reconstructed_linear(seed):
    torch.manual_seed(seed)
    shape, rank = _shape_and_rank(40 + seed)
    lin = nn.Linear(shape[0] * shape[1] * shape[2], 7)
    head = TCLHead.from_linear(lin, shape, rank, name="classifier.0")
    v_c, v_h, v_w = head.tcl.factors
    core = head.linear.weight.reshape(7, *rank)
    weight = torch.einsum("oabc,ai,bj,ck->oijk", core, v_c, v_h, v_w).reshape(7, -1).detach()
    assert rel_err(weight, lin.weight.detach()) == pytest.approx(head.rel_error, rel=1e-3, abs=1e-6)
    x = torch.randn(3, lin.in_features)
    with torch.no_grad():
        assert rel_err(head(x), x @ weight.t() + lin.bias) < 1e-5
    check_accounting(head, x, input_shape=shape)
    check_accounting(head, x, input_shape=(lin.in_features,))
    check_roundtrip(head, x)
    assert head.params() == sum(r * d for r, d in zip(rank, shape)) + 7 * rank[0] * rank[1] * rank[2] + 7


def test_head_with_batchnorm_starts_near_the_linear():
    torch.manual_seed(0)
    lin = nn.Linear(4 * 3 * 3, 5)
    head = TCLHead.from_linear(lin, (4, 3, 3), (4, 3, 3), bn="after").eval()
    x = torch.randn(2, 36)
    with torch.no_grad():
        assert rel_err(head(x), lin(x)) < 1e-4  # only the BatchNorm eps perturbs it
    check_roundtrip(head, x)


# ----------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: TCL((4, 3, 3), (5, 1, 1), name="tcl1"), "above the full rank 4"),
        (lambda: TCL((4, 3, 3), (0, 1, 1), name="tcl1"), "positive integers"),
        (lambda: TCL((4, 3), (2, 1), name="tcl1"), "3 entries"),
        (lambda: TCL((4, 3, 3), (2, 1, 1), bn="middle", name="tcl1"), "bn must be"),
        (lambda: TRL((4, 3, 3), 5, 2, kind="tt", name="tcl1"), "kind"),
        (lambda: TRL((4, 3, 3), 5, (2, 2, 2), name="tcl1"), "4 entries"),
        (lambda: TRL((4, 3, 3), 5, 0, kind="cp", name="tcl1"), "at least 1"),
        (lambda: TRL((4, 3, 3), 5, (2, 2, 2, 6), name="tcl1"), "above the full rank 5"),
        (lambda: TCLHead.from_linear(nn.Linear(30, 4), (4, 3, 3), (2, 2, 2), name="tcl1"), "36 elements"),
        (lambda: TRL.from_linear(nn.Linear(36, 4), (4, 3, 3), 2, kind="cp", algorithm="x", name="tcl1"),
         "algorithm"),
        (lambda: TCLHead.from_linear(nn.Conv2d(3, 3, 3), (4, 3, 3), (2, 2, 2), name="tcl1"), "Linear"),
    ],
)
def test_bad_inputs(call, message):
    with pytest.raises(DecompositionError, match=f"'tcl1'.*{message}"):
        call()


def test_nan_weights_refused():
    lin = nn.Linear(36, 4)
    with torch.no_grad():
        lin.weight[0, 0] = float("nan")
    with pytest.raises(DecompositionError, match="'head'.*NaN"):
        TCLHead.from_linear(lin, (4, 3, 3), (2, 2, 2), name="head")
    with pytest.raises(DecompositionError, match="'head'.*NaN"):
        TRL.from_linear(lin, (4, 3, 3), (2, 2, 2, 2), name="head")
