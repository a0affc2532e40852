"""Issue 17, the path a new user walks: each rough edge a first run meets, as a test."""

import json
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from tests.test_cli import run

from tensorslim import modeldir, models
from tensorslim.errors import ModelError
from tensorslim.records import parse_metrics


def _model_dir(path, *, num_classes=10, dataset="fashion-mnist", accuracy=90.49):
    model = models.build("lenet5", num_classes=num_classes)
    return modeldir.save(model, path, spec={"builder": "lenet5", "kwargs": {"num_classes": num_classes}},
                         input_shape=(1, 28, 28), dataset=dataset,
                         metrics={"accuracy": {"test": accuracy}, "evaluated_on": {"test": dataset}})


def _one_error_line(code, err):
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:"), err


# --- 1. evaluate on another dataset --------------------------------------------------------------------------


def test_evaluate_on_other_dataset_keeps_recorded_accuracy(tmp_path, capsys):
    path = _model_dir(tmp_path / "m")
    code, out, err = run(["evaluate", str(path), "--data", "digits"], capsys)
    assert code == 0, err
    metrics = json.loads((path / "metrics.json").read_text())
    assert metrics["accuracy"] == {"test": 90.49} and metrics["evaluated_on"] == {"test": "fashion-mnist"}
    assert set(metrics["evaluations"]) == {"digits"} and 0 <= metrics["evaluations"]["digits"]["test"] <= 100
    assert modeldir.read_metrics(path) == metrics


def test_evaluate_refuses_other_shape_or_classes_unless_forced(tmp_path, capsys):
    path = _model_dir(tmp_path / "m")
    before = (path / "metrics.json").read_text()
    code, _, err = run(["evaluate", str(path), "--data", "cifar10"], capsys)  # 3x32x32, refused before loading
    _one_error_line(code, err)
    assert "3,32,32" in err and "--force" in err
    five = _model_dir(tmp_path / "five", num_classes=5, dataset="digits")
    code, _, err = run(["evaluate", str(five), "--data", "digits"], capsys)
    _one_error_line(code, err)
    assert "10 classes" in err and "5 outputs" in err
    assert (path / "metrics.json").read_text() == before
    code, _, err = run(["evaluate", str(five), "--data", "digits", "--force", "--no-record"], capsys)
    assert code == 0, err


@pytest.mark.parametrize("bad", [{"digits": 19.5}, {"digits": {"test": 101}}, {"digits": {"test": "19.5"}}, [1]])
def test_metrics_evaluations_are_typed(bad):
    assert parse_metrics({"evaluations": {"digits": {"test": 19.5, "val": 20}}})
    with pytest.raises(ModelError, match="evaluations"):
        parse_metrics({"evaluations": bad})


# --- 2. small ones --------------------------------------------------------------------------------------------


def test_compress_prints_each_layer_once(tmp_path, capsys):
    path = _model_dir(tmp_path / "m", dataset="digits")
    code, out, err = run(["compress", str(path), "--method", "svd", "--rank", "4", "--layers", "classifier.*",
                          "--no-evaluate", "--out", str(tmp_path / "c")], capsys)
    assert code == 0, err
    layers = [e["name"] for e in modeldir.read_meta(tmp_path / "c")["compression"]["layers"]]
    assert layers
    for name in layers:
        assert sum(line.startswith(name + " ") or line.startswith(name + ":") for line in out.splitlines()) == 1, out
    assert "params " in out.splitlines()[-1]


def test_search_help_marks_out_required(tmp_path, capsys):
    code, out, _ = run(["search", "--help"], capsys)
    assert code == 0
    help_text = re.sub(r"(?<=\w)-\s+", "-", " ".join(out.split()))  # click may wrap inside --worker-only
    assert "--out DIR" in help_text and "[required unless --worker-only]" in help_text
    code, _, err = run(["search", "--data", "synthetic"], capsys)
    _one_error_line(code, err)
    assert "--out" in err


def test_mistyped_directory_is_not_an_unknown_model(tmp_path, capsys):
    _model_dir(tmp_path / "runs" / "convnet")
    code, _, err = run(["inspect", str(tmp_path / "runs" / "convnte")], capsys)
    _one_error_line(code, err)
    assert "no such directory" in err and "did you mean" in err and "convnet" in err
    assert "unknown model" not in err
    code, _, err = run(["inspect", str(tmp_path / "nothere" / "m")], capsys)
    _one_error_line(code, err)
    assert "no such directory" in err
    code, _, err = run(["inspect", "nosuchnet"], capsys)  # a bare name is still a model name
    _one_error_line(code, err)
    assert "nosuchnet" in err and "no such directory" not in err


def test_bench_times_a_fixed_batch_onnx_at_its_own_batch(tmp_path, capsys):
    from tensorslim.export import export_onnx

    onnx = export_onnx(models.build("lenet5"), tmp_path / "fixed.onnx", (1, 28, 28), batch=4).path
    code, out, err = run(["bench", str(onnx), "--repeats", "1", "--warmup", "0", "--json"], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["batch_sizes"] == [4] and [t["batch"] for t in result["models"][0]["timings"]] == [4]
    assert any("fixed batch of 4" in n and "timed at batch 4" in n for n in result["notes"])
    code, out, err = run(["bench", str(onnx), "--repeats", "1", "--warmup", "0"], capsys)
    assert code == 0 and "note: " in out and "fixed batch of 4" in out, err


def test_rerun_of_a_finished_train_loads_no_data(tmp_path, capsys, monkeypatch):
    out_dir = tmp_path / "m"
    argv = ["train", "lenet5", "--data", "synthetic", "--epochs", "1", "--optimizer", "adamw", "--out", str(out_dir)]
    code, _, err = run(argv, capsys)
    assert code == 0, err
    recorded = (out_dir / "metrics.json").read_text()

    def no_data(*args, **kwargs):
        raise AssertionError("a finished run loaded a dataset")

    monkeypatch.setattr("tensorslim.data.load", no_data)
    code, out, err = run(argv, capsys)
    assert code == 0, err
    assert "nothing to do" in out and "test accuracy" in out
    assert (out_dir / "metrics.json").read_text() == recorded
    with pytest.raises(AssertionError, match="loaded a dataset"):  # more epochs: resumes, so needs the data
        run([*argv[:5], "2", *argv[6:]], capsys)


def test_layer_bars_are_in_network_order():
    from tensorslim.report.entry import Entry
    from tensorslim.report.plots import _MAX_BARS, bar_order, layer_bars

    profile = [{"name": n, "params": 1, "macs": 1} for n in
               ("features.conv1.0", "features.conv1.1", "features.conv2", "classifier.fc1", "classifier.fc3")]
    e = Entry(name="m", path=Path("m"), compressed=True, profile=profile)
    rows = [("classifier.fc1", 100, 10, 100, 10), ("features.conv2", 50, 5, 900, 90),
            ("features.conv1", 30, 3, 5000, 500), ("classifier.fc3", 8, 4, 8, 4)]
    assert [r[0] for r in bar_order(e, rows)] == ["features.conv1", "features.conv2", "classifier.fc1",
                                                  "classifier.fc3"]
    many = [(f"l{k}", 1, 1, k, 1) for k in range(_MAX_BARS + 5)]  # not in the profile: record order
    kept = bar_order(Entry(name="m", path=Path("m")), many)
    assert [r[0] for r in kept] == [f"l{k}" for k in range(5, _MAX_BARS + 5)]
    assert layer_bars(e, rows).startswith(b"\x89PNG")


def test_report_folder_is_git_ignored():
    root = Path(__file__).resolve().parents[1]
    assert "/report/" in (root / ".gitignore").read_text().splitlines()
    if shutil.which("git") and (root / ".git").exists():
        ignored = subprocess.run(["git", "-C", str(root), "check-ignore", "-q", "report/index.html"])
        assert ignored.returncode == 0
        kept = subprocess.run(["git", "-C", str(root), "check-ignore", "-q", "src/tensorslim/report/plots.py"])
        assert kept.returncode == 1  # the package's report/ stage is not caught by it


def test_onnx_files_follow_the_umask(tmp_path):
    out = tmp_path / "m.onnx"
    script = ("import os, sys; os.umask(0o027); from tensorslim.cli import main; "
              "main(['export', 'lenet5', '--out', sys.argv[1], '--data', 'none'])")
    done = subprocess.run([sys.executable, "-c", script, str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o640  # 0o666 & ~0o027, not mkstemp's 0o600
    assert not [p for p in tmp_path.iterdir() if p.name != "m.onnx"]  # no temporary left beside it


def test_bench_defaults_to_one_thread_and_says_so(tmp_path, capsys):
    """The quickstart's bench used to time at torch's thread count (2 here), where small factorized models show
    no speedup; the default is now 1 thread, and the table's header names the runtime, threads and input."""
    import torch

    import tensorslim
    from tensorslim.cli import main

    torch.manual_seed(0)
    tensorslim.save(tensorslim.models.build("lenet5"), tmp_path / "m")
    main(["bench", str(tmp_path / "m"), "--batch", "1", "--repeats", "2", "--warmup", "0", "--json"])
    import json

    result = json.loads(capsys.readouterr().out)
    assert result["threads"] == 1 and result["runtime"] == "ort"
    main(["bench", str(tmp_path / "m"), "--batch", "1", "--repeats", "2", "--warmup", "0"])
    header = capsys.readouterr().out.splitlines()[0]
    assert header.startswith("runtime ort, 1 thread") and "input 1x28x28" in header


def test_report_measures_latency_on_request_and_says_how_otherwise(tmp_path, capsys):
    """The report had no latency unless `bench --save` ran first, and never said so."""
    import json

    import torch

    import tensorslim
    from tensorslim.cli import main

    torch.manual_seed(0)
    tensorslim.save(tensorslim.models.build("lenet5"), tmp_path / "m")
    main(["report", str(tmp_path / "m"), "--out", str(tmp_path / "r1")])
    report = json.loads((tmp_path / "r1" / "report.json").read_text())
    assert report["models"][0]["latency_ms"] is None
    assert any("--latency" in n and "bench DIR --save" in n for n in report["notes"])
    main(["report", str(tmp_path / "m"), "--out", str(tmp_path / "r2"), "--latency"])
    model = json.loads((tmp_path / "r2" / "report.json").read_text())["models"][0]
    assert model["latency_ms"] > 0 and model["latency_batch"] == 1
    assert model["latency_source"].startswith("ort, 1 thr")
    assert "ort, 1 thr, measured, batch 1" in (tmp_path / "r2" / "index.html").read_text()
