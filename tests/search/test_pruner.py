"""The search's multi-fidelity pruner on a real in-memory Optuna study: the chance rule from epoch 1, the
dominance rule only after the warm-up epochs, its margin, its minimum of completed trials, and its bounds."""

from __future__ import annotations

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from tensorslim.errors import TensorSlimError
from tensorslim.search import Pruner


def _study(completed: list[tuple[list[float], int, int]]):
    """A study holding completed trials with these (validation curve, params, MACs), plus one pruned trial
    that must be ignored (it has the best curve and the fewest costs)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["maximize", "minimize"])
    dist = {"x": FloatDistribution(0, 1)}
    for curve, params, macs in completed:
        study.add_trial(create_trial(values=[curve[-1], params], params={"x": 0.5}, distributions=dist,
                                     user_attrs={"val_curve": curve, "params": params, "macs": macs}))
    study.add_trial(create_trial(state=TrialState.PRUNED, params={"x": 0.5}, distributions=dist,
                                 user_attrs={"val_curve": [99.0, 99.0], "params": 1, "macs": 1}))
    return study


# four completed small models, 80 % after epoch 1 and 85 % after epoch 2
SMALL = [([80.0, 85.0, 88.0], 1_000, 10_000)] * 4


def test_epoch_one_is_a_warm_up_for_the_dominance_rule_by_default():
    study = _study(SMALL)
    bigger_and_worse = dict(params=5_000, macs=50_000, num_classes=10)
    assert Pruner().reason(study, [60.0], **bigger_and_worse) is None  # epoch 1: too early to judge
    why = Pruner().reason(study, [60.0, 70.0], **bigger_and_worse)
    assert why is not None and why.startswith("dominated after epoch 2 by trial")
    # with no warm-up (the rule of the first NAS run) epoch 1 already prunes
    assert Pruner(warmup_epochs=0).reason(study, [60.0], **bigger_and_worse).startswith("dominated after epoch 1")
    # a longer warm-up spares epoch 2 as well
    assert Pruner(warmup_epochs=2).reason(study, [60.0, 70.0], **bigger_and_worse) is None


def test_the_chance_rule_applies_during_the_warm_up():
    study = _study([])
    why = Pruner().reason(study, [14.0], params=1, macs=1, num_classes=10)  # 1.5 x chance is 15 %
    assert why == "accuracy 14.0% after epoch 1 is near chance"
    assert Pruner().reason(study, [16.0], params=1, macs=1, num_classes=10) is None


def test_dominance_needs_no_more_params_and_macs_and_the_margin():
    study = _study(SMALL)
    p = Pruner()
    assert p.reason(study, [70.0, 84.6], params=5_000, macs=50_000, num_classes=10) is None  # within 0.5 pt
    assert p.reason(study, [70.0, 84.4], params=5_000, macs=50_000, num_classes=10) is not None
    assert p.reason(study, [70.0, 70.0], params=999, macs=50_000, num_classes=10) is None  # fewer params
    assert p.reason(study, [70.0, 70.0], params=5_000, macs=9_999, num_classes=10) is None  # fewer MACs
    assert Pruner(margin=20.0).reason(study, [70.0, 70.0], params=5_000, macs=50_000, num_classes=10) is None


def test_dominance_waits_for_enough_completed_trials_and_ignores_pruned_ones():
    three = _study(SMALL[:3])  # the pruned trial (99 %, 1 param) would dominate everything if it counted
    assert Pruner().reason(three, [50.0, 50.0], params=5_000, macs=50_000, num_classes=10) is None
    assert Pruner(min_completed=3).reason(three, [50.0, 50.0], params=5_000, macs=50_000,
                                          num_classes=10) is not None


@pytest.mark.parametrize("kw", [{"warmup_epochs": -1}, {"min_completed": 0}, {"margin": -0.1}])
def test_bad_pruner_settings_are_refused(kw):
    with pytest.raises(TensorSlimError):
        Pruner(**kw)


def test_dominates_is_the_rule_the_benchmark_check_shares():
    from tensorslim.search.pruner import dominates

    a = {"val_curve": [80.0, 85.0], "params": 1_000, "macs": 10_000}
    assert dominates(a, {"val_curve": [79.5, 90.0], "params": 1_000, "macs": 10_000}, 0, 0.5)  # exactly the margin
    assert not dominates(a, {"val_curve": [79.6, 90.0], "params": 1_000, "macs": 10_000}, 0, 0.5)
    assert not dominates(a, {"val_curve": [90.0, 84.6], "params": 1_000, "macs": 10_000}, 1, 0.5)  # epoch 2: 0.4 pt
    assert not dominates(a, {"val_curve": [10.0], "params": 999, "macs": 10_000}, 0, 0.5)  # a has more params
    assert not dominates(a, {"val_curve": [10.0], "params": 1_000, "macs": 9_999}, 0, 0.5)  # a has more MACs
