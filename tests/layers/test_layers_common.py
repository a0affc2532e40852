"""Properties every factorized layer shares: registry, training, ONNX export as standard ops, input checks."""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from layers_testutil import check_accounting, check_roundtrip

from tensorslim.errors import ModelError
from tensorslim.layers import LAYERS, TCL, TRL, CPConv2d, SVDLinear, TCLHead, TTConv2d, TTLinear, Tucker2Conv2d

IMAGE = (6, 8, 7)

SAMPLES = {
    "SVDLinear": (lambda: SVDLinear(20, 10, 4), (20,)),
    "CPConv2d-cp3": (lambda: CPConv2d(6, 8, 3, 4, padding=1, stride=2), IMAGE),
    "CPConv2d-cp4": (lambda: CPConv2d(6, 8, (3, 5), 4, form="cp4", padding=(1, 2)), IMAGE),
    "Tucker2Conv2d": (lambda: Tucker2Conv2d(6, 8, 3, (3, 4), dilation=2), IMAGE),
    "Tucker2Conv2d-t1": (lambda: Tucker2Conv2d(3, 8, 3, (None, 4)), (3, 8, 7)),
    "TTLinear": (lambda: TTLinear((4, 5), (2, 5), 3), (20,)),
    "TTConv2d": (lambda: TTConv2d((2, 3), (2, 4), (3, 2), 3, padding=1), IMAGE),
    "TCL": (lambda: TCL(IMAGE, (3, 2, 4), bn="before"), IMAGE),
    "TRL-tucker": (lambda: TRL(IMAGE, 5, (3, 2, 2, 3)), IMAGE),
    "TRL-cp": (lambda: TRL(IMAGE, 5, 3, kind="cp"), IMAGE),
    "TCLHead": (lambda: TCLHead(IMAGE, 5, (3, 2, 2)), (6 * 8 * 7,)),
}

ALLOWED_ONNX_OPS = {"Conv", "MatMul", "Gemm", "Add", "Mul", "Reshape", "Transpose", "Shape", "Gather", "Concat",
                    "Unsqueeze", "Squeeze", "Constant", "Slice", "Flatten", "BatchNormalization", "Identity", "Cast"}


def test_registry_names_every_layer():
    assert set(LAYERS) == {"SVDLinear", "CPConv2d", "Tucker2Conv2d", "TTLinear", "TTConv2d", "TCL", "TRL", "TCLHead"}
    assert all(LAYERS[name].__name__ == name for name in LAYERS)


@pytest.mark.parametrize("key", sorted(SAMPLES))
def test_random_init_trains_and_accounts(key):
    make, shape = SAMPLES[key]
    torch.manual_seed(0)
    layer = make()
    assert layer.rel_error is None
    x = torch.randn(3, *shape)
    out = layer(x)
    assert torch.isfinite(out).all()
    # Random init keeps activations at a sane scale.
    assert 1e-3 < float(out.detach().std()) < 1e3
    out.square().mean().backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    layer.zero_grad()
    check_accounting(layer, x)
    check_roundtrip(layer, x)


@pytest.mark.parametrize("key", sorted(SAMPLES))
def test_onnx_export_uses_standard_ops_only(key):
    make, shape = SAMPLES[key]
    torch.manual_seed(0)
    layer = make().eval()
    x = torch.randn(2, *shape)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(layer, (x,), buf, dynamo=False, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
    model = onnx.load_from_string(buf.getvalue())
    ops = {node.op_type for node in model.graph.node}
    assert ops <= ALLOWED_ONNX_OPS, ops - ALLOWED_ONNX_OPS
    assert ops & {"Conv", "MatMul", "Gemm"}
    session = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    x5 = torch.randn(5, *shape)  # another batch size than the one traced
    (y,) = session.run(None, {"x": x5.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(y, layer(x5).numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("key", sorted(SAMPLES))
def test_macs_rejects_a_wrong_input_shape(key):
    make, shape = SAMPLES[key]
    layer = make()
    bad = (shape[0] + 1, *shape[1:])
    with pytest.raises(ModelError):
        layer.macs(bad)


def test_conv_macs_rejects_an_input_smaller_than_the_window():
    with pytest.raises(ModelError, match="too small"):
        CPConv2d(4, 4, 5, 2).macs((4, 3, 3))
