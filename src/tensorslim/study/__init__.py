"""The shared optimisation core below :mod:`tensorslim.explore` and :mod:`tensorslim.search`.

* :mod:`.storage` — where an Optuna study lives (RDB URLs, journal files, memory), opened race-safely by any
  number of workers at once; heartbeats and the retry of dead workers' trials; :func:`create_or_load_study`.
* :mod:`.pareto` — objectives (name, direction, unit), Pareto fronts, hypervolume, and picking a point under
  a budget (:mod:`.budget`, the one budget syntax); used by explore, search and the finetune allocation.

Importing this package imports neither torch nor Optuna: the storage API (:data:`STORAGE_API`, the names of
``storage.__all__``; ``from tensorslim.study import open_storage``) is read from :mod:`.storage` on first use,
so the finetune allocation, which needs only :mod:`.pareto` and :mod:`.budget`, does not load Optuna.
"""

from __future__ import annotations

import importlib
from typing import Any

STORAGE_API = ("CREATE_ATTEMPTS", "HEARTBEAT_KEY", "RDB_PREFIXES", "JournalHeartbeat", "StorageError", "beating",
               "create_or_load_study", "fail_stale_trials", "heartbeat_of", "is_creation_race", "open_storage",
               "redact", "retry")
__all__ = list(STORAGE_API)


def __getattr__(name: str) -> Any:
    if name in STORAGE_API:
        return getattr(importlib.import_module(".storage", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
