"""TRLinear / TRConv2d against dense layers, weights rebuilt by TensorLy, hand counts, the FLOP counter and ORT."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch
import torch.nn.functional as F
from layers_testutil import check_accounting, counted_macs, numel_params, rel_err
from tests import _tensorly as tly
from tests._threads import _one_thread  # noqa: F401 - autouse fixture: one torch thread per test
from torch import nn

from tensorslim.cost import profile
from tensorslim.decompose.tensor_ring import max_tr_ranks
from tensorslim.errors import DecompositionError
from tensorslim.export import export_onnx
from tensorslim.layers.tensor_ring import TRConv2d, TRLinear


def tensorly_ring(cores) -> torch.Tensor:
    """The full ring tensor, by TensorLy's ``tr_to_tensor`` (an independent implementation)."""
    with tly._pytorch_backend():
        from tensorly.tr_tensor import tr_to_tensor

        return tr_to_tensor([c.detach().double().contiguous() for c in cores])


def dense_linear_weight(layer: TRLinear) -> torch.Tensor:
    """``W[o, i]`` from the ring ``(i_1…i_d, o_1…o_d)`` rebuilt by TensorLy."""
    d = len(layer.in_shape)
    full = tensorly_ring(layer.ring_cores())
    return full.permute(*range(d, 2 * d), *range(d)).reshape(layer.out_features, layer.in_features)


def dense_conv_kernel(layer: TRConv2d) -> torch.Tensor:
    """``K[t, c, y, x]`` from the ring ``(c_1…c_d, kh·kw, t_1…t_d)`` rebuilt by TensorLy."""
    d = len(layer.in_shape)
    kh, kw = layer.geometry.kernel_size
    full = tensorly_ring(layer.ring_cores())
    kernel = full.permute(*range(d + 1, 2 * d + 1), *range(d + 1))
    return kernel.reshape(layer.out_channels, layer.in_channels, kh, kw)


def check_rebuild(layer: nn.Module, x: torch.Tensor) -> None:
    """``type(layer)(**config())`` (through JSON) has the same parameter names and shapes and, with the same
    weights, the same outputs."""
    config = json.loads(json.dumps(layer.config()))
    rebuilt = type(layer)(**config)
    assert rebuilt.config() == layer.config()
    shapes = {k: tuple(v.shape) for k, v in layer.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()} == shapes
    rebuilt = rebuilt.to(dtype=x.dtype)
    rebuilt.load_state_dict(layer.state_dict(), strict=True)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), layer(x))


def check_profile(layer: nn.Module, input_shape) -> None:
    """tensorslim.cost.profile counts the layer as one unit with its own params() and macs()."""
    total = profile(nn.Sequential(layer), tuple(input_shape)).total
    assert total.macs == layer.macs(input_shape)
    assert total.params == layer.params()


# ----------------------------------------------------------------------------------------------- TRLinear


@pytest.mark.parametrize("in_shape, out_shape, r0", [((4, 6), (2, 3), 2), ((4, 6), (2, 3), 1),
                                                     ((2, 3, 2), (3, 2, 2), 2), ((6,), (5,), 5)])
def test_linear_full_ranks_reproduce_linear(in_shape, out_shape, r0):
    torch.manual_seed(0)
    lin = nn.Linear(math.prod(in_shape), math.prod(out_shape)).double()
    ranks = max_tr_ranks([*in_shape, *out_shape], r0)
    layer = TRLinear.from_linear(lin, in_shape, out_shape, list(ranks), name="fc")
    assert layer.ranks == ranks and layer.rel_error < 1e-10
    x = torch.randn(5, lin.in_features, dtype=torch.float64)
    with torch.no_grad():
        assert rel_err(layer(x), lin(x)) < 1e-10
        assert (layer(x) - lin(x)).abs().max() / lin(x).abs().max() < 1e-10
    lin32 = lin.float()
    layer32 = TRLinear.from_linear(lin32, in_shape, out_shape, list(ranks))
    assert layer32.ring_cores()[0].dtype == torch.float32
    with torch.no_grad():
        assert (layer32(x.float()) - lin32(x.float())).abs().max() / lin32(x.float()).abs().max() < 1e-5


def test_linear_truncated_rel_error_is_that_of_the_rebuilt_weight():
    torch.manual_seed(1)
    lin = nn.Linear(48, 24)
    layer = TRLinear.from_linear(lin, (4, 3, 4), (2, 3, 4), 3, seed=2, n_iter_max=30)
    assert 0 < layer.rel_error < 1
    weight = dense_linear_weight(layer).detach()
    assert float((weight - lin.weight.detach().double()).norm() / lin.weight.detach().double().norm()) == pytest.approx(
        layer.rel_error, rel=1e-4)
    x = torch.randn(3, 48)
    with torch.no_grad():  # the forward pass applies exactly that weight
        assert rel_err(layer(x), x @ weight.float().t() + lin.bias) < 1e-5


@pytest.mark.parametrize("seed", range(4))
def test_linear_given_cores_equal_dense_weight(seed):
    rng = random.Random(seed)
    torch.manual_seed(seed)
    d = rng.randint(1, 3)
    in_shape, out_shape = [rng.randint(1, 4) for _ in range(d)], [rng.randint(1, 4) for _ in range(d)]
    probe = TRLinear(in_shape, out_shape, [rng.randint(1, 4) for _ in range(2 * d)])
    cores = [torch.randn(c.shape, dtype=torch.float64) for c in probe.ring_cores()]
    bias = torch.randn(probe.out_features, dtype=torch.float64) if seed % 2 else None
    layer = TRLinear.from_cores(cores[:d], cores[d:], bias)
    x = torch.randn(3, 2, layer.in_features, dtype=torch.float64)  # leading axes are kept
    expected = x @ dense_linear_weight(layer).t() + (0 if bias is None else bias)
    with torch.no_grad():
        assert rel_err(layer(x), expected) < 1e-12
    check_accounting(layer, x)
    check_rebuild(layer, x)


def test_linear_hand_counts():
    layer = TRLinear((4, 6), (2, 3), [2, 3, 4, 5])
    shapes = [tuple(c.shape) for c in layer.ring_cores()]
    assert shapes == [(2, 4, 3), (3, 6, 4), (4, 2, 5), (5, 3, 2)]
    assert layer.params() == 24 + 72 + 40 + 30 + 6 == numel_params(layer)
    # U_1: r0 r1 N_in; U_2: r0 r1 r2 i2; V_1: r0 r2 r3 o1; V_2 closes the ring: r3 r0 N_out
    hand = 2 * 3 * 24 + 2 * 3 * 4 * 6 + 2 * 4 * 5 * 2 + 5 * 2 * 6
    assert layer.macs((24,)) == hand == 428
    x = torch.randn(7, 24)
    assert counted_macs(layer, x) == hand
    assert layer.macs((5, 24)) == 5 * hand
    check_profile(layer, (24,))
    assert dict(layer.named_parameters()).keys() == {"in_cores.0", "in_cores.1", "out_cores.0", "out_cores.1",
                                                     "bias"}


def test_linear_random_init_scale():
    torch.manual_seed(0)
    layer = TRLinear((8, 8), (4, 4), 3)
    assert layer.rel_error is None
    w = dense_linear_weight(layer)
    assert 0.3 < float(w.var() * layer.in_features) < 3  # entry variance about 1 / in_features


def test_linear_onnx_export(tmp_path):
    torch.manual_seed(3)
    layer = TRLinear.from_linear(nn.Linear(24, 12), (4, 6), (3, 4), [2, 2, 3, 3], n_iter_max=20)
    model = nn.Sequential(layer, nn.ReLU(), nn.Linear(12, 5))
    res = export_onnx(model, tmp_path / "tr.onnx", (24,))
    assert res.max_rel_err < 1e-4 and [c.samples for c in res.checks] == [1, 3]
    assert not res.reconstructs_weights and res.weight_only_nodes == []
    assert "MatMul" in res.ops and "Einsum" not in res.ops
    assert res.onnx_params <= res.torch_params


# ----------------------------------------------------------------------------------------------- TRConv2d


def _geometry(rng: random.Random) -> dict:
    return {"kernel_size": rng.choice([3, (3, 1), (2, 3), 1]), "stride": rng.choice([1, 2, (1, 2)]),
            "padding": rng.choice([0, 1, (1, 2)]), "dilation": rng.choice([1, (2, 1)])}


@pytest.mark.parametrize("seed", range(4))
def test_conv_full_ranks_reproduce_conv(seed):
    rng = random.Random(60 + seed)
    torch.manual_seed(seed)
    d = rng.randint(1, 2)
    in_shape, out_shape = [rng.randint(1, 3) for _ in range(d)], [rng.randint(1, 3) for _ in range(d)]
    geo = _geometry(rng)
    conv = nn.Conv2d(math.prod(in_shape), math.prod(out_shape), bias=seed % 2 == 0, **geo).double()
    kh, kw = conv.kernel_size
    ranks = max_tr_ranks([*in_shape, kh * kw, *out_shape], 1 if seed % 2 else in_shape[0])
    layer = TRConv2d.from_conv(conv, in_shape, out_shape, list(ranks), name="conv")
    assert layer.rel_error < 1e-10
    x = torch.randn(2, conv.in_channels, 9, 8, dtype=torch.float64)
    with torch.no_grad():
        assert rel_err(layer(x), conv(x)) < 1e-10
    check_accounting(layer, x)


def test_conv_float32_full_ranks_and_string_padding():
    torch.manual_seed(4)
    conv = nn.Conv2d(6, 4, 3, padding="same")
    ranks = max_tr_ranks([2, 3, 9, 2, 2], 2)
    layer = TRConv2d.from_conv(conv, (2, 3), (2, 2), list(ranks))
    x = torch.randn(2, 6, 7, 8)
    with torch.no_grad():
        y, ref = layer(x), conv(x)
    assert (y - ref).abs().max() / ref.abs().max() < 1e-5
    check_accounting(layer, x)
    check_rebuild(layer, x)


def test_conv_truncated_rel_error_is_that_of_the_rebuilt_kernel():
    torch.manual_seed(2)
    conv = nn.Conv2d(12, 16, 3, padding=1, stride=2)
    layer = TRConv2d.from_conv(conv, (3, 4), (4, 4), 3, n_iter_max=30)
    kernel = dense_conv_kernel(layer)
    direct = float((kernel - conv.weight.detach().double()).norm() / conv.weight.detach().double().norm())
    assert 0 < layer.rel_error < 1 and direct == pytest.approx(layer.rel_error, rel=1e-4)
    x = torch.randn(2, 12, 9, 9)
    with torch.no_grad():
        assert rel_err(layer(x), F.conv2d(x, kernel.float(), conv.bias, stride=2, padding=1)) < 1e-5


@pytest.mark.parametrize("seed", range(4))
def test_conv_given_cores_equal_dense_conv(seed):
    rng = random.Random(40 + seed)
    torch.manual_seed(seed)
    d = rng.randint(1, 2)
    in_shape, out_shape = [rng.randint(1, 3) for _ in range(d)], [rng.randint(1, 3) for _ in range(d)]
    geo = _geometry(rng)
    probe = TRConv2d(in_shape, out_shape, ranks=[rng.randint(1, 3) for _ in range(2 * d + 1)], **geo)
    cores = [torch.randn(c.shape, dtype=torch.float64) for c in probe.ring_cores()]
    kh, kw = probe.geometry.kernel_size
    spatial = cores[d].reshape(cores[d].shape[0], kh, kw, cores[d].shape[2])
    bias = torch.randn(probe.out_channels, dtype=torch.float64) if seed % 2 else None
    layer = TRConv2d.from_cores(cores[:d], spatial, cores[d + 1:], bias, stride=geo["stride"],
                                padding=geo["padding"], dilation=geo["dilation"])
    for got, want in zip(layer.ring_cores(), cores):
        assert torch.equal(got.detach(), want)
    x = torch.randn(2, layer.in_channels, 10, 9, dtype=torch.float64)
    expected = F.conv2d(x, dense_conv_kernel(layer), bias, geo["stride"], geo["padding"], geo["dilation"])
    with torch.no_grad():
        assert rel_err(layer(x), expected) < 1e-12
    check_accounting(layer, x)
    check_rebuild(layer, x)


def test_conv_hand_counts():
    layer = TRConv2d((2, 3), (2, 4), 3, [2, 3, 4, 5, 6], stride=2, padding=1)
    shapes = [tuple(c.shape) for c in layer.ring_cores()]
    assert shapes == [(2, 2, 3), (3, 3, 4), (4, 9, 5), (5, 2, 6), (6, 4, 2)]
    assert layer.params() == 12 + 36 + 180 + 60 + 48 + 8 == numel_params(layer)
    # per input pixel (9·10): r0 r1 C + r0 r1 r2 c2; spatial: r0 r2 r3 kh kw per output pixel (5·5);
    # per output pixel: r0 r3 r4 t1 + r4 r0 T (closing the ring)
    hand = 90 * (2 * 3 * 6 + 2 * 3 * 4 * 3) + 25 * 2 * 4 * 5 * 9 + 25 * (2 * 5 * 6 * 2 + 6 * 2 * 8)
    assert layer.macs((6, 9, 10)) == hand == 24120
    assert counted_macs(layer, torch.randn(3, 6, 9, 10)) == hand
    check_profile(layer, (6, 9, 10))
    assert dict(layer.named_parameters()).keys() == {"in_cores.0", "in_cores.1", "spatial.weight", "out_cores.0",
                                                     "out_cores.1", "bias"}


def test_conv_onnx_export(tmp_path):
    torch.manual_seed(5)
    conv = nn.Conv2d(6, 8, 3, padding=1)
    layer = TRConv2d.from_conv(conv, (2, 3), (2, 4), 2, n_iter_max=20)
    model = nn.Sequential(layer, nn.ReLU(), nn.Conv2d(8, 4, 1))
    res = export_onnx(model, tmp_path / "trc.onnx", (6, 8, 8))
    assert res.max_rel_err < 1e-4 and [c.samples for c in res.checks] == [1, 3]
    assert not res.reconstructs_weights and res.weight_only_nodes == []
    assert res.ops.get("Conv", 0) == 2 and "MatMul" in res.ops


# --------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda lin: TRLinear.from_linear(lin, (4, 5), (2, 3), 2, name="fc2"), "multiplies to 20"),
        (lambda lin: TRLinear.from_linear(lin, (4, 6), (2, 5), 2, name="fc2"), "out_shape"),
        (lambda lin: TRLinear.from_linear(lin, (4, 6), (6,), 2, name="fc2"), "must have 2 entries"),
        (lambda lin: TRLinear.from_linear(lin, (4, 6), (2, 3), 0, name="fc2"), "at least 1"),
        (lambda lin: TRLinear.from_linear(lin, (4, 6), (2, 3), [2, 2, 0, 2], name="fc2"), "r_2 must be at least 1"),
        (lambda lin: TRLinear.from_linear(lin, (4, 6), (2, 3), [2, 2, 2], name="fc2"), "expected 4 TR ring ranks"),
        (lambda lin: TRLinear.from_linear(lin, (4, 6), (2, 3), 2, name="fc2", n_iter=3), "unknown TR fit option"),
        (lambda lin: TRLinear.from_linear(lin, (4, 6), (2, 3), 2, name="fc2", init="cp"), "init"),
        (lambda lin: TRLinear.from_linear(nn.Conv2d(1, 1, 1), (4, 6), (2, 3), 2, name="fc2"), "Linear"),
        (lambda lin: TRLinear((4, 6), (2, 3), "two", name="fc2"), "int or a sequence"),
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
        TRLinear.from_linear(lin, (4, 6), (2, 3), 2, name="fc")


@pytest.mark.parametrize(
    "conv, in_shape, out_shape, ranks, message",
    [
        (nn.Conv2d(12, 16, 3, groups=4), (3, 4), (4, 4), 2, "grouped"),
        (nn.Conv2d(12, 16, 3), (3, 5), (4, 4), 2, "multiplies to 15"),
        (nn.Conv2d(12, 16, 3), (3, 4), (4, 2), 2, "out_channels=16"),
        (nn.Conv2d(12, 16, 3), (3, 4), (4, 4), 0, "at least 1"),
        (nn.Conv2d(12, 16, 3), (3, 4), (4, 4), [2, 2, 2, 2], "expected 5 TR ring ranks"),
        (nn.Conv2d(12, 16, 3, padding_mode="reflect"), (3, 4), (4, 4), 2, "padding_mode"),
    ],
)
def test_conv_bad_inputs(conv, in_shape, out_shape, ranks, message):
    with pytest.raises(DecompositionError, match=f"'features.0'.*{message}"):
        TRConv2d.from_conv(conv, in_shape, out_shape, ranks, name="features.0")


def test_conv_nan_refused():
    conv = nn.Conv2d(4, 4, 3)
    with torch.no_grad():
        conv.bias[0] = float("inf")
    with pytest.raises(DecompositionError, match="'c'.*NaN or infinite"):
        TRConv2d.from_conv(conv, (2, 2), (2, 2), 2, name="c")
