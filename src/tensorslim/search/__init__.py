"""Architecture search with TCL heads and end-to-end TCL rank search (seed 1).

* :mod:`.space` — the backbone family (:class:`SearchSpace`, :func:`default_space`) and :func:`build_network`
  (builder ``tensorslim.search.space:build_network`` of the saved models).
* :mod:`.strategy` — pluggable strategies (``nsga2``, ``tpe``, ``random``, or your own).
* :mod:`.run` — :func:`search` = :func:`run_study` (the worker loop on a shared Optuna study) +
  :func:`finalize` (full-fidelity retraining of the Pareto set, baselines, ``pareto.json``, report).
* :mod:`.storage` — storages (RDB URLs, journal files) with heartbeats and retry of dead workers' trials.
* :mod:`.objectives` — the objectives, their normalised vectors, latency measurement; Pareto fronts and
  hypervolume are :mod:`tensorslim.study.pareto`'s.

The click command is :func:`tensorslim.cli.search.search_cmd`.
"""

from __future__ import annotations

from ..study.pareto import hypervolume, pareto_indices
from .final import finalize, pareto_trials, study_hypervolume
from .objectives import OBJECTIVES
from .run import Fidelity, Pruner, SearchConfig, SearchResult, open_study, run_study, search
from .space import SearchSpace, SearchSpaceError, arch_summary, build_network, default_space
from .storage import StorageError, open_storage
from .strategy import NSGA2, TPE, Random, Strategy, StrategyError, get_strategy

__all__ = [
    "NSGA2", "OBJECTIVES", "TPE", "Fidelity", "Pruner", "Random", "SearchConfig", "SearchResult", "SearchSpace",
    "SearchSpaceError",
    "StorageError", "Strategy", "StrategyError", "arch_summary", "build_network", "default_space", "finalize",
    "get_strategy", "hypervolume", "open_storage", "open_study", "pareto_indices", "pareto_trials", "run_study",
    "search", "study_hypervolume",
]
