"""The shared optimisation core below :mod:`tensorslim.explore` and :mod:`tensorslim.search`.

* :mod:`.storage` — where an Optuna study lives (RDB URLs, journal files, memory), opened race-safely by any
  number of workers at once; heartbeats and the retry of dead workers' trials; :func:`create_or_load_study`.
* :mod:`.pareto` — objectives (name, direction, unit), Pareto fronts, hypervolume, and picking a point under
  a budget (:mod:`.budget`, the one budget syntax); used by explore, search and the finetune allocation.

Importing this package does not import torch.
"""

from __future__ import annotations

from . import storage
from .storage import *  # noqa: F403 - the storage API, listed once in storage.__all__

__all__ = list(storage.__all__)
