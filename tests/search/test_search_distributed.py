"""Several worker PROCESSES on one study: N trials finished between them, none lost or run twice; a killed
worker's running trial is failed by the heartbeat check and retried with the same parameters."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
from search_testutil import tiny_space

from tensorslim.search import open_storage

WORKER = Path(__file__).with_name("search_worker.py")
FINISHED = ("COMPLETE", "PRUNED")


def _start(storage: str, study: str, n: int, epochs: int = 1, hb: int = 1, grace: int = 3) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(WORKER), storage, study, str(n), str(epochs), str(hb), str(grace)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _ran(output: str) -> set[int]:
    """Trial numbers a worker evaluated to the end, from its log."""
    return {int(m) for m in re.findall(r"^trial (\d+): .*(?:val acc|pruned)", output, re.M)}


def _check_arch(trial) -> None:
    # the recorded architecture is the one its parameters encode (independent replay of the decisions)
    arch = tiny_space().suggest(optuna.trial.FixedTrial(trial.params), "auto")
    assert arch == trial.user_attrs["arch"]


def test_two_workers_share_one_study(tmp_path):
    # (SQLite works the same way through Optuna's RDB storage; test_search covers that storage in-process)
    url = f"journal://{tmp_path / 's.journal'}"
    n = 4
    procs = [_start(url, "shared", n) for _ in range(2)]
    outs = [p.communicate(timeout=240)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    study = optuna.load_study(study_name="shared", storage=open_storage(url))
    trials = study.get_trials(deepcopy=False)
    finished = [t for t in trials if t.state.name in FINISHED]
    assert len(finished) == n
    assert len({t.number for t in trials}) == len(trials)
    assert not [t for t in trials if t.state.name in ("RUNNING", "WAITING")]
    # surplus trials (a race at the very end) are marked, never evaluated
    assert all(t.user_attrs.get("surplus") for t in trials if t.state.name == "FAIL")
    ran = [_ran(o) for o in outs]
    assert ran[0].isdisjoint(ran[1])  # no trial evaluated twice
    assert ran[0] | ran[1] == {t.number for t in finished}  # none lost
    for t in finished:
        _check_arch(t)


def test_killed_worker_trial_is_retried(tmp_path):
    url = f"journal://{tmp_path / 's.journal'}"
    slow = _start(url, "k", 2, epochs=100000)  # never finishes its first trial
    storage = open_storage(url)
    deadline = time.time() + 120
    running = []
    while time.time() < deadline and not running:
        time.sleep(0.5)
        try:
            running = optuna.load_study(study_name="k", storage=storage).get_trials(
                deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        except KeyError:  # study not created yet
            continue
        running = [t for t in running if "arch" in t.user_attrs]
    assert running, "the slow worker never started a trial"
    victim = running[0]
    slow.send_signal(signal.SIGKILL)
    slow.communicate()
    fresh = _start(url, "k", 2, hb=1, grace=2)
    out = fresh.communicate(timeout=240)[0]
    assert fresh.returncode == 0, out
    study = optuna.load_study(study_name="k", storage=open_storage(url))
    trials = study.get_trials(deepcopy=False)
    assert study.trials[victim.number].state.name == "FAIL"
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retries) == 1 and retries[0].params == victim.params and retries[0].state.name in FINISHED
    assert sum(t.state.name in FINISHED for t in trials) == 2
