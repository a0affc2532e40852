"""Tucker2Conv2d (and its Tucker-1 variant) against dense convolutions."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F
from layers_testutil import check_accounting, check_roundtrip, rel_err
from torch import nn

from tensorslim.errors import DecompositionError
from tensorslim.layers import TUCKER1_MAX_IN_CHANNELS, Tucker2Conv2d


def _conv(seed: int, in_channels: int | None = None) -> nn.Conv2d:
    rng = random.Random(seed)
    torch.manual_seed(seed)
    kernel = rng.choice([3, (3, 1), (1, 3), (2, 3), (5, 3)])
    return nn.Conv2d(in_channels or rng.randint(5, 10), rng.randint(2, 10), kernel,
                     stride=rng.choice([1, 2, (1, 2)]), padding=rng.choice([0, 1, (2, 0)]),
                     dilation=rng.choice([1, 2, (2, 1)]), bias=rng.random() < 0.6)


def _full_ranks(conv: nn.Conv2d) -> tuple[int, int]:
    t, s, kh, kw = conv.weight.shape
    return min(s, t * kh * kw), min(t, s * kh * kw)


def _reconstruct(layer: Tucker2Conv2d) -> torch.Tensor:
    """Dense kernel from the layer's own weights, by einsum (independent of the layer's forward)."""
    core = layer.core.weight
    out = layer.pointwise_out.weight[:, :, 0, 0]
    kernel = torch.einsum("to,oskl->tskl", out, core)
    if layer.pointwise_in is not None:
        kernel = torch.einsum("takl,as->tskl", kernel, layer.pointwise_in.weight[:, :, 0, 0])
    return kernel


@pytest.mark.parametrize("seed", range(6))
def test_full_ranks_reproduce_conv(seed):
    conv = _conv(seed)
    layer = Tucker2Conv2d.from_conv(conv, _full_ranks(conv))
    x = torch.randn(2, conv.in_channels, 11, 12)
    with torch.no_grad():
        assert rel_err(layer(x), conv(x)) < 1e-4
    assert layer.rel_error < 1e-5


@pytest.mark.parametrize("seed", range(4))
def test_truncated_layer_is_its_reconstructed_kernel(seed):
    conv = _conv(seed)
    r_in, r_out = _full_ranks(conv)
    ranks = (max(1, r_in // 2), max(1, r_out // 2))
    layer = Tucker2Conv2d.from_conv(conv, ranks, name="block2.conv")
    kernel = _reconstruct(layer).detach()
    assert rel_err(kernel, conv.weight.detach()) == pytest.approx(layer.rel_error, rel=1e-3, abs=1e-6)
    x = torch.randn(2, conv.in_channels, 9, 10)
    expected = F.conv2d(x, kernel, conv.bias, conv.stride, conv.padding, conv.dilation)
    with torch.no_grad():
        assert rel_err(layer(x), expected) < 1e-5


def test_tucker1_for_few_input_channels():
    conv = _conv(7, in_channels=3)
    layer = Tucker2Conv2d.from_conv(conv, (2, 2))
    assert layer.tucker1 and layer.pointwise_in is None and layer.ranks == (None, 2)
    assert layer.rank_in == 3
    kernel = _reconstruct(layer).detach()
    x = torch.randn(2, 3, 10, 10)
    with torch.no_grad():
        assert rel_err(layer(x), F.conv2d(x, kernel, conv.bias, conv.stride, conv.padding, conv.dilation)) < 1e-5
    full = Tucker2Conv2d.from_conv(conv, (None, _full_ranks(conv)[1]))
    with torch.no_grad():
        assert rel_err(full(x), conv(x)) < 1e-4


def test_tucker1_when_rank_in_equals_channels():
    conv = nn.Conv2d(TUCKER1_MAX_IN_CHANNELS + 4, 6, 3)
    layer = Tucker2Conv2d.from_conv(conv, (conv.in_channels, 6))
    assert layer.tucker1 and layer.pointwise_in is None
    x = torch.randn(1, conv.in_channels, 7, 7)
    with torch.no_grad():
        assert rel_err(layer(x), conv(x)) < 1e-4
    two = Tucker2Conv2d.from_conv(conv, (conv.in_channels - 1, 6))
    assert not two.tucker1 and two.pointwise_in is not None


def test_from_factors_planted_and_folding():
    torch.manual_seed(3)
    core = torch.randn(4, 2, 3, 3, dtype=torch.float64)
    out_f, in_f = torch.randn(7, 4, dtype=torch.float64), torch.randn(6, 2, dtype=torch.float64)
    bias = torch.randn(7, dtype=torch.float64)
    kernel = torch.einsum("oakl,to,sa->tskl", core, out_f, in_f)
    x = torch.randn(2, 6, 8, 8, dtype=torch.float64)
    layer = Tucker2Conv2d.from_factors(core, out_f, in_f, stride=2, padding=1, bias=bias)
    assert not layer.tucker1
    with torch.no_grad():
        assert rel_err(layer(x), F.conv2d(x, kernel, bias, stride=2, padding=1)) < 1e-12
    # Small input: Tucker-1 by rule, the input factor is folded into the core exactly.
    small_in = torch.randn(3, 2, dtype=torch.float64)
    small = Tucker2Conv2d.from_factors(core, out_f, small_in, padding="same")
    assert small.tucker1
    x3 = torch.randn(1, 3, 8, 8, dtype=torch.float64)
    kernel3 = torch.einsum("oakl,to,sa->tskl", core, out_f, small_in)
    with torch.no_grad():
        assert rel_err(small(x3), F.conv2d(x3, kernel3, padding="same")) < 1e-12


@pytest.mark.parametrize("seed", range(4))
def test_accounting_and_config(seed):
    conv = _conv(seed, in_channels=[3, 6, 8, 9][seed])
    r_in, r_out = _full_ranks(conv)
    layer = Tucker2Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, (max(1, r_in - 2), r_out),
                          stride=conv.stride, padding=conv.padding, dilation=conv.dilation, bias=seed % 2 == 0)
    x = torch.randn(2, conv.in_channels, 12, 11)
    check_accounting(layer, x)
    check_roundtrip(layer, x)


def test_params_formula():
    layer = Tucker2Conv2d(64, 128, 3, (16, 32))
    assert layer.params() == 64 * 16 + 16 * 32 * 9 + 32 * 128 + 128
    assert Tucker2Conv2d(3, 64, 3, (3, 16), bias=False).params() == 3 * 16 * 9 + 16 * 64


@pytest.mark.parametrize(
    "conv, ranks, message",
    [
        (nn.Conv2d(8, 8, 3, groups=4), (2, 2), "grouped"),
        (nn.Conv2d(8, 8, 1), (2, 2), "1x1"),
        (nn.Conv2d(8, 8, 3), (0, 2), "rank_in must be at least 1"),
        (nn.Conv2d(8, 8, 3), (2, 0), "rank_out must be at least 1"),
        (nn.Conv2d(8, 8, 3), (9, 2), "rank_in 9 is above the full rank 8"),
        (nn.Conv2d(8, 8, 3), (2, 9), "above the full rank"),
        (nn.Conv2d(8, 8, 3), (2,), "pair"),
        (nn.Conv2d(8, 8, 3, padding_mode="circular", padding=1), (2, 2), "padding_mode"),
        (nn.ConvTranspose2d(8, 8, 3), (2, 2), "Conv2d"),
    ],
)
def test_bad_inputs(conv, ranks, message):
    with pytest.raises(DecompositionError, match=f"'layer4.1.conv2'.*{message}"):
        Tucker2Conv2d.from_conv(conv, ranks, name="layer4.1.conv2")


def test_nan_weights_refused():
    conv = nn.Conv2d(8, 8, 3)
    with torch.no_grad():
        conv.weight[1] = float("nan")
    with pytest.raises(DecompositionError, match="'c'.*NaN"):
        Tucker2Conv2d.from_conv(conv, (2, 2), name="c")
