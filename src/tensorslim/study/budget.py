"""One budget syntax for every command: ``params<=0.1,macs<=0.3,latency<=0.25,drop<=0.5``.

``params``, ``macs``, ``memory`` and ``latency`` are fractions of the original model's; ``drop`` is accuracy
points below the original. Each command says which keys it can meet (``allowed``). The older form of
``tensorslim finetune`` (``params=0.1,macs=0.3``, ``max-drop=0.5``) is still read, with a deprecation note in
:attr:`Budget.notes` for the caller to show.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import TensorSlimError

KEYS = ("params", "macs", "memory", "latency", "drop")
FRACTIONS = ("params", "macs", "memory", "latency")
_NUMBER = r"([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"
_TERM = re.compile(rf"^\s*([a-z_-]+)\s*(<=|=)\s*{_NUMBER}\s*$")
_LEGACY = {"max_drop": "drop", "max-drop": "drop"}


class BudgetError(TensorSlimError):
    """A budget that is malformed, names a quantity the command cannot meet, or cannot be met."""


@dataclasses.dataclass(frozen=True)
class Budget:
    """Upper limits by key, in the order given; ``notes`` are deprecation notes for the user."""

    limits: tuple[tuple[str, float], ...]
    notes: tuple[str, ...] = ()

    def __str__(self) -> str:
        return ",".join(f"{k}<={v:g}" for k, v in self.limits)

    def __contains__(self, key: str) -> bool:
        return any(k == key for k, _ in self.limits)

    def get(self, key: str, default: float | None = None) -> float | None:
        return next((v for k, v in self.limits if k == key), default)

    def as_dict(self) -> dict[str, float]:
        return dict(self.limits)

    def violation(self, relative: Mapping[str, float]) -> float:
        """0 when ``relative`` meets every limit, else the summed relative excess (how far off it is).
        A quantity that was not measured is a one-line error."""
        total = 0.0
        for key, limit in self.limits:
            value = relative.get(key)
            if value is None:
                raise BudgetError(f"budget {key}<={limit:g}: that quantity was not measured")
            if value > limit:
                total += (value - limit) / (limit if key != "drop" else max(limit, 1.0)) if limit > 0 else value
        return total


def parse_budget(budget: str | Mapping[str, Any] | Budget, allowed: Iterable[str] = KEYS) -> Budget:
    """Read ``"macs<=0.25,drop<=0.5"`` (or a dict, or a :class:`Budget`); every problem is one line."""
    allowed = tuple(allowed)
    if isinstance(budget, Budget):
        items, notes = list(budget.limits), list(budget.notes)
    elif isinstance(budget, Mapping):
        items, notes = [(str(k), v) for k, v in budget.items()], []
    elif isinstance(budget, str):
        items, notes, legacy = [], [], False
        for term in budget.split(","):
            m = _TERM.match(term)
            if not m or _LEGACY.get(m.group(1), m.group(1)) not in allowed:
                raise BudgetError(f"budget term {term.strip()!r}: expected KEY<=NUMBER with KEY one of "
                                  f"{', '.join(allowed)} (e.g. {_example(allowed)})")
            legacy |= m.group(2) == "="
            items.append((m.group(1), float(m.group(3))))
        if legacy:
            new = ",".join(f"{_LEGACY.get(k, k)}<={v:g}" for k, v in items)
            notes.append(f"note: budget {budget!r} uses the old KEY=VALUE form; write {new!r}")
    else:
        raise BudgetError(f"budget must be text like {_example(allowed)!r}, not {budget!r}")
    if not items:
        raise BudgetError("budget is empty")
    limits = []
    for key, value in items:
        key = _LEGACY.get(key, key)
        if key not in allowed:
            raise BudgetError(f"budget term {key!r}: expected KEY<=NUMBER with KEY one of {', '.join(allowed)} "
                              f"(e.g. {_example(allowed)})")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise BudgetError(f"budget {key}: limit must be a number >= 0, not {value!r}")
        if any(k == key for k, _ in limits):
            raise BudgetError(f"budget names {key} twice")
        limits.append((key, float(value)))
    return Budget(tuple(limits), tuple(notes))


def _example(allowed: tuple[str, ...]) -> str:
    sample = {"params": 0.1, "macs": 0.3, "memory": 0.3, "latency": 0.25, "drop": 0.5}
    return ",".join(f"{k}<={sample[k]:g}" for k in allowed[:2] + (("drop",) if "drop" in allowed[2:] else ()))
