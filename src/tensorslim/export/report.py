"""A comparison report over model directories: ``report.json``, PNG plots and one self-contained page.

:func:`write_report` reads each model directory, writes into ``out_dir`` (atomically, as a whole):

* ``report.json`` - every figure shown, per model, plus Pareto fronts, plot list and notes;
* ``accuracy_vs_params.png``, ``accuracy_vs_macs.png``, ``accuracy_vs_latency.png`` (each drawn when at least
  one model has both numbers): accuracy against cost, Pareto-optimal models ringed and joined by a step line;
* ``layers_<name>.png`` for each compressed model: params and MACs of every compressed layer, original vs
  compressed;
* ``index.html`` - a table of all models and the plots, the images embedded as base64 ``data:`` URIs with
  inline CSS and no external resource, so it opens straight from disk or as a mail attachment.

Keys read (anything missing is shown as "-" and listed in the report's notes; nothing else is required)
--------------------------------------------------------------------------------------------------------
``model.json`` (see :mod:`tensorslim.modeldir`):

* ``spec.builder``, ``spec.kwargs`` - shown; an uncompressed model with the same spec and dataset is taken as
  the original of a compressed one when ``metrics.json`` does not name it.
* ``dataset``, ``input_shape`` - shown; ``input_shape`` is also needed to compute missing costs.
* ``compression`` - null, or ``{"layers": [{"name", "type", "method", "rank", "params_before", "params_after",
  "macs_before", "macs_after"}, ...]}`` (as written by :mod:`tensorslim.surgery`): the method summary and the
  per-layer bars.

``metrics.json``:

* ``accuracy`` - a number or ``{split: number}``; the split is chosen in the order test, val, train, then the
  first key. Values are percentages; when every model's value is <= 1 they are read as fractions.
* ``params``, ``macs`` - totals. Fallback: ``profile.total``; then, when ``compute_missing`` is set, the cost
  profile of the loaded model (:func:`tensorslim.cost.profile`).
* ``latency`` - milliseconds: a number (batch 1), ``{"<batch>": ms or {"median_ms": ms}}``, or a
  :meth:`BenchResult.to_dict() <tensorslim.export.bench.BenchResult.to_dict>`; fallback: a ``bench.json`` file
  (a ``BenchResult.to_dict()``) in the model directory. Batch 1 is used when present, else the smallest batch.
  Latencies are only comparable when measured on one machine with the same settings. When the benchmark ran
  with ``against`` the original (matched by label = directory name, or by source path), its paired speedup
  is used for the "speedup" column, and its median fills the original's latency if that has none.
* ``profile`` - a :meth:`tensorslim.cost.Profile.to_dict`, used for the per-layer bars when ``compression``
  carries no per-layer costs (layers matched by name; a replaced layer's sub-modules are summed).
* ``original`` - ``{"path", "params", "macs", "accuracy"}`` (written by ``tensorslim compress``): the model
  directory this one was compressed from (matched among the given directories by resolved path, then by
  directory name) and its figures, used for the ratios when that directory is not part of the report.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._atomic import atomic_dir
from ..errors import TensorSlimError

REPORT_JSON = "report.json"
INDEX_HTML = "index.html"
_SPLITS = ("test", "val", "train")
_MAX_BARS = 30


class ReportError(TensorSlimError):
    """A report cannot be written from the given directories."""


@dataclass
class Entry:
    """One model directory as the report sees it."""

    name: str
    path: Path
    dataset: str | None = None
    builder: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    input_shape: list[int] | None = None
    compressed: bool = False
    method: str = "none"
    layers: list[dict[str, Any]] = field(default_factory=list)  # compression.layers
    accuracy: float | None = None  # percent
    accuracy_split: str | None = None
    params: int | None = None
    macs: int | None = None
    latency_ms: float | None = None
    latency_batch: int | None = None
    latency_source: str | None = None
    profile: list[dict[str, Any]] | None = None  # rows with name, params, macs
    latency_pair: dict[str, Any] | None = None  # the "against" model of the benchmark run, if any
    original_ref: dict[str, Any] | None = None  # metrics.json "original"
    original: str | None = None  # name of the original among the entries
    ratios: dict[str, float | None] = field(default_factory=dict)
    pareto: dict[str, bool] = field(default_factory=dict)
    raw_accuracy: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "path": str(self.path), "dataset": self.dataset, "builder": self.builder,
            "kwargs": self.kwargs, "input_shape": self.input_shape, "compressed": self.compressed,
            "method": self.method, "accuracy": self.accuracy, "accuracy_split": self.accuracy_split,
            "params": self.params, "macs": self.macs, "latency_ms": self.latency_ms,
            "latency_batch": self.latency_batch, "latency_source": self.latency_source,
            "original": self.original, "ratios": self.ratios, "pareto": self.pareto,
            "compressed_layers": [
                {k: layer.get(k) for k in ("name", "type", "method", "rank", "params_before", "params_after",
                                           "macs_before", "macs_after")} for layer in self.layers],
        }


# ----------------------------------------------------------------------------------------------------------
# reading


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _accuracy(value: Any) -> tuple[float | None, str | None]:
    if _number(value) is not None:
        return _number(value), None
    if isinstance(value, dict):
        for split in [*_SPLITS, *value.keys()]:
            v = _number(value.get(split))
            if v is not None:
                return v, str(split)
    return None, None


@dataclass
class _Latency:
    ms: float
    batch: int
    source: str
    paired: dict[str, Any] | None = None  # from a benchmark run with ``against``: label, source, ms, speedup


def _latency_from_bench(d: dict[str, Any]) -> _Latency | None:
    """Batch-1 (else smallest batch) median of the first model of a ``BenchResult.to_dict()``; with a
    comparison, also the other model's median and the paired speedup at that batch."""
    try:
        model = d["models"][0]
        timings = {int(t["batch"]): float(t["median_ms"]) for t in model["timings"]}
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    if not timings:
        return None
    batch = 1 if 1 in timings else min(timings)
    runtime = model.get("runtime", d.get("runtime", "?"))
    found = _Latency(timings[batch], batch, f"{runtime}, {d.get('threads', '?')} thr")
    try:
        other = d["models"][1]
        other_ms = next(float(t["median_ms"]) for t in other["timings"] if int(t["batch"]) == batch)
        speedup = next(float(c["speedup"]) for c in d["comparison"] if int(c["batch"]) == batch)
        found.paired = {"label": str(other.get("label")), "source": str(other.get("source", "")),
                        "ms": other_ms, "speedup": speedup}
    except (KeyError, IndexError, TypeError, ValueError, StopIteration):
        pass
    return found


def _latency(metrics: dict[str, Any], path: Path, notes: list[str]) -> _Latency | None:
    value = metrics.get("latency")
    if _number(value) is not None:
        return _Latency(float(value), 1, "metrics.json")
    if isinstance(value, dict):
        if "models" in value:
            return _latency_from_bench(value)
        per_batch: dict[int, float] = {}
        for k, v in value.items():
            ms = _number(v.get("median_ms")) if isinstance(v, dict) else _number(v)
            if ms is not None and str(k).isdigit():
                per_batch[int(k)] = ms
        if per_batch:
            batch = 1 if 1 in per_batch else min(per_batch)
            return _Latency(per_batch[batch], batch, "metrics.json")
    bench = path / "bench.json"
    if bench.exists():
        try:
            found = _latency_from_bench(json.loads(bench.read_text()))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            found = None
        if found is None:
            notes.append(f"{bench}: not a benchmark result; ignored")
        return found
    return None


def _profile_rows(value: Any) -> list[dict[str, Any]] | None:
    if not isinstance(value, dict) or not isinstance(value.get("layers"), list):
        return None
    rows = []
    for row in value["layers"]:
        if isinstance(row, dict) and isinstance(row.get("name"), str):
            rows.append({"name": row["name"], "params": _number(row.get("params")) or 0,
                         "macs": _number(row.get("macs")) or 0})
    return rows or None


def _method(layers: list[dict[str, Any]]) -> str:
    counts: dict[str, int] = {}
    for layer in layers:
        key = str(layer.get("method") or layer.get("type") or "?")
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{k}×{v}" for k, v in counts.items()) if counts else "none"


def _read_entry(path: Path, notes: list[str]) -> Entry:
    if not path.exists():
        raise ReportError(f"{path}: no such model directory")
    if not path.is_dir():
        raise ReportError(f"{path}: not a directory (expected a model directory with model.json)")
    from .. import modeldir

    # a model directory is validated against its schema, and its builder against tensorslim.trust
    meta = modeldir.read_meta(path) if (path / modeldir.MODEL_JSON).exists() else {}
    metrics = modeldir.read_metrics(path)
    if not meta and not metrics:
        raise ReportError(f"{path}: neither model.json nor metrics.json found")
    e = Entry(name=path.name, path=path)
    spec = meta.get("spec") if isinstance(meta.get("spec"), dict) else {}
    e.builder = spec.get("builder") if isinstance(spec.get("builder"), str) else None
    e.kwargs = spec.get("kwargs") if isinstance(spec.get("kwargs"), dict) else {}
    e.dataset = meta.get("dataset") if isinstance(meta.get("dataset"), str) else None
    shape = meta.get("input_shape")
    if isinstance(shape, list) and shape and all(isinstance(d, int) and d > 0 for d in shape):
        e.input_shape = shape
    comp = meta.get("compression")
    if isinstance(comp, dict):
        e.compressed = True
        e.layers = [x for x in comp.get("layers", []) if isinstance(x, dict)] \
            if isinstance(comp.get("layers"), list) else []
        e.method = _method(e.layers) if e.layers else "compressed"
    e.raw_accuracy, e.accuracy_split = _accuracy(metrics.get("accuracy"))
    prof = metrics.get("profile")
    e.profile = _profile_rows(prof)
    total = prof.get("total") if isinstance(prof, dict) and isinstance(prof.get("total"), dict) else {}
    for key in ("params", "macs"):
        v = _number(metrics.get(key))
        v = v if v is not None else _number(total.get(key))
        setattr(e, key, int(v) if v is not None else None)
    lat = _latency(metrics, path, notes)
    if lat is not None:
        e.latency_ms, e.latency_batch, e.latency_source = lat.ms, lat.batch, lat.source
        e.latency_pair = lat.paired
    if isinstance(metrics.get("original"), dict):
        e.original_ref = metrics["original"]
    return e


def _compute_costs(e: Entry, notes: list[str]) -> None:
    """Fill params / MACs / profile from the model itself (needs tensorslim.modeldir and tensorslim.cost)."""
    has_layer_costs = any("params_before" in layer for layer in e.layers)
    if e.params is not None and e.macs is not None and (not e.compressed or has_layer_costs or e.profile):
        return
    if not e.input_shape or not (e.path / "model.json").exists():
        notes.append(f"{e.name}: params/MACs missing and no input_shape in model.json to compute them")
        return
    try:
        from .. import modeldir
        from ..cost import profile

        prof = profile(modeldir.load(e.path), tuple(e.input_shape))
    except Exception as err:  # noqa: BLE001 - a report degrades gracefully; the reason goes into the notes
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        notes.append(f"{e.name}: cannot compute the cost profile ({reason})")
        return
    d = prof.to_dict()
    e.params = e.params if e.params is not None else int(d["total"]["params"])
    e.macs = e.macs if e.macs is not None else int(d["total"]["macs"])
    e.profile = e.profile or _profile_rows(d)


# ----------------------------------------------------------------------------------------------------------
# analysis


def _unique_names(entries: list[Entry]) -> None:
    seen: dict[str, int] = {}
    for e in entries:
        seen[e.name] = seen.get(e.name, 0) + 1
    for e in entries:
        if seen[e.name] > 1:
            e.name = f"{e.path.parent.name}/{e.path.name}"
    counts: dict[str, int] = {}
    for e in entries:  # still equal (same parent name): number them
        counts[e.name] = counts.get(e.name, 0) + 1
        if counts[e.name] > 1:
            e.name = f"{e.name} ({counts[e.name]})"


def _link_originals(entries: list[Entry]) -> None:
    by_path = {e.path.resolve(): e for e in entries}
    by_name: dict[str, Entry] = {}
    for e in entries:
        by_name.setdefault(e.path.name, e)
    for e in entries:
        if not e.compressed:
            continue
        found: Entry | None = None
        ref = e.original_ref.get("path") if e.original_ref else None
        if isinstance(ref, str) and ref:
            for cand in (Path(ref), e.path.parent / ref):
                with_resolve = cand.resolve()
                if with_resolve in by_path and by_path[with_resolve] is not e:
                    found = by_path[with_resolve]
                    break
            if found is None and Path(ref).name in by_name and by_name[Path(ref).name] is not e:
                found = by_name[Path(ref).name]
        if found is None:
            for cand in entries:
                if (not cand.compressed and cand.builder is not None and cand.builder == e.builder
                        and cand.kwargs == e.kwargs and cand.dataset == e.dataset):
                    found = cand
                    break
        e.original = found.name if found else None
        base_params = found.params if found else _number((e.original_ref or {}).get("params"))
        base_macs = found.macs if found else _number((e.original_ref or {}).get("macs"))
        base_acc = found.accuracy if found else None
        pair = e.latency_pair
        paired = found is not None and pair is not None and (
            pair["label"] in (found.path.name, found.name)
            or (pair["source"] and Path(pair["source"]).resolve() == found.path.resolve()))
        if paired and found.latency_ms is None:  # the original was timed in the same (alternating) run
            found.latency_ms, found.latency_batch = pair["ms"], e.latency_batch
            found.latency_source = f"{e.latency_source}, alternating with {e.name}"
        e.ratios = {
            "params": base_params / e.params if base_params and e.params else None,
            "macs": base_macs / e.macs if base_macs and e.macs else None,
            "speedup": (pair["speedup"] if paired else  # paired ratio of one alternating run: preferred
                        found.latency_ms / e.latency_ms
                        if found and found.latency_ms and e.latency_ms
                        and found.latency_batch == e.latency_batch else None),
            "accuracy_delta": (e.accuracy - base_acc
                               if e.accuracy is not None and base_acc is not None else None),
        }


def _normalise_accuracy(entries: list[Entry], notes: list[str]) -> None:
    values = [e.raw_accuracy for e in entries if e.raw_accuracy is not None]
    fractions = bool(values) and all(0 <= v <= 1 for v in values)
    if fractions:
        notes.append("all accuracies are <= 1: read as fractions and shown as percentages")
    for e in entries:
        if e.raw_accuracy is not None:
            e.accuracy = e.raw_accuracy * 100 if fractions else e.raw_accuracy
    splits = {e.accuracy_split for e in entries if e.accuracy is not None}
    if len(splits) > 1:
        notes.append(f"accuracies come from different splits ({', '.join(sorted(map(str, splits)))})")


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points (cost, accuracy) that no other point beats (cost <= and accuracy >=, one of
    them strictly).

    Returned in increasing cost.
    """
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front: list[int] = []
    best = -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


# ----------------------------------------------------------------------------------------------------------
# plots (matplotlib's object API with the Agg canvas: no global backend is touched)


_COST_AXES = {
    "params": ("parameters", "accuracy_vs_params.png", "Accuracy vs parameters"),
    "macs": ("MACs per sample", "accuracy_vs_macs.png", "Accuracy vs MACs"),
    "latency": ("latency (ms)", "accuracy_vs_latency.png", "Accuracy vs measured latency"),
}


def _figure(w: float = 7.0, h: float = 4.4):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:  # noqa: ANN001 - matplotlib Figure
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _cost(e: Entry, key: str) -> float | None:
    return {"params": e.params, "macs": e.macs, "latency": e.latency_ms}[key]


def _scatter(entries: list[Entry], key: str) -> tuple[bytes, list[str]] | None:
    from matplotlib.ticker import EngFormatter, MaxNLocator

    pts = [(e, float(_cost(e, key))) for e in entries if _cost(e, key) and e.accuracy is not None]  # type: ignore
    if not pts:
        return None
    front = pareto_front([(c, e.accuracy) for e, c in pts])  # type: ignore[misc]
    front_names = [pts[i][0].name for i in front]
    xlabel, _, title = _COST_AXES[key]
    fig = _figure()
    ax = fig.add_subplot()
    for e, c in pts:
        style = dict(marker="s", color="#444444") if not e.compressed else dict(marker="o", color="#1f77b4")
        ax.scatter([c], [e.accuracy], s=42, zorder=3, **style)
        ax.annotate(e.name, (c, e.accuracy), textcoords="offset points", xytext=(6, 4), fontsize=8)
    fx = [pts[i][1] for i in front]
    fy = [pts[i][0].accuracy for i in front]
    ax.step(fx, fy, where="post", color="#d62728", lw=1.2, alpha=0.8, zorder=2, label="Pareto front")
    ax.scatter(fx, fy, s=160, facecolors="none", edgecolors="#d62728", lw=1.5, zorder=4)
    costs = [c for _, c in pts]
    if min(costs) > 0 and max(costs) / min(costs) > 20:
        ax.set_xscale("log")
    if key != "latency":
        ax.xaxis.set_major_formatter(EngFormatter(sep=" "))
    if ax.get_xscale() != "log":
        ax.xaxis.set_major_locator(MaxNLocator(6))
    ax.set_xlabel(xlabel + (" (log scale)" if ax.get_xscale() == "log" else ""))
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    handles = [
        ax.scatter([], [], marker="s", color="#444444", label="original"),
        ax.scatter([], [], marker="o", color="#1f77b4", label="compressed"),
        ax.plot([], [], color="#d62728", label="Pareto front (ringed)")[0],
    ]
    fig.legend(handles=handles, fontsize=8, loc="outside lower center", ncols=3, frameon=False)
    ax.margins(x=0.15, y=0.12)
    return _png(fig), front_names


def _layer_rows(e: Entry, original: Entry | None) -> list[tuple[str, float, float, float, float]]:
    """(layer, params before, after, MACs before, after) for the compressed layers of ``e``."""
    rows = []
    keys = ("params_before", "params_after", "macs_before", "macs_after")
    for layer in e.layers:
        values = [_number(layer.get(k)) for k in keys]
        if isinstance(layer.get("name"), str) and all(v is not None for v in values):
            rows.append((layer["name"], *values))  # type: ignore[arg-type]
    if rows or original is None or not e.profile or not original.profile:
        return rows
    for row in original.profile:  # fall back to the two profiles, matched by name
        name = row["name"]
        sub = [r for r in e.profile if r["name"] == name or r["name"].startswith(name + ".")]
        after_p, after_m = sum(r["params"] for r in sub), sum(r["macs"] for r in sub)
        if sub and (after_p, after_m) != (row["params"], row["macs"]):
            rows.append((name, row["params"], after_p, row["macs"], after_m))
    return rows


def _layer_bars(e: Entry, rows: list[tuple[str, float, float, float, float]]) -> bytes:
    import numpy as np
    from matplotlib.ticker import EngFormatter, MaxNLocator

    rows = sorted(rows, key=lambda r: -r[3])[:_MAX_BARS][::-1]
    names = [r[0] for r in rows]
    y = np.arange(len(rows))
    fig = _figure(9.0, max(2.6, 0.42 * len(rows) + 1.6))
    axes = fig.subplots(1, 2, sharey=True)
    for ax, (i, j), what in zip(axes, ((1, 2), (3, 4)), ("parameters", "MACs per sample")):
        before = [r[i] for r in rows]
        after = [r[j] for r in rows]
        ax.barh(y + 0.2, before, 0.4, color="#999999", label="original")
        ax.barh(y - 0.2, after, 0.4, color="#1f77b4", label="compressed")
        for k, (b, a) in enumerate(zip(before, after)):
            if a > 0:
                ax.annotate(f"{b / a:.1f}×", (max(a, b), k), xytext=(4, -3), textcoords="offset points",
                            fontsize=7)
        ax.set_xlabel(what)
        ax.grid(True, axis="x", alpha=0.3)
        ax.margins(x=0.18)
    axes[0].set_yticks(y, names, fontsize=8)
    for ax in axes:
        ax.xaxis.set_major_formatter(EngFormatter(sep=" "))
        ax.xaxis.set_major_locator(MaxNLocator(5))
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    fig.suptitle(f"{e.name}: compressed layers, original vs compressed" +
                 (f" (vs {e.original})" if e.original else ""), fontsize=10)
    return _png(fig)


# ----------------------------------------------------------------------------------------------------------
# HTML


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d1d1f;
background:#fafafa}
main{max-width:1180px;margin:0 auto;padding:24px 28px 48px}
h1{font-size:1.6rem;margin:0 0 4px} h2{font-size:1.15rem;margin:32px 0 10px;border-bottom:1px solid #ddd;
padding-bottom:4px} .sub{color:#666;font-size:.9rem;margin:0 0 18px}
.scroll{overflow-x:auto} table{border-collapse:collapse;width:100%;font-size:.8rem;background:#fff}
th,td{padding:5px 7px;border-bottom:1px solid #e6e6e6;text-align:right;white-space:nowrap}
th{background:#f0f0f3;font-weight:600} td.l,th.l{text-align:left}
tr:nth-child(even) td{background:#fbfbfd} td.star{color:#d62728;font-weight:700;white-space:normal}
.small{color:#777;font-size:.75rem} .good{color:#1a7f37} .bad{color:#b42318} .muted{color:#888}
figure{margin:18px 0;background:#fff;border:1px solid #e3e3e3;border-radius:6px;padding:10px}
figure img{max-width:100%;height:auto;display:block;margin:0 auto} figcaption{font-size:.85rem;color:#555;
margin-top:6px} ul.notes{font-size:.85rem;color:#555} code{font-size:.85em}
""".strip()


def _fmt_int(v: float | None) -> str:
    if v is None:
        return "-"
    v = float(v)
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.2f} {unit}"
    return f"{v:.0f}"


def _fmt_ratio(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}×"


def _html(title: str, entries: list[Entry], plots: list[tuple[str, str, bytes]], notes: list[str],
          generated: str) -> str:
    esc = html.escape
    rows = []
    for e in entries:
        stars = ", ".join(("MACs" if k == "macs" else k) for k, v in e.pareto.items() if v)
        acc = "-" if e.accuracy is None else f"{e.accuracy:.2f}%"
        if e.accuracy is not None and e.accuracy_split and e.accuracy_split != "test":
            acc += f" <span class=muted>({esc(e.accuracy_split)})</span>"
        lat = "-" if e.latency_ms is None else f"{e.latency_ms:.3f} ms"
        if e.latency_ms is not None and e.latency_batch not in (None, 1):
            lat += f" <span class=muted>(b{e.latency_batch})</span>"
        delta = e.ratios.get("accuracy_delta")
        d_cls = "" if delta is None else ("good" if delta >= 0 else "bad")
        d_txt = "-" if delta is None else f"{delta:+.2f} pt"
        rows.append(
            "<tr>"
            f"<td class=l><b>{esc(e.name)}</b><br><span class=small>{esc(e.builder or '-')} · "
            f"{esc(e.dataset or 'no dataset')}</span></td><td class=l>{esc(e.method)}</td>"
            f"<td>{acc}</td><td>{_fmt_int(e.params)}</td><td>{_fmt_int(e.macs)}</td><td>{lat}</td>"
            f"<td class=l>{esc(e.original or '-')}</td>"
            f"<td>{_fmt_ratio(e.ratios.get('params'))}</td><td>{_fmt_ratio(e.ratios.get('macs'))}</td>"
            f"<td>{_fmt_ratio(e.ratios.get('speedup'))}</td><td class='{d_cls}'>{d_txt}</td>"
            f"<td class='l star'>{'★ ' + esc(stars) if stars else ''}</td></tr>"
        )
    header = ("<tr><th class=l>model</th>"
              "<th class=l>compression</th><th>accuracy</th><th>params</th><th>MACs</th><th>latency</th>"
              "<th class=l>original</th><th>params ×</th><th>MACs ×</th><th>speedup</th><th>Δ acc</th>"
              "<th class=l>Pareto</th></tr>")
    figures = []
    for _file, caption, data in plots:
        b64 = base64.b64encode(data).decode("ascii")
        figures.append(f'<figure><img src="data:image/png;base64,{b64}" alt="{esc(caption)}">'
                       f"<figcaption>{esc(caption)}</figcaption></figure>")
    notes_html = "".join(f"<li>{esc(n)}</li>" for n in notes) or "<li>none</li>"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title><style>{_CSS}</style></head>
<body><main>
<h1>{esc(title)}</h1>
<p class=sub>{len(entries)} model(s) · generated {esc(generated)} by tensorslim · ratios are
original / compressed (speedup: original latency / compressed latency at the same batch) · Pareto: on the
accuracy-vs-cost front for that cost</p>
<h2>Models</h2>
<div class=scroll><table>{header}{''.join(rows)}</table></div>
<h2>Plots</h2>
{''.join(figures) or '<p class=muted>No plot: no model has both an accuracy and a cost.</p>'}
<h2>Notes</h2>
<ul class=notes>{notes_html}</ul>
</main></body></html>
"""


# ----------------------------------------------------------------------------------------------------------
# public API


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
                 title: str = "tensorslim report", compute_missing: bool = True) -> dict[str, Any]:
    """Write ``report.json``, the PNG plots and ``index.html`` for ``model_dirs`` into ``out_dir``.

    ``out_dir`` is replaced as a whole, atomically; it must be new, empty, or a previous report. With
    ``compute_missing``, params / MACs / per-layer costs absent from ``metrics.json`` are computed from the
    model (tensorslim.modeldir + tensorslim.cost). Returns the content of ``report.json``.

    Raises:
        ReportError (a TensorSlimError): no directory given, a missing directory, unreadable JSON, or an
            ``out_dir`` that is not safe to replace.
    """
    if isinstance(model_dirs, (str, os.PathLike)):
        model_dirs = [model_dirs]
    dirs = [Path(d) for d in model_dirs]
    if not dirs:
        raise ReportError("no model directory given")
    out = Path(out_dir)
    _check_out_dir(out, dirs)
    notes: list[str] = []
    entries = [_read_entry(d, notes) for d in dirs]
    if compute_missing:
        for e in entries:
            _compute_costs(e, notes)
    _unique_names(entries)
    _normalise_accuracy(entries, notes)
    _link_originals(entries)
    for e in entries:
        missing = [k for k in ("accuracy", "params", "macs") if getattr(e, k) is None]
        if missing:
            notes.append(f"{e.name}: no {', '.join(missing)} in metrics.json")
        if e.compressed and e.original is None and not e.original_ref:
            notes.append(f"{e.name}: compressed, but its original is not among the reported models")

    plots: list[tuple[str, str, bytes]] = []
    pareto: dict[str, list[str]] = {}
    for key, (_, file, caption) in _COST_AXES.items():
        drawn = _scatter(entries, key)
        if drawn is None:
            if key != "latency" or any(e.latency_ms for e in entries):
                notes.append(f"{file} not drawn: no model has both an accuracy and {_COST_AXES[key][0]}")
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
        rows = _layer_rows(e, by_name.get(e.original) if e.original else None)
        if rows:
            file = f"layers_{_slug(e.name)}.png"
            while any(f == file for f, _, _ in plots):
                file = file.removesuffix(".png") + "_.png"
            caption = f"{e.name}: per-layer parameters and MACs, original vs compressed"
            plots.append((file, caption, _layer_bars(e, rows)))
        else:
            notes.append(f"{e.name}: no per-layer costs (compression.layers or profiles) for the layer plot")

    generated = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    report = {
        "format": "tensorslim-report", "version": 1, "title": title, "generated": generated,
        "models": [e.to_dict() for e in entries], "pareto": pareto,
        "plots": [{"file": f, "caption": c} for f, c, _ in plots], "notes": notes,
    }
    page = _html(title, entries, plots, notes, generated)
    with atomic_dir(out) as tmp:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; a report is meant to be shared
        (tmp / REPORT_JSON).write_text(json.dumps(report, indent=2) + "\n")
        for file, _, data in plots:
            (tmp / file).write_bytes(data)
        (tmp / INDEX_HTML).write_text(page, encoding="utf-8")
    return report
