"""Per-layer sensitivity to decomposition, and global rank allocation from it.

:func:`sensitivity` measures, for every candidate layer (Conv2d / Linear), every method that applies to it and
every point of a rank grid, the validation accuracy drop when ONLY that layer is decomposed (no fine-tuning),
on the first ``max_samples`` validation images. The grid is method-agnostic: each value is a fraction of the
layer's parameters to keep (a plan ``ratio`` rule), turned into the method's explicit rank by
:mod:`tensorslim.surgery`; duplicate ranks are measured once. A point whose replacement would not save MACs
(the "not faster" rule of :mod:`tensorslim.surgery`) is never recorded, so an allocation can never choose it.
The table can be cached in a JSON file keyed by a fingerprint of the weights, methods, grid and sample count; it
is written after every layer, so an interrupted run resumes.

:func:`measure_latency` adds measured latencies to the table, for a latency budget. The allocation that turns a
budget into a plan from the table (:func:`allocate`, :func:`allocate_for_latency`, :func:`parse_budget`,
:func:`predicted_cost`) is :mod:`.allocation`, re-exported here.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from .. import _atomic
from .. import methods as method_registry
from ..errors import DecompositionError, TensorSlimError
from ..modeldir import INPUT_SHAPE_ATTR, SPEC_ATTR
from ..plan import METHODS
from ..study.latency import describe, model_key
from ..surgery import candidates, compress, compress_with_report
from ..train import evaluate
from .allocation import BUDGET_KEYS as BUDGET_KEYS
from .allocation import COST_KEYS as COST_KEYS
from .allocation import BudgetError as BudgetError
from .allocation import _jsonable
from .allocation import allocate as allocate
from .allocation import allocate_for_latency as allocate_for_latency
from .allocation import estimate_latency as estimate_latency
from .allocation import parse_budget as parse_budget
from .allocation import predicted_cost as predicted_cost
from .allocation import single_layer_rule as single_layer_rule

DEFAULT_GRID = (0.03, 0.06, 0.1, 0.15, 0.25, 0.4, 0.6)
DEFAULT_METHODS = ("svd", "tucker2")


def _method_options(methods: Sequence[str] | Mapping[str, dict] | None) -> dict[str, dict]:
    if methods is None:
        methods = DEFAULT_METHODS
    if isinstance(methods, str):
        methods = [methods]
    out = dict(methods) if isinstance(methods, Mapping) else {m: {} for m in methods}
    for m, opts in out.items():
        if m not in METHODS:
            raise TensorSlimError(f"sensitivity: unknown method {m!r}; known: {', '.join(METHODS)}")
        if not isinstance(opts, dict):
            raise TensorSlimError(f"sensitivity: options of {m} must be an object")
    return out


def _fingerprint(model: nn.Module, methods: dict, grid: Sequence[float], max_samples: int,
                 target: str | None = None) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    h.update(json.dumps([methods, list(grid), max_samples], sort_keys=True).encode())
    if target is not None:  # tables made before targets were recorded keep their fingerprint
        h.update(f"target={target}".encode())
    return h.hexdigest()[:32]


def _eval_subset(model: nn.Module, val_set, max_samples: int) -> float:
    batch = min(250, max_samples)
    return evaluate(model, val_set, batch_size=batch, max_batches=math.ceil(max_samples / batch))["accuracy"]


def sensitivity(
    model: nn.Module,
    val_set,
    methods: Sequence[str] | Mapping[str, dict] | None = None,
    rank_grid: Sequence[float] = DEFAULT_GRID,
    *,
    input_shape: tuple[int, ...] | None = None,
    layers: Sequence[str] | None = None,
    max_samples: int = 1000,
    cache: str | Path | None = None,
    log: Callable[[str], None] | None = print,
    target: str | None = None,
) -> dict[str, Any]:
    """Accuracy drop (points) per layer, method and rank when only that layer is decomposed; see the module doc.

    ``target``: the deployment target whose channel multiple each grid point's rank is rounded to
    (:mod:`tensorslim.methods.targets`; None: the machine's default), so that an allocation only ever picks
    ranks the target runs well. Recorded in the table as ``"target"`` when given.

    Returns ``{"fingerprint", "baseline_accuracy", "samples", "grid", "methods", "layers": {name: {"kind",
    "dense_params", "dense_macs", "points": [{"method", "rank", "options", "ratio", "params", "macs",
    "accuracy", "drop", "rel_error"}]}}}``.
    """
    log = log or (lambda _m: None)
    opts = _method_options(methods)
    grid = sorted({float(g) for g in rank_grid})
    if not grid or any(not 0 < g < 1 for g in grid):
        raise TensorSlimError(f"sensitivity: rank_grid values must lie in (0, 1), got {list(rank_grid)}")
    input_shape = tuple(input_shape or getattr(model, INPUT_SHAPE_ATTR, None) or ())
    if not input_shape:
        raise TensorSlimError("sensitivity needs the model's input shape")
    max_samples = max(1, min(int(max_samples), len(val_set)))
    fp = _fingerprint(model, opts, grid, max_samples, target)
    table: dict[str, Any] | None = None
    if cache is not None and Path(cache).is_file():
        try:
            table = json.loads(Path(cache).read_text())
        except (OSError, json.JSONDecodeError):
            table = None
        if not isinstance(table, dict) or table.get("fingerprint") != fp:
            table = None
        else:
            log(f"sensitivity: reusing {cache}")
    if table is None:
        table = {"fingerprint": fp, "baseline_accuracy": _eval_subset(model, val_set, max_samples),
                 "samples": max_samples, "grid": grid, "methods": opts, "layers": {}}
        if target is not None:
            table["target"] = target
    base = table["baseline_accuracy"]
    for ctx in candidates(model, input_shape):
        if layers is not None and ctx.name not in layers:
            continue
        if ctx.name in table["layers"]:
            continue
        kind = "linear" if isinstance(ctx.module, nn.Linear) else "conv"
        entry = {"kind": kind, "dense_params": ctx.dense_params, "dense_macs": ctx.dense_macs, "points": []}
        for method, mopts in opts.items():
            seen: set[str] = set()
            for g in grid:
                rule = {"layers": ctx.name, "method": method, "ratio": g, "skip_slower": True}
                if mopts:
                    rule["options"] = mopts
                try:
                    compressed, report = compress_with_report(model, {"rules": [rule]}, input_shape, target=target)
                except DecompositionError:
                    continue  # method does not apply, rank too small, or not faster
                except TensorSlimError:
                    continue
                if not report.layers:  # skipped: the factorized layer would not be smaller or faster
                    continue
                done = report.layers[0]
                key = json.dumps(_jsonable(done["rank"]))
                if key in seen:
                    continue
                seen.add(key)
                acc = _eval_subset(compressed, val_set, max_samples)
                entry["points"].append({
                    "method": method, "rank": _jsonable(done["rank"]), "options": mopts, "ratio": g,
                    "params": done["params_after"], "macs": done["macs_after"], "accuracy": acc,
                    "drop": base - acc, "rel_error": done["rel_error"],
                })
        table["layers"][ctx.name] = entry
        best = min((p["drop"] for p in entry["points"]), default=float("nan"))
        log(f"sensitivity {ctx.name}: {len(entry['points'])} points, smallest drop {best:.2f} pt")
        if cache is not None:
            _atomic.write_text(cache, json.dumps(table, indent=1) + "\n")
    return table


def layer_drops(model: nn.Module, rules: Sequence[dict], val_set, *, input_shape: tuple[int, ...],
                max_samples: int = 1000) -> dict[str, float]:
    """The drop (points) of each explicit single-layer rule applied alone: the order 'least sensitive first'."""
    max_samples = max(1, min(int(max_samples), len(val_set)))
    base = _eval_subset(model, val_set, max_samples)
    return {r["layers"]: base - _eval_subset(compress(model, {"rules": [r]}, input_shape), val_set, max_samples)
            for r in rules}


def measure_latency(model: nn.Module, sens: dict[str, Any], cache, *, input_shape: tuple[int, ...] | None = None,
                    log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Add measured latencies (ms) to the sensitivity table ``sens`` (in place; returned): every layer's dense
    form (``dense_latency_ms``), every point's replacement (``latency_ms``, the layer built by its method at the
    point's rank: random weights, as the weights do not change the time) and the dense model
    (``sens["latency"] = {"model_ms", "machine", "cache", ...}``). ``cache`` is a
    :class:`tensorslim.study.latency.LatencyCache`: entries measured earlier on this machine are not re-timed."""
    input_shape = tuple(input_shape or getattr(model, INPUT_SHAPE_ATTR, None) or ())
    ctxs = {c.name: c for c in candidates(model, input_shape)}
    spec = getattr(model, SPEC_ATTR, None)
    model_ms = cache.latency_ms(model.eval(), input_shape,
                                key=model_key(spec if spec is not None else repr(model), input_shape))
    for name, entry in sens["layers"].items():
        ctx = ctxs.get(name)
        if ctx is None:
            raise TensorSlimError(f"latency: layer {name} of the sensitivity table is not in the model")
        entry["dense_latency_ms"] = cache.latency_ms(ctx.module, ctx.input_shape)
        for p in entry["points"]:
            layer = method_registry.get(p["method"]).structure(ctx, p["rank"], dict(p.get("options") or {}))
            p["latency_ms"] = cache.latency_ms(layer.eval(), ctx.input_shape)
    sens["latency"] = {"model_ms": model_ms, **describe(cache)}
    if log:
        log(f"latency table: dense model {model_ms:.3f} ms, {cache.measured} new measurements ({cache.machine})")
    return sens


__all__ = ["DEFAULT_GRID", "DEFAULT_METHODS", "BudgetError", "allocate", "allocate_for_latency", "estimate_latency",
           "layer_drops", "measure_latency", "parse_budget", "predicted_cost", "sensitivity", "single_layer_rule"]
