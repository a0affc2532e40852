"""ExecuTorch (XNNPACK) export: every layer realisation equals PyTorch in executorch.runtime; bench and memory
fields; the one-line error without the extra. Never a timing assertion."""

from __future__ import annotations

import importlib.util
import json
import os
import sys

import numpy as np
import pytest
import torch
from tests.test_cli import run as cli_run
from torch import nn

import tensorslim
from tensorslim.errors import TensorSlimError
from tensorslim.export import benchmark, export_onnx, format_table, pte
from tensorslim.export.verify import VerificationError

#: every test but the missing-extra one needs ExecuTorch (make test installs the extra)
edge = pytest.mark.skipif(importlib.util.find_spec("executorch") is None,
                          reason="the tensorslim[edge] extra is not installed")

SHAPE = (3, 8, 8)
FAST = {"warmup": 1, "repeats": 3, "threads": 1}


class Tiny(nn.Module):
    """Conv-BN-ReLU, conv, pool, flatten+FC head: every method has a layer to take."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                                      nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(16 * 4 * 4, 32), nn.ReLU(), nn.Linear(32, 10))

    def forward(self, x):
        return self.classifier(self.features(x))


def tiny() -> nn.Module:
    torch.manual_seed(0)
    model = Tiny().eval()
    with torch.no_grad():  # non-trivial batch-norm statistics, so that the folding is exercised
        bn = model.features[1]
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    return model


#: realisation -> (plan rules, none for the dense model; the tensorslim layer classes they must produce).
#: TT and TR take the conv and the FC layer in one model (one export for both realisations).
REALISATIONS = {
    "dense-conv": ([], set()),
    "svd-linear": ([{"layers": "classifier.1", "method": "svd", "rank": 4}], {"SVDLinear"}),
    "cp3-conv": ([{"layers": "features.3", "method": "cp", "rank": 4, "options": {"form": "cp3"}}], {"CPConv2d"}),
    "cp4-conv": ([{"layers": "features.3", "method": "cp", "rank": 4, "options": {"form": "cp4"}}], {"CPConv2d"}),
    "tucker2-conv": ([{"layers": "features.3", "method": "tucker2", "rank": [4, 4]}], {"Tucker2Conv2d"}),
    "tt-conv-linear": ([{"layers": "features.3", "method": "tt", "rank": 2},
                        {"layers": "classifier.1", "method": "tt", "rank": 2}], {"TTConv2d", "TTLinear"}),
    "tcl-head": ([{"layers": "classifier.1", "method": "tcl", "rank": [8, 2, 2]}], {"TCLHead"}),
    "tr-conv-linear": ([{"layers": "features.3", "method": "tr", "rank": 2},
                        {"layers": "classifier.1", "method": "tr", "rank": 2}], {"TRConv2d", "TRLinear"}),
}


def run_pte(path, x: torch.Tensor) -> torch.Tensor:
    """The program at ``path`` run directly in executorch.runtime (not through tensorslim)."""
    from executorch.runtime import Runtime

    return Runtime.get().load_program(str(path)).load_method("forward").execute([x])[0]


def rel_err(got: torch.Tensor, ref: torch.Tensor) -> float:
    return float((got.double() - ref.double()).abs().max() / ref.double().abs().max())


@edge
@pytest.mark.parametrize("case", list(REALISATIONS))
def test_every_realisation_is_exact_in_executorch(tmp_path, case):
    rules, layer_types = REALISATIONS[case]
    model = tensorslim.compress(tiny(), {"rules": rules}, SHAPE) if rules else tiny()
    assert layer_types <= {type(m).__name__ for m in model.modules()}  # the methods really replaced the layers
    real = torch.randn(5, *SHAPE, generator=torch.Generator().manual_seed(7))
    res = pte.export_pte(model, tmp_path / "m.pte", SHAPE, inputs=real)
    assert res.path.exists() and res.file_bytes == os.path.getsize(res.path)
    assert [c.source for c in res.checks] == ["random", "inputs"] and res.checks[1].samples == 5
    assert res.max_rel_err <= 1e-4
    assert res.delegate_calls >= 1 and res.delegated_ops >= 3  # XNNPACK runs at least the convs and FCs
    assert 0 < res.delegated_share <= 1
    json.dumps(res.to_dict())
    # independent of tensorslim's verification: the file run directly, against the PyTorch model
    x = torch.randn(1, *SHAPE, generator=torch.Generator().manual_seed(11))
    with torch.no_grad():
        ref = model(x)
    assert rel_err(run_pte(res.path, x), ref) <= 1e-4


@edge
def test_fixed_batch_and_delegation_count(tmp_path):
    res = pte.export_pte(tiny(), tmp_path / "b4.pte", SHAPE, batch=4)
    assert res.batch == 4 and res.input_shape == SHAPE
    # conv, conv, relu x3, max pool, linear x2 (+ reshapes/permutes): all inside XNNPACK, nothing outside
    assert res.other_ops == {} and res.delegated_share == 1.0
    x = torch.randn(4, *SHAPE)
    with torch.no_grad():
        assert rel_err(run_pte(res.path, x), tiny()(x)) <= 1e-4


@edge
def test_lower_program_takes_an_exported_program(tmp_path):
    """The entry point for already exported (e.g. PT2E-quantized) programs."""
    model = tiny()
    example = torch.randn(2, *SHAPE)
    program = pte.export_program(model, example)
    res = pte.lower_program(program, tmp_path / "p.pte", reference=model, rtol=1e-4)
    assert res.batch == 2 and res.verified
    unverified = pte.lower_program(program, tmp_path / "q.pte", reference=None)
    assert not unverified.verified and unverified.file_bytes == os.path.getsize(tmp_path / "q.pte")


@edge
def test_mismatch_raises_and_leaves_no_file(tmp_path):
    model, other = tiny(), Tiny().eval()  # other: different random weights
    program = pte.export_program(model, torch.randn(1, *SHAPE))
    dest = tmp_path / "bad.pte"
    with pytest.raises(VerificationError, match="ExecuTorch differs from PyTorch"):
        pte.lower_program(program, dest, reference=other)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [({"batch": 0}, "batch"), ({"batch": "dynamic"}, "batch"), ({"rtol": 0}, "rtol"),
     ({"input_shape": None}, "input shape")],
)
@edge
def test_bad_arguments(tmp_path, kwargs, needle):
    args = {"input_shape": SHAPE, **kwargs}
    with pytest.raises(TensorSlimError, match=needle) as info:
        pte.export_pte(tiny(), tmp_path / "x.pte", **args)
    assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


@edge
def test_corrupt_file_is_one_line(tmp_path):
    bad = tmp_path / "bad.pte"
    bad.write_bytes(b"not a program")
    with pytest.raises(TensorSlimError, match="ExecuTorch cannot load") as info:
        benchmark(bad, runtime="executorch", batch_sizes=1, **FAST)
    assert "\n" not in str(info.value)


def test_missing_extra_is_one_line(tmp_path, monkeypatch):
    for name in [n for n in sys.modules if n == "executorch" or n.startswith("executorch.")] + ["executorch"]:
        monkeypatch.setitem(sys.modules, name, None)  # import executorch... raises ImportError
    for call in (lambda: pte.export_pte(tiny(), tmp_path / "m.pte", SHAPE),
                 lambda: pte.lower_program(None, tmp_path / "m.pte", reference=None),
                 lambda: benchmark(tiny(), input_shape=SHAPE, runtime="executorch", **FAST)):
        with pytest.raises(pte.EdgeUnavailableError) as info:
            call()
        assert str(info.value) == "ExecuTorch is not installed: pip install 'tensorslim[edge]'"
    assert list(tmp_path.iterdir()) == []


def _check_memory(m: dict, batches: list[int]) -> None:
    """Memory fields present and plausible: RSS growth in bytes, per batch non-decreasing, below the model's."""
    assert isinstance(m["load_rss_bytes"], int) and isinstance(m["peak_rss_bytes"], int)
    peaks = [t["peak_rss_bytes"] for t in m["timings"]]
    assert [t["batch"] for t in m["timings"]] == batches
    assert all(isinstance(p, int) and 0 <= p <= m["peak_rss_bytes"] for p in peaks)
    assert peaks == sorted(peaks)  # the peak so far, batch sizes in the order run
    assert m["peak_rss_bytes"] < 2 << 30  # a tiny model: far below 2 GiB


@edge
def test_bench_executorch_module_against_module(tmp_path):
    res = benchmark(tiny(), against=Tiny().eval(), input_shape=SHAPE, batch_sizes=(1, 3), runtime="executorch",
                    labels=("a", "b"), **FAST)
    d = json.loads(json.dumps(res.to_dict()))
    assert d["runtime"] == "executorch" and d["batch_sizes"] == [1, 3]
    for m in d["models"]:
        assert m["runtime"] == "executorch" and m["file_bytes"] > 0 and m["weight_bytes"] > 0
        _check_memory(m, [1, 3])
        for t in m["timings"]:
            assert len(t["times_ms"]) == 3 and t["min_ms"] <= t["median_ms"] <= t["max_ms"]
    assert [c["batch"] for c in d["comparison"]] == [1, 3]
    text = format_table(res)
    assert text.startswith("runtime executorch, 1 thread(s)") and "peak RSS" in text


@edge
def test_bench_pte_file_sizes_and_fixed_batch(tmp_path):
    path = pte.export_pte(tiny(), tmp_path / "t.pte", SHAPE, batch=2).path
    onnx = export_onnx(tiny(), tmp_path / "t.onnx", SHAPE).path
    res = benchmark(path, against=tiny(), runtime="executorch", batch_sizes=(1, 32), **FAST)
    assert res.batch_sizes == (2,) and res.input_shape == SHAPE  # both taken from the file
    assert any("fixed batch of 2" in n for n in res.notes)
    assert res.models[0].file_bytes == os.path.getsize(path) and res.models[0].label == "t"
    ort = benchmark(onnx, batch_sizes=2, **FAST)
    assert ort.models[0].file_bytes == os.path.getsize(onnx)
    for r in (res, ort):
        _check_memory(r.to_dict()["models"][0], [2])


@edge
def test_bench_restores_thread_pool():
    from executorch.extension.pybindings import portable_lib

    before = portable_lib._threadpool_get_thread_count()
    benchmark(tiny(), against=tiny(), input_shape=SHAPE, batch_sizes=1, runtime="executorch",
              warmup=0, repeats=1, threads=1 if before != 1 else 2)
    assert portable_lib._threadpool_get_thread_count() == before


@edge
def test_pte_output_matches_onnx_runtime(tmp_path):
    """Both runtimes on the same compressed model and input agree (two independent runtimes)."""
    model = tensorslim.compress(tiny(), {"rules": REALISATIONS["tucker2-conv"][0]}, SHAPE)
    p = pte.export_pte(model, tmp_path / "m.pte", SHAPE).path
    o = export_onnx(model, tmp_path / "m.onnx", SHAPE).path
    from tensorslim.export import ort_session

    x = torch.randn(1, *SHAPE)
    sess = ort_session(o, pad_channels=False)
    got_ort = torch.from_numpy(sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0])
    assert rel_err(run_pte(p, x), got_ort) <= 1e-4
    assert np.isfinite(got_ort.numpy()).all()


@edge
def test_cli_export_pte_and_bench(tmp_path, capsys):
    from tensorslim import modeldir

    model = modeldir.build({"builder": "lenet5", "kwargs": {}}, (1, 28, 28))
    modeldir.save(model, tmp_path / "lenet", input_shape=(1, 28, 28))
    dest = tmp_path / "lenet.pte"
    code, out, err = cli_run(["export", str(tmp_path / "lenet"), "--format", "pte", "--out", str(dest),
                           "--data", "none"], capsys)
    assert code == 0, err
    assert dest.is_file() and "max rel err" in out and "XNNPACK" in out
    x = torch.randn(1, 1, 28, 28)
    with torch.no_grad():
        assert rel_err(run_pte(dest, x), modeldir.load(tmp_path / "lenet")(x)) <= 1e-4
    code, out, err = cli_run(["bench", str(dest), "--runtime", "executorch", "--against", str(tmp_path / "lenet"),
                           "--repeats", "2", "--warmup", "0"], capsys)
    assert code == 0, err
    assert out.startswith("runtime executorch, 1 thread(s), input 1x28x28") and "speedup" in out


def test_cli_without_the_extra_is_one_line(tmp_path, capsys, monkeypatch):
    for name in [n for n in sys.modules if n == "executorch" or n.startswith("executorch.")] + ["executorch"]:
        monkeypatch.setitem(sys.modules, name, None)
    for argv in (["export", "lenet5", "--format", "pte", "--out", str(tmp_path / "m.pte"), "--data", "none"],
                 ["bench", "lenet5", "--runtime", "executorch", "--repeats", "1"]):
        code, out, err = cli_run(argv, capsys)
        assert code == 2 and out == ""
        assert err == "error: ExecuTorch is not installed: pip install 'tensorslim[edge]'\n"
    assert list(tmp_path.iterdir()) == []
