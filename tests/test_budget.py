"""One budget syntax everywhere (tensorslim.study.budget): finetune and explore read the same text."""

import pytest

from tensorslim.explore import ExploreError
from tensorslim.explore import parse_budget as explore_budget
from tensorslim.finetune import BudgetError
from tensorslim.finetune import parse_budget as finetune_budget
from tensorslim.study.budget import Budget, parse_budget
from tensorslim.study.budget import BudgetError as StudyBudgetError


def test_the_syntax():
    b = parse_budget("params<=0.1,macs<=0.3,latency<=0.25,drop<=0.5")
    assert b.limits == (("params", 0.1), ("macs", 0.3), ("latency", 0.25), ("drop", 0.5))
    assert str(b) == "params<=0.1,macs<=0.3,latency<=0.25,drop<=0.5" and not b.notes
    assert parse_budget({"macs": 0.3}).as_dict() == {"macs": 0.3}
    assert parse_budget(" macs <= 2.5e-1 ").get("macs") == 0.25


def test_the_old_form_is_read_with_a_note():
    b = parse_budget("params=0.1,max-drop=0.5")
    assert b.as_dict() == {"params": 0.1, "drop": 0.5}
    assert b.notes == ("note: budget 'params=0.1,max-drop=0.5' uses the old KEY=VALUE form; "
                       "write 'params<=0.1,drop<=0.5'",)


@pytest.mark.parametrize("text, message", [
    ("flops<=2", "budget term 'flops<=2'"), ("macs<0.3", "expected KEY<=NUMBER"), ("macs<=-1", "expected KEY<=NUMBER"),
    ("macs<=0.3,macs<=0.2", "names macs twice"), ("", "expected KEY<=NUMBER"), ("macs<=nan", "expected KEY<=NUMBER"),
])
def test_errors_are_one_line(text, message):
    with pytest.raises(StudyBudgetError, match=message) as info:
        parse_budget(text)
    assert "\n" not in str(info.value)


def test_each_command_reads_the_same_text():
    assert finetune_budget("params<=0.1,macs<=0.3") == {"params": 0.1, "macs": 0.3}
    assert finetune_budget("params=0.1,macs=0.3") == {"params": 0.1, "macs": 0.3}  # the old form
    assert finetune_budget("drop<=0.5") == {"max_drop": 0.5} == finetune_budget("max-drop=0.5")
    assert finetune_budget({"max_drop": 0.5}) == {"max_drop": 0.5}
    assert isinstance(explore_budget("macs<=0.25,drop<=0.5"), Budget)
    assert explore_budget("params=0.1").as_dict() == {"params": 0.1}
    assert finetune_budget("latency<=0.25,drop<=0.5") == {"latency": 0.25, "max_drop": 0.5}
    with pytest.raises(BudgetError, match="must lie in"):
        finetune_budget("params<=1.5")
    with pytest.raises(ExploreError, match="budget term 'flops<=2'"):
        explore_budget("flops<=2")


def test_ticker_logs_at_its_interval_and_at_the_end(monkeypatch):
    """Trial loops (explore) log their progress with an ETA instead of running silently."""
    from tensorslim.study import progress

    clock = iter([0.0, 1.0, 2.0, 40.0, 41.0, 90.0])
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(clock))
    lines: list[str] = []
    tick = progress.Ticker(4, "trials", lines.append, interval=30.0)  # started at t=0
    for _ in range(4):
        tick()  # t = 1, 2, 40, 41 (the last one is the end)
    assert lines == ["trials: 3/4 done, 40 s so far, ETA 13 s", "trials: 4/4 done, 41 s so far, ETA 0 s"]
