"""Helpers shared by the tests of tensorslim.layers (independent references: dense layers, FLOP counter)."""

from __future__ import annotations

import json
from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from tensorslim.layers import LAYERS


def rel_err(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """Relative Frobenius error ``‖actual − expected‖ / ‖expected‖``."""
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    return float((actual - expected).norm() / expected.norm().clamp_min(1e-30))


def counted_macs(module: nn.Module, x: torch.Tensor) -> float:
    """Multiply-accumulates of one forward pass per sample, by torch.utils.flop_counter (FLOPs / 2 / batch)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(x)
    return counter.get_total_flops() / 2 / x.shape[0]


def numel_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def check_accounting(layer: nn.Module, x: torch.Tensor, input_shape: Sequence[int] | None = None) -> None:
    """params() == Σ numel, macs() == FlopCounterMode FLOPs / 2 per sample."""
    shape = tuple(x.shape[1:]) if input_shape is None else tuple(input_shape)
    assert layer.params() == numel_params(layer)
    assert layer.macs(shape) == counted_macs(layer, x)


def check_roundtrip(layer: nn.Module, x: torch.Tensor) -> nn.Module:
    """The config survives JSON, rebuilds the same structure, and with the same weights the same outputs."""
    config = json.loads(json.dumps(layer.config()))
    rebuilt = LAYERS[type(layer).__name__](**config)
    assert rebuilt.config() == layer.config()
    shapes = {k: tuple(v.shape) for k, v in layer.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()} == shapes
    rebuilt = rebuilt.to(dtype=next(layer.parameters()).dtype)
    rebuilt.load_state_dict(layer.state_dict(), strict=True)
    layer.eval()
    rebuilt.eval()
    with torch.no_grad():
        assert torch.equal(rebuilt(x), layer(x))
    return rebuilt
