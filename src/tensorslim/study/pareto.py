"""Objectives, Pareto fronts, hypervolume and picking a point under a budget: the one core of explore, search
and the finetune allocation.

* :class:`Objective`: a name, a direction (``"minimize"`` / ``"maximize"``) and a unit;
  :func:`minimised` turns a row of values into the minimisation vector the functions below take.
* :func:`dominates`, :func:`pareto_indices`: the non-dominated rows (minimisation), of rows equal in every
  column only the first.
* :func:`hypervolume`: the exact volume dominated by a set of points inside the box below a reference point.
* :func:`pick`: the most accurate point that meets a :class:`tensorslim.study.budget.Budget`, or a one-line
  error naming the closest one.

Importing this module does not import torch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import TensorSlimError
from .budget import Budget, BudgetError

DIRECTIONS = ("minimize", "maximize")


@dataclasses.dataclass(frozen=True)
class Objective:
    """One objective: ``name``, ``direction`` (``"minimize"`` or ``"maximize"``, Optuna's words) and ``unit``."""

    name: str
    direction: str = "minimize"
    unit: str = ""

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise TensorSlimError(f"objective {self.name}: direction must be minimize or maximize, "
                                  f"not {self.direction!r}")

    @property
    def label(self) -> str:
        """``name (unit)``, or the name alone: the metric name the Optuna study records for dashboards."""
        return f"{self.name} ({self.unit})" if self.unit else self.name

    def minimised(self, value: float) -> float:
        """``value`` as a quantity to minimise (negated when the objective is maximised)."""
        return -float(value) if self.direction == "maximize" else float(value)


def minimised(values: Sequence[float] | Mapping[str, float], objectives: Sequence[Objective]) -> list[float]:
    """The minimisation vector of one row: ``values`` in the order of ``objectives`` (a sequence), or looked up
    by objective name (a mapping); maximised objectives negated."""
    if isinstance(values, Mapping):
        return [o.minimised(values[o.name]) for o in objectives]
    return [o.minimised(v) for o, v in zip(objectives, values, strict=True)]


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """``a`` dominates ``b`` (minimisation): no worse everywhere and better somewhere."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def pareto_indices(values: Sequence[Sequence[float]]) -> list[int]:
    """Indices of the non-dominated rows (minimisation), in their order; of rows equal in every column only the
    first."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return []
    v = v.reshape(len(v), -1)
    out: list[int] = []
    for i in range(len(v)):
        if ((v <= v[i]).all(axis=1) & (v < v[i]).any(axis=1)).any():
            continue
        if any((v[j] == v[i]).all() for j in out):
            continue
        out.append(i)
    return out


def hypervolume(points: Sequence[Sequence[float]], reference: Sequence[float]) -> float:
    """Volume dominated by ``points`` and bounded by ``reference`` (minimisation), exact.

    Recursive slicing along the last objective (HSO), for fronts of a few hundred points. Points not strictly
    better than the reference in every objective add nothing.
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
    pts = pts[np.argsort(pts[:, -1], kind="stable")]
    volume = 0.0
    for i in range(len(pts)):
        upper = pts[i + 1, -1] if i + 1 < len(pts) else ref[-1]
        depth = upper - pts[i, -1]
        if depth <= 0:
            continue
        sub = pts[: i + 1, :-1]
        volume += depth * _hso(sub[pareto_indices(sub)], ref[:-1])
    return volume


def pick(points: Sequence[dict[str, Any]], budget: Budget, *, fields: Sequence[str] = ()) -> dict[str, Any]:
    """The most accurate point meeting ``budget`` (ties: fewest MACs); none: a one-line :class:`BudgetError`
    naming the closest compressed point (one with at least one factorized layer in ``choices``; any point if none
    is), described by its ``fields`` of ``relative``.

    Each point needs ``relative`` (ratios to the original such as macs/params/memory/latency, and ``drop`` in
    points), ``accuracy``, ``macs`` and ``id``.
    """
    if not points:
        raise BudgetError("no Pareto points to choose from")
    try:
        scored = [(budget.violation(p["relative"]), p) for p in points]
    except BudgetError as err:
        raise BudgetError(f"{err} (add it to --objectives)") from None
    ok = [p for v, p in scored if v == 0]
    if ok:
        return max(ok, key=lambda p: (p["accuracy"], -p["macs"]))
    # the closest COMPRESSED point: a point that keeps every layer dense is the original model, no suggestion
    compressed = [t for t in scored if _is_compressed(t[1])] or scored
    _, closest = min(compressed, key=lambda t: (t[0], -t[1]["accuracy"]))
    rel = closest["relative"]
    desc = ", ".join(f"{k} {rel[k]:.3g}" for k in fields if k in rel)
    raise BudgetError(f"no Pareto point meets the budget {budget}; closest is {closest['id']} ({desc})")


def _is_compressed(point: dict[str, Any]) -> bool:
    """Whether the point factorizes at least one layer (a point without ``choices`` counts as compressed)."""
    choices = point.get("choices")
    return choices is None or any(key != "dense" for key in choices.values())


__all__ = ["DIRECTIONS", "Objective", "dominates", "hypervolume", "minimised", "pareto_indices", "pick"]
