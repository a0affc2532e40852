"""The model directories of an ``explore`` or ``search`` output directory, for one Pareto view.

``tensorslim report RUN_DIR`` (or :func:`tensorslim.report.write_report` given such a directory) reports
the run's models beside the models it is compared with, so the plots show its front with its baseline:

* an **explore** output (``pareto.json`` with ``"format": "tensorslim-explore"``): the original model it
  compressed (``"model"``) and every Pareto point (``pareto/<id>/``);
* a **search** output (``pareto.json`` with a ``"study"`` and a ``"pareto"`` list): every retrained front
  model (``pareto/trial-NNNN/``) and every baseline (``baselines/<name>/``).

Paths recorded in ``pareto.json`` are read relative to the run directory when the recorded one is gone
(a moved or copied run). :func:`expand` leaves every other directory as it is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..records import read_json_object
from .entry import ReportError

PARETO = "pareto.json"


def run_kind(path: Path) -> str | None:
    """``"explore"``, ``"search"`` or None (not a run directory: no ``pareto.json``)."""
    if not (path / PARETO).is_file() or (path / "model.json").is_file():
        return None
    doc = read_json_object(path / PARETO, f"{path}/{PARETO}")
    if doc.get("format") == "tensorslim-explore":
        return "explore"
    if "study" in doc and isinstance(doc.get("pareto"), list):
        return "search"
    raise ReportError(f"{path}/{PARETO}: neither an explore nor a search result")


def _located(run: Path, recorded: Any, relative: Path, what: str) -> Path:
    if isinstance(recorded, str) and Path(recorded).is_dir():
        return Path(recorded)
    if (run / relative).is_dir():
        return run / relative
    raise ReportError(f"{run}/{PARETO}: {what} {recorded!r} is missing (not at {run / relative} either)")


def run_dirs(run: Path) -> tuple[str, list[Path], str]:
    """(kind, the model directories to report, a title) of the run directory ``run``."""
    kind = run_kind(run)
    doc = read_json_object(run / PARETO, f"{run}/{PARETO}")
    if kind == "explore":
        points = doc.get("points")
        if not isinstance(points, list) or not all(isinstance(p, dict) and isinstance(p.get("path"), str)
                                                   for p in points):
            raise ReportError(f"{run}/{PARETO}: 'points' must be a list of points with a 'path'")
        original = doc.get("model")
        dirs = [Path(original)] if isinstance(original, str) and Path(original).is_dir() else []
        dirs += [_located(run, None, Path(p["path"]), "the Pareto point") for p in points]
        return kind, dirs, f"tensorslim explore: {run.name} ({len(points)} Pareto points and the original)"
    if kind == "search":
        dirs = []
        for key, sub, field in (("pareto", "pareto", "trial"), ("baselines", "baselines", "model")):
            entries = doc.get(key) or []
            if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
                raise ReportError(f"{run}/{PARETO}: '{key}' must be a list of objects")
            for e in entries:
                name = f"trial-{e.get(field):04d}" if key == "pareto" and isinstance(e.get(field), int) \
                    else str(e.get(field))
                dirs.append(_located(run, e.get("dir"), Path(sub) / name, f"the {key} entry"))
        return kind, dirs, f"tensorslim search: {doc.get('study')} (front and baselines)"
    raise ReportError(f"{run}: not an explore or search output (no {PARETO})")


def modeldir_is_original(d: Path, run: Path) -> bool:
    """True for a reported directory that is not inside the run (the explore's original model)."""
    return run.resolve() not in d.resolve().parents


def expand(paths: list[Path]) -> tuple[list[Path], str | None, list[str]]:
    """``paths`` with every run directory replaced by its models (deduplicated, in order); a title when one run
    was given; one note per expanded run."""
    out: list[Path] = []
    notes: list[str] = []
    title = None
    for p in paths:
        if run_kind(p) is None:
            out.append(p)
            continue
        kind, dirs, title = run_dirs(p)
        notes.append(f"{p}: {kind} output, {len(dirs)} model directories reported")
        if kind == "explore" and not any(modeldir_is_original(d, p) for d in dirs):
            notes.append(f"{p}: the original model it compressed is not where {PARETO} says; give its directory "
                         "too to see the front with its baseline")
        out += dirs
    seen: set[Path] = set()
    unique = []
    for d in out:
        if d.resolve() not in seen:
            seen.add(d.resolve())
            unique.append(d)
    return unique, title if len(paths) == 1 else None, notes
