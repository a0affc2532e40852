"""``tensorslim search`` workers on a real database server (a throwaway PostgreSQL, see ``pg_server.py``) and
on SQLite: started at the same moment on a fresh study, and with a worker killed (SIGKILL) in the middle of a
trial. The reference is the database content, read with plain SQL (``study_checks.py``).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket

import optuna
import pytest
from study_checks import db_trials, duplicate_problems, finished_counts, query, release, wait_for

from tensorslim.search import SearchSpace

# digits (8×8 scaled to 28×28, always there): stem stride 4 → 7×7, one conv stage; 8·2·8·10³ = 128,000 distinct
# parameter sets, so the random sampler repeating one is possible (the duplicate check allows it) but rare
SPACE = {"stages": [1], "depths": [1], "widths": [list(range(4, 12))], "stem_widths": list(range(4, 12)),
         "stem_strides": [4], "blocks": ["conv"], "kernels": [3], "expansions": [1], "downsample": [1, 2],
         "heads": ["tcl"], "rank_fractions": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0], "head_hw_max": 7}


@pytest.fixture(params=["postgresql", "sqlite"])
def url(request, tmp_path) -> str:
    """A fresh study database: an empty PostgreSQL database, or a SQLite file not created yet."""
    if request.param == "postgresql":
        return request.getfixturevalue("pg_url")
    return f"sqlite:///{tmp_path / 'study.db'}"


def _args(tmp_path, url: str, study: str, n: int, epochs: int = 1) -> list[str]:
    space = tmp_path / "space.json"
    space.write_text(json.dumps(SPACE))
    return ["--data", "digits", "--space", str(space), "--strategy", "random", "--trials", str(n), "--epochs",
            str(epochs), "--max-batches", "1", "--val-batches", "1", "--batch-size", "32", "--storage", url,
            "--study", study, "--worker-only", "--no-prune", "--no-report", "--threads", "1", "--heartbeat", "1",
            "--grace", "3"]


def _ran(output: str) -> list[int]:
    """Trial numbers a worker evaluated to the end, from its log."""
    return [int(m) for m in re.findall(r"^trial (\d+): .*: val acc", output, re.M)]


def _check_arch(url: str, study: str) -> None:
    """Each COMPLETE trial's recorded architecture is the one its parameters encode (independent replay)."""
    st = optuna.load_study(study_name=study, storage=url)
    space = SearchSpace.from_dict({"input_shape": [1, 28, 28], "num_classes": 10, **SPACE})
    for t in st.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
        assert space.suggest(optuna.trial.FixedTrial(t.params), "auto") == t.user_attrs["arch"]


def test_two_cli_workers_started_together_on_a_fresh_postgresql_study(pg_url, tmp_path, spawn):
    # (SQLite: test_storage_race for the creation race, the kill test below for two workers on one file)
    url, n = pg_url, 4
    barrier = tmp_path / "go"
    procs = [spawn(barrier, "cli", *_args(tmp_path, url, "two", n)) for _ in range(2)]
    release(barrier, procs)  # both create the storage and the study at the same moment
    outs = [p.communicate(timeout=240)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    trials = db_trials(url, "two")
    assert duplicate_problems(trials) == []
    counts = finished_counts(trials)
    assert counts["COMPLETE"] == n, counts  # exactly the requested number; no pruning, nothing over budget
    assert set(counts) <= {"COMPLETE", "SURPLUS"}, counts  # nothing failed, running or waiting
    ran = [_ran(o) for o in outs]
    assert sorted(ran[0] + ran[1]) == sorted(t["number"] for t in trials if t["state"] == "COMPLETE"), ran
    workers = {t["user_attrs"]["worker"] for t in trials if t["state"] == "COMPLETE"}
    assert workers <= {f"{socket.gethostname()}:{p.pid}" for p in procs}
    _check_arch(url, "two")


def test_killed_worker_trial_is_failed_and_rerun_by_the_other(url, tmp_path, spawn):
    n = 3
    barrier, barrier2 = tmp_path / "go", tmp_path / "go2"
    # the slow worker never ends its trial, and plays a worker on another machine: the fast one cannot see that
    # its process is gone, only that its heartbeat stopped
    slow = spawn(barrier, "cli", *_args(tmp_path, url, "kill", n, epochs=100_000), env={"FAKE_HOSTNAME": "box-b"})
    fast = spawn(barrier2, "cli", *_args(tmp_path, url, "kill", n))  # imports meanwhile, waits at its barrier
    release(barrier, [slow])
    me = f"box-b:{slow.pid}"
    victim: dict = {}

    def slow_is_in_a_trial() -> bool:
        try:
            trials = db_trials(url, "kill")
        except Exception:  # noqa: BLE001 - no tables yet
            return False
        running = [t for t in trials if t["state"] == "RUNNING" and t["user_attrs"].get("worker") == me
                   and "arch" in t["user_attrs"]]  # its parameters are drawn: it is training
        victim.update(running[0] if running else {})
        return bool(running)

    wait_for(slow_is_in_a_trial, [slow, fast], "the slow worker runs a trial")
    assert victim["params"], victim
    release(barrier2, [fast])
    os.kill(slow.pid, signal.SIGKILL)  # mid-trial: no chance to clean up
    slow.communicate(timeout=60)
    out = fast.communicate(timeout=240)[0]
    assert fast.returncode == 0, out
    trials = db_trials(url, "kill")
    by_number = {t["number"]: t for t in trials}
    assert by_number[victim["number"]]["state"] == "FAIL"  # the stale trial did not stay RUNNING
    reruns = [t for t in trials if t["system_attrs"].get("failed_trial") == victim["number"]]
    assert len(reruns) == 1, reruns
    assert reruns[0]["params"] == victim["params"] and reruns[0]["state"] == "COMPLETE"
    assert reruns[0]["number"] in _ran(out)  # re-run by the surviving worker
    counts = finished_counts(trials)
    assert counts["COMPLETE"] == n and counts["FAIL"] == 1, counts  # at most one trial of work lost
    assert set(counts) <= {"COMPLETE", "FAIL", "SURPLUS"}, counts
    assert duplicate_problems(trials) == []


def test_postgresql_urls_open_and_errors_hide_the_password(pg_url):
    from tensorslim.study import StorageError, open_storage

    plain = pg_url.replace("postgresql+psycopg://", "postgresql://")  # psycopg 3 when psycopg2 is absent
    st = optuna.create_study(study_name="u", storage=open_storage(plain, heartbeat_interval=5))
    assert st.study_name == "u" and query(pg_url, "SELECT study_name FROM studies") == [("u",)]
    wrong = pg_url.replace(":s3cret-pw@", ":not-the-pw@")
    with pytest.raises(StorageError, match="cannot be opened") as err:
        open_storage(wrong)
    assert "not-the-pw" not in str(err.value) and "\n" not in str(err.value)
    assert "password authentication failed" in str(err.value)
