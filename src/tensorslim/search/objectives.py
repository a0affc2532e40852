"""The objectives of a search, their normalised vectors for the hypervolume, and the latency measurement.

Pareto fronts and hypervolumes are :mod:`tensorslim.study.pareto`'s. Objectives: ``accuracy`` (validation top-1
in %, maximised), ``params`` and ``macs`` (analytic, from :func:`tensorslim.cost.profile`, minimised) and
``latency`` (measured by :func:`measure_latency`: median milliseconds of a batch-1 forward in eager PyTorch on
one thread, minimised; noisy on a shared machine).

Hypervolumes are computed on *normalised minimisation* vectors: accuracy → ``1 − acc/100``; a cost →
``cost / reference`` (the costliest architecture of the space, :meth:`SearchSpace.max_architecture`), with the
reference point ``(1, …, 1)``; points outside the box add nothing.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch

from ..errors import TensorSlimError
from ..study.pareto import Objective

#: the objectives a search can optimise, by name
OBJECTIVES = {"accuracy": Objective("accuracy", "maximize", "%"), "params": Objective("params", unit="parameters"),
              "macs": Objective("macs", unit="MACs"), "latency": Objective("latency", unit="ms")}


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


def normalise(values: dict[str, float], objectives: Sequence[str], reference: dict[str, float]) -> list[float]:
    """Minimisation vector for :func:`tensorslim.study.pareto.hypervolume` (see the module docstring)."""
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
