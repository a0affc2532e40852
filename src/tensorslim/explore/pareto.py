"""Pareto fronts, hypervolume and budgets (all objectives minimised here; pass -accuracy or drop)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

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
_TERM = re.compile(r"^\s*(macs|params|memory|latency|drop)\s*<=\s*([0-9]*\.?[0-9]+(?:e-?[0-9]+)?)\s*$")


@dataclasses.dataclass(frozen=True)
class Budget:
    """Limits: ``macs``/``params``/``memory``/``latency`` as fractions of the original model, ``drop`` in
    accuracy points below the original model's accuracy."""

    limits: tuple[tuple[str, float], ...]

    def __str__(self) -> str:
        return ",".join(f"{k}<={v:g}" for k, v in self.limits)

    def violation(self, rel: dict[str, float]) -> float:
        """0 when ``rel`` meets every limit, else the summed relative excess (how far off it is)."""
        total = 0.0
        for key, limit in self.limits:
            value = rel.get(key)
            if value is None:
                raise ExploreError(f"budget {key}<={limit:g}: that quantity was not measured "
                                   "(add it to --objectives)")
            if value > limit:
                total += (value - limit) / (limit if key != "drop" else max(limit, 1.0)) if limit > 0 else value
        return total


def parse_budget(text: str | dict[str, float] | Budget | None) -> Budget | None:
    """``"macs<=0.25,params<=0.1,drop<=0.5"`` (or a dict) -> :class:`Budget`; one-line error otherwise."""
    if text is None or isinstance(text, Budget):
        return text
    if isinstance(text, dict):
        items = list(text.items())
    else:
        items = []
        for term in str(text).split(","):
            m = _TERM.match(term)
            if not m:
                raise ExploreError(f"budget term {term.strip()!r}: expected KEY<=NUMBER with KEY one of "
                                   f"{', '.join(BUDGET_KEYS)} (e.g. macs<=0.25,drop<=0.5)")
            items.append((m.group(1), float(m.group(2))))
    for key, value in items:
        if key not in BUDGET_KEYS:
            raise ExploreError(f"budget key {key!r}: choose from {', '.join(BUDGET_KEYS)}")
        if not isinstance(value, (int, float)) or value < 0:
            raise ExploreError(f"budget {key}: limit must be a number >= 0, not {value!r}")
    if not items:
        raise ExploreError("budget is empty")
    return Budget(tuple((k, float(v)) for k, v in items))


def pick(points: Sequence[dict[str, Any]], budget: Budget) -> dict[str, Any]:
    """The most accurate point meeting the budget (ties: fewest MACs); none: a one-line error naming the closest.

    Each point needs ``relative`` (dict of macs/params/memory/latency ratios and ``drop``), ``accuracy``,
    ``macs`` and ``id``.
    """
    if not points:
        raise ExploreError("no Pareto points to choose from")
    scored = [(budget.violation(p["relative"]), p) for p in points]
    ok = [p for v, p in scored if v == 0]
    if ok:
        return max(ok, key=lambda p: (p["accuracy"], -p["macs"]))
    v, closest = min(scored, key=lambda t: (t[0], -t[1]["accuracy"]))
    rel = closest["relative"]
    desc = ", ".join(f"{k} {rel[k]:.3g}" for k in BUDGET_KEYS if k in rel)
    raise ExploreError(f"no Pareto point meets the budget {budget}; closest is {closest['id']} ({desc})")
