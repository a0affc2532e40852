"""How the report's models relate: unique names, each compressed model's original and its ratios, one unit for
accuracies, and Pareto fronts of accuracy against a cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..study.pareto import pareto_indices
from .entry import Entry, number


def unique_names(entries: list[Entry]) -> None:
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


def link_originals(entries: list[Entry]) -> None:
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
        base_params = found.params if found else number((e.original_ref or {}).get("params"))
        base_macs = found.macs if found else number((e.original_ref or {}).get("macs"))
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


def normalise_accuracy(entries: list[Entry], notes: list[str]) -> None:
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
    them strictly), of equal points only the first: :func:`tensorslim.study.pareto.pareto_indices` on
    (cost, -accuracy).

    Returned in increasing cost.
    """
    return sorted(pareto_indices([(c, -a) for c, a in points]), key=lambda i: points[i][0])
