"""int8 ExecuTorch programs (PT2E, XNNPACKQuantizer): the file read back shows one XNNPACK delegate whose
convolutions and linear layers take int8 activations and per-channel int8 weights; the file in executorch.runtime
is within a few output quantization steps of the fake-quantized PyTorch module; the accuracy recorded in
metrics.json is the one an independent run of the file gives; a failure writes nothing. No timing assertion."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import tempfile

import pytest
import torch
from tests.export.test_pte import run_pte
from tests.export.test_quantize import trained_lenet
from tests.test_cli import run as cli_run

import tensorslim
from tensorslim import data
from tensorslim.export import ExportError, VerificationError, export_pte
from tensorslim.export import quantize_pte as q

pytestmark = pytest.mark.skipif(importlib.util.find_spec("executorch") is None,
                                reason="the tensorslim[edge] extra is not installed")

SAMPLES = 32  # calibration images: enough for the observers of a lenet5, fast


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return trained_lenet(tmp_path_factory.mktemp("m") / "lenet")


@pytest.fixture(scope="module")
def exported(model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("pte") / "lenet.int8.pte"
    return out, q.export_pte_int8(model_dir, out, "synthetic", samples=SAMPLES)


def independent_accuracy(path, ds) -> float:
    """Top-1 of the file run sample by sample in a fresh executorch.runtime method (its batch is 1)."""
    from executorch.runtime import Runtime

    method = Runtime.get().load_program(str(path)).load_method("forward")
    correct = sum(int(method.execute([ds[i][0][None]])[0].argmax(1).item() == ds[i][1]) for i in range(len(ds)))
    return 100.0 * correct / len(ds)


def xnnpack_graphs(path) -> tuple[list[str], list[dict]]:
    """(operators the program runs outside delegates, the XNNPACK graphs of its delegates as JSON), read from the
    file with ExecuTorch's own flatbuffer schemas (the program's, then XNNPACK's)."""
    import executorch.backends.xnnpack.serialization as schema_dir
    from executorch.backends.xnnpack.serialization.xnnpack_graph_serialize import XNNHeader
    from executorch.exir._serialize._flatbuffer import _flatc_decompile
    from executorch.exir._serialize._program import deserialize_pte_binary

    program = deserialize_pte_binary(path.read_bytes()).program
    plan = program.execution_plan[0]
    graphs = []
    for delegate in plan.delegates:
        assert delegate.id == "XnnpackBackend"
        blob = program.backend_delegate_data[delegate.processed.index].data
        head = XNNHeader.from_bytes(blob[:XNNHeader.EXPECTED_LENGTH])
        with tempfile.TemporaryDirectory() as tmp:
            with open(os.path.join(tmp, "g.bin"), "wb") as f:
                f.write(blob[head.flatbuffer_offset:head.flatbuffer_offset + head.flatbuffer_size])
            _flatc_decompile(tmp, os.path.join(list(schema_dir.__path__)[0], "schema.fbs"),
                             os.path.join(tmp, "g.bin"), ["--raw-binary"])
            with open(os.path.join(tmp, "g.json")) as f:  # flatc writes bare inf for unbounded clamps
                graphs.append(json.loads(re.sub(r"(?<![\w.])-?inf\b", "0", f.read())))
    return [op.name for op in plan.operators], graphs


def test_the_file_is_one_xnnpack_delegate_with_int8_weights_and_activations(exported, model_dir):
    out, done = exported
    outside, graphs = xnnpack_graphs(out)
    assert outside == [] and len(graphs) == 1  # nothing on the portable kernels
    graph = graphs[0]

    def dtype(i):
        value = graph["xvalues"][i]["xvalue_union"]
        return value.get("tensor_value", value)["datatype"]

    layers = [n["xnode_union"] for n in graph["xnodes"]
              if n["xnode_union_type"] in ("XNNConv2d", "XNNDepthwiseConv2d", "XNNFullyConnected")]
    assert len(layers) == 5  # lenet5: 2 convolutions, 3 linear layers (hand count)
    for node in layers:
        assert dtype(node["filter_id"]) == "xnn_datatype_qcint8"  # int8, one scale per output channel
        assert dtype(node["input1_id"]) == dtype(node["output_id"]) == "xnn_datatype_qint8"
    # fp32 only at the program's boundary: its input and output
    assert sorted(dtype(i) for i in graph["input_ids"] + graph["output_ids"]) == ["xnn_datatype_fp32"] * 2
    assert done.program.delegate_calls == 1 and done.program.other_ops == {}

    # int8 weights: the file is far smaller than the fp32 program of the same model
    fp32 = export_pte(tensorslim.load(model_dir), out.with_name("fp32.pte"))
    assert fp32.file_bytes > 3 * out.stat().st_size


def test_the_file_is_within_a_few_output_steps_of_the_fake_quantized_module(model_dir, tmp_path):
    """The program against the converted module it was lowered from, on real test images; and not the fp32 net."""
    model = tensorslim.load(model_dir).eval()
    train_set, test_set = (data.load("synthetic", s, augment=False) for s in ("train", "test"))
    calib = [train_set[i][0][None] for i in range(SAMPLES)]
    example = torch.randn(1, 1, 28, 28)
    converted, program = q.quantize_pt2e(model, example, calib)
    out = tmp_path / "m.pte"
    from tensorslim.export.pte import lower_program

    lower_program(program, out, reference=None)
    # the output's quantization step: the scale of the last dequantize in the converted graph
    dequant = [n for n in converted.graph.nodes if "dequantize_per_tensor" in str(n.target)]
    step = float(dequant[-1].args[1])
    x = torch.stack([test_set[i][0] for i in range(100)])
    with torch.no_grad():
        ref = torch.cat([converted(c) for c in x.split(1)])
        dense = model(x)
    got = torch.cat([run_pte(out, c) for c in x.split(1)])
    assert float((got - ref).abs().max()) <= 4 * step  # a rounding flip or two, never a wrong layer
    assert float((got - dense).abs().max()) > 0.5 * step  # it is quantized: not the fp32 network
    assert float((got.argmax(1) == ref.argmax(1)).float().mean()) >= 0.95


def test_the_recorded_accuracy_is_the_one_of_the_file(exported, model_dir, tmp_path, monkeypatch):
    out, done = exported
    test = data.load("synthetic", "test", augment=False)
    entry = json.loads((model_dir / "metrics.json").read_text())["exports"][out.name]
    measured = independent_accuracy(out, test)
    assert entry["evaluations"]["synthetic"]["test"] == pytest.approx(measured, abs=1e-4)
    assert entry["format"] == "pte" and entry["int8"] is True and entry["bytes"] == out.stat().st_size
    assert entry["sha256"] == tensorslim.modeldir.sha256_file(out)
    assert entry["calibration"] == {"dataset": "synthetic", "split": "train", "samples": SAMPLES, "seed": 0}
    assert done.fp32_accuracy > 30 and measured > 30  # trained: far above chance

    # A quantized program of a broken network: the record follows the file, not the fp32 model.
    real = q.quantize_pt2e

    def broken(model, *args, **kwargs):
        model = copy.deepcopy(model)
        with torch.no_grad():
            for p in model.parameters():
                p.zero_()
        return real(model, *args, **kwargs)

    monkeypatch.setattr(q, "quantize_pt2e", broken)
    bad = tmp_path / "broken.int8.pte"
    done = q.export_pte_int8(model_dir, bad, "synthetic", samples=SAMPLES)
    entry = json.loads((model_dir / "metrics.json").read_text())["exports"][bad.name]
    measured = independent_accuracy(bad, test)
    assert measured < 15 and done.fp32_accuracy > 30
    assert entry["evaluations"]["synthetic"]["test"] == pytest.approx(measured, abs=1e-4)
    assert out.name in json.loads((model_dir / "metrics.json").read_text())["exports"]  # kept


@pytest.mark.parametrize("stage", ["calibration", "verification", "evaluation"])
def test_a_failed_int8_pte_export_writes_nothing(model_dir, tmp_path, monkeypatch, stage):
    before = (model_dir / "metrics.json").read_bytes()
    out = tmp_path / "out" / "m.int8.pte"
    out.parent.mkdir()
    source, rtol, error = "synthetic", q.PTE_RTOL, ExportError
    if stage == "calibration":
        source = torch.randn(8, 3, 28, 28)
    elif stage == "verification":
        rtol, error = 1e-9, VerificationError
    else:
        def fail(*args, **kwargs):
            raise ExportError("evaluation failed")

        monkeypatch.setattr(q, "evaluate_pte", fail)
    with pytest.raises(error):
        q.export_pte_int8(model_dir, out, source, samples=SAMPLES, rtol=rtol)
    assert list(out.parent.iterdir()) == []
    assert (model_dir / "metrics.json").read_bytes() == before


def test_the_cli_exports_an_int8_pte(model_dir, tmp_path, capsys):
    out = tmp_path / "cli.int8.pte"
    code, stdout, stderr = cli_run(["export", str(model_dir), "--format", "pte", "--out", str(out), "--int8",
                                    "--calibrate", "synthetic", "--calibrate-samples", "16"], capsys)
    assert code == 0, stderr
    assert "int8" in stdout and "XNNPACK" in stdout
    entry = json.loads((model_dir / "metrics.json").read_text())["exports"]["cli.int8.pte"]
    assert entry["format"] == "pte" and entry["calibration"]["samples"] == 16
    assert entry["evaluations"]["synthetic"]["test"] == pytest.approx(
        independent_accuracy(out, data.load("synthetic", "test", augment=False)), abs=1e-4)
    for args, word in ((["--int8"], "--calibrate"), (["--int8", "--calibrate", "nosuchset"], "nosuchset"),
                       (["--target", "ort-x86"], "--target")):
        bad = tmp_path / "bad.pte"
        code, stdout, stderr = cli_run(["export", str(model_dir), "--format", "pte", "--out", str(bad), *args],
                                       capsys)
        assert code == 2 and not bad.exists()
        assert stderr.startswith("error:") and len(stderr.strip().splitlines()) == 1 and word in stderr, stderr
