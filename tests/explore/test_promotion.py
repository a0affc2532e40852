"""Explore's promotion from the low-fidelity front to the full-fidelity fine-tune, against a hand choice: the
most accurate low-fidelity point is always promoted and runs first, the rest are spread along MACs with both
ends, in MACs order."""

from __future__ import annotations

from types import SimpleNamespace

from tensorslim.explore.config import OBJECTIVE
from tensorslim.explore.promotion import promote, skip_for_time

OBJS = [OBJECTIVE["macs"], OBJECTIVE["memory"], OBJECTIVE["accuracy"]]


def _front(rows):
    """Trials with (MACs, memory, accuracy) as their objective values, as Optuna holds them."""
    return [SimpleNamespace(values=[m, mem, acc], user_attrs={"macs": m}) for m, mem, acc in rows]


# MACs ascending; the most accurate point (91 %) is in the middle, not at the MACs end
FRONT = _front([(100, 9, 80.0), (200, 8, 85.0), (300, 7, 91.0), (400, 6, 88.0), (500, 5, 89.0)])


def test_the_most_accurate_point_is_promoted_with_the_cheapest():
    # two evaluations: the most accurate (index 2) and the cheapest; spreading along MACs alone would have
    # taken 0 and 4, leaving out the point that a budget's accuracy limit needs
    assert promote(FRONT, OBJS, 2) == [2, 0]


def test_the_rest_are_spread_along_macs_including_both_ends():
    assert promote(FRONT, OBJS, 3) == [2, 0, 4]
    assert promote(FRONT, OBJS, 1) == [2]


def test_a_small_front_is_promoted_whole():
    assert promote(FRONT, OBJS, 5) == [2, 0, 1, 3, 4]
    assert promote(FRONT[:2], OBJS, 3) == [1, 0]


def test_equal_accuracy_prefers_fewer_macs_and_no_accuracy_objective_spreads_only():
    tie = _front([(100, 9, 80.0), (300, 7, 90.0), (200, 8, 90.0), (400, 6, 85.0)])
    assert promote(tie, OBJS, 1) == [2]
    no_acc = [OBJECTIVE["macs"], OBJECTIVE["memory"]]
    costs_only = [SimpleNamespace(values=[m, mem], user_attrs={"macs": m}) for m, mem in
                  [(100, 9), (200, 8), (300, 7), (400, 6), (500, 5)]]
    assert promote(costs_only, no_acc, 2) == [0, 4]


def test_a_finalist_that_cannot_end_in_the_time_left_is_skipped_unless_the_front_would_stay_empty():
    # projected fine-tune seconds of three finalists in run order, 100 s left
    assert skip_for_time([500.0, 50.0, 60.0], 0, 100.0, any_done=False)  # a later one fits: skip this one
    assert not skip_for_time([500.0, 50.0, 60.0], 1, 100.0, any_done=False)  # fits
    assert not skip_for_time([500.0, 400.0, 300.0], 0, 100.0, any_done=False)  # none fits, none done: run it
    assert skip_for_time([500.0, 400.0, 300.0], 1, 100.0, any_done=True)  # one done already: skip
    assert not skip_for_time([100.0], 0, 100.0, any_done=True)  # exactly the time left fits
