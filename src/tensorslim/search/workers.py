"""Workers of a shared search study: who runs a trial, trials whose local worker died, stale journal locks.

A RUNNING trial records its worker (host and pid). A trial whose worker on THIS machine is gone is failed and
retried at once, rather than after the heartbeat's grace period; trials of other machines are left to the
heartbeat (:mod:`tensorslim.study.storage`). A journal lock file that has not changed for a few seconds belongs
to a killed worker and is removed, since Optuna's own recovery needs absolute paths.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from optuna.trial import TrialState

from .. import _atomic
from ..study.storage import RDB_PREFIXES, retry

JOURNAL = "study.journal"  # the default storage file in the output directory


def _worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _gone(t: Any) -> str | None:
    """Why the worker of the RUNNING trial ``t`` is known to be gone, else None."""
    worker = t.user_attrs.get("worker")
    if worker is None:  # a worker names itself first thing: its process died right after taking the trial
        return "its worker stopped before it began"
    w_host, _, pid = str(worker).rpartition(":")
    if w_host == socket.gethostname() and pid.isdigit() and int(pid) != os.getpid() and not _atomic.pid_alive(
            int(pid)):
        return f"its worker {worker} is gone (killed)"
    return None


def _release_gone_workers(study: Any, max_retry: int, seen: dict[int, tuple[str, float]],
                          confirm_after: float = 3.0) -> list[tuple[int, str]]:
    """Fail and re-enqueue RUNNING trials whose worker is known to be gone (:func:`_gone`: a killed process of
    this host, or none named), without waiting for their heartbeat to go stale.

    A trial is released once this worker has seen it so for ``confirm_after`` seconds by its own clock (other
    machines' clocks do not matter; a live worker taking over a retried trial renames it within moments).
    ``seen`` carries the observations from one call to the next. Returns (trial number, why) of each.
    """
    now, released, current = time.monotonic(), [], {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        why = _gone(t)
        if why is None:
            continue
        first = seen.get(t._trial_id)  # noqa: SLF001
        if first is None or first[0] != why:
            current[t._trial_id] = (why, now)  # noqa: SLF001
            continue
        if now - first[1] < confirm_after:
            current[t._trial_id] = first  # noqa: SLF001
            continue
        try:
            study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)  # noqa: SLF001
        except Exception:  # noqa: BLE001 - another worker released it first
            continue
        retry(study, study._storage.get_trial(t._trial_id), max_retry)  # noqa: SLF001
        released.append((t.number, why))
    seen.clear()
    seen.update(current)
    return released


def storage_url_for(storage: str | None, out: Any) -> str:
    """``storage``, else a journal file in ``out``, else in memory.

    A journal file's path is made absolute: Optuna's journal lock is a symbolic link to the journal, which
    dangles when the path is relative, and its recovery of a lock left by a killed worker then never fires.
    """
    if storage is not None:
        path = _journal_path(storage)
        if path is None or path.is_absolute():
            return storage
        return f"journal://{path.resolve()}" if storage.startswith("journal://") else str(path.resolve())
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        return str((Path(out) / JOURNAL).resolve())
    return "memory"


def _journal_path(url: str) -> Path | None:
    """The journal file of a journal storage URL (``journal://FILE`` or a plain path), else None."""
    if url.startswith("journal://"):
        return Path(url[len("journal://"):])
    if url == "memory" or "://" in url or url.startswith(RDB_PREFIXES):
        return None
    return Path(url)


def _clear_stale_journal_lock(url: str, log: Callable[[str], None], stale_after: float = 5.0) -> None:
    """Remove the lock of a journal file that a killed worker left behind.

    The lock (Optuna's symbolic link ``FILE.lock``) is held only while a few records are appended; one that
    stays the same for ``stale_after`` seconds (watched here, by this machine's clock) belongs to a process
    that died holding it (``kill -9``). Optuna would break it only after 30 s, and only for an absolute path.
    """
    journal = _journal_path(url)
    if journal is None:
        return
    lock = Path(f"{journal}.lock")
    try:
        first = _identity(os.lstat(lock))
    except OSError:
        return
    deadline = time.monotonic() + stale_after
    while time.monotonic() < deadline:
        time.sleep(0.05)
        try:
            if _identity(os.lstat(lock)) != first:
                return  # released and taken again: a live worker's
        except OSError:
            return  # released
    try:
        lock.unlink()
    except OSError:
        return
    log(f"removed {lock}, left by a worker killed while writing the study")


def _identity(st: os.stat_result) -> tuple[int, int, int]:
    """Which lock this is: a lock taken again gets a new creation time, even where the inode is reused."""
    return st.st_ino, st.st_mtime_ns, st.st_ctime_ns
