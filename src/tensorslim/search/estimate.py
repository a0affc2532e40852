"""How long a search will take, said before it starts: training batches timed on this machine, times the work.

:func:`estimate` builds a few architectures drawn at random from the space (within its ``max_params`` /
``max_macs``), and each baseline, times a few SGD training batches of each on random inputs of the data's shape
(one untimed warm-up batch), and multiplies by what the run will do:

* the search: the trials still to run, each ``epochs`` x ``max_batches`` training batches plus the validation
  batches (a forward pass taken as a third of a training batch), capped by the time budget. Pruned trials stop
  early, so this is an upper bound;
* the final retraining: ``final_top`` models of the drawn size, ``final.epochs`` x the batches of an epoch;
* each baseline: its own measured batch time x the same final budget.

The numbers are seconds; :func:`describe` turns them into the one line the search prints first.
:func:`final_estimate` times the chosen finalists themselves once the search is over.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from .space import SearchSpace, build_network, count

#: architectures drawn from the space for the per-batch time, and timed batches per model
SAMPLES = 3
BATCHES = 2
#: timed batches per finalist or baseline in :func:`final_estimate`
FINAL_BATCHES = 5


class _RandomTrial:
    """A trial stand-in answering every decision at random (for drawing architectures without a study)."""

    def __init__(self, rng: random.Random):
        self.rng = rng

    def suggest_categorical(self, _name: str, choices: Sequence[Any]) -> Any:
        return self.rng.choice(list(choices))


def draw(space: SearchSpace, n: int, seed: int = 0, tries: int = 200) -> list[dict[str, Any]]:
    """Up to ``n`` architectures of ``space`` drawn at random, each within its params / MACs limits."""
    rng, out = random.Random(seed), []
    for _ in range(tries):
        if len(out) == n:
            break
        arch = space.suggest(_RandomTrial(rng), "auto")
        params, macs = count(arch)
        if (space.max_params and params > space.max_params) or (space.max_macs and macs > space.max_macs):
            continue
        out.append(arch)
    return out


def batch_seconds(model: nn.Module, input_shape: Sequence[int], num_classes: int, batch_size: int,
                  batches: int = BATCHES) -> float:
    """Median seconds per SGD training batch of ``model`` on random inputs (the first, warm-up batch not
    counted)."""
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x = torch.randn(batch_size, *input_shape)
    y = torch.randint(0, num_classes, (batch_size,))
    times = []
    for i in range(batches + 1):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        if i:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)  # a median: one slow batch (another process, a first-call cost) is ignored


def _train_s(fid: Any, per_epoch: int, t_batch: float, val_images: int) -> float:
    batches = fid.epochs * min(fid.max_batches or per_epoch, per_epoch)
    val = val_images if fid.val_batches is None else min(val_images, 500 * fid.val_batches)
    return t_batch * (batches + fid.epochs * val / fid.batch_size / 3)


def estimate(space: SearchSpace, *, trials_left: int, low: Any, final: Any | None, final_top: int | None,
             baselines: Sequence[tuple[str, Callable[[], nn.Module]]], train_images: int, val_images: int,
             time_budget: float | None = None, seed: int = 0) -> dict[str, Any]:
    """Seconds of the search (``search_s``), the final retraining (``final_s``) and each baseline
    (``baselines_s``), and the per-batch times they come from; ``total_s`` adds them. ``final`` None: no
    retraining. ``baselines``: (name, builder) pairs."""
    shape, classes = tuple(space.input_shape), space.num_classes
    archs = draw(space, SAMPLES, seed)
    if archs:
        times = []
        for arch in archs:
            torch.manual_seed(seed)
            model = build_network(arch["input_shape"], arch["num_classes"], arch["stem"], arch["stages"],
                                  arch["head"], arch.get("pool_to"))
            times.append(batch_seconds(model, shape, classes, low.batch_size))
        t_batch = sum(times) / len(times)
    else:
        t_batch = 0.0
    per_epoch = -(-train_images // low.batch_size)
    trial_s = _train_s(low, per_epoch, t_batch, val_images)
    search_s = trials_left * trial_s
    capped = time_budget is not None and search_s > time_budget
    out: dict[str, Any] = {"batch_s": t_batch, "trial_s": trial_s, "trials": trials_left,
                           "search_s": min(search_s, time_budget) if capped else search_s,
                           "capped_by_time_budget": capped, "final_s": 0.0, "baselines_s": {}}
    if final is not None:
        final_epoch = -(-train_images // final.batch_size)
        out["final_s"] = (final_top or SAMPLES) * _train_s(final, final_epoch, t_batch * final.batch_size
                                                          / low.batch_size, val_images)
        for name, build in baselines:
            torch.manual_seed(seed)
            t = batch_seconds(build(), shape, classes, final.batch_size)
            out["baselines_s"][name] = _train_s(final, final_epoch, t, val_images)
    out["total_s"] = out["search_s"] + out["final_s"] + sum(out["baselines_s"].values())
    return out


def final_estimate(models: Sequence[tuple[str, nn.Module]], input_shape: Sequence[int], num_classes: int,
                   final: Any, train_images: int, val_images: int) -> dict[str, float]:
    """Seconds of the full-fidelity training of each named model (a finalist or a baseline), from its own
    timed training batches: the estimate said once the finalists are known, when the first one (from drawn
    architectures) can be far off for a model with many depthwise convs."""
    per_epoch = -(-train_images // final.batch_size)
    return {name: _train_s(final, per_epoch, batch_seconds(model, input_shape, num_classes, final.batch_size,
                                                           batches=FINAL_BATCHES), val_images)
            for name, model in models}


def describe(est: dict[str, Any], format_seconds: Callable[[float], str], final_epochs: int | None,
             final_top: int | None) -> str:
    """The line printed before the search starts."""
    search = (f"search ~{format_seconds(est['search_s'])} ("
              + ("the time budget" if est["capped_by_time_budget"] else
                 f"{est['trials']} trials x up to ~{format_seconds(est['trial_s'])}") + ")")
    parts = [search]
    if final_epochs is not None:
        parts.append(f"final retraining ~{format_seconds(est['final_s'])} (up to {final_top} models x "
                     f"{final_epochs} epochs)")
        parts += [f"baseline {n} ~{format_seconds(s)}" for n, s in est["baselines_s"].items()]
    return (f"estimated wall time: ~{format_seconds(est['total_s'])}: " + ", ".join(parts)
            + f"; from training batches timed here (~{1000 * est['batch_s']:.0f} ms per batch of a drawn "
              "architecture)")
