"""Checks of a shared study read straight from its database with plain SQL (sqlite3 / psycopg), not through
Optuna: the independent reference of the concurrency tests.

:func:`db_trials` returns one record per trial row: ``trial_id``, ``number``, ``state``, ``params`` (name →
stored value), ``system_attrs`` and ``user_attrs`` (decoded JSON). :func:`duplicate_problems` lists what is
wrong with a list of such records: repeated or missing trial numbers, a failed trial re-run more than once, or
the same parameters evaluated twice for one trial. A parameter set may legitimately appear twice when the
sampler draws it again independently (two fresh trials of the random sampler); what may never happen is two
evaluations of one trial's draw: a trial and its own retry both COMPLETE, or two retries of it.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

BARRIER_WORKER = Path(__file__).with_name("barrier_worker.py")


@contextlib.contextmanager
def connect(url: str) -> Iterator[Any]:
    """A DB-API connection for a ``sqlite:///FILE`` or ``postgresql[+driver]://`` URL, in a read transaction
    that sees one snapshot (the workers keep writing while a test reads)."""
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url[len("sqlite:///"):], timeout=60, isolation_level=None)
        conn.execute("BEGIN")
    else:
        import psycopg

        conn = psycopg.connect("postgresql://" + url.split("://", 1)[1])
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    try:
        yield conn
    finally:
        conn.rollback()
        conn.close()


def query(url: str, sql: str) -> list[tuple]:
    """Rows of one SQL statement (no parameters)."""
    with connect(url) as conn:
        cur = conn.cursor()
        cur.execute(sql)
        return cur.fetchall()


def db_trials(url: str, study: str) -> list[dict[str, Any]]:
    """Every trial row of ``study``, in trial_id order."""
    with connect(url) as conn:
        cur = conn.cursor()
        ph = "?" if url.startswith("sqlite") else "%s"

        def rows(sql: str) -> list[tuple]:
            cur.execute(sql.replace("?", ph), (study,))
            return cur.fetchall()

        join = "FROM trials t JOIN studies s ON s.study_id = t.study_id WHERE s.study_name = ?"
        trials = {tid: {"trial_id": tid, "number": num, "state": str(state).split(".")[-1], "params": {},
                        "system_attrs": {}, "user_attrs": {}}
                  for tid, num, state in rows(f"SELECT t.trial_id, t.number, t.state {join} ORDER BY t.trial_id")}
        for tid, name, value in rows(f"SELECT p.trial_id, p.param_name, p.param_value FROM trial_params p "
                                     f"WHERE p.trial_id IN (SELECT t.trial_id {join})"):
            trials[tid]["params"][name] = value
        for table, key in (("trial_system_attributes", "system_attrs"), ("trial_user_attributes", "user_attrs")):
            for tid, k, v in rows(f"SELECT a.trial_id, a.key, a.value_json FROM {table} a "
                                  f"WHERE a.trial_id IN (SELECT t.trial_id {join})"):
                trials[tid][key][k] = json.loads(v)
    return list(trials.values())


def origin(t: dict[str, Any]) -> int:
    """The trial whose parameter draw ``t`` evaluates: itself, or the first failed trial it retries."""
    return t["system_attrs"].get("failed_trial", t["number"])


def duplicate_problems(trials: list[dict[str, Any]]) -> list[str]:
    """What a correct shared study never shows (empty list: nothing wrong)."""
    problems = []
    numbers = Counter(t["number"] for t in trials)
    problems += [f"trial number {n} used {c} times" for n, c in sorted(numbers.items()) if c > 1]
    if sorted(numbers) != list(range(len(numbers))):
        problems.append(f"trial numbers are not 0..{len(numbers) - 1}: {sorted(numbers)}")
    ids = Counter(t["trial_id"] for t in trials)
    problems += [f"trial id {i} appears {c} times" for i, c in ids.items() if c > 1]
    reruns = Counter(t["system_attrs"]["retry_history"][-1] for t in trials if t["system_attrs"].get("retry_history"))
    problems += [f"failed trial {n} re-enqueued {c} times" for n, c in sorted(reruns.items()) if c > 1]
    same_params: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for t in trials:
        if t["state"] == "COMPLETE":
            same_params[json.dumps(t["params"], sort_keys=True)].append(t)
    for group in same_params.values():
        origins = Counter(origin(t) for t in group)
        problems += [f"the parameters of trial {o} were evaluated to the end {c} times "
                     f"(trials {sorted(t['number'] for t in group if origin(t) == o)})"
                     for o, c in origins.items() if c > 1]
    return problems


def finished_counts(trials: list[dict[str, Any]]) -> Counter:
    """Trials per state, with surplus FAILs (the end-of-study race, never evaluated) counted apart."""
    return Counter("SURPLUS" if t["state"] == "FAIL" and t["user_attrs"].get("surplus") else t["state"]
                   for t in trials)


# --------------------------------------------------------------------------------------------- processes


def start(barrier: Path, mode: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """A :mod:`barrier_worker` process (stdout and stderr together, as text; ``env`` added to the environment)."""
    return subprocess.Popen([sys.executable, str(BARRIER_WORKER), str(barrier), mode, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "BARRIER_PARENT": str(os.getpid()), **(env or {})})


@pytest.fixture
def spawn() -> Iterator[Callable[..., subprocess.Popen]]:
    """:func:`start` for a test; whatever is still running when the test ends (a failed assertion) is killed."""
    procs: list[subprocess.Popen] = []

    def _start(*args: Any, **kwargs: Any) -> subprocess.Popen:
        procs.append(start(*args, **kwargs))
        return procs[-1]

    yield _start
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.communicate()


def wait_for(condition, procs: list[subprocess.Popen], what: str, timeout: float = 180.0) -> None:
    """Poll ``condition()``; fail with the workers' output when one of them exits first or it never holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        dead = [p for p in procs if p.poll() is not None]
        if dead:
            out = dead[0].communicate()[0]
            raise AssertionError(f"worker {dead[0].pid} exited ({dead[0].returncode}) before {what}:\n{out[-3000:]}")
        if time.monotonic() > deadline:
            for p in procs:
                p.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def release(barrier: Path, procs: list[subprocess.Popen]) -> None:
    """Wait until every worker has imported everything and waits at the barrier, then let them all go."""
    wait_for(lambda: all(Path(f"{barrier}.ready.{p.pid}").exists() for p in procs), procs, "the workers are ready")
    barrier.touch()
