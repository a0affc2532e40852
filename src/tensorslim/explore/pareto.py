"""Explore's budgets and its pick, on the shared core :mod:`tensorslim.study.pareto` (fronts, hypervolume,
pick), with explore's one-line :class:`ExploreError`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..study import budget as study_budget
from ..study import pareto as study_pareto
from ..study.budget import Budget
from ..study.pareto import hypervolume, pareto_indices
from .space import ExploreError

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
    """:func:`tensorslim.study.pareto.pick` (the most accurate point meeting the budget, ties: fewest MACs; none:
    one line naming the closest compressed point), its errors as :class:`ExploreError`."""
    try:
        return study_pareto.pick(points, budget, fields=BUDGET_KEYS)
    except study_budget.BudgetError as err:
        raise ExploreError(str(err)) from None


__all__ = ["BUDGET_KEYS", "Budget", "hypervolume", "pareto_indices", "parse_budget", "pick"]
