"""The pad_channels pass: exact, pure, only where safe; ORT sessions apply it with ORT's own NCHWc block."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from tensorslim.export import ExportError, export_onnx, passes, session
from tensorslim.export.hardware import nchwc_block
from tensorslim.export.passes import apply_passes, conv_chains, pad_channels
from tensorslim.export.session import ort_session
from tensorslim.layers import CPConv2d, Tucker2Conv2d


def conv_weights(proto) -> list[tuple[int, ...]]:
    inits = {t.name: t for t in proto.graph.initializer}
    return [tuple(numpy_helper.to_array(inits[n.input[1]]).shape) for n in proto.graph.node if n.op_type == "Conv"]


def copy_of(proto):
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    return out


def run(proto, x: np.ndarray) -> np.ndarray:
    """Independent reference: a plain ORT session (default options, no pass) on ``proto``."""
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize(("layer", "chains", "shapes"), [
    (CPConv2d(8, 6, 3, 5, padding=1), 1, [(16, 8, 1, 1), (16, 1, 3, 3), (6, 16, 1, 1)]),
    (CPConv2d(8, 6, 3, 5, form="cp4", padding=1), 1,
     [(16, 8, 1, 1), (16, 1, 3, 1), (16, 1, 1, 3), (6, 16, 1, 1)]),
    (Tucker2Conv2d(8, 6, 3, (5, 4), padding=1), 2, [(16, 8, 1, 1), (16, 16, 3, 3), (6, 16, 1, 1)]),
    (Tucker2Conv2d(3, 6, 3, (None, 4), stride=2), 1, [(16, 3, 3, 3), (6, 16, 1, 1)]),
    # ranks (1, 1): the 1-channel core is a plain conv, not a depthwise one (it once got group=16 and 31 filters)
    (Tucker2Conv2d(8, 6, 3, (1, 1), padding=1), 2, [(16, 8, 1, 1), (16, 16, 3, 3), (6, 16, 1, 1)]),
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
    original = copy_of(proto)
    n_init = len(proto.graph.initializer)
    assert len(conv_chains(proto, 16)) == chains
    padded = pad_channels(proto, block=16)
    assert proto == original  # a pure function: the model given is not changed
    onnx.checker.check_model(padded, full_check=True)
    assert conv_weights(padded) == shapes
    assert len(padded.graph.initializer) == n_init  # replaced, not added
    np.testing.assert_allclose(run(padded, x), before, rtol=1e-5, atol=1e-5)
    assert apply_passes(proto, ["pad_channels"], block=16) == padded  # the registry runs the same pass
    with torch.no_grad():
        np.testing.assert_allclose(layer(torch.from_numpy(x)).numpy(), before, rtol=1e-4, atol=1e-5)


def test_aligned_chains_and_branches_are_left_alone(tmp_path):
    aligned = CPConv2d(8, 8, 3, 16, padding=1)
    export_onnx(aligned, tmp_path / "a.onnx", (8, 5, 5))
    proto = onnx.load(str(tmp_path / "a.onnx"))
    assert conv_chains(proto, 16) == []
    assert pad_channels(proto, block=16) == proto

    class Branch(nn.Module):  # the 5-channel tensor feeds two convs: padding it is not a local change
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = nn.Conv2d(4, 5, 1), nn.Conv2d(5, 4, 3), nn.Conv2d(5, 4, 3)

        def forward(self, x):
            y = self.a(x)
            return self.b(y) + self.c(y)

    export_onnx(Branch(), tmp_path / "b.onnx", (4, 6, 6))
    proto = onnx.load(str(tmp_path / "b.onnx"))
    assert conv_chains(proto, 16) == [] and pad_channels(proto, block=16) == proto
    assert conv_chains(proto, 1) == [] and pad_channels(proto, block=1) == proto


def test_unknown_pass_is_a_one_line_error():
    with pytest.raises(ExportError, match="unknown graph pass 'nope' .*pad_channels"):
        apply_passes(onnx.ModelProto(), ["nope"])


def ort_own_nchwc_block() -> int:
    """ONNX Runtime's own NCHWc block on this CPU, read from the graph its optimizer writes (not from
    /proc/cpuinfo): ORT pads the filters of a Conv that it moves to the NCHWc layout to a multiple of its block,
    so a Conv with one filter gets exactly ``block`` of them; with no NCHWc layout no node moves (block 1)."""
    w = numpy_helper.from_array(np.ones((1, 4, 3, 3), np.float32), "w")
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 8, 8])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with tempfile.TemporaryDirectory() as tmp:
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.optimized_model_filepath = os.path.join(tmp, "optimized.onnx")
        ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        optimized = onnx.load(opts.optimized_model_filepath)
    inits = {t.name: t for t in optimized.graph.initializer}
    blocked = [n for n in optimized.graph.node if n.op_type == "Conv" and n.domain == "com.microsoft.nchwc"]
    return int(inits[blocked[0].input[1]].dims[0]) if blocked else 1


def test_nchwc_block_is_onnx_runtimes_own():
    assert nchwc_block() == ort_own_nchwc_block()


def test_session_runs_the_padded_graph_and_agrees_with_the_file(tmp_path, monkeypatch):
    layer = Tucker2Conv2d(16, 16, 3, (7, 9), padding=1)
    export_onnx(layer, tmp_path / "t.onnx", (16, 8, 8))
    on_disk = (tmp_path / "t.onnx").read_bytes()
    x = np.random.default_rng(1).standard_normal((3, 16, 8, 8), dtype=np.float32)
    reference = run(onnx.load(str(tmp_path / "t.onnx")), x)  # the unpadded graph, in a plain session

    ran: list[tuple[int, list[tuple[int, ...]]]] = []

    def spy(model, *, block):
        out = pad_channels(model, block=block)
        ran.append((block, conv_weights(out)))
        return out

    monkeypatch.setitem(passes.PASSES, "pad_channels", spy)
    monkeypatch.setattr(session, "nchwc_block", lambda: 16)  # pad on any CPU, not only on AVX-512 ones
    padded = ort_session(tmp_path / "t.onnx", threads=1).run(None, {"input": x})[0]
    # ranks 7 and 9 padded to 16, counted by hand: 1×1 16→7, core 7→9 (3×3), 1×1 9→16
    assert ran == [(16, [(16, 16, 1, 1), (16, 16, 3, 3), (16, 16, 1, 1)])]
    np.testing.assert_allclose(padded, reference, rtol=1e-5, atol=1e-5)
    unpadded = ort_session(tmp_path / "t.onnx", threads=1, pad_channels=False).run(None, {"input": x})[0]
    assert len(ran) == 1  # pad_channels=False runs no pass
    np.testing.assert_allclose(unpadded, reference, rtol=1e-5, atol=1e-5)
    assert (tmp_path / "t.onnx").read_bytes() == on_disk  # the file itself is untouched
    assert conv_weights(onnx.load(str(tmp_path / "t.onnx")))[0] == (7, 16, 1, 1)
