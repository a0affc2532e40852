"""int8 export: QDQ structure read from the file, outputs against the fp32 file in our own ORT sessions, accuracy
recorded only as measured on the int8 file (checked against an independent evaluation here), the calibration
adapter on every kind of source, and no partial output on failure."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import tensorslim
from tensorslim import data, records, train
from tensorslim.errors import ModelError
from tensorslim.export import ExportError, export_onnx
from tensorslim.export import quantize as q
from tensorslim.export.quantize import calibration_batches, evaluate_onnx, export_int8, quantize_onnx

SHAPE = (1, 28, 28)
SYN = {"num_samples": 600, "num_test": 200}


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(32 * 7 * 7, 10))


def ort_out(path, x: np.ndarray) -> np.ndarray:
    """Independent reference: a fresh plain ORT session, first output."""
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x.astype(np.float32)})[0]


def ort_accuracy(path, ds) -> float:
    """Independent top-1 accuracy: the whole split in one batch in a fresh session."""
    x = torch.stack([ds[i][0] for i in range(len(ds))]).numpy()
    y = np.array([ds[i][1] for i in range(len(ds))])
    return 100.0 * float((ort_out(path, x).argmax(1) == y).mean())


@pytest.fixture(scope="module")
def calib() -> torch.Tensor:
    ds = data.load("synthetic", "train", augment=False, **SYN)
    return torch.stack([ds[i][0] for i in range(128)])


@pytest.fixture(scope="module")
def fp32_file(tmp_path_factory, calib):
    path = tmp_path_factory.mktemp("fp32") / "net.onnx"
    export_onnx(small_net(), path, SHAPE, inputs=calib[:16])
    return path


@pytest.fixture(scope="module")
def int8_file(tmp_path_factory, fp32_file, calib):
    path = tmp_path_factory.mktemp("int8") / "net.int8.onnx"
    result = quantize_onnx(fp32_file, path, calib)
    return path, result


def test_int8_file_has_qdq_nodes_and_per_channel_weight_scales(int8_file, fp32_file):
    path, result = int8_file
    proto = onnx.load(str(path))
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("QuantizeLinear") >= 3 and ops.count("DequantizeLinear") >= 6, ops
    inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    convs = {n.input[1]: n for n in proto.graph.node if n.op_type == "Conv"}
    dq = {n.output[0]: n for n in proto.graph.node if n.op_type == "DequantizeLinear"}
    assert len(convs) == 2
    for weight_name in convs:  # each conv weight: int8 values, one scale per output channel, axis 0
        node = dq[weight_name]
        w, scale = inits[node.input[0]], inits[node.input[1]]
        assert w.dtype == np.int8 and w.ndim == 4
        assert scale.shape == (w.shape[0],) and len(np.unique(scale)) > 1
        axis = [a.i for a in node.attribute if a.name == "axis"]
        assert axis in ([], [0])
    assert path.stat().st_size < fp32_file.stat().st_size / 2.5  # 4-byte weights became 1-byte ones
    io = {v.name for v in proto.graph.input} | {v.name for v in proto.graph.output}
    assert all(len(t.name) <= 4 for t in proto.graph.initializer) and io == {"input", "output"}  # compact_names
    assert result.file_bytes == path.stat().st_size and result.samples == 128


def test_int8_outputs_are_close_to_fp32_on_calibration_like_inputs(int8_file, fp32_file):
    path, result = int8_file
    ds = data.load("synthetic", "test", augment=False, **SYN)
    x = torch.stack([ds[i][0] for i in range(64)]).numpy()
    ref, got = ort_out(fp32_file, x), ort_out(path, x)
    per_sample = np.abs(ref - got).max(1) / np.abs(ref).max()
    assert 0 < np.percentile(per_sample, 90) < 0.05  # quantized (not the fp32 graph), yet close
    assert per_sample.max() < 0.3  # a sample beyond the calibrated ranges is clipped, within reason
    assert (ref.argmax(1) == got.argmax(1)).mean() >= 0.9
    assert 0 < result.max_rel_err < 0.1


def _weight_codes(path) -> list[np.ndarray]:
    """The int8 weight tensors of a QDQ file (the first input of each DequantizeLinear fed by an int8 initializer)."""
    proto = onnx.load(str(path))
    inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    return [inits[n.input[0]] for n in proto.graph.node
            if n.op_type == "DequantizeLinear" and n.input[0] in inits and inits[n.input[0]].dtype == np.int8]


def test_weights_are_7_bit_by_default_so_u8_s8_pair_sums_fit_int16_and_full_range_is_8_bit(int8_file, fp32_file,
                                                                                            calib, tmp_path):
    path, result = int8_file
    codes = _weight_codes(path)
    assert len(codes) == 3 and result.reduce_range and result.quantization()["weight_bits"] == 7
    peak = max(int(np.abs(w.astype(np.int32)).max()) for w in codes)
    # VPMADDUBSW (x86 without VNNI) adds two u8 x s8 products into int16: 7-bit weights cannot saturate it
    assert 32 < peak <= 64 and 2 * 255 * peak <= 32767
    full = quantize_onnx(fp32_file, tmp_path / "full.onnx", calib, reduce_range=False)
    peak_full = max(int(np.abs(w.astype(np.int32)).max()) for w in _weight_codes(full.path))
    assert peak_full == 127 and 2 * 255 * peak_full > 32767 and full.quantization()["weight_bits"] == 8
    with pytest.raises(ExportError, match="reduce_range must be true or false"):
        quantize_onnx(fp32_file, tmp_path / "bad.onnx", calib, reduce_range="yes")
    assert not (tmp_path / "bad.onnx").exists()


@pytest.mark.parametrize("kind", ["tensor", "numpy", "samples", "dataset", "dataloader", "generator"])
def test_the_calibration_adapter_takes_every_kind_of_source(fp32_file, calib, kind):
    x = calib[:40]
    y = torch.zeros(40, dtype=torch.long)
    source = {"tensor": lambda: x, "numpy": lambda: x.numpy(), "samples": lambda: list(x),
              "dataset": lambda: TensorDataset(x, y), "dataloader": lambda: DataLoader(TensorDataset(x, y), 16),
              "generator": lambda: ((x[i:i + 8], y[i:i + 8]) for i in range(0, 40, 8))}[kind]()
    batches = calibration_batches(source, fp32_file, samples=24, seed=None)
    got = np.concatenate(batches)
    assert got.dtype == np.float32 and got.shape == (24, *SHAPE)
    np.testing.assert_array_equal(got, x[:24].numpy())  # the first 24, in order (no seed)


def test_a_dataset_is_sampled_at_random_with_a_seed(fp32_file, calib):
    ds = TensorDataset(calib, torch.arange(len(calib)))
    a = np.concatenate(calibration_batches(ds, fp32_file, samples=16, seed=0))
    b = np.concatenate(calibration_batches(ds, fp32_file, samples=16, seed=0))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, calib[:16].numpy())


@pytest.mark.parametrize("source, match", [
    (torch.randn(4, 3, 28, 28), "sample shape"),
    (torch.full((4, 1, 28, 28), float("nan")), "NaN or inf"),
    ("fashion-mnist", "must be a tensor"),
    ([], "at least one sample"),
    (np.array([["a"] * 28] * 28), "expected numbers"),
])
def test_bad_calibration_inputs_are_one_line(fp32_file, tmp_path, source, match):
    out = tmp_path / "x.onnx"
    with pytest.raises(ExportError, match=match) as info:
        quantize_onnx(fp32_file, out, source)
    assert "\n" not in str(info.value)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_export_verification_takes_a_dataloader_of_real_inputs(tmp_path, calib):
    loader = DataLoader(TensorDataset(calib, torch.zeros(len(calib))), batch_size=10)
    result = export_onnx(small_net(), tmp_path / "n.onnx", SHAPE, inputs=loader, samples=35)
    real = [c for c in result.checks if c.source == "inputs"]
    assert len(real) == 1 and real[0].samples == 35


def test_evaluate_onnx_matches_an_independent_count(fp32_file):
    ds = data.load("synthetic", "test", augment=False, **SYN)
    got = evaluate_onnx(fp32_file, ds, batch_size=64)
    assert got["samples"] == len(ds)
    assert got["accuracy"] == pytest.approx(ort_accuracy(fp32_file, ds))


# --- a model directory: export --int8, recorded in metrics.json ------------------------------------------------


def trained_lenet(path):
    """lenet5 trained for one epoch on the synthetic set (well above chance), saved as a model directory."""
    torch.manual_seed(0)
    model = tensorslim.models.build("lenet5", num_classes=10)
    train.train(model, data.load("synthetic", "train"), data.load("synthetic", "val"), train.TrainConfig(epochs=1))
    tensorslim.save(model, path, dataset="synthetic")
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return trained_lenet(tmp_path_factory.mktemp("m") / "lenet")


def _zero_the_classifier(path) -> None:
    """Damage an int8 file: every int8 weight of its last Gemm becomes 0 (outputs: the bias, one class)."""
    proto = onnx.load(str(path))
    gemm = [n for n in proto.graph.node if n.op_type == "Gemm"][-1]
    dq = next(n for n in proto.graph.node if n.op_type == "DequantizeLinear" and n.output[0] == gemm.input[1])
    for t in proto.graph.initializer:
        if t.name == dq.input[0]:
            t.CopyFrom(numpy_helper.from_array(np.zeros_like(numpy_helper.to_array(t)), t.name))
    onnx.save(proto, str(path))


def test_the_recorded_accuracy_is_the_one_measured_on_the_int8_file(model_dir, tmp_path, monkeypatch):
    out = tmp_path / "lenet.int8.onnx"
    done = export_int8(model_dir, out, "synthetic", samples=64)
    test = data.load("synthetic", "test", augment=False)
    entry = json.loads((model_dir / "metrics.json").read_text())["exports"]["lenet.int8.onnx"]
    assert entry["evaluations"]["synthetic"]["test"] == pytest.approx(ort_accuracy(out, test), abs=1e-4)
    assert entry["calibration"] == {"dataset": "synthetic", "split": "train", "samples": 64, "seed": 0}
    assert entry["int8"] is True and entry["bytes"] == out.stat().st_size
    assert entry["sha256"] == tensorslim.modeldir.sha256_file(out)
    assert done.fp32_accuracy > 30  # trained: far above chance

    # A quantizer that breaks the file: the record must follow the file, not the fp32 model.
    real = q._quantize

    def broken(*args, **kwargs):
        result = real(*args, **kwargs)
        _zero_the_classifier(args[1])
        return result

    monkeypatch.setattr(q, "_quantize", broken)
    bad = tmp_path / "broken.int8.onnx"
    done = export_int8(model_dir, bad, "synthetic", samples=64)
    entry = json.loads((model_dir / "metrics.json").read_text())["exports"]["broken.int8.onnx"]
    measured = ort_accuracy(bad, test)
    assert measured < 15 and done.fp32_accuracy > 30
    assert entry["evaluations"]["synthetic"]["test"] == pytest.approx(measured, abs=1e-4)
    assert "lenet.int8.onnx" in json.loads((model_dir / "metrics.json").read_text())["exports"]  # kept


@pytest.mark.parametrize("stage", ["calibration", "evaluation"])
def test_a_failed_int8_export_writes_nothing(model_dir, tmp_path, monkeypatch, stage):
    before = (model_dir / "metrics.json").read_bytes()
    out = tmp_path / "out" / "m.int8.onnx"
    if stage == "calibration":
        source = torch.randn(8, 3, 28, 28)
    else:
        source = "synthetic"

        def fail(*args, **kwargs):
            raise ExportError("evaluation failed")

        monkeypatch.setattr(q, "evaluate_onnx", fail)
    with pytest.raises(ExportError):
        export_int8(model_dir, out, source, samples=32)
    assert not out.exists()
    assert not out.parent.exists() or list(out.parent.iterdir()) == []
    assert (model_dir / "metrics.json").read_bytes() == before


def test_the_cli_exports_int8_and_refuses_bad_calibration(model_dir, tmp_path, capsys):
    from tensorslim.cli import main

    def run(argv):
        try:
            main(argv)
        except SystemExit as exc:
            return exc.code, *capsys.readouterr()
        return 0, *capsys.readouterr()

    out = tmp_path / "cli.int8.onnx"
    code, stdout, stderr = run(["export", str(model_dir), "--out", str(out), "--int8", "--calibrate", "synthetic",
                                "--calibrate-samples", "32"])
    assert code == 0, stderr
    assert out.exists() and "int8" in stdout
    entry = json.loads((model_dir / "metrics.json").read_text())["exports"]["cli.int8.onnx"]
    assert entry["calibration"]["samples"] == 32
    kept = tmp_path / "kept.int8.onnx"
    code, stdout, stderr = run(["export", str(model_dir), "--out", str(kept), "--int8", "--calibrate", "synthetic",
                                "--calibrate-samples", "32", "--keep-float", "1", "--full-range"])
    assert code == 0, stderr
    assert "1 compute node(s) left in float" in stdout
    recorded = json.loads((model_dir / "metrics.json").read_text())["exports"]["kept.int8.onnx"]["quantization"]
    assert len(recorded["float_nodes"]) == 1 and _float_positions(kept) == [0]
    assert recorded["weight_bits"] == 8 and max(int(np.abs(w.astype(np.int32)).max()) for w in _weight_codes(kept)) > 64
    assert json.loads((model_dir / "metrics.json").read_text())["exports"]["cli.int8.onnx"]["quantization"][
        "weight_bits"] == 7
    for args, word in ((["--int8"], "--calibrate"), (["--int8", "--calibrate", "nosuchset"], "nosuchset"),
                       (["--keep-float", "2"], "--keep-float"), (["--full-range"], "--full-range"),
                       (["--int8", "--calibrate", "synthetic", "--keep-float", "x,"], "--keep-float"),
                       (["--int8", "--calibrate", "synthetic", "--keep-float", "nosuchnode"], "nosuchnode")):
        bad = tmp_path / "bad.onnx"
        code, stdout, stderr = run(["export", str(model_dir), "--out", str(bad), *args])
        assert code == 2 and not bad.exists()
        assert stderr.startswith("error:") and len(stderr.strip().splitlines()) == 1 and word in stderr, stderr


# --- the metrics.json schema --------------------------------------------------------------------------------


GOOD = {"format": "onnx", "int8": True, "bytes": 10, "evaluations": {"synthetic": {"test": 90.0}},
        "calibration": {"dataset": "synthetic", "split": "train", "samples": 8}}


@pytest.mark.parametrize("entry, match", [
    ({**GOOD, "format": "tflite"}, "'format'"),
    ({**GOOD, "int8": 1}, "'int8'"),
    ({**GOOD, "bytes": -1}, "'bytes'"),
    ({**GOOD, "evaluations": {"synthetic": {"test": 101}}}, "'evaluations'"),
    ({**GOOD, "extra": 1}, "unknown key 'extra'"),
    ({k: v for k, v in GOOD.items() if k != "evaluations"}, "missing 'evaluations'"),
    ({**GOOD, "calibration": {"samples": 1.5}}, "calibration.samples"),
])
def test_bad_export_records_are_refused(entry, match):
    records.parse_metrics({"exports": {"f.onnx": GOOD}})
    records.parse_metrics({"accuracy": {"test": 90.0}})  # old files, without exports, still load
    with pytest.raises(ModelError, match=match):
        records.parse_metrics({"exports": {"f.onnx": entry}})


def _optimised_ops(model: onnx.ModelProto, tmp_path) -> dict[str, int]:
    """The op counts of ONNX Runtime's own optimised graph (its QDQ fusions), saved by a fresh session."""
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = str(tmp_path / "optimised.onnx")
    ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    ops: dict[str, int] = {}
    for n in onnx.load(so.optimized_model_filepath).graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    return ops


def test_drop_zero_points_is_exact_keeps_the_fusions_and_keeps_gemm_weight_zero_points(fp32_file, calib, tmp_path):
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    class Reader:  # ORT's own quantizer, called directly: the file before any tensorslim pass
        def __init__(self):
            self.batches = iter([{"input": calib[i:i + 16].numpy()} for i in range(0, 64, 16)])

        def get_next(self):
            return next(self.batches, None)

    raw = tmp_path / "raw.onnx"
    quantize_static(str(fp32_file), str(raw), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8)
    before = onnx.load(str(raw))
    after = q.drop_zero_points(before)
    assert before.SerializeToString() == onnx.load(str(raw)).SerializeToString()  # the input is left alone
    inits = {t.name: t for t in after.graph.initializer}
    dq = [n for n in after.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits]
    kinds = {}
    for n in dq:
        reader = next(m for m in after.graph.node if n.output[0] in m.input)
        kinds.setdefault((inits[n.input[0]].data_type, reader.op_type), set()).add(len(n.input))
    assert kinds[(onnx.TensorProto.INT32, "Conv")] == {2}  # bias zero points gone
    assert kinds[(onnx.TensorProto.INT8, "Conv")] == {2}  # conv weight zero points gone
    assert kinds[(onnx.TensorProto.INT8, "Gemm")] == {3}  # the Gemm weight keeps its zero point
    dropped = len(before.graph.initializer) - len(after.graph.initializer)
    assert dropped == 2 + 2 + 1  # 2 conv biases + 2 conv weights + the Gemm bias (hand count of the net)
    assert len(after.SerializeToString()) < len(before.SerializeToString())
    ops = _optimised_ops(before, tmp_path)
    assert ops == _optimised_ops(after, tmp_path) and ops.get("QLinearConv") == 2 and ops.get("QGemm") == 1
    x = np.random.default_rng(0).standard_normal((8, *SHAPE)).astype(np.float32)
    (tmp_path / "after.onnx").write_bytes(after.SerializeToString())
    assert np.array_equal(ort_out(raw, x), ort_out(tmp_path / "after.onnx", x))  # bit for bit


def test_drop_zero_points_keeps_a_nonzero_zero_point():
    from onnx import helper

    w = numpy_helper.from_array(np.ones((4, 1, 3, 3), np.int8), "w")
    scale = numpy_helper.from_array(np.full(4, 0.5, np.float32), "s")
    zp = numpy_helper.from_array(np.array([0, 0, 3, 0], np.int8), "z")
    graph = helper.make_graph(
        [helper.make_node("DequantizeLinear", ["w", "s", "z"], ["wf"], axis=0),
         helper.make_node("Conv", ["x", "wf"], ["y"])], "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 1, 5, 5])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)], [w, scale, zp])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    assert q.drop_zero_points(model).SerializeToString() == model.SerializeToString()


def _float_positions(path) -> list[int]:
    """Independent reading of an int8 file (whose node names the export shortens): the positions, among its
    compute nodes in graph order, of those whose weight is a float initializer, not a DequantizeLinear output."""
    proto = onnx.load(str(path))
    inits = {t.name for t in proto.graph.initializer}
    compute = [n for n in proto.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
    return [i for i, n in enumerate(compute) if n.input[1] in inits]


def test_keep_float_leaves_the_first_compute_nodes_of_the_fp32_file_in_float(fp32_file, calib, tmp_path):
    order = [n.name for n in onnx.load(str(fp32_file)).graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
    assert len(order) == 3  # conv, conv, linear (a hand count of small_net)
    for k in range(len(order) + 1):
        res = quantize_onnx(fp32_file, tmp_path / f"k{k}.onnx", calib, keep_float=k)
        assert res.float_nodes == order[:k]
        assert _float_positions(tmp_path / f"k{k}.onnx") == list(range(k))
        assert res.quantization()["float_nodes"] == order[:k]
        assert res.agreement > 0.8  # the file still runs and agrees with fp32
    named = quantize_onnx(fp32_file, tmp_path / "named.onnx", calib, keep_float=[order[1]])
    assert named.float_nodes == [order[1]] and _float_positions(tmp_path / "named.onnx") == [1]
    # the float nodes' weights are whole float32 tensors of small_net's layers (hand count: 16*1*3*3, 32*16*3*3,
    # 10*32*7*7)
    hand = [144, 4608, 15680]
    for k in range(len(order) + 1):
        proto = onnx.load(str(tmp_path / f"k{k}.onnx"))
        inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
        compute = [n for n in proto.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
        floats = [inits[n.input[1]] for n in compute if n.input[1] in inits]
        assert [w.size for w in floats] == hand[:k] and all(w.dtype == np.float32 for w in floats)


@pytest.mark.parametrize("keep, match", [
    (-1, "keep_float must be"), (True, "keep_float must be"), ("fast", "keep_float must be"),
    ([""], "keep_float must be"), (9, "only 3 compute nodes"), (["no_such_node"], "no node named 'no_such_node'"),
])
def test_bad_keep_float_is_one_line_and_writes_nothing(fp32_file, calib, tmp_path, keep, match):
    out = tmp_path / "bad.onnx"
    with pytest.raises(ExportError, match=match) as err:
        quantize_onnx(fp32_file, out, calib, keep_float=keep)
    assert "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_keep_float_auto_records_what_it_timed_and_keeps_the_rule(fp32_file, calib, tmp_path):
    """No timing is asserted: the recorded timings must be one per prefix, the choice must follow the margin
    rule applied to them (re-derived here), and the file must be the one that prefix gives."""
    lines = []
    res = quantize_onnx(fp32_file, tmp_path / "auto.onnx", calib, keep_float="auto", log=lines.append)
    sel = res.selection
    assert sel["keep_float"] == "auto" and set(sel["speedup_vs_fp32"]) == {"0", "1", "2", "3"}
    assert all(set(v) == {"1", "32"} and all(x > 0 for x in v.values()) for v in sel["speedup_vs_fp32"].values())
    assert len(lines) == 4
    best_k, best = 0, None
    for k in range(4):
        v = sel["speedup_vs_fp32"][str(k)]
        score = (v["1"] * v["32"]) ** 0.5
        if best is None or score > best * q.AUTO_MARGIN:
            best_k, best = k, score
    assert sel["chosen"] == best_k
    again = quantize_onnx(fp32_file, tmp_path / "again.onnx", calib, keep_float=best_k)
    assert (tmp_path / "auto.onnx").read_bytes() == (tmp_path / "again.onnx").read_bytes()
    assert res.quantization()["float_selection"] == sel and res.float_nodes == again.float_nodes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.onnx", "auto.onnx"]  # the candidates are gone
