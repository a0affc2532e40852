"""Pareto fronts, hypervolume and budgets (all objectives minimised here; pass -accuracy or drop)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..study import budget as study_budget
from ..study.budget import Budget
from .space import ExploreError


def pareto_indices(values: Sequence[Sequence[float]]) -> list[int]:
    """Indices of the non-dominated rows (minimisation); of rows equal in every column only the first."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return []
    out: list[int] = []
    for i in range(len(v)):
        le = (v <= v[i]).all(axis=1)
        lt = (v < v[i]).any(axis=1)
        if (le & lt).any():
            continue
        if any((v[j] == v[i]).all() for j in out):
            continue
        out.append(i)
    return out


def hypervolume(points: Sequence[Sequence[float]], reference: Sequence[float]) -> float:
    """Volume dominated by ``points`` and bounded by ``reference`` (minimisation), exact.

    Recursive slicing along the last objective (HSO): fine for the fronts of a few hundred points that the
    exploration produces. Points not strictly better than the reference in every objective add nothing.
    """
    ref = np.asarray(reference, dtype=float)
    pts = np.asarray(points, dtype=float).reshape(-1, len(ref))
    pts = pts[(pts < ref).all(axis=1)]
    if len(pts) == 0:
        return 0.0
    return _hso(pts[pareto_indices(pts)], ref)


def _hso(pts: np.ndarray, ref: np.ndarray) -> float:
    if pts.shape[1] == 1:
        return float(ref[0] - pts[:, 0].min())
    order = np.argsort(pts[:, -1])
    pts = pts[order]
    volume = 0.0
    for i in range(len(pts)):
        upper = pts[i + 1, -1] if i + 1 < len(pts) else ref[-1]
        depth = upper - pts[i, -1]
        if depth <= 0:
            continue
        sub = pts[: i + 1, :-1]
        sub = sub[pareto_indices(sub)]
        volume += depth * _hso(sub, ref[:-1])
    return volume


# --- budgets ------------------------------------------------------------------------------------------------

BUDGET_KEYS = ("macs", "params", "memory", "latency", "drop")


def parse_budget(text: str | dict[str, float] | Budget | None) -> Budget | None:
    """``"macs<=0.25,params<=0.1,drop<=0.5"`` (or a dict) -> :class:`tensorslim.study.budget.Budget`, in the one
    budget syntax of every command; one-line :class:`ExploreError` otherwise."""
    if text is None:
        return None
    try:
        return study_budget.parse_budget(text, BUDGET_KEYS)
    except study_budget.BudgetError as err:
        raise ExploreError(str(err)) from None


def pick(points: Sequence[dict[str, Any]], budget: Budget) -> dict[str, Any]:
    """The most accurate point meeting the budget (ties: fewest MACs); none: a one-line error naming the closest
    compressed point (one with at least one factorized layer in ``choices``; any point if none is).

    Each point needs ``relative`` (dict of macs/params/memory/latency ratios and ``drop``), ``accuracy``,
    ``macs`` and ``id``.
    """
    if not points:
        raise ExploreError("no Pareto points to choose from")
    try:
        scored = [(budget.violation(p["relative"]), p) for p in points]
    except study_budget.BudgetError as err:
        raise ExploreError(f"{err} (add it to --objectives)") from None
    ok = [p for v, p in scored if v == 0]
    if ok:
        return max(ok, key=lambda p: (p["accuracy"], -p["macs"]))
    # the closest COMPRESSED point: a point that keeps every layer dense is the original model, no suggestion
    compressed = [t for t in scored if _is_compressed(t[1])] or scored
    v, closest = min(compressed, key=lambda t: (t[0], -t[1]["accuracy"]))
    rel = closest["relative"]
    desc = ", ".join(f"{k} {rel[k]:.3g}" for k in BUDGET_KEYS if k in rel)
    raise ExploreError(f"no Pareto point meets the budget {budget}; closest is {closest['id']} ({desc})")


def _is_compressed(point: dict[str, Any]) -> bool:
    """Whether the point factorizes at least one layer (a point without ``choices`` counts as compressed)."""
    choices = point.get("choices")
    return choices is None or any(key != "dense" for key in choices.values())
