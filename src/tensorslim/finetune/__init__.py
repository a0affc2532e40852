"""Fine-tuning schedules, sensitivity-based rank allocation, and data-parallel training.

* :func:`finetune` (:mod:`.schedules`): compress by a plan or a budget and fine-tune with ``one-shot``,
  ``iterative``, ``hybrid-conv-iterative`` or ``hybrid-factors-first``; resumable output directory.
* :func:`sensitivity`, :func:`allocate`, :func:`parse_budget` (:mod:`.sensitivity`): per-layer accuracy drop
  tables and the greedy global allocation that turns a params / MACs / max-drop budget into a plan.
* DistributedDataParallel runs: ``torchrun -m tensorslim.cli.ddp_main`` (:mod:`tensorslim.distributed`).
* The ``tensorslim finetune`` click command is :mod:`tensorslim.cli.finetune`.
"""

from __future__ import annotations

from .schedules import ORDERS, SCHEDULES, FinetuneError, FinetuneResult, finetune, plan_phases, resolve_plan
from .sensitivity import BudgetError, allocate, layer_drops, parse_budget, predicted_cost, sensitivity

__all__ = ["ORDERS", "SCHEDULES", "BudgetError", "FinetuneError", "FinetuneResult", "allocate", "finetune",
           "layer_drops", "parse_budget", "plan_phases", "predicted_cost", "resolve_plan", "sensitivity"]
