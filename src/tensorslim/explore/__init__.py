"""Design-space exploration: methods × ranks × TT shapes, pruned before training, Optuna search, Pareto set.

* :func:`explore` (:mod:`.core`): the whole job, writing ``pareto.json``, model directories and plots; its
  settings are an :class:`ExploreConfig` (or the same names as keywords).
* :func:`enumerate_space`, :func:`layer_points`, :func:`prune`, :class:`DesignPoint`, :class:`LayerSpace`
  (:mod:`.space`): per-layer design points with analytic costs, and the three pruning stages.
* :func:`pareto_indices`, :func:`hypervolume`, :func:`parse_budget`, :func:`pick` (:mod:`.pareto`).
* The click command ``explore`` is :func:`tensorslim.cli.explore.explore_cmd`.
"""

from __future__ import annotations

from .core import DEFAULT_OBJECTIVES, OBJECTIVES, ExploreConfig, ExploreResult, StorageError, explore, open_storage
from .pareto import Budget, hypervolume, pareto_indices, parse_budget, pick
from .space import (
    ALL_METHODS,
    DesignPoint,
    ErrorCache,
    ExploreError,
    LayerSpace,
    check_not_empty,
    enumerate_space,
    layer_points,
    prune,
)

__all__ = [
    "ALL_METHODS", "DEFAULT_OBJECTIVES", "OBJECTIVES", "Budget", "DesignPoint", "ErrorCache", "ExploreConfig",
    "ExploreError",
    "ExploreResult", "LayerSpace", "StorageError", "check_not_empty", "enumerate_space", "explore",
    "hypervolume", "layer_points", "open_storage", "pareto_indices", "parse_budget", "pick", "prune",
]
