"""Search strategies: the pluggable part of the search.

A strategy is any object with a ``name`` and a method
``sampler(*, seed: int | None, n_objectives: int) -> optuna.samplers.BaseSampler``: the search loop asks the
sampler for every decision of :meth:`SearchSpace.suggest`, so any Optuna sampler (or a custom
``BaseSampler``) plugs in. Built in: ``"nsga2"`` (NSGA-II), ``"tpe"`` (multi-objective TPE), ``"random"``
(the baseline). :func:`get_strategy` also takes ``"package.module:factory"`` (a callable returning a strategy
object or an Optuna sampler) or a strategy object itself.
"""

from __future__ import annotations

import dataclasses
import importlib
import warnings
from typing import Any, Protocol, runtime_checkable

import optuna

from ..errors import TensorSlimError


class StrategyError(TensorSlimError):
    """An unknown or unusable search strategy."""


@runtime_checkable
class Strategy(Protocol):
    name: str

    def sampler(self, *, seed: int | None, n_objectives: int) -> Any:  # -> optuna.samplers.BaseSampler
        ...


@dataclasses.dataclass
class NSGA2:
    """NSGA-II (Deb et al. 2002): genetic search over the Pareto ranks; ``population_size`` per generation."""

    population_size: int = 16
    name: str = "nsga2"

    def sampler(self, *, seed: int | None, n_objectives: int) -> Any:
        return optuna.samplers.NSGAIISampler(population_size=self.population_size, seed=seed)


@dataclasses.dataclass
class TPE:
    """Tree-structured Parzen estimator (multi-objective when there are several objectives)."""

    n_startup_trials: int = 8
    name: str = "tpe"

    def sampler(self, *, seed: int | None, n_objectives: int) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # multivariate / group / constant_liar are "experimental"
            return optuna.samplers.TPESampler(n_startup_trials=self.n_startup_trials, seed=seed, multivariate=True,
                                              group=True, constant_liar=True)


@dataclasses.dataclass
class Random:
    """Uniform random search: the baseline every other strategy must beat."""

    name: str = "random"

    def sampler(self, *, seed: int | None, n_objectives: int) -> Any:
        return optuna.samplers.RandomSampler(seed=seed)


@dataclasses.dataclass
class _SamplerStrategy:
    """Wraps a ready Optuna sampler (from a user factory)."""

    wrapped: Any
    name: str

    def sampler(self, *, seed: int | None, n_objectives: int) -> Any:
        return self.wrapped


STRATEGIES = {"nsga2": NSGA2, "tpe": TPE, "random": Random}


def get_strategy(strategy: Any, **options: Any) -> Strategy:
    """A strategy from a name (``nsga2``, ``tpe``, ``random``, ``package.module:factory``) or an object."""
    if isinstance(strategy, str):
        if strategy in STRATEGIES:
            try:
                return STRATEGIES[strategy](**options)
            except TypeError as err:
                raise StrategyError(f"strategy {strategy!r}: {err}") from None
        if ":" not in strategy:
            raise StrategyError(f"unknown strategy {strategy!r}; built in: {', '.join(STRATEGIES)}, or "
                                "'package.module:factory'")
        module, _, attr = strategy.rpartition(":")
        try:
            obj: Any = importlib.import_module(module)
            for part in attr.split("."):
                obj = getattr(obj, part)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                made = obj(**options)
        except Exception as err:  # noqa: BLE001 - user code: any failure is a user error
            raise StrategyError(f"strategy {strategy!r} could not be made: {type(err).__name__}: {err}") from None
        if isinstance(made, optuna.samplers.BaseSampler):
            return _SamplerStrategy(made, strategy)
        strategy = made
    if isinstance(strategy, optuna.samplers.BaseSampler):
        return _SamplerStrategy(strategy, type(strategy).__name__)
    if not isinstance(strategy, Strategy):
        raise StrategyError(f"{strategy!r} is not a strategy: it needs a name and sampler(*, seed, n_objectives)")
    return strategy
