"""benchmarks/verify.py: the committed models re-measure to the numbers in BENCHMARKS.md (timing left out),
and a changed number, in a copy of BENCHMARKS.md, of verify.json or of a committed metrics.json, fails it.

The real files are never edited: every failure case works on temporary copies. Timings are never asserted.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from tensorslim import data

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
SMALL = "convnet-fashion-mnist"  # the quickest committed model to re-measure

pytestmark = pytest.mark.skipif(
    not any(s.name == "fashion-mnist" and s.found for s in data.available()),
    reason="Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist): the committed models are "
           "verified on its official test split")


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def verify():
    return _load("verify")


@pytest.fixture
def copies(tmp_path):
    """Temporary copies of BENCHMARKS.md, benchmarks/results/verify.json and benchmarks/models/."""
    md = tmp_path / "BENCHMARKS.md"
    shutil.copy(ROOT / "BENCHMARKS.md", md)
    results = tmp_path / "results"
    results.mkdir()
    shutil.copy(BENCH / "results" / "verify.json", results / "verify.json")
    for name in ("int8.json", "int8-earlier-cpu.json"):  # the int8 table's sources
        shutil.copy(BENCH / "results" / name, results / name)
    models = tmp_path / "models"
    shutil.copytree(BENCH / "models", models)
    return {"md": md, "results": results, "models": models}


def _args(c: dict, *more: str) -> list[str]:
    return ["--no-timing", "--benchmarks-md", str(c["md"]), "--results", str(c["results"]),
            "--models", str(c["models"]), *more]


def test_committed_models_match_benchmarks_md(verify, capsys):
    assert verify.main(["--no-timing"]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    for name in ("test accuracy %", "params", "macs", "ONNX verified"):
        assert name in out


def test_every_committed_model_is_in_the_tables():
    recorded = json.loads((BENCH / "results" / "verify.json").read_text())
    committed = {p.name for p in (BENCH / "models").iterdir() if (p / "model.json").is_file()}
    assert committed == {m["name"] for m in recorded["models"]}
    for m in recorded["models"]:
        prov = json.loads((BENCH / "models" / m["name"] / "metrics.json").read_text())["provenance"]
        assert prov["command"] and len(prov["commit"]) == 40


def test_fails_when_a_number_in_benchmarks_md_changes(verify, copies, capsys):
    text = copies["md"].read_text()
    rec = json.loads((copies["results"] / "verify.json").read_text())
    acc = next(m for m in rec["models"] if m["name"] == SMALL)["test_accuracy"]
    body = _load("render").tables(text)["committed"]
    printed = f"{acc:.2f} %"
    assert printed in body
    copies["md"].write_text(text.replace(body, body.replace(printed, f"{acc + 0.3:.2f} %", 1)))
    assert verify.main(_args(copies, "--only", SMALL)) == 1
    assert "differ from what benchmarks/render.py writes" in capsys.readouterr().err


def test_fails_when_a_committed_metric_changes(verify, copies, capsys):
    metrics = copies["models"] / SMALL / "metrics.json"
    m = json.loads(metrics.read_text())
    m["accuracy"]["test"] += 0.5
    metrics.write_text(json.dumps(m))
    assert verify.main(_args(copies, "--only", SMALL)) == 1
    err = capsys.readouterr().err
    assert f"{SMALL}: test accuracy % (its metrics.json)" in err


def test_fails_when_the_table_and_its_json_agree_but_the_model_does_not(verify, copies, capsys):
    # change the params count in verify.json AND re-render the copy of BENCHMARKS.md from it: the tables are
    # consistent, the measurement is not
    render = _load("render")
    path = copies["results"] / "verify.json"
    rec = json.loads(path.read_text())
    row = next(m for m in rec["models"] if m["name"] == SMALL)
    row["params"] += 1
    path.write_text(json.dumps(rec))
    copies["md"].write_text(render.render_text(copies["md"].read_text(), copies["results"], only=verify.TABLES))
    assert not render.check(copies["md"], copies["results"], only=verify.TABLES)
    assert verify.main(_args(copies, "--only", SMALL)) == 1
    assert f"{SMALL}: params: BENCHMARKS.md says {row['params']:,}" in capsys.readouterr().err


def test_the_int8_headline_is_re_measured_and_a_changed_figure_fails(verify, copies, capsys):
    assert verify.main(_args(copies, "--only", "int8")) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "int8 factorized file bytes" in out and "int8 factorized test accuracy %" in out
    # one more byte in the JSON and the copy of BENCHMARKS.md rendered from it: consistent tables, wrong figure
    render = _load("render")
    path = copies["results"] / "int8.json"
    doc = json.loads(path.read_text())
    doc["files"]["int8 factorized"]["bytes"] += 1
    path.write_text(json.dumps(doc))
    copies["md"].write_text(render.render_text(copies["md"].read_text(), copies["results"], only=verify.TABLES))
    assert verify.main(_args(copies, "--only", "int8")) == 1
    err = capsys.readouterr().err
    assert "int8 headline: int8 factorized file bytes: BENCHMARKS.md says " in err


def test_record_only_re_measures_one_model_and_keeps_the_other_rows(verify, copies, capsys):
    """``--record --only NAME`` (how a newly committed model gets its row): NAME is measured again and every
    other recorded row stays exactly as it was, in the same order."""
    path = copies["results"] / "verify.json"
    before = json.loads(path.read_text())
    doctored = json.loads(path.read_text())
    small = next(m for m in doctored["models"] if m["name"] == SMALL)
    small["test_accuracy"] = 12.34  # a stale row; the re-measured one must replace it
    path.write_text(json.dumps(doctored))
    assert verify.main(["--record", "--only", SMALL, "--results", str(copies["results"]),
                        "--models", str(copies["models"]), "--repeats", "5"]) == 0, capsys.readouterr().err
    after = json.loads(path.read_text())
    assert [m["name"] for m in after["models"]] == [m["name"] for m in before["models"]]
    for old, new in zip(before["models"], after["models"]):
        if old["name"] != SMALL:
            assert new == old
    got = next(m for m in after["models"] if m["name"] == SMALL)
    old = next(m for m in before["models"] if m["name"] == SMALL)
    assert abs(got["test_accuracy"] - old["test_accuracy"]) <= verify.ACC_TOL
    assert (got["params"], got["macs"]) == (old["params"], old["macs"])
