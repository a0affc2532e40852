"""ONNX Runtime sessions pad the inner channels of conv chains to the NCHWc block: exact, and only where safe."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from torch import nn

from tensorslim.export import export_onnx
from tensorslim.export.onnx import nchwc_block, ort_session, pad_conv_channels
from tensorslim.layers import CPConv2d, Tucker2Conv2d


def conv_weights(proto) -> list[tuple[int, ...]]:
    inits = {t.name: t for t in proto.graph.initializer}
    return [tuple(numpy_helper.to_array(inits[n.input[1]]).shape) for n in proto.graph.node if n.op_type == "Conv"]


def run(proto, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize(("layer", "chains", "shapes"), [
    (CPConv2d(8, 6, 3, 5, padding=1), 1, [(16, 8, 1, 1), (16, 1, 3, 3), (6, 16, 1, 1)]),
    (CPConv2d(8, 6, 3, 5, form="cp4", padding=1), 1,
     [(16, 8, 1, 1), (16, 1, 3, 1), (16, 1, 1, 3), (6, 16, 1, 1)]),
    (Tucker2Conv2d(8, 6, 3, (5, 4), padding=1), 2, [(16, 8, 1, 1), (16, 16, 3, 3), (6, 16, 1, 1)]),
    (Tucker2Conv2d(3, 6, 3, (None, 4), stride=2), 1, [(16, 3, 3, 3), (6, 16, 1, 1)]),
])
def test_padding_is_exact(tmp_path, layer, chains, shapes):
    torch.manual_seed(0)
    with torch.no_grad():
        layer.pointwise_out.bias.normal_()
    c = layer.in_channels
    export_onnx(layer, tmp_path / "m.onnx", (c, 9, 9))
    proto = onnx.load(str(tmp_path / "m.onnx"))
    x = np.random.default_rng(0).standard_normal((2, c, 9, 9), dtype=np.float32)
    before = run(proto, x)
    n_init = len(proto.graph.initializer)
    assert pad_conv_channels(proto, 16) == chains
    onnx.checker.check_model(proto, full_check=True)
    assert conv_weights(proto) == shapes
    assert len(proto.graph.initializer) == n_init  # replaced, not added
    np.testing.assert_allclose(run(proto, x), before, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        np.testing.assert_allclose(layer(torch.from_numpy(x)).numpy(), before, rtol=1e-4, atol=1e-5)


def test_aligned_chains_and_branches_are_left_alone(tmp_path):
    aligned = CPConv2d(8, 8, 3, 16, padding=1)
    export_onnx(aligned, tmp_path / "a.onnx", (8, 5, 5))
    assert pad_conv_channels(onnx.load(str(tmp_path / "a.onnx")), 16) == 0

    class Branch(nn.Module):  # the 5-channel tensor feeds two convs: padding it is not a local change
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = nn.Conv2d(4, 5, 1), nn.Conv2d(5, 4, 3), nn.Conv2d(5, 4, 3)

        def forward(self, x):
            y = self.a(x)
            return self.b(y) + self.c(y)

    export_onnx(Branch(), tmp_path / "b.onnx", (4, 6, 6))
    proto = onnx.load(str(tmp_path / "b.onnx"))
    assert pad_conv_channels(proto, 16) == 0
    assert pad_conv_channels(proto, 1) == 0


def test_session_with_and_without_padding_agree(tmp_path):
    layer = Tucker2Conv2d(16, 16, 3, (7, 9), padding=1)
    export_onnx(layer, tmp_path / "t.onnx", (16, 8, 8))
    x = np.random.default_rng(1).standard_normal((3, 16, 8, 8), dtype=np.float32)
    outs = [ort_session(tmp_path / "t.onnx", threads=1, pad_channels=p).run(None, {"input": x})[0]
            for p in (False, True)]
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-5, atol=1e-5)
    assert nchwc_block() in (1, 8, 16)
    assert onnx.load(str(tmp_path / "t.onnx")).graph.initializer[0].dims  # the file itself is untouched
    assert conv_weights(onnx.load(str(tmp_path / "t.onnx")))[0] == (7, 16, 1, 1)
