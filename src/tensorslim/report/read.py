"""Reading one model directory into an :class:`~.entry.Entry`: which keys of ``model.json`` and ``metrics.json``
are used, and the fallbacks (``profile.total``, ``bench.json``, the cost profile of the loaded model).

See :mod:`tensorslim.report` for the keys read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import modeldir
from ..cost import profile
from .entry import Entry, ReportError, number

_SPLITS = ("test", "val", "train")


def _accuracy(value: Any) -> tuple[float | None, str | None]:
    if number(value) is not None:
        return number(value), None
    if isinstance(value, dict):
        for split in [*_SPLITS, *value.keys()]:
            v = number(value.get(split))
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
    if number(value) is not None:
        return _Latency(float(value), 1, "metrics.json")
    if isinstance(value, dict):
        if "models" in value:
            return _latency_from_bench(value)
        per_batch: dict[int, float] = {}
        for k, v in value.items():
            ms = number(v.get("median_ms")) if isinstance(v, dict) else number(v)
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
            rows.append({"name": row["name"], "params": number(row.get("params")) or 0,
                         "macs": number(row.get("macs")) or 0})
    return rows or None


def _method(layers: list[dict[str, Any]]) -> str:
    counts: dict[str, int] = {}
    for layer in layers:
        key = str(layer.get("method") or layer.get("type") or "?")
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{k}×{v}" for k, v in counts.items()) if counts else "none"


def read_entry(path: Path, notes: list[str]) -> Entry:
    if not path.exists():
        raise ReportError(f"{path}: no such model directory")
    if not path.is_dir():
        raise ReportError(f"{path}: not a directory (expected a model directory with model.json)")
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
        v = number(metrics.get(key))
        v = v if v is not None else number(total.get(key))
        setattr(e, key, int(v) if v is not None else None)
    lat = _latency(metrics, path, notes)
    if lat is not None:
        e.latency_ms, e.latency_batch, e.latency_source = lat.ms, lat.batch, lat.source
        e.latency_pair = lat.paired
    if isinstance(metrics.get("original"), dict):
        e.original_ref = metrics["original"]
    return e


def compute_costs(e: Entry, notes: list[str]) -> None:
    """Fill params / MACs / profile from the model itself (needs tensorslim.modeldir and tensorslim.cost)."""
    has_layer_costs = any("params_before" in layer for layer in e.layers)
    if e.params is not None and e.macs is not None and (not e.compressed or has_layer_costs or e.profile):
        return
    if not e.input_shape or not (e.path / "model.json").exists():
        notes.append(f"{e.name}: params/MACs missing and no input_shape in model.json to compute them")
        return
    try:
        prof = profile(modeldir.load(e.path), tuple(e.input_shape))
    except Exception as err:  # noqa: BLE001 - a report degrades gracefully; the reason goes into the notes
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        notes.append(f"{e.name}: cannot compute the cost profile ({reason})")
        return
    d = prof.to_dict()
    e.params = e.params if e.params is not None else int(d["total"]["params"])
    e.macs = e.macs if e.macs is not None else int(d["total"]["macs"])
    e.profile = e.profile or _profile_rows(d)


def measure_latencies(entries: list[Entry], threads: int, notes: list[str]) -> None:
    """Time each entry's model directory in ONNX Runtime (batch 1, exported and verified first)."""
    from ..export import benchmark

    for e in entries:
        if not (e.path / modeldir.MODEL_JSON).exists():
            notes.append(f"{e.name}: no model.json, so no latency can be measured")
            continue
        result = benchmark(str(e.path), batch_sizes=(1,), threads=threads, repeats=30, warmup=5)
        found = _latency_from_bench(result.to_dict())
        if found is not None:
            e.latency_ms, e.latency_batch, e.latency_source = found.ms, found.batch, f"{found.source}, measured"
