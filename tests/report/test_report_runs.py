"""report of an explore or search output directory: its front beside the original / baselines."""

from __future__ import annotations

import json
import shutil

import pytest
from tests.report.test_report import make_dir

from tensorslim.report import ReportError, write_report


def _explore_run(tmp_path):
    base = make_dir(tmp_path, "convnet", metrics={"accuracy": {"test": 91.5}, "params": 220000, "macs": 5_700_000})
    run = tmp_path / "explore-out"
    points = []
    for i, (acc, params, macs) in enumerate([(91.0, 40000, 2_000_000), (89.0, 20000, 1_000_000),
                                             (85.0, 30000, 3_000_000)]):
        make_dir(run / "pareto", f"p{i:02d}", compressed=True,
                 metrics={"accuracy": {"test": acc}, "params": params, "macs": macs})
        points.append({"id": f"p{i:02d}", "path": f"pareto/p{i:02d}", "accuracy": acc})
    (run / "pareto.json").write_text(json.dumps({"format": "tensorslim-explore", "version": 1,
                                                 "model": str(base), "points": points}))
    return base, run


def test_explore_output_reports_front_and_original(tmp_path):
    base, run = _explore_run(tmp_path)
    doc = write_report([run], tmp_path / "rep")
    names = [m["name"] for m in doc["models"]]
    assert names == ["convnet", "p00", "p01", "p02"]
    assert doc["title"].startswith("tensorslim explore: explore-out")
    # the accuracy-vs-params front by hand: p01 (89 %, 20k) beats p02 (85 %, 30k) on both; p00 and the
    # original each have the best accuracy at their size
    front = {m["name"] for m in doc["models"] if m["pareto"]["params"]}
    assert front == {"convnet", "p00", "p01"}
    assert any("explore output, 4 model directories" in n for n in doc["notes"])


def test_moved_explore_output_still_reports_its_front(tmp_path):
    base, run = _explore_run(tmp_path)
    shutil.rmtree(base)
    moved = tmp_path / "moved"
    shutil.move(run, moved)
    doc = write_report([moved], tmp_path / "rep")
    assert [m["name"] for m in doc["models"]] == ["p00", "p01", "p02"]
    assert any("original model it compressed is not where" in n for n in doc["notes"])


def test_search_output_reports_front_and_baselines(tmp_path):
    run = tmp_path / "search-out"
    make_dir(run / "pareto", "trial-0007", builder="tensorslim.search.space:build_network",
             metrics={"accuracy": {"test": 90.0}, "params": 50000, "macs": 1_000_000})
    make_dir(run / "baselines", "convnet", metrics={"accuracy": {"test": 92.0}, "params": 220000,
                                                    "macs": 5_700_000})
    (run / "pareto.json").write_text(json.dumps({
        "study": "s", "pareto": [{"trial": 7, "dir": "/gone/trial-0007"}],
        "baselines": [{"model": "convnet", "dir": "/gone/convnet"}]}))
    doc = write_report([run], tmp_path / "rep")
    assert [m["name"] for m in doc["models"]] == ["trial-0007", "convnet"]
    assert doc["title"] == "tensorslim search: s (front and baselines)"


def test_broken_run_directory_is_one_error(tmp_path):
    base, run = _explore_run(tmp_path)
    shutil.rmtree(run / "pareto" / "p01")
    with pytest.raises(ReportError, match="the Pareto point"):
        write_report([run], tmp_path / "rep")
    (run / "pareto.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ReportError, match="neither an explore nor a search"):
        write_report([run], tmp_path / "rep")
    assert not (tmp_path / "rep").exists()
