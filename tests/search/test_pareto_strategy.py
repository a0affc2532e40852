"""Hypervolume and Pareto fronts against Optuna's own hypervolume and brute force; strategy plumbing."""

from __future__ import annotations

import random

import optuna
import pytest
from optuna._hypervolume import compute_hypervolume

from tensorslim.errors import TensorSlimError
from tensorslim.search import NSGA2, TPE, Random, StrategyError, get_strategy, hypervolume, pareto_indices
from tensorslim.search.pareto import check_objectives


def test_hypervolume_hand_case():
    # two rectangles of area 2 overlapping in a unit square
    assert hypervolume([(1, 2), (2, 1)], (3, 3)) == pytest.approx(3.0)
    assert hypervolume([(4, 0)], (3, 3)) == 0.0  # outside the box


@pytest.mark.parametrize("dim", [2, 3, 4])
def test_hypervolume_matches_optuna(dim):
    import numpy as np

    rng = random.Random(dim)
    for _ in range(3):
        pts = [[rng.random() for _ in range(dim)] for _ in range(15)]
        ref = [1.0] * dim
        assert hypervolume(pts, ref) == pytest.approx(compute_hypervolume(np.array(pts), np.array(ref)), rel=1e-9)


def test_pareto_indices_brute_force():
    rng = random.Random(0)
    pts = [(rng.randint(0, 5), rng.randint(0, 5), rng.randint(0, 5)) for _ in range(40)]
    front = {pts[i] for i in pareto_indices(pts)}
    brute = {p for p in pts if not any(all(a <= b for a, b in zip(q, p)) and q != p for q in pts)}
    assert front == brute


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
