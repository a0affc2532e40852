"""What :func:`tensorslim.explore.explore` does: its objectives and its :class:`ExploreConfig`, checked when made."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import TensorSlimError
from ..methods import targets
from ..study.pareto import Objective
from ..study.progress import parse_duration
from .latency import LayerTimer, ModelLatency
from .pareto import Budget, parse_budget
from .seeds import WarmStart, read_warm_start
from .space import DEFAULT_METHODS, ExploreError

#: the objectives explore can optimise, by name
OBJECTIVE = {"macs": Objective("macs", unit="MACs"), "memory": Objective("memory", unit="bytes"),
             "params": Objective("params", unit="parameters"), "latency": Objective("latency", unit="ms"),
             "accuracy": Objective("accuracy", "maximize", "%")}
OBJECTIVES = tuple(OBJECTIVE)
DEFAULT_OBJECTIVES = ("macs", "memory", "accuracy")
FORMAT = "tensorslim-explore"

#: ``write(model_dirs, out_dir, *, title)``: what :func:`tensorslim.report.write_report` is
ReportWriter = Callable[..., Any]



def _check_objectives(objectives: Sequence[str]) -> tuple[str, ...]:
    objs = tuple(dict.fromkeys(objectives))
    bad = [o for o in objs if o not in OBJECTIVES]
    if bad:
        raise ExploreError(f"unknown objective {bad[0]!r}; choose from {', '.join(OBJECTIVES)}")
    if "accuracy" not in objs or len(objs) < 2:
        raise ExploreError("objectives must include accuracy and at least one cost (macs, memory, params, latency)")
    return objs


@dataclasses.dataclass
class ExploreConfig:
    """What :func:`explore` does, checked when made (one-line :class:`ExploreError`s).

    ``out``: the output directory. ``methods``, ``objectives`` (of :data:`OBJECTIVES`, with accuracy and at least
    one cost), ``max_evals`` low-fidelity trials, ``budget`` (text, dict or Budget: pick one Pareto point),
    ``storage`` (an Optuna URL; default ``sqlite:///OUT/study.db``), ``sampler`` (nsga2 or tpe), ``seed``;
    design space: ``max_factors`` (most cores of a TT shape), ``max_error`` (pruning stage (c)); fidelity:
    ``low_fidelity`` ("zeroshot" or fine-tune batches), ``val_samples``, ``full_evals``, ``finetune_batches``
    (the full-fidelity fine-tune, distilled from the original model unless ``distill=False``, as
    ``tensorslim finetune --distill`` does), ``lr``, ``batch_size``, ``eval_split``; data: ``data_dir``,
    ``data_options``; latency (an objective):
    ``latency_cache`` (default ``OUT/cache/latency.json``), ``latency_repeats``, ``latency_timer`` (required
    for it, a :data:`tensorslim.explore.latency.LayerTimer`; a ``latency`` budget adds the objective),
    ``model_latency`` (a :data:`tensorslim.study.latency.ModelLatency`: with a latency budget, the picked model
    is measured against the original and ``pareto.json`` gets ``selected_latency``); ``calibration``: training
    images whose activations judge each design point in pruning by its layer's output error (0: judged by the
    weight error); ``screen``: rung (b) over whole models before the short fine-tune, this many combinations
    judged by their summed layer errors without building a model (:mod:`.screen`), the best ``max_evals // 2``
    of them the first low-fidelity trials (0: off, the sampler starts from nothing); ``warm_start``: plans (plan
    files, model directories recording one plan, plan dicts) whose layer choices join the space and, with their
    neighbours, are the first trials (:mod:`.seeds`; read and checked here);
    ``time_budget`` ("30m", "2h", seconds): stop searching when it is spent and write the front found so far;
    ``target`` (:mod:`tensorslim.methods.targets`: ``ort-x86``, ``xnnpack-arm``, ...): the deployment target whose
    channel multiple every design point's channel ranks are rounded to, recorded in each saved model so that
    ``export`` applies its passes (None: the grids' own ranks, and the machine's default target at export);
    output: ``plots``, ``report`` (a :data:`ReportWriter`), ``log`` (None: silent).
    """

    out: str | os.PathLike
    methods: Sequence[str] = DEFAULT_METHODS
    objectives: Sequence[str] = DEFAULT_OBJECTIVES
    max_evals: int = 100
    budget: str | dict[str, float] | Budget | None = None
    storage: str | None = None
    sampler: str = "nsga2"
    seed: int = 0
    max_factors: int = 3
    max_error: float = 0.5
    low_fidelity: str | int = "zeroshot"
    val_samples: int = 2000
    full_evals: int = 20
    finetune_batches: int = 200
    distill: bool = True
    lr: float = 0.01
    batch_size: int = 64
    eval_split: str = "test"
    data_dir: str | os.PathLike | None = None
    data_options: dict[str, Any] | None = None
    latency_cache: str | os.PathLike | None = None
    latency_repeats: int = 30
    latency_timer: LayerTimer | None = None
    model_latency: ModelLatency | None = None
    calibration: int = 256
    screen: int = 0
    warm_start: Sequence[WarmStart] | WarmStart = ()
    time_budget: str | float | None = None
    target: str | None = None
    plots: bool = True
    report: ReportWriter | None = None
    log: Callable[[str], None] | None = print

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.log = self.log or (lambda _msg: None)
        self.objectives = _check_objectives(self.objectives)
        self.budget = parse_budget(self.budget)
        if self.budget is not None and "latency" in self.budget and "latency" not in self.objectives:
            self.objectives = (*self.objectives, "latency")  # a latency budget is met from the latency table
        if self.sampler not in ("nsga2", "tpe"):
            raise ExploreError(f"sampler must be nsga2 or tpe, not {self.sampler!r}")
        if self.max_evals < 1 or self.full_evals < 1:
            raise ExploreError(f"max_evals and full_evals must be >= 1 (got {self.max_evals}, {self.full_evals})")
        if "latency" in self.objectives and self.latency_timer is None:
            raise ExploreError("the latency objective needs latency_timer= (module, input_shape, threads=, "
                               "repeats=, warmup=) -> ms, e.g. tensorslim.cli.explore.ort_layer_ms (ONNX Runtime)")
        if isinstance(self.screen, bool) or not isinstance(self.screen, int) or self.screen < 0:
            raise ExploreError(f"screen must be a number of combinations >= 0, not {self.screen!r}")
        many = isinstance(self.warm_start, (list, tuple))
        self.warm_start = tuple(read_warm_start(w) for w in (self.warm_start if many else [self.warm_start]))
        if isinstance(self.calibration, bool) or not isinstance(self.calibration, int) or self.calibration < 0:
            raise ExploreError(f"calibration must be a number of images >= 0, not {self.calibration!r}")
        if self.target is not None:
            try:
                self.target = targets.get(self.target).name
            except TensorSlimError as err:
                raise ExploreError(str(err)) from None
        try:
            self.time_budget = parse_duration(self.time_budget)
        except ValueError as err:
            raise ExploreError(str(err)) from None
        low = self.low_fidelity
        if low != "zeroshot" and not (isinstance(low, int) and not isinstance(low, bool) and low > 0):
            raise ExploreError(f"low_fidelity must be 'zeroshot' or a number of fine-tune batches, not {low!r}")
