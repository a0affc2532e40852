"""The stages of src/tensorslim import only the stages below them (docs/ARCHITECTURE.md), with no cycle.

Every ``import`` and ``from ... import`` in every module is read from its AST, module-level and function-level
alike, and mapped to the stage (top-level module or package) it names. ``KNOWN`` lists the upward imports that
are still there; a new one fails, and so does a listed one once it is gone (delete it from the list then).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "tensorslim"

#: lowest first; a stage may import the stages before it
ORDER = ["errors", "records", "_atomic", "_interrupt", "decompose", "layers", "methods", "cost", "plan", "surgery",
         "models", "trust", "modeldir", "data", "distributed", "train", "resolve", "study", "finetune", "explore",
         "search", "export", "report", "workflows", "cli", "__init__"]

#: upward imports still to be removed: none (a new one fails the test)
KNOWN: set[tuple[str, str]] = set()


def stage_of(parts: tuple[str, ...]) -> str:
    return parts[0].removesuffix(".py")


def imports() -> set[tuple[str, str]]:
    edges = set()
    for file in SRC.rglob("*.py"):
        rel = file.relative_to(SRC).parts
        here = stage_of(rel)
        package = list(rel[:-1])
        for node in ast.walk(ast.parse(file.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                if node.module:
                    targets.append([*base, *node.module.split(".")])
                else:
                    targets += [[*base, alias.name] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "tensorslim":
                targets.append(node.module.split(".")[1:] or ["__init__"])
            elif isinstance(node, ast.Import):
                targets += [a.name.split(".")[1:] for a in node.names if a.name.split(".")[0] == "tensorslim"]
            for target in targets:
                if target and stage_of(tuple(target)) != here:
                    edges.add((here, stage_of(tuple(target))))
    return edges


def test_every_stage_is_placed():
    stages = {stage_of(p.relative_to(SRC).parts) for p in SRC.rglob("*.py")}
    assert stages - set(ORDER) == set(), "add new stages to ORDER and docs/ARCHITECTURE.md"


def test_imports_only_go_down():
    rank = {s: i for i, s in enumerate(ORDER)}
    upward = {(a, b) for a, b in imports() if b in rank and rank[b] > rank[a]}
    assert upward - KNOWN == set(), "imports against the stage order"
    assert KNOWN - upward == set(), "fixed: remove these from KNOWN"


def test_no_import_cycle_between_stages():
    graph: dict[str, set[str]] = {}
    for a, b in imports():
        graph.setdefault(a, set()).add(b)
    done, path = set(), []

    def visit(node: str) -> None:
        if node in path:
            raise AssertionError(f"import cycle: {' -> '.join(path[path.index(node):] + [node])}")
        if node in done:
            return
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            visit(nxt)
        path.pop()
        done.add(node)

    for node in sorted(graph):
        visit(node)


def test_the_checker_sees_an_upward_import(tmp_path, monkeypatch):
    """The check can fail: a planted upward import (decompose importing cli) is found."""
    fake = tmp_path / "tensorslim"
    (fake / "decompose").mkdir(parents=True)
    (fake / "decompose" / "x.py").write_text("from ..cli import main\n")
    (fake / "cli.py").write_text("from .decompose import x\n")
    monkeypatch.setattr(sys.modules[__name__], "SRC", fake)
    assert ("decompose", "cli") in imports() and ("cli", "decompose") in imports()
