"""CPConv2d (cp3 / cp4) against dense convolutions with the reconstructed kernel."""

from __future__ import annotations

import functools
import random

import pytest
import torch
import torch.nn.functional as F
from layers_testutil import check_accounting, check_roundtrip, rel_err
from torch import nn

from tensorslim.errors import DecompositionError
from tensorslim.layers import CPConv2d
from tensorslim.layers.cp import check_cp_options, cp_option_names


def _random_geometry(rng: random.Random) -> dict:
    kh, kw = rng.choice([(3, 3), (3, 1), (1, 3), (2, 3), (5, 3), (3, 5)])
    return {
        "kernel_size": (kh, kw),
        "stride": rng.choice([1, 2, (2, 1)]),
        "padding": rng.choice([0, 1, (2, 1)]),
        "dilation": rng.choice([1, 2, (1, 2)]),
    }


def _kernel(form: str, factors, weights, kh: int, kw: int) -> torch.Tensor:
    """Independent reconstruction of the T×S×kh×kw kernel from CP factors."""
    if form == "cp3":
        a, b, c = factors
        return torch.einsum("r,tr,sr,kr->tsk", weights, a, b, c).reshape(a.shape[0], b.shape[0], kh, kw)
    a, b, h, v = factors
    return torch.einsum("r,tr,sr,ir,jr->tsij", weights, a, b, h, v)


def _planted(rng: random.Random, form: str, rank: int, orthogonal: bool = False):
    geo = _random_geometry(rng)
    kh, kw = geo["kernel_size"]
    t, s = rng.randint(4, 9), rng.randint(4, 9)
    dims = (t, s, kh * kw) if form == "cp3" else (t, s, kh, kw)
    if orthogonal:
        factors = [torch.linalg.qr(torch.randn(d, rank, dtype=torch.float64))[0] for d in dims]
        weights = torch.linspace(3.0, 1.0, rank, dtype=torch.float64)
    else:
        factors = [torch.randn(d, rank, dtype=torch.float64) for d in dims]
        weights = torch.randn(rank, dtype=torch.float64)
    return geo, t, s, factors, weights


@pytest.mark.parametrize("form", ["cp3", "cp4"])
@pytest.mark.parametrize("seed", range(4))
def test_realisation_of_given_factors_equals_dense_conv(form, seed):
    rng = random.Random(seed)
    torch.manual_seed(seed)
    geo, t, s, factors, weights = _planted(rng, form, rank=rng.randint(1, 5))
    kh, kw = geo["kernel_size"]
    bias = torch.randn(t, dtype=torch.float64) if seed % 2 else None
    layer = CPConv2d.from_factors(factors, weights, form=form, bias=bias, **geo)
    kernel = _kernel(form, factors, weights, kh, kw)
    x = torch.randn(2, s, 11, 10, dtype=torch.float64)
    expected = F.conv2d(x, kernel, bias, stride=geo["stride"], padding=geo["padding"], dilation=geo["dilation"])
    with torch.no_grad():
        assert rel_err(layer(x), expected) < 1e-10
    # Balanced scale: column r has the same norm in every factor.
    norms = [m.weight.reshape(m.weight.shape[0], -1).norm(dim=1) for m in (layer.pointwise_in,)]
    norms.append(layer.pointwise_out.weight.reshape(t, -1).norm(dim=0))
    assert torch.allclose(norms[0], norms[1], rtol=1e-8)


@pytest.mark.parametrize("form", ["cp3", "cp4"])
@pytest.mark.parametrize("seed", range(2))
def test_als_recovers_planted_cp_kernel(form, seed):
    rng = random.Random(100 + seed)
    torch.manual_seed(100 + seed)
    geo, t, s, factors, weights = _planted(rng, form, rank=2 + seed)
    kh, kw = geo["kernel_size"]
    rank = factors[0].shape[1]
    conv = nn.Conv2d(s, t, (kh, kw), stride=geo["stride"], padding=geo["padding"], dilation=geo["dilation"])
    with torch.no_grad():
        conv.weight.copy_(_kernel(form, factors, weights, kh, kw))
    layer = CPConv2d.from_conv(conv, rank, algorithm="als", form=form, name="conv1")
    x = torch.randn(2, s, 9, 12)
    with torch.no_grad():
        assert rel_err(layer(x), conv(x)) < 1e-4
    assert layer.rel_error < 1e-4


@pytest.mark.parametrize("form", ["cp3", "cp4"])
@pytest.mark.parametrize("seed", range(2))
def test_power_method_recovers_orthogonal_planted_kernel(form, seed):
    # Deflation is exact for orthogonally decomposable tensors.
    rng = random.Random(200 + seed)
    torch.manual_seed(200 + seed)
    geo = {"kernel_size": (3, 3), "stride": 1, "padding": 1, "dilation": 1}
    t, s, rank = rng.randint(4, 7), rng.randint(4, 7), 3
    dims = (t, s, 9) if form == "cp3" else (t, s, 3, 3)
    factors = [torch.linalg.qr(torch.randn(d, rank, dtype=torch.float64))[0] for d in dims]
    weights = torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64)
    conv = nn.Conv2d(s, t, 3, padding=1, bias=False).double()
    with torch.no_grad():
        conv.weight.copy_(_kernel(form, factors, weights, 3, 3))
    layer = CPConv2d.from_conv(conv, rank, algorithm="power", form=form, tol=1e-12, n_iter_max=500)
    x = torch.randn(2, s, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        assert rel_err(layer(x), conv(x)) < 1e-4
    assert not layer.has_bias
    assert layer.geometry.kernel_size == geo["kernel_size"]


def test_truncated_rel_error_matches_the_layer():
    torch.manual_seed(5)
    conv = nn.Conv2d(6, 8, 3, padding=1)
    layer = CPConv2d.from_conv(conv, 4, algorithm="als", n_iter_max=10)
    a = layer.pointwise_out.weight[:, :, 0, 0]
    b = layer.pointwise_in.weight[:, :, 0, 0].t()
    c = layer.depthwise.weight.reshape(4, 9).t()
    kernel = _kernel("cp3", (a, b, c), torch.ones(4), 3, 3)
    assert rel_err(kernel.detach(), conv.weight.detach()) == pytest.approx(layer.rel_error, rel=1e-3)
    x = torch.randn(2, 6, 7, 7)
    with torch.no_grad():
        assert rel_err(layer(x), F.conv2d(x, kernel, conv.bias, padding=1)) < 1e-5


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("form", ["cp3", "cp4"])
def test_string_padding_even_kernel(padding, form):
    torch.manual_seed(1)
    rng = random.Random(1)
    geo, t, s, factors, weights = _planted(rng, form, rank=3)
    dims = (t, s, 8) if form == "cp3" else (t, s, 2, 4)
    factors = [torch.randn(d, 3, dtype=torch.float64) for d in dims]
    layer = CPConv2d.from_factors(factors, weights, kernel_size=(2, 4), form=form, padding=padding, dilation=(2, 1))
    x = torch.randn(1, s, 9, 10, dtype=torch.float64)
    expected = F.conv2d(x, _kernel(form, factors, weights, 2, 4), padding=padding, dilation=(2, 1))
    with torch.no_grad():
        assert rel_err(layer(x), expected) < 1e-10
    check_accounting(layer, x)


@pytest.mark.parametrize("form", ["cp3", "cp4"])
@pytest.mark.parametrize("seed", range(4))
def test_accounting_and_config(form, seed):
    rng = random.Random(300 + seed)
    torch.manual_seed(seed)
    geo = _random_geometry(rng)
    layer = CPConv2d(rng.randint(2, 9), rng.randint(2, 9), rank=rng.randint(1, 6), form=form,
                     bias=seed % 2 == 0, **geo)
    x = torch.randn(2, layer.in_channels, 13, 12)
    check_accounting(layer, x)
    check_roundtrip(layer, x)


def test_params_formula():
    assert CPConv2d(64, 128, 3, 16).params() == 16 * (64 + 9 + 128) + 128
    assert CPConv2d(64, 128, (3, 5), 16, form="cp4", bias=False).params() == 16 * (64 + 3 + 5 + 128)


def _conv(**kw) -> nn.Conv2d:
    return nn.Conv2d(kw.pop("s", 8), kw.pop("t", 8), kw.pop("k", 3), **kw)


@pytest.mark.parametrize(
    "conv, rank, kwargs, message",
    [
        (_conv(groups=2), 4, {}, "grouped"),
        (_conv(groups=8), 4, {}, "depthwise"),
        (_conv(k=1), 4, {}, "1x1"),
        (_conv(), 0, {}, "at least 1"),
        (_conv(), 65, {}, "above the full rank"),
        (_conv(s=2, t=2), 5, {}, "above the full rank"),
        (_conv(), 4, {"form": "cp5"}, "form"),
        (_conv(), 4, {"algorithm": "sgd"}, "algorithm"),
        (_conv(padding_mode="reflect", padding=1), 4, {}, "padding_mode"),
        (nn.Linear(4, 4), 2, {}, "Conv2d"),
    ],
)
def test_bad_inputs(conv, rank, kwargs, message):
    with pytest.raises(DecompositionError, match=f"'features.3'.*{message}"):
        CPConv2d.from_conv(conv, rank, name="features.3", **kwargs)


def test_nan_weights_refused():
    conv = _conv()
    with torch.no_grad():
        conv.weight[0, 0, 0, 0] = float("inf")
    with pytest.raises(DecompositionError, match="'c'.*NaN or infinite"):
        CPConv2d.from_conv(conv, 2, name="c")


def test_decomposition_value_error_is_wrapped(monkeypatch):
    import tensorslim.decompose as dec

    def boom(*args, **kwargs):
        raise ValueError("did not converge\n at all")

    monkeypatch.setattr(dec, "cp_power", boom)
    with pytest.raises(DecompositionError, match="'c2': did not converge at all"):
        CPConv2d.from_conv(_conv(), 2, name="c2")


# ------------------------------------------------------------------------------------------------------------
# Options per algorithm
# ------------------------------------------------------------------------------------------------------------

def test_option_names_per_algorithm():
    assert cp_option_names("power") == {"init", "n_iter_max", "tol", "seed", "stop"}
    assert cp_option_names("als") == {"init", "n_iter_max", "tol", "seed", "linesearch", "precision"}
    with pytest.raises(ValueError, match="algorithm"):
        cp_option_names("sgd")


# A non-default value of every option, and the options it needs to have an effect.
NON_DEFAULT = {
    "power": {"init": ({"init": "random"}, {}), "n_iter_max": ({"n_iter_max": 1}, {}),
              "tol": ({"tol": 0.5}, {}), "seed": ({"seed": 1}, {"init": "random"}),
              "stop": ({"stop": "vectors"}, {})},
    "als": {"init": ({"init": "random"}, {}), "n_iter_max": ({"n_iter_max": 1}, {}),
            "tol": ({"tol": 0.5}, {}), "seed": ({"seed": 1}, {"init": "random"}),
            "linesearch": ({"linesearch": False}, {}),
            "precision": ({"precision": "mixed"}, {})},
}


def _factor_weights(layer: CPConv2d) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in layer.parameters()])


@pytest.mark.parametrize("algorithm", ["power", "als"])
def test_every_accepted_option_reaches_the_decomposition(algorithm, monkeypatch):
    import tensorslim.decompose as dec

    assert set(NON_DEFAULT[algorithm]) == cp_option_names(algorithm)  # a new option needs a row here
    name = "cp_power" if algorithm == "power" else "cp_als"
    real = getattr(dec, name)
    seen: list[dict] = []

    @functools.wraps(real)  # keeps the signature cp_option_names reads
    def spy(*args, **kwargs):
        seen.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(dec, name, spy)
    torch.manual_seed(3)
    conv = nn.Conv2d(7, 8, 3, padding=1).double()
    for option, (value, base) in NON_DEFAULT[algorithm].items():
        ref = CPConv2d.from_conv(conv, 4, algorithm=algorithm, **base)
        layer = CPConv2d.from_conv(conv, 4, algorithm=algorithm, **base, **value)
        assert seen[-1] == {**base, **value}
        assert not torch.equal(_factor_weights(layer), _factor_weights(ref)), option


@pytest.mark.parametrize("algorithm", ["power", "als"])
def test_n_iter_max_works_with_both_algorithms(algorithm):
    # issue 12: n_iter_max used to be ALS-only; the power method took max_iter and raised a TypeError.
    torch.manual_seed(4)
    conv = nn.Conv2d(6, 8, 3)
    one = CPConv2d.from_conv(conv, 3, algorithm=algorithm, n_iter_max=1)
    many = CPConv2d.from_conv(conv, 3, algorithm=algorithm, n_iter_max=200)
    assert many.rel_error < one.rel_error


@pytest.mark.parametrize("algorithm", ["power", "als"])
def test_unknown_option_is_named(algorithm):
    with pytest.raises(ValueError, match=r"unknown option 'n_iters' for CP algorithm .*accepted: init, .*n_iter_max"):
        check_cp_options(algorithm, {"n_iters": 3, "tol": 1e-3})
    other = "linesearch" if algorithm == "power" else "stop"
    with pytest.raises(ValueError, match=f"'{other}'"):
        check_cp_options(algorithm, {other: True})
    check_cp_options(algorithm, {"n_iter_max": 3, "tol": 1e-3, "seed": 1, "init": "random"})
    with pytest.raises(DecompositionError, match="'c'.*unknown option 'n_iters'"):
        CPConv2d.from_conv(_conv(), 2, algorithm=algorithm, name="c", n_iters=3)
