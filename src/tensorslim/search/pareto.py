"""Objectives, Pareto fronts and hypervolumes.

Objectives: ``accuracy`` (validation top-1 in %, maximised), ``params`` and ``macs`` (analytic, from
:func:`tensorslim.cost.profile`, minimised) and ``latency`` (measured: median milliseconds of a batch-1 forward in
eager PyTorch on one thread, minimised; noisy on a shared machine).

Hypervolumes are computed on *normalised minimisation* vectors: accuracy → ``1 − acc/100``; a cost →
``cost / reference`` (the costliest architecture of the space, :meth:`SearchSpace.max_architecture`), with the
reference point ``(1, …, 1)``; points outside the box add nothing.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch

from ..errors import TensorSlimError

OBJECTIVES = {"accuracy": "maximize", "params": "minimize", "macs": "minimize", "latency": "minimize"}


def check_objectives(objectives: Sequence[str]) -> tuple[str, ...]:
    if isinstance(objectives, str):
        objectives = [o.strip() for o in objectives.split(",") if o.strip()]
    objs = tuple(objectives)
    bad = [o for o in objs if o not in OBJECTIVES]
    if bad or not objs:
        raise TensorSlimError(f"objectives must be among {', '.join(OBJECTIVES)}, got {list(objs)}")
    if len(set(objs)) != len(objs):
        raise TensorSlimError(f"objectives repeat: {list(objs)}")
    if "accuracy" not in objs:
        raise TensorSlimError(f"objectives must include accuracy, got {list(objs)}")
    return objs


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """``a`` dominates ``b`` (minimisation): no worse everywhere and better somewhere."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def pareto_indices(points: Sequence[Sequence[float]]) -> list[int]:
    """Indices of the non-dominated points (minimisation); of exact duplicates only the first is kept."""
    keep: list[int] = []
    for i, p in enumerate(points):
        if any(dominates(q, p) for q in points):
            continue
        if any(tuple(points[j]) == tuple(p) for j in keep):
            continue
        keep.append(i)
    return keep


def hypervolume(points: Sequence[Sequence[float]], ref: Sequence[float]) -> float:
    """Exact hypervolume dominated by ``points`` inside the box below ``ref`` (minimisation), by slicing along
    the last objective (fine for the few hundred points of a search)."""
    d = len(ref)
    pts = [tuple(float(v) for v in p) for p in points if all(v < r for v, r in zip(p, ref))]
    if not pts:
        return 0.0
    pts = [pts[i] for i in pareto_indices(pts)]
    if d == 1:
        return ref[0] - min(p[0] for p in pts)
    pts.sort(key=lambda p: p[-1])
    total = 0.0
    for i, p in enumerate(pts):
        upper = pts[i + 1][-1] if i + 1 < len(pts) else ref[-1]
        if upper <= p[-1]:
            continue
        total += hypervolume([q[:-1] for q in pts[: i + 1]], ref[:-1]) * (upper - p[-1])
    return total


def normalise(values: dict[str, float], objectives: Sequence[str], reference: dict[str, float]) -> list[float]:
    """Minimisation vector for :func:`hypervolume` (see the module docstring)."""
    out = []
    for o in objectives:
        v = float(values[o])
        out.append(1.0 - v / 100.0 if o == "accuracy" else v / float(reference[o]))
    return out


@torch.inference_mode()
def measure_latency(model: torch.nn.Module, input_shape: Sequence[int], *, repeats: int = 20, warmup: int = 3) -> float:
    """Median milliseconds of a batch-1 forward (eval mode, current thread setting)."""
    was = model.training
    model.eval()
    x = torch.randn(1, *input_shape)
    for _ in range(warmup):
        model(x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model(x)
        times.append(time.perf_counter() - t0)
    model.train(was)
    times.sort()
    return 1000.0 * times[len(times) // 2]
