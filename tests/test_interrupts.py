"""Ctrl-C and ``kill -9`` during the long commands: one line on stderr and exit status 130 for Ctrl-C; after
either, the output directory is absent or complete, and rerunning the same command resumes and finishes.

Each case runs the real CLI in a subprocess (its own process group, as a terminal's foreground job: Ctrl-C
reaches every process of the group) on tiny data, and signals it at a well-defined point: once a checkpoint,
a progress record or a finished trial is on disk. Nothing here depends on timing.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tensorslim import modeldir
from tensorslim._interrupt import MESSAGE

TIMEOUT = 120  # seconds a condition may take on a busy machine before the test gives up


class Cli:
    """``python -m tensorslim.cli ARGS`` in its own session, output to files (read at any time)."""

    def __init__(self, args: list[str], cwd: Path, name: str, program: tuple[str, ...] = ("-m", "tensorslim.cli")):
        self.out_file, self.err_file = cwd / f"{name}.out", cwd / f"{name}.err"
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        with open(self.out_file, "wb") as out, open(self.err_file, "wb") as err:
            self.proc = subprocess.Popen([sys.executable, *program, *args], cwd=cwd, stdout=out, stderr=err, env=env,
                                         start_new_session=True)

    @property
    def stdout(self) -> str:
        return self.out_file.read_text()

    @property
    def stderr(self) -> str:
        return self.err_file.read_text()

    def wait_for(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + TIMEOUT
        while not condition():
            if self.proc.poll() is not None:
                pytest.fail(f"exited ({self.proc.returncode}) before {what}\n{self.stdout}\n{self.stderr}")
            if time.monotonic() > deadline:
                self.signal(signal.SIGKILL)
                pytest.fail(f"no {what} after {TIMEOUT} s\n{self.stdout}\n{self.stderr}")
            time.sleep(0.01)

    def signal(self, sig: int) -> int:
        """Send ``sig`` to the whole process group (as Ctrl-C does) and wait for the exit status."""
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:  # it had finished meanwhile
            pass
        return self.proc.wait(TIMEOUT)

    def finish(self) -> int:
        return self.proc.wait(TIMEOUT)


def run(args: list[str], cwd: Path, name: str) -> Cli:
    cli = Cli(args, cwd, name)
    code = cli.finish()
    assert code == 0, f"{cli.stdout}\n{cli.stderr}"
    return cli


def assert_one_interrupt_line(cli: Cli, code: int, *, logs_on_stderr: bool = False) -> None:
    err = cli.stderr
    assert code == 130, f"exit status {code}\n{cli.stdout}\n{err}"
    assert "Traceback" not in err and "KeyboardInterrupt" not in err and "Error" not in err, err
    # timed progress lines (train.PROGRESS_INTERVAL, when stderr is not a terminal) may come before it
    lines = [x for x in err.splitlines() if not re.match(r"epoch \d+/\d+: \d+/\d+ batches", x)]
    if logs_on_stderr:  # the command's own progress goes to stderr: the interrupt adds one line, the last
        assert lines[-1] == MESSAGE and err.count(MESSAGE) == 1 and not any("failed" in x for x in lines), err
    else:
        assert lines == [MESSAGE], err


def _json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------------------------------------------- train


def _epochs_saved(out: Path) -> int:
    metrics = _json(out / modeldir.METRICS) or {}
    return len(metrics.get("history", []))


def _assert_complete_model_dir(path: Path) -> None:
    """A model directory a reader may use: every file there and whole (the model loads, strictly)."""
    assert modeldir.is_model_dir(path), sorted(p.name for p in path.iterdir())
    modeldir.load(path)
    assert isinstance(_json(path / modeldir.METRICS), dict)


def test_train_interrupt_kill_and_resume(tmp_path):
    args = ["train", "lenet5", "--data", "synthetic", "--epochs", "8", "--batch-size", "512", "--out", "m"]
    out = tmp_path / "m"

    first = Cli(args, tmp_path, "first")
    first.wait_for(lambda: _epochs_saved(out) >= 1, "first epoch checkpoint")
    assert_one_interrupt_line(first, first.signal(signal.SIGINT))
    _assert_complete_model_dir(out)
    k1 = _epochs_saved(out)

    second = Cli(args, tmp_path, "second")
    second.wait_for(lambda: _epochs_saved(out) > k1, "an epoch after the resume")
    second.signal(signal.SIGKILL)
    assert f"resuming m after epoch {k1}/8" in second.stdout
    _assert_complete_model_dir(out)  # kill -9 at any instant: the last epoch's directory, whole
    k2 = _epochs_saved(out)

    third = run(args, tmp_path, "third")
    assert f"resuming m after epoch {k2}/8" in third.stdout or "already trained for 8 epochs" in third.stdout
    _assert_complete_model_dir(out)
    metrics = _json(out / modeldir.METRICS)
    assert [h["epoch"] for h in metrics["history"]] == list(range(1, 9))
    assert "test" in metrics["accuracy"]
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries left


# ------------------------------------------------------------------------------------------------- finetune

PLAN = {"rules": [{"layers": "features.conv2", "method": "tucker2", "rank": [3, 8]},
                  {"layers": "classifier.fc1", "method": "svd", "rank": 12}]}


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory) -> Path:
    """An (untrained) LeNet-5 model directory on the synthetic data, and the plan next to it."""
    root = tmp_path_factory.mktemp("base")
    model = modeldir.build({"builder": "lenet5", "kwargs": {}}, (1, 28, 28))
    modeldir.save(model, root / "base", dataset="synthetic")
    (root / "plan.json").write_text(json.dumps(PLAN))
    return root / "base"


def _step_dirs(out: Path) -> list[Path]:
    """The step directories in place (not the temporaries a write in progress fills: ``.NN.host-pid.xxx.tmp``)."""
    return [d for d in (out / "steps").glob("[0-9]*") if d.is_dir()]


def _finetune_progress(out: Path) -> int:
    """Epochs saved so far over every step directory, plus 100 per completed step."""
    steps = len((_json(out / "progress.json") or {}).get("steps", []))
    return 100 * steps + sum(_epochs_saved(d) for d in _step_dirs(out))


def _assert_finetune_out_consistent(out: Path, n_steps: int) -> None:
    """Either still a run directory (no model.json; each step directory whole) or the finished model."""
    if modeldir.is_model_dir(out):
        _assert_complete_model_dir(out)
        assert len(_json(out / "finetune.json")["steps"]) == n_steps
        return
    assert (out / "progress.json").is_file()
    for step in _step_dirs(out):
        _assert_complete_model_dir(step)


@pytest.mark.parametrize(("schedule", "n_steps"), [("one-shot", 1), ("iterative", 2), ("hybrid-conv-iterative", 2),
                                                   ("hybrid-factors-first", 2)])
def test_finetune_interrupt_kill_and_resume(base_dir, tmp_path, schedule, n_steps):
    args = ["finetune", str(base_dir), "--plan", str(base_dir.parent / "plan.json"), "--schedule", schedule,
            "--epochs", "12", "--batch-size", "64", "--max-batches", "4", "--out", "ft"]
    out = tmp_path / "ft"

    first = Cli(args, tmp_path, "first")
    first.wait_for(lambda: _finetune_progress(out) >= 1, "the first epoch checkpoint")
    assert_one_interrupt_line(first, first.signal(signal.SIGINT))
    _assert_finetune_out_consistent(out, n_steps)
    p1 = _finetune_progress(out)

    second = Cli(args, tmp_path, "second")
    second.wait_for(lambda: _finetune_progress(out) > p1, "progress after the resume")
    second.signal(signal.SIGKILL)
    assert "resuming" in second.stdout or "already trained" in second.stdout, second.stdout
    _assert_finetune_out_consistent(out, n_steps)

    third = run(args, tmp_path, "third")
    assert "resuming" in third.stdout or "already trained" in third.stdout, third.stdout
    _assert_finetune_out_consistent(out, n_steps)
    assert modeldir.is_model_dir(out) and not (out / "steps").exists()
    record = _json(out / "finetune.json")
    assert record["settings"]["schedule"] == schedule and "after" in record["test"]


# -------------------------------------------------------------------------------------------------- explore


def _complete_trials(db: Path) -> int:
    if not db.is_file():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as con:
            return con.execute("SELECT COUNT(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[0]
    except sqlite3.Error:  # not created yet
        return 0


def _assert_explore_out_consistent(out: Path) -> None:
    """No pareto.json, or one whose every point is a whole model directory."""
    pareto = _json(out / "pareto.json")
    if not (out / "pareto.json").exists():
        return
    assert pareto is not None
    for point in pareto["points"]:
        _assert_complete_model_dir(out / point["path"])
    assert (out / "trials.json").is_file() and (out / "space.json").is_file()


def test_explore_interrupt_kill_and_resume(base_dir, tmp_path):
    evals = 30
    args = ["explore", str(base_dir), "--data", "synthetic", "--methods", "svd", "--objectives", "macs,accuracy",
            "--max-evals", str(evals), "--full-evals", "2", "--finetune-batches", "2", "--val-samples", "64",
            "--out", "ex"]
    out, db = tmp_path / "ex", tmp_path / "ex" / "study.db"

    first = Cli(args, tmp_path, "first")
    first.wait_for(lambda: _complete_trials(db) >= 2, "two trials in the study")
    assert_one_interrupt_line(first, first.signal(signal.SIGINT), logs_on_stderr=True)
    _assert_explore_out_consistent(out)
    n1 = _complete_trials(db)
    assert 2 <= n1 < evals

    second = Cli(args, tmp_path, "second")
    second.wait_for(lambda: _complete_trials(db) >= n1 + 2, "two more trials after the resume")
    second.signal(signal.SIGKILL)
    assert f": {n1} trials done, running {evals - n1} more" in second.stderr, second.stderr
    _assert_explore_out_consistent(out)
    n2 = _complete_trials(db)

    third = run(args, tmp_path, "third")
    assert f": {n2} trials done, running {evals - n2} more" in third.stderr, third.stderr
    pareto = _json(out / "pareto.json")
    assert pareto["search"]["trials"] == evals and pareto["points"]
    _assert_explore_out_consistent(out)


# --------------------------------------------------------------------------------------------------- search

SPACE = {"stages": [1, 2], "depths": [1], "widths": [[4, 6], [6, 8]], "stem_widths": [4], "kernels": [3],
         "expansions": [1, 2], "downsample": [1, 2], "head_hw_max": 4}


def _finished_trials(journal: Path) -> int:
    import optuna
    from optuna.storages.journal import JournalFileBackend

    if not journal.is_file() or not journal.stat().st_size:
        return 0
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = optuna.storages.JournalStorage(JournalFileBackend(str(journal)))
    studies = storage.get_all_studies()
    if not studies:
        return 0
    trials = storage.get_all_trials(studies[0]._study_id, deepcopy=False)  # noqa: SLF001
    return sum(t.state.name in ("COMPLETE", "PRUNED") for t in trials)


def test_search_interrupt_kill_and_resume(tmp_path):
    trials = 8
    (tmp_path / "space.json").write_text(json.dumps(SPACE))
    args = ["search", "--data", "synthetic", "--space", "space.json", "--trials", str(trials), "--strategy",
            "random", "--epochs", "1", "--max-batches", "2", "--val-batches", "1", "--batch-size", "32",
            "--no-prune", "--final-epochs", "2", "--final-max-batches", "2", "--final-top", "1", "--baselines=",
            "--no-report", "--out", "se"]
    out, journal = tmp_path / "se", tmp_path / "se" / "study.journal"

    first = Cli(args, tmp_path, "first")
    first.wait_for(lambda: _finished_trials(journal) >= 1, "a finished trial in the study")
    assert_one_interrupt_line(first, first.signal(signal.SIGINT))
    n1 = _finished_trials(journal)
    assert not (out / "pareto.json").exists()

    second = Cli(args, tmp_path, "second")
    second.wait_for(lambda: _finished_trials(journal) >= n1 + 1, "a finished trial after the resume")
    second.signal(signal.SIGKILL)
    assert f"{trials} trials ({n1} finished already)" in second.stdout, second.stdout
    n2 = _finished_trials(journal)

    third = run(args, tmp_path, "third")
    assert f"{trials} trials ({n2} finished already)" in third.stdout, third.stdout
    doc = _json(out / "pareto.json")
    assert doc["counts"].get("complete", 0) + doc["counts"].get("pruned", 0) == trials
    assert doc["pareto"]
    for entry in doc["pareto"]:
        _assert_complete_model_dir(tmp_path / entry["dir"])  # relative to the command's directory


# ------------------------------------------------------------- where else Ctrl-C may land: workers, threads

HARNESS = """
import threading, time
import click
from tensorslim._interrupt import run_command

@click.command()
@click.argument("mode")
def main(mode):
    if mode == "dataloader":  # worker processes in the same process group: they get the SIGINT too
        import torch
        from torch.utils.data import DataLoader, Dataset

        class Slow(Dataset):
            def __len__(self):
                return 100_000

            def __getitem__(self, i):
                time.sleep(0.01)
                return torch.zeros(4)

        for i, _ in enumerate(DataLoader(Slow(), batch_size=4, num_workers=2)):
            if i == 2:
                print("ready", flush=True)
    else:  # the main thread waits for a non-daemon worker thread, which would keep the interpreter alive
        def work():
            stop = time.monotonic() + 600
            while time.monotonic() < stop:
                time.sleep(0.01)

        worker = threading.Thread(target=work)
        worker.start()
        print("ready", flush=True)
        worker.join()

run_command(main, None, "harness")
"""


@pytest.mark.parametrize("mode", ["dataloader", "thread"])
def test_interrupt_inside_dataloader_workers_or_waiting_on_a_thread(tmp_path, mode):
    (tmp_path / "harness.py").write_text(HARNESS)
    cli = Cli([mode], tmp_path, mode, program=("harness.py",))
    cli.wait_for(lambda: "ready" in cli.stdout, "the blocking point")
    assert_one_interrupt_line(cli, cli.signal(signal.SIGINT))
