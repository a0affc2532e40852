"""Which low-fidelity front points explore promotes to the full-fidelity fine-tune, and which of those a time
budget leaves out."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


def spread(indices: list[int], key: Callable[[int], float], k: int) -> list[int]:
    """At most ``k`` of ``indices``, evenly spaced along ``key`` (both ends included)."""
    if len(indices) <= k:
        return list(indices)
    ordered = sorted(indices, key=key)
    picks = sorted({round(i * (len(ordered) - 1) / (k - 1)) for i in range(k)}) if k > 1 else [0]
    return [ordered[i] for i in picks]


def promote(front: list[Any], objs: Sequence[Any], k: int) -> list[int]:
    """Which of the low-fidelity ``front`` trials get the full-fidelity fine-tune: at most ``k``, the most
    accurate one always (it is the point a budget's accuracy limit needs most), the others spread evenly along
    MACs (both ends included). In run order: the most accurate first (a time budget that runs short leaves out
    the others), then MACs order."""
    def macs(i: int) -> float:
        return front[i].user_attrs["macs"]

    names = [o.name for o in objs]
    if "accuracy" not in names:
        return sorted(spread(list(range(len(front))), macs, k), key=macs)
    a = names.index("accuracy")
    best = max(range(len(front)), key=lambda i: (front[i].values[a], -macs(i)))
    rest = spread([i for i in range(len(front)) if i != best], macs, k - 1) if k > 1 else []
    return [best, *sorted(rest, key=macs)]


def skip_for_time(projected: Sequence[float], j: int, left: float, any_done: bool) -> bool:
    """Whether finalist ``j`` (of those with these projected fine-tune seconds, in run order) is skipped with
    ``left`` seconds of the time budget left: it cannot end in time, and the front does not stay empty without
    it (a finalist is done already, or a later one fits)."""
    return projected[j] > left and (any_done or any(p <= left for p in projected[j + 1:]))
