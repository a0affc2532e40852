"""Writing the report directory: ``report.json``, the PNG plots and ``index.html``, atomically as a whole."""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._atomic import atomic_dir
from . import runs
from .compare import link_originals, normalise_accuracy, unique_names
from .entry import ReportError
from .page import render
from .plots import COST_AXES, layer_bars, layer_rows, scatter
from .read import compute_costs, measure_latencies, read_entry

REPORT_JSON = "report.json"
INDEX_HTML = "index.html"


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "model"


def _check_out_dir(out: Path, dirs: list[Path]) -> None:
    """Refuse an ``out_dir`` whose replacement would destroy something that is not a previous report."""
    out_r = out.resolve()
    for d in dirs:
        d_r = d.resolve()
        if d_r == out_r or out_r in d_r.parents:
            raise ReportError(f"{out}: the report directory would replace the model directory {d}")
    if out.exists():
        if not out.is_dir():
            raise ReportError(f"{out}: exists and is not a directory")
        if any(out.iterdir()) and not (out / REPORT_JSON).exists():
            raise ReportError(f"{out}: exists, is not empty and holds no previous report; "
                              "choose another folder")


def write_report(model_dirs: Sequence[str | os.PathLike], out_dir: str | os.PathLike, *,
                 title: str = "tensorslim report", compute_missing: bool = True,
                 measure_latency: bool = False, threads: int = 1) -> dict[str, Any]:
    """Write ``report.json``, the PNG plots and ``index.html`` for ``model_dirs`` into ``out_dir``.

    An ``explore`` or ``search`` output directory among ``model_dirs`` stands for its models: its Pareto
    front and the original or baselines it is compared with (:mod:`.runs`).

    ``out_dir`` is replaced as a whole, atomically; it must be new, empty, or a previous report. With
    ``compute_missing``, params / MACs / per-layer costs absent from ``metrics.json`` are computed from the
    model (tensorslim.modeldir + tensorslim.cost). With ``measure_latency``, each model without a recorded
    latency is exported and timed in ONNX Runtime (batch 1, ``threads`` intra-op threads, median of 30 runs);
    without it, the notes say how to get one. Returns the content of ``report.json``.

    Raises:
        ReportError (a TensorSlimError): no directory given, a missing directory, unreadable JSON, or an
            ``out_dir`` that is not safe to replace.
    """
    if isinstance(model_dirs, (str, os.PathLike)):
        model_dirs = [model_dirs]
    dirs = [Path(d) for d in model_dirs]
    if not dirs:
        raise ReportError("no model directory given")
    dirs, run_title, notes = runs.expand(dirs)
    if run_title and title == "tensorslim report":
        title = run_title
    out = Path(out_dir)
    _check_out_dir(out, dirs)
    entries = [read_entry(d, notes) for d in dirs]
    if compute_missing:
        for e in entries:
            compute_costs(e, notes)
    unmeasured = [e for e in entries if e.latency_ms is None]
    if unmeasured and measure_latency:
        measure_latencies(unmeasured, threads, notes)
    elif unmeasured:
        notes.append(f"no latency for {', '.join(e.name for e in unmeasured)}: run `tensorslim report ... --latency` "
                     "(times each model in ONNX Runtime, batch 1, 1 thread) or `tensorslim bench DIR --save DIR`")
    unique_names(entries)
    normalise_accuracy(entries, notes)
    link_originals(entries)
    for e in entries:
        missing = [k for k in ("accuracy", "params", "macs") if getattr(e, k) is None]
        if missing:
            notes.append(f"{e.name}: no {', '.join(missing)} in metrics.json")
        if e.compressed and e.original is None and not e.original_ref:
            notes.append(f"{e.name}: compressed, but its original is not among the reported models")

    plots: list[tuple[str, str, bytes]] = []
    pareto: dict[str, list[str]] = {}
    for key, (_, file, caption) in COST_AXES.items():
        drawn = scatter(entries, key)
        if drawn is None:
            if key != "latency" or any(e.latency_ms for e in entries):
                notes.append(f"{file} not drawn: no model has both an accuracy and {COST_AXES[key][0]}")
            continue
        png, front = drawn
        pareto[key] = front
        plots.append((file, caption + " (Pareto-optimal models ringed)", png))
    for e in entries:
        e.pareto = {k: e.name in names for k, names in pareto.items()}
    by_name = {e.name: e for e in entries}
    for e in entries:
        if not e.compressed:
            continue
        rows = layer_rows(e, by_name.get(e.original) if e.original else None)
        if rows:
            file = f"layers_{_slug(e.name)}.png"
            while any(f == file for f, _, _ in plots):
                file = file.removesuffix(".png") + "_.png"
            caption = f"{e.name}: per-layer parameters and MACs, original vs compressed"
            plots.append((file, caption, layer_bars(e, rows)))
        else:
            notes.append(f"{e.name}: no per-layer costs (compression.layers or profiles) for the layer plot")

    generated = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    report = {
        "format": "tensorslim-report", "version": 1, "title": title, "generated": generated,
        "models": [e.to_dict() for e in entries], "pareto": pareto,
        "plots": [{"file": f, "caption": c} for f, c, _ in plots], "notes": notes,
    }
    page = render(title, entries, plots, notes, generated)
    with atomic_dir(out) as tmp:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; a report is meant to be shared
        (tmp / REPORT_JSON).write_text(json.dumps(report, indent=2) + "\n")
        for file, _, data in plots:
            (tmp / file).write_bytes(data)
        (tmp / INDEX_HTML).write_text(page, encoding="utf-8")
    return report
