"""Strategy plumbing and objective checks (fronts and hypervolume: tests/study/test_study_pareto.py)."""

from __future__ import annotations

import optuna
import pytest

from tensorslim.errors import TensorSlimError
from tensorslim.search import NSGA2, TPE, Random, StrategyError, get_strategy
from tensorslim.search.objectives import check_objectives


def test_strategies_give_their_samplers():
    assert isinstance(get_strategy("nsga2").sampler(seed=0, n_objectives=3), optuna.samplers.NSGAIISampler)
    assert isinstance(get_strategy("tpe").sampler(seed=0, n_objectives=3), optuna.samplers.TPESampler)
    assert isinstance(get_strategy("random").sampler(seed=0, n_objectives=3), optuna.samplers.RandomSampler)
    assert get_strategy("nsga2", population_size=6).population_size == 6
    assert isinstance(get_strategy(NSGA2()), NSGA2) and isinstance(get_strategy(TPE()), TPE)
    assert isinstance(get_strategy(Random()), Random)


def test_custom_strategy_from_factory():
    # any "package.module:factory" returning an Optuna sampler (or a strategy object) plugs in
    s = get_strategy("optuna.samplers:QMCSampler", seed=0)
    assert isinstance(s.sampler(seed=None, n_objectives=3), optuna.samplers.QMCSampler)
    s = get_strategy(optuna.samplers.GPSampler(seed=0))
    assert s.name == "GPSampler"


@pytest.mark.parametrize("bad", ["annealing", "nosuchmodule:thing", 42])
def test_bad_strategy_is_one_line_error(bad):
    with pytest.raises(StrategyError) as err:
        get_strategy(bad)
    assert "\n" not in str(err.value)


def test_objectives_checked():
    assert check_objectives("accuracy,params") == ("accuracy", "params")
    for bad in (["params"], ["accuracy", "speed"], ["accuracy", "accuracy"]):
        with pytest.raises(TensorSlimError):
            check_objectives(bad)
