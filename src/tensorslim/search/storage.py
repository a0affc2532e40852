"""Where a study lives, and how workers share it safely.

``open_storage(url)``:

* ``postgresql://…`` / ``mysql://…`` (any SQLAlchemy URL, for many machines) and ``sqlite:///file.db`` (one
  machine): Optuna's RDB storage with its heartbeat (``heartbeat_interval``, ``grace_period``) and
  :class:`optuna.storages.RetryFailedTrialCallback`: a trial whose worker stopped beating is marked FAIL and
  re-enqueued with the same parameters.
* ``journal:///path/study.journal``, or a plain file path: Optuna's journal file (one machine, or a shared
  filesystem with working locks). Optuna has no heartbeat for journals, so :class:`JournalHeartbeat` provides
  the equivalent: a thread stamps the running trial every ``heartbeat_interval`` seconds (system attribute
  ``tensorslim:heartbeat``); before each trial a worker fails RUNNING trials whose stamp is older than
  ``grace_period`` and re-enqueues them through the same RetryFailedTrialCallback. (Stamps are wall-clock
  times: machines sharing a journal need synchronised clocks.)
* ``memory``: in-process only (nothing survives).

Every failure to open a storage is a one-line :class:`StorageError`.
"""

from __future__ import annotations

import contextlib
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import TensorSlimError

HEARTBEAT_KEY = "tensorslim:heartbeat"
RDB_PREFIXES = ("sqlite:", "postgresql", "postgres:", "mysql", "mariadb", "oracle", "mssql")


class StorageError(TensorSlimError):
    """A study storage that cannot be opened or used."""


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text[:240]}"


def open_storage(url: str, *, heartbeat_interval: int = 30, grace_period: int | None = None,
                 max_retry: int = 2) -> Any:
    """An Optuna storage for ``url`` (see the module docstring)."""
    import optuna

    try:  # Optuna >= 4.9 renamed it
        from optuna.storages import RetryHeartbeatStaleTrialCallback as RetryCallback
    except ImportError:  # pragma: no cover
        from optuna.storages import RetryFailedTrialCallback as RetryCallback

    if not isinstance(url, str) or not url.strip():
        raise StorageError(f"storage URL must be a non-empty string, got {url!r}")
    grace = grace_period if grace_period is not None else 2 * heartbeat_interval
    if url == "memory":
        return optuna.storages.InMemoryStorage()
    if url.startswith(RDB_PREFIXES):
        if url.startswith("sqlite:///"):
            parent = Path(url[len("sqlite:///"):]).parent
            if not parent.is_dir():
                raise StorageError(f"storage {url!r} cannot be opened: directory {str(parent)!r} does not exist")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # heartbeat arguments are "experimental"
                return optuna.storages.RDBStorage(
                    url, engine_kwargs={"pool_pre_ping": True} if not url.startswith("sqlite") else None,
                    heartbeat_interval=heartbeat_interval, grace_period=grace,
                    heartbeat_stale_trial_callback=RetryCallback(max_retry=max_retry))
        except Exception as err:  # noqa: BLE001 - drivers raise anything: all are "cannot open"
            raise StorageError(f"storage {_redact(url)!r} cannot be opened ({_one_line(err)})") from None
    if "://" in url and not url.startswith("journal://"):
        raise StorageError(f"storage {_redact(url)!r}: unknown scheme; use postgresql://, mysql://, sqlite:///FILE, "
                           "journal:///FILE, a file path or 'memory'")
    path = Path(url[len("journal://"):] if url.startswith("journal://") else url)
    if not path.parent.is_dir():
        raise StorageError(f"storage {url!r} cannot be opened: directory {str(path.parent)!r} does not exist")
    if path.is_dir():
        raise StorageError(f"storage {url!r} cannot be opened: it is a directory, not a journal file")
    try:
        from optuna.storages.journal import JournalFileBackend

        storage = optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    except Exception as err:  # noqa: BLE001
        raise StorageError(f"storage {url!r} cannot be opened ({_one_line(err)})") from None
    return JournalHeartbeat(storage, heartbeat_interval, grace, max_retry).attach()


def _redact(url: str) -> str:
    """Hide a password in ``scheme://user:password@host``."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        cred, host = rest.rsplit("@", 1)
        return f"{scheme}://{cred.split(':', 1)[0]}:***@{host}" if ":" in cred else url
    return url


class JournalHeartbeat:
    """Heartbeat + stale-trial retry for a journal storage (Optuna implements it for RDB storages only)."""

    def __init__(self, storage: Any, interval: int, grace: int, max_retry: int):
        self.storage, self.interval, self.grace, self.max_retry = storage, interval, grace, max_retry

    def attach(self) -> Any:
        self.storage._tensorslim_heartbeat = self  # noqa: SLF001 - found again by heartbeat_of()
        return self.storage

    @contextlib.contextmanager
    def beating(self, trial_id: int) -> Iterator[None]:
        stop = threading.Event()

        def beat() -> None:
            while True:
                with contextlib.suppress(Exception):  # the trial may have been finished meanwhile
                    self.storage.set_trial_system_attr(trial_id, HEARTBEAT_KEY, time.time())
                if stop.wait(self.interval):
                    return

        thread = threading.Thread(target=beat, daemon=True, name=f"heartbeat-{trial_id}")
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def fail_stale(self, study: Any) -> list[int]:
        """Fail RUNNING trials whose last stamp is older than the grace period; re-enqueue them. Returns the
        numbers of the trials this worker failed."""
        from optuna.trial import TrialState

        now = time.time()
        failed = []
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            last = t.system_attrs.get(HEARTBEAT_KEY)
            if last is None and t.datetime_start is not None:
                last = t.datetime_start.timestamp()
            if last is None or now - float(last) <= self.grace:
                continue
            try:
                self.storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)  # noqa: SLF001
            except Exception:  # noqa: BLE001 - another worker failed it first
                continue
            failed.append(t.number)
            retry(study, study._storage.get_trial(t._trial_id), self.max_retry)  # noqa: SLF001
        return failed


def retry(study: Any, trial: Any, max_retry: int) -> None:
    """What :class:`optuna.storages.RetryFailedTrialCallback` does (enqueue a WAITING copy with the same
    parameters, ``failed_trial`` and ``retry_history`` system attributes), minus the stale heartbeat stamp."""
    import optuna

    attrs = {k: v for k, v in trial.system_attrs.items() if k != HEARTBEAT_KEY}
    history = [*attrs.get("retry_history", []), trial.number]
    if len(history) > max_retry:
        return
    attrs.update({"failed_trial": attrs.get("failed_trial", trial.number), "retry_history": history})
    study.add_trial(optuna.create_trial(state=optuna.trial.TrialState.WAITING, params=trial.params,
                                        distributions=trial.distributions, user_attrs=trial.user_attrs,
                                        system_attrs=attrs))


def heartbeat_of(storage: Any) -> JournalHeartbeat | None:
    return getattr(storage, "_tensorslim_heartbeat", None)


def fail_stale_trials(study: Any) -> None:
    """Fail and re-enqueue stale RUNNING trials, whatever the storage."""
    import optuna

    hb = heartbeat_of(study._storage)  # noqa: SLF001
    if hb is not None:
        hb.fail_stale(study)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "experimental"
            optuna.storages.fail_stale_trials(study)  # no-op without a heartbeat


@contextlib.contextmanager
def beating(study: Any, trial: Any) -> Iterator[None]:
    """Keep ``trial`` stamped alive while the block runs (journal storages; RDB storages beat by themselves)."""
    hb = heartbeat_of(study._storage)  # noqa: SLF001
    if hb is None:
        yield
        return
    with hb.beating(trial._trial_id):  # noqa: SLF001
        yield
