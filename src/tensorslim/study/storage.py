"""Where a study lives, and how any number of workers open and share it safely.

``open_storage(url)``:

* ``postgresql+psycopg://user:pass@host/db``, ``postgresql://…`` (psycopg2, or psycopg 3 when only that is
  installed), ``mysql://…`` (any SQLAlchemy URL, for many machines) and ``sqlite:///file.db`` (one machine):
  Optuna's RDB storage with its heartbeat (``heartbeat_interval``, ``grace_period``) and the retry callback
  (:class:`optuna.storages.RetryFailedTrialCallback`): a trial whose worker stopped beating is marked FAIL and
  re-enqueued with the same parameters.
* ``journal:///path/study.journal``, or a plain file path: Optuna's journal file (one machine, or a shared
  filesystem with working locks). Optuna has no heartbeat for journals, so :class:`JournalHeartbeat` provides
  the equivalent: a thread stamps the running trial every ``heartbeat_interval`` seconds (system attribute
  ``tensorslim:heartbeat``); before each trial a worker fails RUNNING trials whose stamp is older than
  ``grace_period`` and re-enqueues them through the same retry logic. (Stamps are wall-clock times: machines
  sharing a journal need synchronised clocks.)
* ``memory``: in-process only (nothing survives).

``heartbeat_interval=None`` opens a storage without heartbeat and retry (explore runs its trials itself).

**Race safety.** Workers started at the same moment on a fresh database all try to create Optuna's tables,
its schema version row and alembic stamp, and then the study. The losers get "table already exists",
``IntegrityError`` on ``alembic_version`` / ``version_info``, "duplicate key" on PostgreSQL's catalog, or
"database is locked" on SQLite. Those known creation errors are retried with jittered exponential backoff
(after one worker has created the schema, creating it again is a no-op); :func:`create_or_load_study` does the
same for the study itself (``DuplicatedStudyError`` / ``IntegrityError`` → load it). Any other error (no
server, bad URL, missing driver) fails at once.

Every failure to open a storage is a one-line :class:`StorageError`, with the password hidden.
"""

from __future__ import annotations

import contextlib
import importlib.util
import random
import re
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy.exc
from optuna.exceptions import DuplicatedStudyError
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from ..errors import TensorSlimError

try:  # Optuna >= 4.9 renamed it
    from optuna.storages import RetryHeartbeatStaleTrialCallback as RetryCallback
except ImportError:  # pragma: no cover
    from optuna.storages import RetryFailedTrialCallback as RetryCallback

__all__ = [
    "CREATE_ATTEMPTS", "HEARTBEAT_KEY", "RDB_PREFIXES", "JournalHeartbeat", "StorageError", "beating",
    "create_or_load_study", "fail_stale_trials", "heartbeat_of", "is_creation_race", "open_storage", "redact",
    "retry",
]

HEARTBEAT_KEY = "tensorslim:heartbeat"
RDB_PREFIXES = ("sqlite:", "postgresql", "postgres:", "mysql", "mariadb", "oracle", "mssql")
CREATE_ATTEMPTS = 12  # up to ~15 s of backoff in all: enough for dozens of workers starting together
SQLITE_TIMEOUT = 60  # seconds a SQLite writer waits for the lock (Python's default of 5 s is short for workers)
# What the losers of a creation race see (lower case; SQLite, PostgreSQL, MySQL wordings)
RACE_MARKERS = ("already exists", "duplicate key", "unique constraint", "check constraint", "database is locked",
                "deadlock", "concurrently", "could not serialize", "duplicate entry", "lock wait timeout")


class StorageError(TensorSlimError):
    """A study storage that cannot be opened or used."""


def redact(url: str) -> str:
    """``url`` with its password hidden: ``scheme://user:***@host/...`` (and ``password=***`` in a query)."""
    if not isinstance(url, str):
        return url
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        cred, host = rest.rsplit("@", 1)
        if ":" in cred:
            url = f"{scheme}://{cred.split(':', 1)[0]}:***@{host}"
    return re.sub(r"(?i)(password=)[^&]*", r"\1***", url)


def _password(url: str) -> str | None:
    match = re.match(r"^[^:/]+://([^:/@]+):(.+)@[^@]*$", url)
    return match.group(2) if match else None


def _one_line(err: BaseException, url: str | None = None) -> str:
    text = " ".join(str(err).split())
    secret = _password(url) if url else None
    if secret:
        text = text.replace(secret, "***")
    return f"{type(err).__name__}: {text[:240]}"


def _backoff(attempt: int) -> float:
    """Seconds to wait before retry ``attempt`` (0-based): 0.05 s doubling up to 2 s, jittered ×0.5–1.5."""
    return min(2.0, 0.05 * 2**attempt) * (0.5 + random.random())


def is_creation_race(err: BaseException) -> bool:
    """Whether ``err`` (or what caused it) is one of the errors a worker gets for losing a creation race."""
    seen: set[int] = set()
    e: BaseException | None = err
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, (sqlalchemy.exc.IntegrityError, DuplicatedStudyError)):
            return True
        if any(m in str(e).lower() for m in RACE_MARKERS):
            return True
        e = e.__cause__ or e.__context__
    return False


def _driver_url(url: str) -> str:
    """``postgres://`` → ``postgresql://``; ``postgresql://`` → ``postgresql+psycopg://`` when only psycopg 3
    is installed (SQLAlchemy's default PostgreSQL driver is psycopg2)."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://") and importlib.util.find_spec("psycopg2") is None \
            and importlib.util.find_spec("psycopg") is not None:
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


def open_storage(url: str, *, heartbeat_interval: int | None = 30, grace_period: int | None = None,
                 max_retry: int = 2, attempts: int = CREATE_ATTEMPTS) -> Any:
    """An Optuna storage for ``url`` (see the module docstring); safe to call from many workers at once."""
    if not isinstance(url, str) or not url.strip():
        raise StorageError(f"storage URL must be a non-empty string, got {url!r}")
    def positive(x: Any) -> bool:
        return isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0

    if heartbeat_interval is not None and not positive(heartbeat_interval):
        raise StorageError(f"heartbeat interval must be a positive number of seconds, got {heartbeat_interval!r}")
    grace = grace_period if grace_period is not None else 2 * (heartbeat_interval or 0)
    if heartbeat_interval is not None and not positive(grace):
        raise StorageError(f"grace period must be a positive number of seconds, got {grace_period!r}")
    if url == "memory":
        return optuna.storages.InMemoryStorage()
    if url.startswith(RDB_PREFIXES):
        return _open_rdb(url, heartbeat_interval, grace, max_retry, attempts)
    if "://" in url and not url.startswith("journal://"):
        raise StorageError(f"storage {redact(url)!r}: unknown scheme; use postgresql+psycopg://, mysql://, "
                           "sqlite:///FILE, journal:///FILE, a file path or 'memory'")
    path = Path(url[len("journal://"):] if url.startswith("journal://") else url)
    if not path.parent.is_dir():
        raise StorageError(f"storage {url!r} cannot be opened: directory {str(path.parent)!r} does not exist")
    if path.is_dir():
        raise StorageError(f"storage {url!r} cannot be opened: it is a directory, not a journal file")
    try:
        storage = optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    except Exception as err:  # noqa: BLE001
        raise StorageError(f"storage {url!r} cannot be opened ({_one_line(err)})") from None
    if heartbeat_interval is None:
        return storage
    return JournalHeartbeat(storage, heartbeat_interval, grace, max_retry).attach()


def _open_rdb(url: str, heartbeat_interval: int | None, grace: int, max_retry: int, attempts: int) -> Any:
    sqlite = url.startswith("sqlite:")
    if url.startswith("sqlite:///"):
        parent = Path(url[len("sqlite:///"):].split("?", 1)[0]).parent
        if not parent.is_dir():
            raise StorageError(f"storage {url!r} cannot be opened: directory {str(parent)!r} does not exist")
    driver_url = _driver_url(url)
    for attempt in range(max(1, attempts)):
        engine_kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT}} if sqlite else {"pool_pre_ping": True}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # heartbeat arguments and the callback are "experimental"
                beat: dict[str, Any] = {}
                if heartbeat_interval is not None:
                    beat = {"heartbeat_interval": heartbeat_interval, "grace_period": grace,
                            "heartbeat_stale_trial_callback": RetryCallback(max_retry=max_retry)}
                return optuna.storages.RDBStorage(driver_url, engine_kwargs=engine_kwargs, **beat)
        except Exception as err:  # noqa: BLE001 - drivers raise anything: all are "cannot open"
            if attempt + 1 < attempts and is_creation_race(err):
                time.sleep(_backoff(attempt))  # another worker is creating the schema right now
                continue
            raise StorageError(f"storage {redact(url)!r} cannot be opened ({_one_line(err, url)})") from None
    raise AssertionError("unreachable")  # pragma: no cover


def create_or_load_study(name: str, storage: Any, *, directions: Sequence[Any] | None = None, sampler: Any = None,
                         pruner: Any = None, attempts: int = CREATE_ATTEMPTS,
                         metric_names: Sequence[str] | None = None) -> Any:
    """``optuna.create_study(..., load_if_exists=True)`` that survives other workers creating the same study at
    the same moment: a lost race (``DuplicatedStudyError``, ``IntegrityError``, a locked SQLite file, a study
    not visible yet) is retried as a load, with backoff. Other errors propagate unchanged; a race still lost
    after ``attempts`` tries is a :class:`StorageError`.

    ``metric_names`` (one per direction, e.g. ``"macs (MACs)"``) are recorded in the study when it has none, so
    ``optuna-dashboard`` and ``study.trials_dataframe()`` name the objectives; every worker writes the same."""
    study = _create_or_load(name, storage, directions, sampler, pruner, attempts)
    if metric_names and study.metric_names is None:
        with warnings.catch_warnings():  # experimental since Optuna 3.2, and what optuna-dashboard reads
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(metric_names))
    return study


def _create_or_load(name: str, storage: Any, directions: Sequence[Any] | None, sampler: Any, pruner: Any,
                    attempts: int) -> Any:
    last: BaseException | None = None
    for attempt in range(max(1, attempts)):
        try:
            return optuna.create_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner,
                                       directions=directions, load_if_exists=True)
        except Exception as err:  # noqa: BLE001
            if not (isinstance(err, KeyError) or is_creation_race(err)):
                raise
            last = err
        time.sleep(_backoff(attempt))
        try:  # someone else created it: load theirs
            return optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
        except Exception as err:  # noqa: BLE001
            if not (isinstance(err, KeyError) or is_creation_race(err)):
                raise
            last = err
    raise StorageError(f"study {name!r} could not be created or loaded in {attempts} attempts "
                       f"({_one_line(last) if last else 'no error'})")


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
    attrs = {k: v for k, v in trial.system_attrs.items() if k != HEARTBEAT_KEY}
    history = [*attrs.get("retry_history", []), trial.number]
    if len(history) > max_retry:
        return
    attrs.update({"failed_trial": attrs.get("failed_trial", trial.number), "retry_history": history})
    study.add_trial(optuna.create_trial(state=TrialState.WAITING, params=trial.params,
                                        distributions=trial.distributions, user_attrs=trial.user_attrs,
                                        system_attrs=attrs))


def heartbeat_of(storage: Any) -> JournalHeartbeat | None:
    return getattr(storage, "_tensorslim_heartbeat", None)


def fail_stale_trials(study: Any) -> None:
    """Fail and re-enqueue stale RUNNING trials, whatever the storage."""
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
