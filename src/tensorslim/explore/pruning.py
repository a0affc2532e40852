"""Pruning the per-layer design points before any training, and what each stage removed.

Pruning (:func:`prune`), each stage counted per layer and per method:

(a) ``not-cheaper``: points whose MACs or memory are not strictly below the original layer's;
(b) ``dominated``: points dominated within their layer on (params, MACs, memory, error);
(c) ``error-bound``: points whose error exceeds ``max_error``;
(d) ``slower`` (only with the latency objective, run by explore after (c), :func:`drop_points`): points whose
    measured latency is not below the original layer's.

A warm start's seed points (:mod:`.seeds`) go through every stage, their errors measured, but no stage removes
them.

Which error. Without calibration images the error is the relative Frobenius error of the layer's weight,
measured by actually decomposing the layer for the survivors of (a) only, and cached (JSON, keyed by the
layer's weights and the point). A weight error ranks methods unfairly: a TT or TCL layer with a large weight
error can still have a small error on the activations that really reach it. So with ``calibration`` (a batch
of real training images) the error is the layer's **relative output error on real activations**,
``||f̂(X) - f(X)|| / ||f(X)||`` with ``X`` the input the dense model gives that layer on those images (rung (b)
of the fidelity ladder, the same measure as :func:`tensorslim.surgery.output_errors`), and one stage comes
before (b): ``method-dominated`` removes the points dominated *within their own method* on (params, MACs,
memory, weight error), a comparison that is fair inside one method, so that only those survivors need the
costlier output error (thousands of TT shapes of a Linear layer otherwise). Stages (b) and (c) then compare
methods by their output errors only.

The report counts every stage's removals per layer and per method (:func:`pruning_report`): the share of
per-layer points removed is the headline; the share of the whole-model product space is a secondary figure
(any per-layer pruning makes it tiny). A method with no survivor anywhere is listed with the stage that removed
its last points.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from .layer_errors import ErrorCache, inputs_signature
from .space import DesignPoint, ExploreError, LayerSpace, layer_signature, single_thread

STAGES = ("not-cheaper", "method-dominated", "dominated", "error-bound", "slower")
STAGE_TEXT = {
    "not-cheaper": "(a) MACs and memory below the original layer's",
    "method-dominated": "(a') not dominated within its own method on params/MACs/memory/weight error",
    "dominated": "(b) not dominated within the layer on params/MACs/memory/error",
    "error-bound": "(c) error <= max_error",
    "slower": "(d) measured latency below the original layer's",
}


# --- pruning ------------------------------------------------------------------------------------------------


def _non_dominated(points: list[DesignPoint], error: Callable[[DesignPoint], float]) -> list[DesignPoint]:
    """The points no other dominates on (params, MACs, memory, error); of equal ones the first only."""
    if not points:
        return []
    table = np.array([[p.params, p.macs, p.memory, error(p)] for p in points], dtype=float)
    keep = ~dominated_mask(table)
    out, seen = [], set()
    for p, k, row in zip(points, keep, map(tuple, table)):
        if k and row not in seen:  # equal on every objective: no information in duplicates
            seen.add(row)
            out.append(p)
    return out


def dominated_mask(values: np.ndarray, chunk: int = 512) -> np.ndarray:
    """``mask[i]`` is true when some row j is <= row i in every column and < in at least one (minimisation)."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    mask = np.zeros(n, dtype=bool)
    for start in range(0, n, chunk):
        block = values[start:start + chunk]  # (b, k)
        le = (values[None, :, :] <= block[:, None, :]).all(axis=2)  # (b, n): j <= i everywhere
        lt = (values[None, :, :] < block[:, None, :]).any(axis=2)
        mask[start:start + chunk] = (le & lt).any(axis=1)
    return mask


def prune(spaces: Sequence[LayerSpace], *, max_error: float = 0.5, cache: ErrorCache | None = None,
          log: Callable[[str], None] | None = None,
          calibration: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
    """Run the pruning stages on every layer (in place: ``survivors``, ``removed``, ``point.error``).

    ``calibration``: each layer's input on real images (:func:`capture_inputs`); the points are then judged by
    their output error (see the module doc), else by their weight error. Returns :func:`pruning_report`.
    """
    cache = cache or ErrorCache()
    for space in spaces:
        ctx, dense = space.ctx, space.dense_cost()
        x = None if calibration is None else calibration.get(space.name)
        # (a) strictly cheaper than the original layer in MACs and in memory
        a = [p for p in space.points if p.seed or (p.macs < dense["macs"] and p.memory < dense["memory"])]
        sig = layer_signature(ctx)
        with single_thread():
            cache.fill_tt_linear(ctx, sig, a)
            for p in a:
                p.weight_error = cache.get(ctx, sig, p)
                p.error = p.weight_error
        stages: dict[str, list[DesignPoint]] = {"not-cheaper": a}
        if x is not None:
            # (a') within each method on the weight error, then the output error of what is left
            kept = [q for m in dict.fromkeys(p.method for p in a)
                    for q in _non_dominated([p for p in a if p.method == m], lambda p: p.weight_error)]
            kept_keys = {p.key for p in kept}
            a_prime = [p for p in a if p.key in kept_keys or p.seed]  # enumeration order
            x_sig = inputs_signature(x)
            with single_thread():
                for p in a_prime:
                    p.error = cache.output(ctx, sig, p, x, x_sig)
            stages["method-dominated"] = a_prime
        # (b) dominance within the layer, then (c) the error bound
        b = _non_dominated(list(stages.values())[-1], lambda p: p.error)
        stages["dominated"] = b
        stages["error-bound"] = [p for p in b if p.error <= max_error]
        space.survivors = space.points
        space.removed, space.removed_by_method = {}, {}
        for stage, after in stages.items():
            drop_points(space, stage, after)
        if log:
            log(f"{space.name}: {len(space.points)} points -> " + " -> ".join(
                f"{k} {len(v)}" for k, v in stages.items()))
    cache.save()
    return pruning_report(spaces, max_error, judged_by="output error" if calibration is not None else "weight error")


def drop_points(space: LayerSpace, stage: str, keep: Sequence[DesignPoint]) -> None:
    """A later pruning stage on one layer: ``keep`` (a subset of the survivors) survives, the rest is counted as
    removed by ``stage``, per method, as :func:`prune` counts its own stages (:func:`pruning_report` reads it).
    A warm start's seed point is never removed."""
    left = {p.key for p in keep} | {p.key for p in space.survivors if p.seed}
    gone = [p for p in space.survivors if p.key not in left]
    space.removed[stage] = len(gone)
    counts: dict[str, int] = {}
    for p in gone:
        counts[p.label] = counts.get(p.label, 0) + 1
    space.removed_by_method[stage] = counts
    space.survivors = [p for p in space.survivors if p.key in left]


def pruning_report(spaces: Sequence[LayerSpace], max_error: float, judged_by: str = "weight error") -> dict[str, Any]:
    """What each pruning stage removed: per layer, per method and in total.

    ``points[stage]`` is the number of per-layer points left after that stage (``"all"`` before any);
    ``points_removed_share`` (the headline) the share of per-layer points removed by all stages; ``methods``
    per method (label): points, survivors, removals per stage, and for a method with points but no survivor
    anywhere, ``vanished``: the stage that removed its last points and why. ``space_size`` / ``space_log10``
    / ``removed_share`` give the whole-model product space (secondary: any per-layer pruning makes it tiny).
    """
    stages = [k for k in STAGES if any(k in s.removed for s in spaces)] or [k for k in STAGES
                                                                          if k != "method-dominated"]
    layers = []
    counts: dict[str, list[int]] = {"all": [], **{k: [] for k in stages}}
    methods: dict[str, dict[str, Any]] = {}
    for s in spaces:
        n = len(s.points)
        counts["all"].append(n)
        after = {}
        for k in stages:
            n -= s.removed.get(k, 0)
            counts[k].append(n)
            after[k] = n
        by_method: dict[str, list[int]] = {}
        for p in s.points:
            by_method.setdefault(p.label, [0, 0])[0] += 1
        for p in s.survivors:
            by_method.setdefault(p.label, [0, 0])[1] += 1
        for label, (pts, surv) in by_method.items():
            m = methods.setdefault(label, {"points": 0, "survivors": 0, "removed": dict.fromkeys(stages, 0)})
            m["points"] += pts
            m["survivors"] += surv
            for k in stages:
                m["removed"][k] += s.removed_by_method.get(k, {}).get(label, 0)
        layers.append({"layer": s.name, "dense": s.dense_cost(), "points": len(s.points),
                       "after_a": after.get("not-cheaper"), "after_b": after.get("dominated"),
                       "after_c": after.get("error-bound"), "after": after,
                       "removed_by_method": {k: dict(s.removed_by_method.get(k, {})) for k in stages},
                       "by_method": {k: {"points": v[0], "survivors": v[1]} for k, v in by_method.items()}})
    for label, m in methods.items():
        if m["points"] and not m["survivors"]:
            last = [k for k in stages if m["removed"][k]][-1]
            why = STAGE_TEXT[last] + (f" (max_error={max_error}, judged by {judged_by})" if last == "error-bound"
                                      else "")
            m["vanished"] = {"stage": last, "reason": f"no {label} point passes {why}"}

    def size(ns: list[int]) -> int:
        return math.prod(1 + n for n in ns)

    sizes = {k: size(v) for k, v in counts.items()}
    total = sizes["all"]
    return {
        "max_error": max_error,
        "judged_by": judged_by,
        "stages": stages,
        "layers": layers,
        "methods": methods,
        "points": {k: sum(v) for k, v in counts.items()},
        "points_removed_share": 1.0 - sum(counts[stages[-1]]) / max(1, sum(counts["all"])),
        "space_size": {k: str(v) for k, v in sizes.items()},
        "space_log10": {k: round(math.log10(v), 3) for k, v in sizes.items()},
        "removed_share": {k: 1.0 - _ratio(v, total) for k, v in sizes.items()},
    }


def _ratio(a: int, b: int) -> float:
    """a / b for huge integers, as a float."""
    if a == 0:
        return 0.0
    return math.exp(math.log(a) - math.log(b))


def check_not_empty(spaces: Sequence[LayerSpace], report: dict[str, Any]) -> None:
    """Raise naming the stage that removed the last design point, when nothing survived pruning."""
    if any(s.survivors for s in spaces):
        return
    if not spaces or report["points"]["all"] == 0:
        raise ExploreError("design space is empty: no layer of this model can take any of the chosen methods")
    for stage in report["stages"]:
        if report["points"][stage] == 0:
            extra = f" (max_error={report['max_error']})" if stage == "error-bound" else ""
            raise ExploreError(f"design space is empty after pruning: stage {STAGE_TEXT[stage]}{extra} "
                               f"removed the last of {report['points']['all']} points")
    raise ExploreError("design space is empty after pruning")  # pragma: no cover


def reachable(base: dict[str, float], spaces: Sequence[LayerSpace]) -> dict[str, float]:
    """The smallest params / MACs / memory any combination of the survivors reaches, as a share of the
    original's: each layer at its own cheapest survivor (the costs add up over layers)."""
    out = {}
    for key in ("params", "macs", "memory"):
        saved = sum(max((s.dense_cost()[key] - getattr(p, key) for p in s.survivors), default=0) for s in spaces)
        out[key] = (base[key] - saved) / base[key]
    return out
