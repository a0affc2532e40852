"""Reports: JSON content checked against values computed here, PNGs decoded, the HTML rendered by Chromium."""

from __future__ import annotations

import base64
import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import torch.utils.flop_counter
from PIL import Image

from tensorslim.errors import TensorSlimError
from tensorslim.report import ReportError, pareto_front, write_report

LAYERS = [  # name, params before/after, MACs before/after
    ("features.conv2", 4608, 600, 903168, 117600),
    ("features.conv3", 9216, 1050, 451584, 51450),
    ("classifier.fc1", 147456, 10000, 147456, 10000),
]


def make_dir(root: Path, name: str, *, metrics: dict | None, compressed: bool = False,
             builder: str = "convnet", meta: bool = True) -> Path:
    d = root / name
    d.mkdir(parents=True)
    if meta:
        comp = None
        if compressed:
            comp = {"plans": [{}], "skipped": [], "layers": [
                {"name": n, "type": "CPConv2d" if "conv" in n else "SVDLinear", "config": {},
                 "method": "cp" if "conv" in n else "svd", "rank": 4, "params_before": pb, "params_after": pa,
                 "macs_before": mb, "macs_after": ma} for n, pb, pa, mb, ma in LAYERS]}
        (d / "model.json").write_text(json.dumps({
            "format": "tensorslim-model", "version": 1, "spec": {"builder": builder, "kwargs": {}},
            "input_shape": [1, 28, 28], "dataset": "fashion-mnist", "compression": comp}))
    if metrics is not None:
        (d / "metrics.json").write_text(json.dumps(metrics))
    return d


@pytest.fixture
def model_dirs(tmp_path) -> list[Path]:
    root = tmp_path / "models"
    base = make_dir(root, "convnet", metrics={"accuracy": {"test": 91.5, "val": 92.0}, "params": 220000,
                                              "macs": 5_700_000, "latency": {"1": {"median_ms": 0.40}}})
    small = make_dir(root, "cp-small", compressed=True, metrics={
        "accuracy": {"test": 89.0}, "params": 40000, "macs": 3_000_000, "latency": 0.20,
        "original": {"path": str(base), "params": 220000, "macs": 5_700_000}})
    mid = make_dir(root, "cp-mid", compressed=True, metrics={  # its latency comes from bench.json
        "accuracy": {"test": 90.5}, "params": 90000, "macs": 4_000_000})
    (mid / "bench.json").write_text(json.dumps({"runtime": "ort", "threads": 2, "models": [
        {"label": "cp-mid", "runtime": "ort", "timings": [{"batch": 8, "median_ms": 2.0},
                                                          {"batch": 1, "median_ms": 0.30}]}]}))
    worse = make_dir(root, "cp-worse", compressed=True, metrics={  # dominated everywhere by cp-mid
        "accuracy": {"test": 88.0}, "params": 95000, "macs": 4_100_000, "latency": 0.35})
    other = make_dir(root, "lenet", builder="lenet5", metrics={"accuracy": 89.0, "params": 61706})
    return [base, small, mid, worse, other]


def test_report_content(tmp_path, model_dirs):
    out = tmp_path / "report"
    report = write_report(model_dirs, out, compute_missing=False)
    assert json.loads((out / "report.json").read_text()) == report
    by = {m["name"]: m for m in report["models"]}
    assert by["convnet"]["accuracy"] == 91.5 and by["convnet"]["accuracy_split"] == "test"
    assert by["convnet"]["latency_ms"] == 0.40 and by["cp-mid"]["latency_ms"] == 0.30  # from bench.json
    assert by["lenet"]["macs"] is None and by["lenet"]["latency_ms"] is None
    # originals: cp-small names its path; cp-mid / cp-worse matched by identical spec and dataset
    assert by["cp-small"]["original"] == by["cp-mid"]["original"] == "convnet"
    assert by["cp-small"]["ratios"]["params"] == pytest.approx(220000 / 40000)
    assert by["cp-small"]["ratios"]["speedup"] == pytest.approx(0.40 / 0.20)
    assert by["cp-small"]["ratios"]["accuracy_delta"] == pytest.approx(89.0 - 91.5)
    assert by["cp-small"]["method"] == "cp×2, svd×1"
    # Pareto fronts, brute force here
    for key, field in (("params", "params"), ("macs", "macs"), ("latency", "latency_ms")):
        pts = {m["name"]: (m[field], m["accuracy"]) for m in report["models"] if m[field] is not None}
        expected = {n for n, (c, a) in pts.items()
                    if not any(c2 <= c and a2 >= a and (c2, a2) != (c, a) for c2, a2 in pts.values())}
        assert set(report["pareto"][key]) == expected, key
        assert "cp-worse" not in report["pareto"][key]
    # plots: listed, on disk, real PNGs, and embedded byte for byte in the page
    files = [p["file"] for p in report["plots"]]
    assert files[:3] == ["accuracy_vs_params.png", "accuracy_vs_macs.png", "accuracy_vs_latency.png"]
    assert {"layers_cp-small.png", "layers_cp-mid.png", "layers_cp-worse.png"} <= set(files)
    page = (out / "index.html").read_text()
    embedded = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(embedded) == len(files)
    for f, b64 in zip(files, embedded):
        with Image.open(out / f) as im:
            assert im.format == "PNG" and im.width > 300 and im.height > 200
        assert base64.b64decode(b64) == (out / f).read_bytes()
    # self-contained: no external resource of any kind
    assert not re.search(r'(src|href)\s*=\s*"(?!data:)', page)
    assert "http://" not in page and "https://" not in page and "<link" not in page
    assert sorted(p.name for p in out.iterdir()) == sorted([*files, "index.html", "report.json"])


def test_fractions_missing_keys_and_notes(tmp_path):
    a = make_dir(tmp_path, "a", metrics={"accuracy": {"val": 0.8}, "params": 10})
    b = make_dir(tmp_path, "b", metrics=None)  # model.json only
    c = make_dir(tmp_path, "c", metrics={"accuracy": 0.9, "macs": 100}, meta=False)  # metrics.json only
    report = write_report([a, b, c], tmp_path / "out", compute_missing=False)
    by = {m["name"]: m for m in report["models"]}
    assert by["a"]["accuracy"] == pytest.approx(80.0) and by["a"]["accuracy_split"] == "val"
    assert by["b"]["accuracy"] is None and by["b"]["params"] is None
    assert by["c"]["builder"] is None and by["c"]["accuracy"] == pytest.approx(90.0)
    notes = " | ".join(report["notes"])
    assert "fractions" in notes and "b: no accuracy, params, macs" in notes and "different splits" in notes
    assert report["pareto"] == {"params": ["a"], "macs": ["c"]}
    assert (tmp_path / "out" / "index.html").exists()


@pytest.mark.skipif(importlib.util.find_spec("tensorslim.cost") is None, reason="no tensorslim.cost")
def test_missing_costs_are_computed_from_the_model(tmp_path):
    from tensorslim import modeldir, models

    if "lenet5" not in models.names():
        pytest.skip("lenet5 not registered")
    model = modeldir.build({"builder": "lenet5", "kwargs": {}}, (1, 28, 28))
    modeldir.save(model, tmp_path / "lenet", input_shape=(1, 28, 28), metrics={"accuracy": {"test": 97.0}})
    report = write_report([tmp_path / "lenet"], tmp_path / "out")
    entry = report["models"][0]
    assert entry["params"] == sum(p.numel() for p in model.parameters())
    with torch.utils.flop_counter.FlopCounterMode(display=False) as counter, torch.no_grad():
        model.eval()(torch.zeros(1, 1, 28, 28))
    assert entry["macs"] == counter.get_total_flops() // 2


def test_bad_inputs_leave_nothing(tmp_path, model_dirs):
    out = tmp_path / "out"
    with pytest.raises(ReportError, match="no model directory"):
        write_report([], out)
    with pytest.raises(ReportError, match="no such model directory"):
        write_report([tmp_path / "nope"], out)
    broken = make_dir(tmp_path, "broken", metrics=None)
    (broken / "metrics.json").write_text("{not json")
    with pytest.raises(TensorSlimError) as info:
        write_report([*model_dirs, broken], out)
    assert "metrics.json: not valid JSON" in str(info.value) and "\n" not in str(info.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ReportError, match="neither model.json nor metrics.json"):
        write_report([empty], out)
    assert not out.exists()
    # never replace a model directory or a folder that is not a previous report
    with pytest.raises(ReportError, match="would replace the model directory"):
        write_report(model_dirs, model_dirs[0].parent)
    with pytest.raises(ReportError, match="not empty"):
        write_report(model_dirs[:1], broken)
    assert (broken / "metrics.json").exists()
    # a previous report is replaced as a whole
    write_report(model_dirs[:1], out, compute_missing=False)
    (out / "stale.txt").write_text("x")
    write_report(model_dirs[:2], out, compute_missing=False)
    assert not (out / "stale.txt").exists()
    assert len(json.loads((out / "report.json").read_text())["models"]) == 2


def test_pareto_front():
    pts = [(10, 0.5), (5, 0.6), (5, 0.4), (20, 0.9), (30, 0.9), (1, 0.1)]
    assert pareto_front(pts) == [5, 1, 3]
    assert pareto_front([]) == []
    assert pareto_front([(2, 0.5), (1, 0.5), (1, 0.5)]) == [1]  # of equal points the first; (2, 0.5) is beaten


CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser", shutil.which("chromium") or "",
                             shutil.which("google-chrome") or "") if p and Path(p).exists()), None)


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium found (/usr/bin/chromium): cannot render the page")
def test_page_renders_in_headless_chromium(tmp_path, model_dirs):
    out = tmp_path / "report"
    report = write_report(model_dirs, out, compute_missing=False)
    # a copy of the page with a probe script: the title becomes "loaded:<decoded images>/<images>"
    probe = ("<script>window.addEventListener('load',function(){var im=[].slice.call(document.images);"
             "document.title='loaded:'+im.filter(function(i){return i.complete&&i.naturalWidth>0})"
             ".length+'/'+im.length;});</script>")
    page = out / "probe.html"
    page.write_text((out / "index.html").read_text().replace("</body>", probe + "</body>"))
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
           "--virtual-time-budget=10000", "--dump-dom", page.as_uri()]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    n = len(report["plots"])
    assert f"<title>loaded:{n}/{n}</title>" in dom, dom[:300]
    assert "cp-small" in dom and "Pareto" in dom


def test_paired_benchmark_gives_speedup_and_original_latency(tmp_path):
    base = make_dir(tmp_path, "base", metrics={"accuracy": 90.0, "params": 1000})
    comp = make_dir(tmp_path, "comp", compressed=True, metrics={"accuracy": 89.0, "params": 300})
    bench = {"runtime": "ort", "threads": 2, "batch_sizes": [1, 8],
             "models": [{"label": "comp", "runtime": "ort", "timings": [{"batch": 1, "median_ms": 0.5},
                                                                         {"batch": 8, "median_ms": 3.0}]},
                        {"label": "base", "runtime": "ort", "timings": [{"batch": 1, "median_ms": 1.2},
                                                                         {"batch": 8, "median_ms": 9.0}]}],
             "comparison": [{"batch": 1, "speedup": 2.3, "min": 2.0, "max": 2.6},
                            {"batch": 8, "speedup": 3.1, "min": 2.9, "max": 3.3}]}
    (comp / "bench.json").write_text(json.dumps(bench))
    report = write_report([base, comp], tmp_path / "out", compute_missing=False)
    by = {m["name"]: m for m in report["models"]}
    assert by["comp"]["latency_ms"] == 0.5 and by["base"]["latency_ms"] == 1.2
    assert by["comp"]["ratios"]["speedup"] == 2.3  # the paired ratio, not 1.2 / 0.5
    assert report["pareto"]["latency"] == ["comp", "base"]
