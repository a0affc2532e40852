"""Warm starts: plans whose layer choices explore adds to its space and tries first (``warm_start``).

A practitioner often has a good plan already: the sensitivity allocation that ``tensorslim finetune --budget``
made (recorded in its model directory's ``model.json``) or a hand-written plan file. Its ranks are seldom on
explore's grid (the allocation picks any rank, the grid a few fractions of the channels), so without a warm
start explore can only come near it. With one:

* each warm-start plan is resolved on the model exactly as ``compress`` resolves it
  (:func:`tensorslim.surgery.predict`: the same rules, rank specs and skips; nothing is decomposed), and each
  of its layer choices becomes a design point of that layer, added when the grid lacks it and marked ``seed``;
* pruning judges seed points like the others (their errors are computed and reported) but never removes them:
  the user asked for them;
* the plan's combination (every other layer dense) is enqueued as one of the first low-fidelity trials, followed
  by its **neighbours**: the plan with one layer moved to the next cheaper survivor of the same method on that
  layer (any CP form or algorithm for CP). Fewer params at nearly the plan's accuracy is what beats the plan;
  the sampler goes on from there.

A warm start is a plan file (JSON, the schema of :mod:`tensorslim.plan`) or a model directory that records one
compression plan; a model directory is read for its plan only (its builder must still be a built-in: see
:mod:`tensorslim.trust`), nothing in it is built or run.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from torch import nn

from .. import methods, modeldir, surgery
from .. import plan as plan_mod
from .space import ExploreError, LayerSpace, design_point

WarmStart = str | os.PathLike | dict | plan_mod.Plan


def read_warm_start(source: WarmStart) -> plan_mod.Plan:
    """The plan of one warm start: a plan dict or :class:`~tensorslim.plan.Plan`, a plan file, or a model
    directory recording exactly one compression plan. Every problem is one line."""
    if isinstance(source, (dict, plan_mod.Plan)):
        return plan_mod.parse(source, "warm-start plan")
    path = Path(source)
    if not path.exists():
        raise ExploreError(f"{path}: no such warm-start plan file or model directory")
    if not path.is_dir():
        return plan_mod.read(path)
    record = modeldir.read_record(path)
    plans = record.compression.plans if record.compression else []
    if len(plans) != 1:
        raise ExploreError(f"{path}: a warm-start model directory must record one compression plan, it records "
                           f"{len(plans)}; give a plan file instead")
    return plan_mod.parse(plans[0], f"{path / modeldir.MODEL_JSON}: compression plan")


def add_warm_starts(model: nn.Module, input_shape: tuple[int, ...], spaces: Sequence[LayerSpace],
                    plans: Sequence[plan_mod.Plan]) -> list[dict[str, str]]:
    """Add each plan's layer choices to ``spaces`` as seed points (in place) and return each plan's choice
    (``{layer: point key}``, only the layers the plan factorizes)."""
    by_name = {s.name: s for s in spaces}
    out = []
    for i, plan in enumerate(plans, 1):
        report = surgery.predict(model, plan, input_shape)
        if not report.layers:
            raise ExploreError(f"warm-start plan {i}: it factorizes no layer of this model")
        choice = {}
        for entry in report.layers:
            space = by_name.get(entry["name"])
            if space is None:
                raise ExploreError(f"warm-start plan {i}: layer {entry['name']!r} is not in the explored space "
                                   f"(its layers: {', '.join(by_name)})")
            rule = plan.rule_for(entry["name"])
            options = methods.get(entry["method"]).explicit_options(rule.options if rule else {})
            point = design_point(space.ctx, entry["method"], entry["rank"], options, entry["params_after"],
                                 entry["macs_after"], seed=True)
            same = next((p for p in space.points if p.key == point.key), None)
            if same is None:
                space.points.append(point)
            else:
                same.seed = True
            choice[space.name] = point.key
        out.append(choice)
    return out


def warm_trials(live: Sequence[LayerSpace], seeds: Sequence[dict[str, str]]) -> list[dict[str, str]]:
    """The low-fidelity trials of the warm starts, over the ``live`` layers (the others dense): each seed, then
    its neighbours (one layer moved to the next cheaper survivor of its method), each combination once."""
    names = [s.name for s in live]
    survivors = {s.name: s.survivors for s in live}
    trials: dict[tuple[str, ...], dict[str, str]] = {}

    def add(choice: dict[str, str]) -> None:
        full = {n: choice.get(n, "dense") for n in names}
        trials.setdefault(tuple(full.values()), full)

    for seed in seeds:
        add(seed)
    for seed in seeds:
        for name, key in seed.items():
            point = next(p for p in survivors[name] if p.key == key)
            cheaper = [p for p in survivors[name] if p.method == point.method and p.params < point.params]
            if cheaper:
                add({**seed, name: max(cheaper, key=lambda p: (p.params, -p.macs)).key})
    return list(trials.values())

