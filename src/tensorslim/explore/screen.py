"""Rung (b) over whole models: which combinations the short fine-tune (rung (c)) sees first.

Rung (b), a layer's relative output error on the real activations that reach it, is measured per layer point in
pruning; its sum over a combination's layers ranks whole models (Spearman 0.83–0.89 against the test accuracy
after fine-tuning in ``benchmarks/bench_proxy.py``). Judging a combination there builds no model: its params,
MACs and memory are the sums of its layer points' (:meth:`_Evaluator.estimate`), its latency the latency
table's estimate. So :func:`screen` judges many combinations (every one when the space holds no more than
``evaluations``, otherwise that many by an in-memory NSGA-II search on the cost objectives and the summed
error, with the budget's cost limits as constraints) and returns the best ones for the short fine-tune: the
combinations that meet the cost limits and are not dominated on (costs, summed error), the smallest errors
first when there are cost limits (an accuracy limit needs them most), otherwise spread along the first cost.
Explore enqueues them as its first low-fidelity trials; its sampler goes on from there.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import optuna

from ..study.pareto import pareto_indices
from .promotion import spread
from .space import LayerSpace

Costs = Callable[[dict[str, str]], dict[str, float]]


def summed_error(live: Sequence[LayerSpace]) -> Callable[[dict[str, str]], float]:
    """``choice -> sum of its layer points' errors`` (dense layers add 0)."""
    error = {(s.name, p.key): p.error for s in live for p in s.survivors}
    return lambda choice: sum(error[(k, v)] for k, v in choice.items() if v != "dense")


def screen(live: Sequence[LayerSpace], costs: Costs, base: dict[str, float], objectives: Sequence[str],
           limits: Sequence[tuple[str, float]], n: int, evaluations: int, seed: int = 0
           ) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """At most ``n`` combinations of the ``live`` layers' survivors (``{layer: key or "dense"}``, the all-dense
    one left out) ranked best at rung (b), and what the screen did (``evaluated``, ``exhaustive``, ``feasible``,
    ``front``, ``picked``, ``seconds``). ``costs(choice)`` gives its params / MACs / memory (/ latency);
    ``objectives`` are explore's (the costs among them are compared); ``limits`` are the budget's
    ``(cost, fraction of base)``."""
    t0 = time.perf_counter()
    options = {s.name: ["dense", *[p.key for p in s.survivors]] for s in live}
    error = summed_error(live)
    cost_names = [o for o in objectives if o != "accuracy"]
    size = math.prod(len(v) for v in options.values())
    seen: dict[tuple[str, ...], tuple[dict[str, float], float]] = {}

    def judge(choice: dict[str, str]) -> tuple[dict[str, float], float]:
        key = tuple(choice[k] for k in options)
        if key not in seen:
            seen[key] = (costs(choice), error(choice))
        return seen[key]

    exhaustive = size <= evaluations
    if exhaustive:
        for keys in itertools.product(*options.values()):
            judge(dict(zip(options, keys)))
    else:
        def objective(trial) -> tuple[float, ...]:
            choice = {k: trial.suggest_categorical(k, v) for k, v in options.items()}
            c, e = judge(choice)
            for k, v in limits:  # NSGA-II prefers the feasible trials (every constraint <= 0)
                trial.set_constraint(k, c[k] / base[k] - v)
            return (*[c[k] for k in cost_names], e)

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        sampler = optuna.samplers.NSGAIISampler(seed=seed, population_size=50)
        study = optuna.create_study(directions=["minimize"] * (len(cost_names) + 1), sampler=sampler)
        study.optimize(objective, n_trials=evaluations)
    rows = [(dict(zip(options, key)), c, e) for key, (c, e) in seen.items()
            if any(v != "dense" for v in key) and all(c[k] / base[k] <= v for k, v in limits)]
    front = [rows[i] for i in pareto_indices([[c[k] for k in cost_names] + [e] for _, c, e in rows])]
    if n <= 0:
        picked = []
    elif limits:
        picked = sorted(range(len(front)), key=lambda i: front[i][2])[:n]
    else:
        picked = spread(list(range(len(front))), lambda i: front[i][1][cost_names[0]], n)
    info = {"evaluated": len(seen), "space": size, "exhaustive": exhaustive, "feasible": len(rows),
            "front": len(front), "picked": len(picked), "seconds": round(time.perf_counter() - t0, 2),
            "summed_error": [round(front[i][2], 4) for i in picked]}
    return [front[i][0] for i in picked], info
