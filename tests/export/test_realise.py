"""CP realisations: every form is exact in ONNX Runtime against PyTorch; the fastest is chosen by a measured
micro-benchmark, cached per CPU model, and recorded in the exported file's metadata."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper
from torch import nn

from tensorslim.export import ExportError, export_onnx
from tensorslim.export import realise as realise_mod
from tensorslim.export.passes import REALISATIONS, cp_chain_macs, cp_chains, realise_cp
from tensorslim.layers import CPConv2d, Tucker2Conv2d


def plain_run(proto: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """Independent reference runtime: a default ORT session on the graph."""
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def ops(proto) -> list[tuple[str, int, tuple[int, ...]]]:
    """(op, group, weight shape) of every Conv node."""
    inits = {t.name: numpy_helper.to_array(t).shape for t in proto.graph.initializer}
    out = []
    for n in proto.graph.node:
        group = next((a.i for a in n.attribute if a.name == "group"), 1)
        out.append((n.op_type, group, inits.get(n.input[1]) if len(n.input) > 1 else ()))
    return out


GEOMETRIES = [dict(padding=1), dict(stride=2), dict(padding=(2, 1), stride=(2, 1), dilation=(2, 1)),
              dict(padding=0)]


@pytest.mark.parametrize("form", ["cp3", "cp4"])
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=lambda g: ",".join(f"{k}={v}" for k, v in g.items()))
def test_every_realisation_equals_pytorch_in_ort(tmp_path, form, geometry):
    torch.manual_seed(0)
    layer = CPConv2d(8, 6, 3, 5, form=form, **geometry)
    with torch.no_grad():
        layer.pointwise_out.bias.normal_()
    layer.eval()
    export_onnx(layer, tmp_path / "m.onnx", (8, 11, 11), target="none")
    proto = onnx.load(str(tmp_path / "m.onnx"))
    chain, = cp_chains(proto)
    assert (chain.in_channels, chain.rank, chain.out_channels, chain.kernel) == (8, 5, 6, (3, 3))
    x = np.random.default_rng(0).standard_normal((3, 8, 11, 11), dtype=np.float32)
    with torch.no_grad():
        ref = layer(torch.from_numpy(x)).numpy()
    shapes = {}
    for f in REALISATIONS:
        m = realise_cp(proto, forms=f)
        onnx.checker.check_model(m, full_check=True)
        y = plain_run(m, x)
        assert y.shape == ref.shape
        assert np.abs(y - ref).max() <= 1e-4 * np.abs(ref).max(), f
        shapes[f] = ops(m)
    # the structures, counted by hand: S=8, R=5, T=6, 3×3
    dw = [(5, 1, 3, 3)] if form == "cp3" else [(5, 1, 3, 1), (5, 1, 1, 3)]
    assert [s for *_, s in shapes["as_exported"]] == [(5, 8, 1, 1), *dw, (6, 5, 1, 1)]
    assert shapes["cp3"] == [("Conv", 1, (5, 8, 1, 1)), ("Conv", 5, (5, 1, 3, 3)), ("Conv", 1, (6, 5, 1, 1))]
    assert shapes["fused_in"] == [("Conv", 1, (5, 8, 3, 3)), ("Conv", 1, (6, 5, 1, 1))]
    assert shapes["fused_out"] == [("Conv", 1, (5, 8, 1, 1)), ("Conv", 1, (6, 5, 3, 3))]
    assert proto == onnx.load(str(tmp_path / "m.onnx"))  # pure: the model given is not changed


def test_realisations_leave_other_layers_and_tucker_alone(tmp_path):
    model = nn.Sequential(CPConv2d(4, 8, 3, 6, padding=1), nn.ReLU(), Tucker2Conv2d(8, 8, 3, (5, 5), padding=1))
    export_onnx(model, tmp_path / "m.onnx", (4, 7, 7), target="none")
    proto = onnx.load(str(tmp_path / "m.onnx"))
    assert len(cp_chains(proto)) == 1  # the Tucker-2 chains are not CP chains (no depthwise conv)
    fused = realise_cp(proto, forms="fused_in")
    assert [o for o, *_ in ops(fused)].count("Conv") == 2 + 3
    x = np.random.default_rng(1).standard_normal((2, 4, 7, 7), dtype=np.float32)
    np.testing.assert_allclose(plain_run(fused, x), plain_run(proto, x), rtol=1e-4, atol=1e-5)
    with pytest.raises(ExportError, match="unknown CP realisation 'nope'"):
        realise_cp(proto, forms="nope")


def test_chain_macs_by_hand():
    chain = realise_mod.passes_mod.CPChain("k", 0, (1,), 2, in_channels=64, rank=32, out_channels=128,
                                           kernel=(3, 3))
    hw = (8, 8)
    assert cp_chain_macs(chain, "cp3", hw, hw) == (64 * 32 + 32 * 9 + 32 * 128) * 64
    assert cp_chain_macs(chain, "fused_in", hw, hw) == (64 * 32 * 9 + 32 * 128) * 64
    assert cp_chain_macs(chain, "fused_out", hw, hw) == (64 * 32 + 32 * 128 * 9) * 64


def test_fastest_is_measured_cached_and_recorded(tmp_path, monkeypatch):
    """realise='fastest' times every form of each CP layer (here with a stub clock that makes fused_out the
    fastest), writes the choice into the file, records it in the metadata and caches it per CPU model: a second
    export does not time again. The file is verified as rewritten (ORT against PyTorch)."""
    monkeypatch.setenv("TENSORSLIM_CACHE_DIR", str(tmp_path / "cache"))
    timed: list[list[str]] = []

    def fake_time(mini, forms, block, batches, repeats, threads=1):
        timed.append(list(forms))
        speed = {"as_exported": 1.0, "cp3": 0.9, "fused_in": 1.5, "fused_out": 0.5}
        return {f: {str(b): speed[f] * b for b in batches} for f in forms}

    monkeypatch.setattr(realise_mod, "time_forms", fake_time)
    torch.manual_seed(0)
    layer = CPConv2d(16, 16, 3, 12, form="cp4", padding=1).eval()
    res = export_onnx(layer, tmp_path / "a.onnx", (16, 6, 6), realise="fastest", target="ort-x86")
    assert timed == [["as_exported", "cp3", "fused_in", "fused_out"]]
    assert res.max_rel_err <= 1e-4
    meta = realise_mod.file_metadata(tmp_path / "a.onnx")
    (key, choice), = meta["tensorslim.realisations"].items()
    assert choice["form"] == "fused_out" and choice["ms"]["fused_out"] == {"1": 0.5, "32": 16.0}
    assert choice["cpu"] == realise_mod.cpu_model()
    assert [o for o, *_ in ops(onnx.load(str(tmp_path / "a.onnx")))] == ["Conv", "Conv"]
    cache = json.loads((tmp_path / "cache" / "realise.json").read_text())
    assert len(cache) == 1 and realise_mod.cpu_model() in next(iter(cache))
    export_onnx(layer, tmp_path / "b.onnx", (16, 6, 6), realise="fastest", target="ort-x86")
    assert len(timed) == 1  # from the cache
    assert realise_mod.file_metadata(tmp_path / "b.onnx")["tensorslim.realisations"][key]["form"] == "fused_out"


def test_real_micro_benchmark_runs_every_form(tmp_path):
    """The real timer on a tiny layer: one median per form and batch, all positive (no timing is asserted)."""
    layer = CPConv2d(8, 8, 3, 4, padding=1).eval()
    export_onnx(layer, tmp_path / "m.onnx", (8, 5, 5), target="none")
    proto = onnx.load(str(tmp_path / "m.onnx"))
    chain, = cp_chains(proto)
    mini = realise_mod.chain_model(proto, chain, (5, 5))
    ms = realise_mod.time_forms(mini, ["as_exported", "fused_in", "fused_out"], 16, (1, 2), repeats=2)
    assert set(ms) == {"as_exported", "fused_in", "fused_out"}
    assert all(set(v) == {"1", "2"} and min(v.values()) > 0 for v in ms.values())


def test_bad_realise_is_a_one_line_error(tmp_path):
    with pytest.raises(ExportError, match="realise must be one of as_exported, cp3, fused_in, fused_out, fastest"):
        export_onnx(nn.Conv2d(3, 3, 3), tmp_path / "m.onnx", (3, 5, 5), realise="fast")
    assert not (tmp_path / "m.onnx").exists()


def test_roofline_counts_the_files_macs_and_reads_the_peak_from_its_cache(tmp_path, monkeypatch):
    """onnx_macs of exported files equals the layers' own analytic macs() (padding counted as the file runs it);
    the GEMM peak is measured once and then read from the cache (a stored value comes back unchanged)."""
    from tensorslim.export import roofline
    from tensorslim.layers import SVDLinear

    for layer, shape in [(CPConv2d(16, 24, 3, 16, padding=1), (16, 8, 8)),
                         (Tucker2Conv2d(32, 32, 3, (16, 32), padding=1, stride=2), (32, 9, 9)),
                         (nn.Conv2d(8, 16, 3, padding=1, groups=2), (8, 6, 6)), (SVDLinear(64, 32, 16), (64,))]:
        export_onnx(layer, tmp_path / "m.onnx", shape, target="none")
        want = layer.macs(shape) if hasattr(layer, "macs") else 16 * 4 * 9 * 36
        assert roofline.onnx_macs(tmp_path / "m.onnx") == want
    assert roofline.gflops(10**9, 2, 1000.0) == 4.0  # 2·1e9·2 FLOP in 1 s
    monkeypatch.setenv("TENSORSLIM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(roofline, "PEAK_SIZE", 64)
    monkeypatch.setattr(roofline, "PEAK_RUNS", 2)
    first = roofline.gemm_peak_gflops(1)
    assert first > 0 and (tmp_path / "cache" / "roofline.json").is_file()
    stored = json.loads((tmp_path / "cache" / "roofline.json").read_text())
    key, = stored
    (tmp_path / "cache" / "roofline.json").write_text(json.dumps({key: 123.0}))
    assert roofline.gemm_peak_gflops(1) == 123.0
    roof = roofline.roofline([("cp", tmp_path / "m.onnx", {1: 0.5, 4: 1.0}), ("torch", None, {1: 1.0})], 1)
    assert roof["peak_gflops"] == 123.0 and [m["label"] for m in roof["models"]] == ["cp"]
    assert roof["models"][0]["share"]["4"] == roofline.gflops(64 * 16 + 16 * 32, 4, 1.0) / 123.0
    assert "of peak" in "\n".join(roofline.format_lines(roof))
