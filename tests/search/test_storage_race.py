"""Workers started at the same moment on a FRESH storage all create its schema and the study at once.

Before the race fix, the losers died with ``storage ... cannot be opened`` (``IntegrityError`` on
``alembic_version``, "table ... already exists"); two processes released together by a barrier file, over
several fresh storages, made that all but certain. The reference is the database itself, read with plain SQL.
Also: the duplicate check of the concurrency tests catches duplicates built on purpose.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from study_checks import duplicate_problems, query, release, wait_for

ROUNDS, WORKERS = 4, 2  # 2 workers lost 9 rounds in 10 on the old code


def _race(urls: list[str], tmp_path: Path, spawn) -> list[list[str]]:
    """``WORKERS`` processes open the same fresh study on each URL in turn, released together every round;
    returns each round's results (``ok STUDY_ID`` or ``ERR ...`` per worker)."""
    barrier = tmp_path / "go"
    procs = [spawn(barrier, "open", *urls) for _ in range(WORKERS)]
    release(barrier, procs)  # (round 0 still waits for its own file)
    results = []
    for i in range(len(urls)):
        Path(f"{barrier}.{i}").touch()
        done = [Path(f"{barrier}.{i}.done.{p.pid}") for p in procs]
        wait_for(lambda done=done: all(d.exists() for d in done), procs, f"round {i}", timeout=120)
        results.append([d.read_text() for d in done])
    outs = [p.communicate(timeout=60)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * WORKERS, outs
    return results


def _check_db(url: str) -> None:
    """One schema, one study, its definition set once: what every worker saw must be this."""
    assert query(url, "SELECT study_name FROM studies") == [("race",)]
    assert len(query(url, "SELECT version_num FROM alembic_version")) == 1
    assert len(query(url, "SELECT schema_version FROM version_info")) == 1
    assert len(query(url, "SELECT direction FROM study_directions")) == 2
    assert [k for (k,) in query(url, "SELECT key FROM study_user_attributes")] == ["tensorslim_search"]


def _check(results: list[list[str]], urls: list[str]) -> None:
    for i, (res, url) in enumerate(zip(results, urls)):
        assert all(r.startswith("ok ") for r in res), f"round {i}: {res}"
        assert len(set(res)) == 1, f"round {i}: the workers got different studies: {res}"
        _check_db(url)


def test_workers_creating_one_fresh_sqlite_study_at_once(tmp_path, spawn):
    urls = [f"sqlite:///{tmp_path / f'race{i}.db'}" for i in range(ROUNDS)]
    _check(_race(urls, tmp_path, spawn), urls)


def test_workers_creating_one_fresh_postgresql_study_at_once(tmp_path, postgres_server, spawn):
    urls = [postgres_server.url(postgres_server.create_database()) for _ in range(ROUNDS)]
    _check(_race(urls, tmp_path, spawn), urls)


# ---------------------------------------------------------------------------- the duplicate check itself


def _trial(number: int, params: dict, state: str = "COMPLETE", **system_attrs) -> dict:
    return {"trial_id": number + 1, "number": number, "state": state, "params": params,
            "system_attrs": system_attrs, "user_attrs": {}}


GOOD = [_trial(0, {"a": 0.0}, "FAIL"), _trial(1, {"a": 1.0}),
        _trial(2, {"a": 0.0}, failed_trial=0, retry_history=[0]),  # the retry of 0
        _trial(3, {"a": 1.0})]  # the sampler drew 1's parameters again: legitimate


def test_duplicate_check_accepts_a_correct_study():
    assert duplicate_problems(GOOD) == []


@pytest.mark.parametrize("break_it,expect", [
    (lambda ts: ts.append({**copy.deepcopy(ts[1]), "trial_id": 99}), "trial number 1 used 2 times"),
    (lambda ts: ts.__setitem__(3, {**ts[3], "number": 7}), "not 0..3"),
    (lambda ts: ts.append({**copy.deepcopy(ts[3]), "number": 4}), "trial id 4 appears 2 times"),
    (lambda ts: ts.append(_trial(4, {"a": 0.0}, "WAITING", failed_trial=0, retry_history=[0])),
     "failed trial 0 re-enqueued 2 times"),
    (lambda ts: ts.__setitem__(0, {**ts[0], "state": "COMPLETE"}),  # the "dead" trial finished after all
     "parameters of trial 0 were evaluated to the end 2 times"),
], ids=["number-twice", "number-gap", "row-twice", "retried-twice", "evaluated-twice"])
def test_duplicate_check_catches_constructed_duplicates(break_it, expect):
    trials = copy.deepcopy(GOOD)
    break_it(trials)
    problems = duplicate_problems(trials)
    assert any(expect in p for p in problems), problems


# ------------------------------------------------------------------- create_or_load_study, error classes


def test_create_or_load_study_loads_what_a_racing_worker_created(monkeypatch):
    import optuna

    from tensorslim.study import StorageError, create_or_load_study, open_storage

    storage = open_storage("memory")
    theirs = optuna.create_study(study_name="s", storage=storage, directions=["maximize", "minimize"])

    def lost_race(**kwargs):  # what the loser sees: the name was taken between its check and its insert
        raise optuna.exceptions.DuplicatedStudyError("taken")

    def bad(**kwargs):
        raise ValueError("bad directions")

    monkeypatch.setattr(optuna, "create_study", lost_race)
    mine = create_or_load_study("s", storage, directions=["maximize", "minimize"])
    assert mine._study_id == theirs._study_id  # noqa: SLF001
    monkeypatch.setattr(optuna, "create_study", bad)
    with pytest.raises(ValueError, match="bad directions"):  # not a race: at once, unchanged
        create_or_load_study("s", storage, directions=["up"])
    monkeypatch.setattr(optuna, "create_study", lost_race)
    with pytest.raises(StorageError, match="could not be created or loaded in 2 attempts"):
        create_or_load_study("never-there", storage, attempts=2)  # the load keeps missing it


def test_creation_races_are_told_from_real_failures(tmp_path):
    import sqlite3

    import sqlalchemy

    from tensorslim.study.storage import is_creation_race

    db = tmp_path / "x.db"
    engine = sqlalchemy.create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text("CREATE TABLE t (k INTEGER PRIMARY KEY)"))
        conn.execute(sqlalchemy.text("INSERT INTO t VALUES (1)"))
    errors = {}
    for what, sql in [("exists", "CREATE TABLE t (k INTEGER)"), ("unique", "INSERT INTO t VALUES (1)"),
                      ("syntax", "CREATE TABEL nope"), ("missing", "SELECT * FROM nope")]:
        try:
            with engine.begin() as conn:
                conn.execute(sqlalchemy.text(sql))
        except sqlalchemy.exc.SQLAlchemyError as err:
            errors[what] = err
    assert is_creation_race(errors["exists"]) and is_creation_race(errors["unique"])
    assert not is_creation_race(errors["syntax"]) and not is_creation_race(errors["missing"])
    wrapped = RuntimeError("commit failed")
    wrapped.__cause__ = sqlite3.OperationalError("database is locked")
    assert is_creation_race(wrapped)  # found through the cause chain (Optuna's StorageInternalError)
    assert not is_creation_race(ConnectionRefusedError("connection refused"))
