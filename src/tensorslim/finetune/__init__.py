"""Fine-tuning schedules, sensitivity-based rank allocation, and data-parallel training.

* :func:`finetune` (:mod:`.schedules`): compress by a plan or a budget and fine-tune with ``one-shot``,
  ``iterative``, ``hybrid-conv-iterative`` or ``hybrid-factors-first``; resumable output directory
  (:mod:`.rundir`: its files and the latency allocation kept there); :mod:`.phases`: the training budget in
  optimizer steps, per schedule step and phase.
* :func:`sensitivity`, :func:`layer_drops` (:mod:`.sensitivity`): per-layer accuracy drop tables, and the
  latencies a latency budget adds to them.
* :func:`allocate`, :func:`parse_budget`, :func:`predicted_cost` (:mod:`.allocation`): the greedy global
  allocation (and its exchange pass) that turns a params / MACs / latency / max-drop budget into a plan.
* DistributedDataParallel runs: ``torchrun -m tensorslim.cli.ddp_main`` (:mod:`tensorslim.distributed`).
* The ``tensorslim finetune`` click command is :mod:`tensorslim.cli.finetune`.
"""

from __future__ import annotations

from .allocation import BudgetError, allocate, parse_budget, predicted_cost
from .schedules import ORDERS, SCHEDULES, FinetuneError, FinetuneResult, finetune, plan_phases, resolve_plan
from .sensitivity import layer_drops, sensitivity

__all__ = ["ORDERS", "SCHEDULES", "BudgetError", "FinetuneError", "FinetuneResult", "allocate", "finetune",
           "layer_drops", "parse_budget", "plan_phases", "predicted_cost", "resolve_plan", "sensitivity"]
