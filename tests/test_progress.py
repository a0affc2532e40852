"""Time budgets (study.progress): parsing by hand-computed seconds, and the deadline stopping a real study."""

import time

import optuna
import pytest

from tensorslim.study.progress import Deadline, format_seconds, parse_duration


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("30m", 1800), ("1.5h", 5400), (" 2H ", 7200),
                                               (45, 45), (0.5, 0.5), (None, None)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["30", "m", "10d", "-5m", "0s", "nanm", "inf", True, "1e400s", ""])
def test_bad_durations_are_one_line(bad):
    with pytest.raises(ValueError) as err:
        parse_duration(bad)
    assert "\n" not in str(err.value)


def test_deadline_stops_an_optuna_study_after_the_running_trial():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    deadline = Deadline(0.2)
    study = optuna.create_study()

    def objective(trial):
        time.sleep(0.05)
        return trial.suggest_float("x", 0, 1)

    study.optimize(objective, n_trials=1000, callbacks=[deadline.stop_callback])
    assert deadline.hit and 2 <= len(study.trials) < 1000
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)  # none cut off half-way
    assert Deadline(None).left() is None and not Deadline(None).expired()


def test_format_seconds():
    assert [format_seconds(s) for s in (42, 750, 11160)] == ["42 s", "12.5 min", "3.1 h"]
