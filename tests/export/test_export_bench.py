"""Benchmarks: structure and bookkeeping of the results, never the timings themselves (shared machine)."""

from __future__ import annotations

import importlib.util
import json
import statistics

import pytest
from torch import nn

from tensorslim.errors import TensorSlimError
from tensorslim.export import BenchError, benchmark, export_onnx, format_table

FAST = {"warmup": 1, "repeats": 3, "threads": 1}


def small(width: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(width, 4))


class SharedLog(list):
    """A list that survives the benchmark's private deep copy of each model."""

    def __deepcopy__(self, memo):
        return self


class Recorder(nn.Module):
    """Appends its tag to a shared log on every call, to observe the order in which models run."""

    def __init__(self, tag: str, log: SharedLog):
        super().__init__()
        self.tag, self.log = tag, log
        self.conv = nn.Conv2d(3, 2, 1)

    def forward(self, x):
        self.log.append(self.tag)
        return self.conv(x)


def test_ort_against_alternates_and_reports_ratios():
    res = benchmark(small(16), against=small(4), input_shape=(3, 8, 8), batch_sizes=(1, 4), **FAST)
    d = json.loads(json.dumps(res.to_dict()))  # JSON-able
    assert d["runtime"] == "ort" and d["threads"] == 1 and d["batch_sizes"] == [1, 4]
    assert [m["label"] for m in d["models"]] == ["Sequential (target)", "Sequential (against)"]
    for m in d["models"]:
        assert m["runtime"] == "ort" and m["file_bytes"] > 0 and m["weight_bytes"] > 0
        assert [t["batch"] for t in m["timings"]] == [1, 4]
        for t in m["timings"]:
            assert len(t["times_ms"]) == 3
            assert t["median_ms"] == pytest.approx(statistics.median(t["times_ms"]), rel=1e-6)
            assert t["min_ms"] <= t["median_ms"] <= t["max_ms"]
            assert t["throughput"] == pytest.approx(t["batch"] / (t["median_ms"] / 1e3))
    a, b = d["models"]
    for i, c in enumerate(d["comparison"]):  # paired ratios recomputed from the raw times
        ratios = [tb / ta for ta, tb in zip(a["timings"][i]["times_ms"], b["timings"][i]["times_ms"])]
        assert c["batch"] == [1, 4][i]
        assert c["speedup"] == pytest.approx(statistics.median(ratios), rel=1e-3)
        assert c["min"] <= c["speedup"] <= c["max"]
    text = format_table(res)
    assert "speedup" in text and "batch     4" in text
    assert format_table(d) == text  # works on the JSON form too


def test_torch_runtime_runs_in_alternation():
    log = SharedLog()
    res = benchmark(Recorder("A", log), against=Recorder("B", log), runtime="torch", input_shape=(3, 4, 4),
                    batch_sizes=(2,), labels=("a", "b"), **FAST)
    # load-time first run A then B, then warm-up (1 round) and 3 timed rounds, alternating
    assert log == ["A", "B"] + ["A", "B"] * (1 + 3)
    assert [m["label"] for m in res.to_dict()["models"]] == ["a", "b"]
    weights = sum(t.numel() * t.element_size() for t in Recorder("A", SharedLog()).state_dict().values())
    assert res.models[0].weight_bytes == weights and res.models[0].runtime == "torch"
    assert res.comparison is not None and len(res.comparison) == 1


def test_onnx_file_target(tmp_path):
    path = export_onnx(small(8), tmp_path / "s.onnx", (3, 8, 8)).path
    res = benchmark(path, batch_sizes=3, **FAST)
    assert res.comparison is None and res.input_shape == (3, 8, 8)  # taken from the file
    assert res.models[0].file_bytes == path.stat().st_size and res.models[0].label == "s"
    assert [t.batch for t in res.models[0].timings] == [3]


@pytest.mark.skipif(importlib.util.find_spec("tensorslim.modeldir") is None, reason="no tensorslim.modeldir")
def test_model_directory_target(tmp_path):
    from tensorslim import modeldir, models

    if "lenet5" not in models.names():
        pytest.skip("lenet5 not registered")
    model = modeldir.build({"builder": "lenet5", "kwargs": {}}, (1, 28, 28))
    modeldir.save(model, tmp_path / "lenet", input_shape=(1, 28, 28))
    res = benchmark(tmp_path / "lenet", runtime="torch", batch_sizes=(1,), **FAST)
    assert res.input_shape == (1, 28, 28) and res.models[0].label == "lenet"
    assert res.models[0].file_bytes == (tmp_path / "lenet" / "weights.safetensors").stat().st_size


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"threads": 0}, "threads"),
        ({"threads": -2}, "threads"),
        ({"threads": "4"}, "threads"),
        ({"threads": 1.5}, "threads"),
        ({"threads": True}, "threads"),
        ({"batch_sizes": ()}, "at least one"),
        ({"batch_sizes": (1, 0)}, "batch sizes"),
        ({"batch_sizes": "32"}, "batch sizes"),
        ({"batch_sizes": (2.5,)}, "batch sizes"),
        ({"repeats": 0}, "repeats"),
        ({"warmup": -1}, "warmup"),
        ({"runtime": "tensorrt"}, "runtime"),
        ({"input_shape": None}, "input shape"),
        ({"input_shape": (3, -8, 8)}, "positive"),
        ({"labels": ("only one",)}, "labels"),
    ],
)
def test_bad_arguments(kwargs, needle):
    args = {"input_shape": (3, 8, 8), "batch_sizes": (1,), **kwargs}
    with pytest.raises(TensorSlimError) as info:
        benchmark(small(4), **args)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_bad_targets(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_text("not a model")
    with pytest.raises(TensorSlimError, match="not an ONNX model"):
        benchmark(bad, batch_sizes=(1,))
    with pytest.raises(BenchError, match="no such file"):
        benchmark(tmp_path / "missing.onnx")
    with pytest.raises(BenchError, match="not a model directory"):
        benchmark(tmp_path)
    with pytest.raises(BenchError, match="cannot benchmark"):
        benchmark(42)
    fixed = export_onnx(small(4), tmp_path / "fixed.onnx", (3, 8, 8), batch=2).path
    timed = benchmark(fixed, batch_sizes=(1, 2), warmup=0, repeats=1)  # its own batch, and a note that says so
    assert [t.batch for t in timed.models[0].timings] == [2] and "fixed batch of 2" in timed.notes[0]
    other = export_onnx(small(4), tmp_path / "fixed3.onnx", (3, 8, 8), batch=3).path
    with pytest.raises(BenchError, match="cannot be timed at the same batch"):
        benchmark(fixed, against=other)
    with pytest.raises(BenchError, match="runtime 'ort'"):
        benchmark(fixed, runtime="torch")
    with pytest.raises(BenchError, match="input shape"):
        benchmark(fixed, against=small(4), input_shape=(3, 9, 9), batch_sizes=(2,))
    with pytest.raises(BenchError, match="fails at batch"):
        benchmark(nn.Linear(5, 2), runtime="torch", input_shape=(3,), batch_sizes=(1,))


def test_memory_and_file_size_next_to_latency(tmp_path):
    """Peak RSS of the session per batch size (the peak so far, so non-decreasing) and the file size, in the JSON
    and in each row of the table."""
    path = export_onnx(small(8), tmp_path / "m.onnx", (3, 8, 8)).path
    res = benchmark(path, batch_sizes=(1, 16), **FAST)
    m = res.to_dict()["models"][0]
    assert m["file_bytes"] == path.stat().st_size
    peaks = [t["peak_rss_bytes"] for t in m["timings"]]
    assert all(isinstance(p, int) and 0 <= p <= m["peak_rss_bytes"] < 2 << 30 for p in peaks)
    assert peaks == sorted(peaks)
    rows = [ln for ln in format_table(res).splitlines() if ln.startswith("m  ")]
    assert len(rows) == 2 and all(ln.endswith(f"{m['file_bytes'] / 1000:.1f} kB") for ln in rows)  # 1-999 kB
