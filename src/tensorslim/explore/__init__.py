"""Design-space exploration: methods × ranks × TT shapes, pruned before training, Optuna search, Pareto set.

* :func:`explore` (:mod:`.core`): the whole job, writing ``pareto.json``, model directories and plots; its
  settings are an :class:`ExploreConfig` (or the same names as keywords).
* :func:`enumerate_space`, :func:`layer_points`, :func:`prune`, :class:`DesignPoint`, :class:`LayerSpace`
  (:mod:`.space`, :mod:`.pruning`, :mod:`.layer_errors`): per-layer design points with analytic costs,
  the pruning stages and their per-method accounting, the weight and output errors that judge a point.
* :func:`pareto_indices`, :func:`hypervolume`, :func:`parse_budget`, :func:`pick` (:mod:`.pareto`).
* The click command ``explore`` is :func:`tensorslim.cli.explore.explore_cmd`.
"""

from __future__ import annotations

from .config import DEFAULT_OBJECTIVES, OBJECTIVES, ExploreConfig
from .core import ExploreResult, StorageError, explore, open_storage
from .layer_errors import ErrorCache, capture_inputs
from .pareto import Budget, hypervolume, pareto_indices, parse_budget, pick
from .pruning import check_not_empty, prune, pruning_report
from .space import ALL_METHODS, DesignPoint, ExploreError, LayerSpace, enumerate_space, layer_points

__all__ = [
    "ALL_METHODS", "DEFAULT_OBJECTIVES", "OBJECTIVES", "Budget", "DesignPoint", "ErrorCache", "ExploreConfig",
    "ExploreError",
    "ExploreResult", "LayerSpace", "StorageError", "capture_inputs", "check_not_empty", "enumerate_space", "explore",
    "hypervolume", "layer_points", "open_storage", "pareto_indices", "parse_budget", "pick", "prune", "pruning_report",
]
