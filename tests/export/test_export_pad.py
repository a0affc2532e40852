"""The pad_channels pass: exact, pure, only where safe; export applies it to the file for x86 ORT targets, and
sessions load the file as it is."""

from __future__ import annotations

import json
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
    export_onnx(layer, tmp_path / "m.onnx", (c, 9, 9), target="none")  # the unpadded graph
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


def test_session_loads_the_file_as_it_is_and_pads_only_when_asked(tmp_path, monkeypatch):
    layer = Tucker2Conv2d(16, 16, 3, (7, 9), padding=1)
    export_onnx(layer, tmp_path / "t.onnx", (16, 8, 8), target="none")  # an unpadded file
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
    plain = ort_session(tmp_path / "t.onnx", threads=1).run(None, {"input": x})[0]
    assert ran == []  # the default session runs the file as written: no pass in memory
    np.testing.assert_allclose(plain, reference, rtol=1e-5, atol=1e-5)
    padded = ort_session(tmp_path / "t.onnx", threads=1, pad_channels=True).run(None, {"input": x})[0]
    # opt-in: ranks 7 and 9 padded to 16, counted by hand: 1×1 16→7, core 7→9 (3×3), 1×1 9→16
    assert ran == [(16, [(16, 16, 1, 1), (16, 16, 3, 3), (16, 16, 1, 1)])]
    np.testing.assert_allclose(padded, reference, rtol=1e-5, atol=1e-5)
    assert (tmp_path / "t.onnx").read_bytes() == on_disk  # the file itself is untouched
    assert conv_weights(onnx.load(str(tmp_path / "t.onnx")))[0] == (7, 16, 1, 1)


@pytest.mark.parametrize("layer", [CPConv2d(24, 20, 3, 7, padding=1), CPConv2d(24, 20, 3, 7, form="cp4", padding=1),
                                   Tucker2Conv2d(24, 20, 3, (5, 9), padding=1, stride=2)])
def test_export_pads_the_file_itself_and_changes_no_output(tmp_path, layer):
    """export_onnx for ort-x86 writes the padded graph (block 16, recorded in the file's metadata); its outputs
    equal those of the unpadded file (target none) and of PyTorch, both in plain ORT sessions."""
    torch.manual_seed(0)
    with torch.no_grad():
        layer.pointwise_out.bias.normal_()
    layer.eval()
    res = export_onnx(layer, tmp_path / "padded.onnx", (24, 9, 9), target="ort-x86")
    export_onnx(layer, tmp_path / "plain.onnx", (24, 9, 9), target="none")
    padded, plain = onnx.load(str(tmp_path / "padded.onnx")), onnx.load(str(tmp_path / "plain.onnx"))
    assert all(w[0] % 16 == 0 for w in conv_weights(padded)[:-1])  # every inner channel count padded to 16
    assert conv_weights(plain)[0][0] in (5, 7)  # the unpadded file keeps the rank
    meta = {p.key: p.value for p in padded.metadata_props}
    assert meta["tensorslim.target"] == "ort-x86"
    assert json.loads(meta["tensorslim.passes"]) == [{"name": "pad_channels", "block": 16,
                                                      "chains": 2 if isinstance(layer, Tucker2Conv2d) else 1}]
    assert json.loads({p.key: p.value for p in plain.metadata_props}["tensorslim.passes"]) == []
    assert "pad_channels" in " ".join(res.notes) and res.max_rel_err <= 1e-4  # verified on the padded file
    stored = [sum(int(np.prod(t.dims)) for t in p.graph.initializer) for p in (padded, plain)]
    assert res.padded_params == stored[0] - stored[1] > 0 and not res.reconstructs_weights
    if isinstance(layer, CPConv2d):  # by hand: 9 zero channels of S=24 inputs, a 3×3 (or 3+3) filter, T=20 outputs
        assert res.padded_params == 9 * (24 + (9 if layer.form == "cp3" else 6) + 20)
    x = np.random.default_rng(2).standard_normal((4, 24, 9, 9), dtype=np.float32)
    np.testing.assert_allclose(run(padded, x), run(plain, x), rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        ref = layer(torch.from_numpy(x)).numpy()
    assert np.abs(run(padded, x) - ref).max() <= 1e-4 * np.abs(ref).max()


def test_export_takes_the_target_the_model_was_compressed_for(tmp_path):
    import tensorslim

    model = nn.Sequential(nn.Conv2d(24, 24, 3, padding=1))
    small = tensorslim.compress(model, {"rules": [{"layers": "0", "method": "cp", "rank": 7}]}, (24, 8, 8),
                                target="none")
    export_onnx(small, tmp_path / "m.onnx", (24, 8, 8))
    proto = onnx.load(str(tmp_path / "m.onnx"))
    assert {p.key: p.value for p in proto.metadata_props}["tensorslim.target"] == "none"
    assert conv_weights(proto)[0][0] == 7  # not padded: the target has no padding pass


def test_compact_names_is_exact_keeps_the_io_names_and_leaves_the_model_alone(tmp_path):
    net = nn.Sequential(CPConv2d(8, 6, 3, 5, padding=1), nn.ReLU(), Tucker2Conv2d(6, 4, 3, (3, 2), padding=1))
    path = tmp_path / "net.onnx"
    export_onnx(net, path, (8, 10, 10), passes=[])
    proto = onnx.load(str(path))
    before = proto.SerializeToString()
    short = passes.compact_names(proto)
    assert proto.SerializeToString() == before  # pure
    g, io = short.graph, {v.name for v in proto.graph.input} | {v.name for v in proto.graph.output}
    assert {v.name for v in g.input} | {v.name for v in g.output} == io
    inner = {t for n in g.node for t in [*n.input, *n.output] if t and t not in io} | {t.name for t in g.initializer}
    assert inner and all(t[0] == "t" and t[1:].isdigit() for t in inner)
    assert [n.name for n in g.node] == [f"n{i}" for i in range(len(g.node))]
    assert [n.op_type for n in g.node] == [n.op_type for n in proto.graph.node]
    assert len(short.SerializeToString()) < len(before)
    x = np.random.default_rng(0).standard_normal((2, 8, 10, 10)).astype(np.float32)
    assert np.array_equal(run(short, x), run(proto, x))  # same nodes on the same tensors: bit for bit
    assert np.allclose(run(short, x), net(torch.from_numpy(x)).detach().numpy(), rtol=1e-4, atol=1e-5)
    assert apply_passes(proto, ["compact_names"]).SerializeToString() == short.SerializeToString()
