"""BENCHMARKS.md: every generated table is exactly what benchmarks/render.py writes from benchmarks/results/*.json."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MD = ROOT / "BENCHMARKS.md"


def _render():
    spec = importlib.util.spec_from_file_location("bench_render", ROOT / "benchmarks" / "render.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_every_table_matches_its_json():
    render = _render()
    diff = render.check(MD)
    assert not diff, ("BENCHMARKS.md differs from what benchmarks/render.py writes; run "
                      ".venv/bin/python benchmarks/render.py\n" + "".join(diff))


def test_every_table_names_its_command():
    render = _render()
    found = render.tables(MD.read_text())
    assert found, "BENCHMARKS.md has no generated tables"
    for name, body in found.items():
        if name == "provenance":  # the commands are its rows
            assert "`" in body
            continue
        assert body.startswith("Command: `"), f"table {name} does not start with its command"


def test_check_fails_on_an_edited_number(tmp_path):
    render = _render()
    text = MD.read_text()
    body = render.tables(text)["models"]
    edited = body.replace(re.search(r"\d+\.\d\d", body.split("\n", 3)[3])[0], "99.99", 1)
    assert edited != body
    copy = tmp_path / "BENCHMARKS.md"
    copy.write_text(text.replace(body, edited))
    assert render.check(copy), "an edited number went unnoticed"
    assert render.main(["--check", "--file", str(copy)]) == 1


def test_unknown_or_unclosed_marker_is_an_error(tmp_path):
    render = _render()
    with pytest.raises(render.RenderError):
        render.render_text("<!-- table:no-such-table -->\nx\n<!-- /table:no-such-table -->\n")
    with pytest.raises(render.RenderError):
        render.render_text("<!-- table:models -->\nno closing marker\n")
