"""Study storages for the search: a re-export of :mod:`tensorslim.study.storage`, their one home.

(``open_storage``, :class:`JournalHeartbeat`, ``fail_stale_trials``, ``beating``, ``create_or_load_study``...:
see that module for the storages, heartbeats, retry of dead workers' trials and race-safe creation.)
"""

from __future__ import annotations

from ..study import storage as _storage
from ..study.storage import *  # noqa: F403 - re-exported
from ..study.storage import redact as _redact  # noqa: F401 - the old private name

__all__ = list(_storage.__all__)
