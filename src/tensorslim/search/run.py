"""The search loop: low-fidelity trials on a shared Optuna study, then full-fidelity retraining of the Pareto set.

:func:`run_study` is what every worker runs: open (or create) the study, check that it was made for the same
search space, then take trials until the study holds ``n_trials`` finished ones (COMPLETE or PRUNED) — counted
over *all* workers. Each trial builds the architecture the strategy's sampler proposes, prunes it before
training when it exceeds ``max_params`` / ``max_macs``, trains it at low fidelity (a few epochs of at most
``max_batches`` batches: a random data subset per epoch), evaluates it on a fixed subset of the validation
split after every epoch, and is pruned when it is near chance or dominated (better-or-equal params and MACs,
higher accuracy by ``margin`` at the same epoch, after the pruner's warm-up epochs) by a completed trial. Stale
trials of dead workers are failed and retried with the same parameters (see :mod:`.storage`).

:func:`tensorslim.search.final.finalize` retrains the Pareto set (and the baselines) at full fidelity, writes
model directories, ``pareto.json`` and a report. :func:`search` does both. Worker bookkeeping is in
:mod:`.workers`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import TrialState

from .. import _interrupt, data, modeldir
from ..cost import profile
from ..errors import TensorSlimError
from ..study.progress import Deadline, format_seconds, parse_duration
from ..study.storage import beating, create_or_load_study, fail_stale_trials, open_storage, redact
from ..train import TrainConfig, TrainingDiverged, evaluate, train
from .estimate import describe, estimate
from .objectives import OBJECTIVES, check_objectives, measure_latency
from .pruner import Pruner
from .space import SearchSpace, SearchSpaceError, arch_summary, build_network, check_rank_mode, default_space
from .strategy import get_strategy
from .workers import _clear_stale_journal_lock, _release_gone_workers, _worker_id, storage_url_for

ATTR = "tensorslim_search"


@dataclasses.dataclass
class Fidelity:
    """How one model is trained: ``epochs`` of at most ``max_batches`` batches (None: the whole split), then
    evaluated on at most ``val_batches`` batches of 500 (None: the whole split). ``augment``: the training
    split's augmentation (None: the dataset's default, i.e. none for Fashion-MNIST and digits, random crop and
    flip for CIFAR and Imagenette; True: the dataset's standard augmentation; False: none). Validation and test
    images are never augmented."""

    epochs: int = 2
    max_batches: int | None = 50
    val_batches: int | None = 4
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float | None = None
    augment: bool | None = None

    def __post_init__(self) -> None:
        if self.epochs < 1 or (self.max_batches is not None and self.max_batches < 1):
            raise TensorSlimError(f"fidelity needs epochs >= 1 and max_batches >= 1, got {self.epochs}, "
                                  f"{self.max_batches}")

    def train_config(self, seed: int):
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, optimizer=self.optimizer, lr=self.lr,
                           seed=seed, max_batches=self.max_batches)


#: the full-fidelity retraining when none is given: 10 whole epochs, validated on the whole split
DEFAULT_FINAL = Fidelity(epochs=10, max_batches=None, val_batches=None)


@dataclasses.dataclass
class SearchConfig:
    """What :func:`search` (and its worker part :func:`run_study`) does, checked when made.

    Study: ``space`` (None: the default space for the input; a :class:`SearchSpace`, dict or JSON file),
    ``rank_mode`` (auto or fixed, with ``fixed_ranks``), ``objectives`` (of :data:`.objectives.OBJECTIVES`,
    with accuracy), ``n_trials`` (finished trials of the study, over all workers), ``storage`` and ``study``
    (shared by the workers), ``strategy`` and ``strategy_options``, ``pruner``, ``seed``; workers:
    ``heartbeat_interval``, ``grace_period``, ``max_retry``, ``wait`` / ``poll_seconds`` (wait for the others'
    last trials); data: ``data_dir``, ``image_size``, ``dataset_options``; fidelity: ``low_fidelity``
    (default :class:`Fidelity`), ``final``; results (:func:`search` only): ``out``, ``retrain``, ``final_top``,
    ``baselines``, ``report`` (a report writer such as :func:`tensorslim.report.write_report`, or None);
    ``time_budget`` ("30m", "2h", seconds: this worker starts no new trial once it is spent; the front is made
    of the trials finished by then); ``log`` (None: silent).
    """

    space: Any = None
    rank_mode: str = "auto"
    fixed_ranks: Sequence[float] | None = None
    objectives: Sequence[str] = ("accuracy", "params", "macs")
    n_trials: int = 30
    storage: str | None = None
    study: str | None = None
    strategy: Any = "nsga2"
    strategy_options: dict[str, Any] | None = None
    out: str | os.PathLike | None = None
    data_dir: Any = None
    image_size: int | None = None
    dataset_options: dict[str, Any] | None = None
    low_fidelity: Fidelity | None = None
    final: Fidelity | None = None
    final_top: int | None = 4
    baselines: Sequence[str] = ("mobilenetv2", "resnet20")
    pruner: Pruner | None = dataclasses.field(default_factory=Pruner)
    retrain: bool = True
    report: Callable[..., Any] | None = None
    seed: int | None = 0
    heartbeat_interval: int = 30
    grace_period: int | None = None
    max_retry: int = 2
    wait: bool = True
    poll_seconds: float = 2.0
    time_budget: str | float | None = None
    log: Callable[[str], None] | None = print

    def __post_init__(self) -> None:
        self.log = self.log or (lambda _m: None)
        try:
            self.time_budget = parse_duration(self.time_budget)
        except ValueError as err:
            raise TensorSlimError(str(err)) from None
        self.objectives = check_objectives(self.objectives)
        check_rank_mode(self.rank_mode, self.fixed_ranks)
        if not isinstance(self.n_trials, int) or self.n_trials < 1:
            raise TensorSlimError(f"n_trials must be a positive integer, got {self.n_trials!r}")
        self.low_fidelity = self.low_fidelity or Fidelity()

    @classmethod
    def of(cls, config: SearchConfig | None, options: dict[str, Any], caller: str) -> SearchConfig:
        """``config``, or one made of the keyword ``options`` (not both)."""
        if config is None:
            return cls(**options)
        if options:
            raise TypeError(f"{caller}() takes a config or keyword options, not both ({', '.join(options)})")
        return config


@dataclasses.dataclass
class SearchResult:
    study: str
    storage: str
    counts: dict[str, int]
    pareto: list[dict[str, Any]]
    hypervolume: float | None = None
    out: str | None = None
    baselines: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


#: study user attribute prefix: one ``{"trials", "seconds"}`` entry per worker run
WORKER_ATTR = "tensorslim-worker-run-"


def throughput(study: Any) -> dict[str, Any]:
    """Trials run per hour of worker time, over every worker run recorded in the study."""
    runs = [v for k, v in study.user_attrs.items() if k.startswith(WORKER_ATTR) and isinstance(v, dict)]
    trials = sum(int(r.get("trials", 0)) for r in runs)
    seconds = sum(float(r.get("seconds", 0.0)) for r in runs)
    return {"worker_runs": len(runs), "trials": trials, "worker_seconds": round(seconds, 4),
            "trials_per_hour": round(3600 * trials / seconds, 2) if seconds > 0 else None}


class _Surplus(Exception):
    """A trial created after the study already held n_trials live ones (two workers raced)."""


# ------------------------------------------------------------------------------------------------ set-up


def resolve_space(space: Any, input_shape: Sequence[int], num_classes: int) -> SearchSpace:
    """``None`` (the default space for the input), a :class:`SearchSpace`, a dict, or a JSON file path."""
    if space is None:
        return default_space(input_shape, num_classes)
    if isinstance(space, (str, os.PathLike)):
        path = Path(space)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise SearchSpaceError(f"{path}: search space file not found") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise SearchSpaceError(f"{path}: not a JSON search space ({err})") from None
        data = {"input_shape": list(input_shape), "num_classes": num_classes, **data}
        space = SearchSpace.from_dict(data)
    elif isinstance(space, dict):
        space = SearchSpace.from_dict({"input_shape": list(input_shape), "num_classes": num_classes, **space})
    if not isinstance(space, SearchSpace):
        raise SearchSpaceError(f"space must be a SearchSpace, a dict or a JSON file, got {type(space).__name__}")
    if tuple(space.input_shape) != tuple(input_shape) or space.num_classes != num_classes:
        raise SearchSpaceError(f"search space is for input {list(space.input_shape)} / {space.num_classes} classes, "
                               f"the data is {list(input_shape)} / {num_classes} classes")
    return space


def definition(space: SearchSpace, rank_mode: str, fixed_ranks: Sequence[float] | None,
               objectives: Sequence[str], dataset: str) -> dict[str, Any]:
    """What the study's user attribute stores; a worker with a different definition is refused."""
    return {"space": space.to_dict(), "rank_mode": rank_mode,
            "fixed_ranks": [float(f) for f in fixed_ranks] if rank_mode == "fixed" and fixed_ranks else None,
            "objectives": list(objectives), "dataset": dataset}


def _differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    keys = sorted(set(a) | set(b))
    out = []
    for k in keys:
        if k == "space" and isinstance(a.get(k), dict) and isinstance(b.get(k), dict):
            out += [f"space.{d}" for d in _differences(a[k], b[k])]
        elif a.get(k) != b.get(k):
            out.append(k)
    return out


def open_study(name: str, storage_url: str, defn: dict[str, Any], *, sampler: Any = None,
               heartbeat_interval: int = 30, grace_period: int | None = None, max_retry: int = 2) -> Any:
    """Create or load the study ``name``; refuse one made for another search definition."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(storage_url, heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                           max_retry=max_retry)
    directions = [OBJECTIVES[o].direction for o in defn["objectives"]]
    try:  # race-safe: every worker may be creating this study at the same moment
        study = create_or_load_study(name, storage, sampler=sampler, directions=directions,
                                     metric_names=[OBJECTIVES[o].label for o in defn["objectives"]])
    except Exception as err:  # noqa: BLE001
        raise TensorSlimError(f"study {name!r} in {redact(storage_url)!r} cannot be opened ({type(err).__name__}: "
                              f"{' '.join(str(err).split())[:200]})") from None
    stored = study.user_attrs.get(ATTR)
    if stored is None and study.get_trials(deepcopy=False):
        # a worker that created the study sets the definition before its first trial: read it again, it may
        # have landed between the two reads above
        stored = study.user_attrs.get(ATTR)
    if stored is None:
        if study.get_trials(deepcopy=False):
            raise SearchSpaceError(f"study {name!r} has trials but was not made by tensorslim search; "
                                   "use another --study name")
        study.set_user_attr(ATTR, defn)  # two workers racing here write the same definition, or are refused below
        stored = optuna.load_study(study_name=name, storage=storage).user_attrs.get(ATTR)
    stored = json.loads(json.dumps(stored))
    mine = json.loads(json.dumps(defn))
    if stored != mine:
        diff = ", ".join(_differences(stored, mine)[:6])
        raise SearchSpaceError(f"study {name!r} was created with another search definition (differs in: {diff}); "
                               "use another --study name or the same options")
    return study


def _counts(study: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        key = t.state.name.lower()
        if key == "fail" and t.user_attrs.get("surplus"):
            key = "surplus"
        elif key == "pruned" and t.user_attrs.get("over_budget"):
            key = "over_budget"
        out[key] = out.get(key, 0) + 1
    return out


def _worker_seed(seed: int | None, study: Any, shared: bool) -> int | None:
    if seed is None:
        return None
    existing = len(study.get_trials(deepcopy=False))
    return (seed + 1009 * existing + (os.getpid() if shared else 0)) % (2**31 - 1)


def _load_data(dataset: str, data_dir: Any, image_size: int | None, options: dict[str, Any],
               augment: bool | None = None, splits: Sequence[str] = ("train", "val")) -> tuple[Any, ...]:
    """The ``splits`` of a dataset; only ``"train"`` gets ``augment`` (None: the dataset's default)."""
    kwargs = dict(options)
    if image_size is not None:
        kwargs["image_size"] = image_size
    return tuple(data.load(dataset, split, data_dir, augment=augment if split == "train" else False, **kwargs)
                 for split in splits)


# ------------------------------------------------------------------------------------------------ worker


def run_study(dataset: str, config: SearchConfig | None = None, **options: Any) -> Any:
    """Run trials of the shared study until it holds ``n_trials`` finished ones; return the Optuna study.

    ``config`` is a :class:`SearchConfig` (its worker part: the retraining fields are not used), or its fields
    as keywords."""
    cfg = SearchConfig.of(config, options, "run_study")
    train_set, val_set = _load_data(dataset, cfg.data_dir, cfg.image_size, cfg.dataset_options or {},
                                    cfg.low_fidelity.augment)
    input_shape, num_classes = tuple(train_set.input_shape), int(train_set.num_classes)
    space = resolve_space(cfg.space, input_shape, num_classes)
    strat = get_strategy(cfg.strategy, **(cfg.strategy_options or {}))
    storage_url = storage_url_for(cfg.storage, cfg.out)
    name = cfg.study or f"tensorslim-{dataset}-{cfg.rank_mode}"
    defn = definition(space, cfg.rank_mode, cfg.fixed_ranks, cfg.objectives, dataset)
    _clear_stale_journal_lock(storage_url, cfg.log)
    with _interrupt.deferred():  # here and below, Ctrl-C never stops a storage write half-way (see _interrupt)
        st = open_study(name, storage_url, defn, heartbeat_interval=cfg.heartbeat_interval,
                        grace_period=cfg.grace_period, max_retry=cfg.max_retry)
    st.sampler = strat.sampler(seed=_worker_seed(cfg.seed, st, cfg.storage is not None),
                               n_objectives=len(cfg.objectives))

    def objective(trial: Any) -> list[float]:
        with beating(st, trial):
            return _evaluate(trial, st, space, cfg.rank_mode, cfg.fixed_ranks, cfg.objectives, cfg.n_trials,
                             train_set, val_set, cfg.low_fidelity, cfg.pruner, cfg.seed or 0, cfg.log)

    c = _counts(st)
    cfg.log(f"study {name!r} on {storage_url}: strategy {strat.name}, objectives {', '.join(cfg.objectives)}, "
            f"rank mode {cfg.rank_mode}, {cfg.n_trials} trials ({c.get('complete', 0) + c.get('pruned', 0)} finished "
            "already)")
    _log_estimate(cfg, space, len(train_set), len(val_set),
                  max(0, cfg.n_trials - c.get("complete", 0) - c.get("pruned", 0)))
    _interrupt.quiet_optuna_interrupts()
    gone: dict[int, tuple[str, float]] = {}
    deadline, mine, started = Deadline(cfg.time_budget), 0, time.perf_counter()
    while True:
        with _interrupt.deferred():
            for number, why in _release_gone_workers(st, cfg.max_retry, gone):
                cfg.log(f"trial {number}: {why}; retrying it")
            fail_stale_trials(st)
            c = _counts(st)
        done = c.get("complete", 0) + c.get("pruned", 0)
        live = done + c.get("running", 0) + c.get("waiting", 0)
        if done >= cfg.n_trials:
            break
        if mine and deadline.expired():
            cfg.log(f"time budget {format_seconds(cfg.time_budget)} reached after {format_seconds(deadline.elapsed())}:"
                    f" {done}/{cfg.n_trials} trials finished; no new trial started")
            break
        if c.get("over_budget", 0) > 20 * cfg.n_trials:
            raise SearchSpaceError(f"study {name!r}: {c['over_budget']} sampled architectures exceeded max_params / "
                                   "max_macs; widen the budget or shrink the space")
        if live >= cfg.n_trials and not c.get("waiting"):
            if not cfg.wait:
                break
            time.sleep(cfg.poll_seconds)  # others run the last trials; take them over if they go stale
            continue
        with _interrupt.deferred():  # Ctrl-C stops the trial's training (Optuna records it failed)
            st.optimize(objective, n_trials=1, catch=(_Surplus,))
        mine += 1
        spent = time.perf_counter() - started
        left = max(0, cfg.n_trials - done - 1)
        eta, why = spent / mine * left, "for the rest"
        if deadline.left() is not None and deadline.left() < eta:
            eta, why = deadline.left(), f"(time budget {format_seconds(cfg.time_budget)})"
        cfg.log(f"trials: about {done + 1}/{cfg.n_trials} finished; this worker {mine} in {format_seconds(spent)} "
                f"({3600 * mine / spent:.1f}/h), ETA {format_seconds(eta)} {why}"
                + ("" if mine > 1 else " (estimated from this first trial)"))
    elapsed = time.perf_counter() - started
    with _interrupt.deferred():  # trials per hour over all workers, for pareto.json
        st.set_user_attr(f"{WORKER_ATTR}{_worker_id()}-{uuid.uuid4().hex[:8]}",
                         {"trials": mine, "seconds": round(elapsed, 4)})  # 4 places: a fast worker run is under 0.05 s
    cfg.log(f"study {name!r}: {_counts(st)}")
    return st


def _log_estimate(cfg: SearchConfig, space: SearchSpace, train_images: int, val_images: int, trials_left: int
                  ) -> dict[str, Any]:
    """Print (and return) the wall-time estimate of what this run will do, before its first trial."""
    from .final import baseline_spec  # final imports this module

    retrain = cfg.out is not None and cfg.retrain
    final = (cfg.final or DEFAULT_FINAL) if retrain else None
    shape = tuple(space.input_shape)
    builders = [(n, lambda n=n: modeldir.build(baseline_spec(n, shape, space.num_classes), shape))
                for n in (cfg.baselines if retrain else ())]
    est = estimate(space, trials_left=trials_left, low=cfg.low_fidelity, final=final, final_top=cfg.final_top,
                   baselines=builders, train_images=train_images, val_images=val_images,
                   time_budget=cfg.time_budget, seed=cfg.seed or 0)
    cfg.log(describe(est, format_seconds, final.epochs if final else None, cfg.final_top))
    return est


def _evaluate(trial: Any, study: Any, space: SearchSpace, rank_mode: str, fixed_ranks: Any,
              objectives: Sequence[str], n_trials: int, train_set: Any, val_set: Any, fid: Fidelity,
              pruner: Pruner | None, seed: int, log: Callable[[str], None]) -> list[float]:
    trial.set_user_attr("worker", _worker_id())  # first: a killed worker's trial is then released at once
    earlier = [t for t in study.get_trials(deepcopy=False) if t.number < trial.number
               and t.state != TrialState.FAIL and not t.user_attrs.get("over_budget")]
    if len(earlier) >= n_trials:
        trial.set_user_attr("surplus", True)
        raise _Surplus(f"trial {trial.number}: the study already has {n_trials} trials")
    arch = space.suggest(trial, rank_mode, fixed_ranks)
    trial.set_user_attr("arch", arch)
    trial.set_user_attr("summary", arch_summary(arch))
    torch.manual_seed(seed * 100003 + trial.number)
    model = build_network(**arch)
    total = profile(model, arch["input_shape"]).total
    params, macs = int(total.params), int(total.macs)
    trial.set_user_attr("params", params)
    trial.set_user_attr("macs", macs)
    prefix = f"trial {trial.number}: {arch_summary(arch)} ({params:,} params, {macs / 1e6:.2f} M MACs)"
    if (space.max_params and params > space.max_params) or (space.max_macs and macs > space.max_macs):
        trial.set_user_attr("pruned_reason", "over the params / MACs budget")
        trial.set_user_attr("over_budget", True)  # not counted in n_trials: it cost no training
        log(f"{prefix}: pruned, over budget")
        raise optuna.TrialPruned("over budget")
    curve: list[float] = []
    cfg = fid.train_config(seed * 100003 + trial.number)

    def on_epoch(line: str) -> None:
        if not line.startswith("epoch"):
            return
        acc = evaluate(model, val_set, max_batches=fid.val_batches)["accuracy"]
        curve.append(acc)
        with _interrupt.deferred():
            trial.set_user_attr("val_curve", list(curve))
            if pruner is not None and len(curve) < cfg.epochs:
                why = pruner.reason(study, curve, params, macs, space.num_classes)
                if why:
                    trial.set_user_attr("pruned_reason", why)
                    raise optuna.TrialPruned(why)

    t0 = time.perf_counter()
    try:
        with _interrupt.allowed():  # the one part of a trial that Ctrl-C stops at once
            train(model, train_set, None, cfg, log=on_epoch)
    except optuna.TrialPruned as p:
        log(f"{prefix}: pruned, {p}")
        raise
    except TrainingDiverged:
        trial.set_user_attr("pruned_reason", "diverged")
        log(f"{prefix}: pruned, diverged")
        raise optuna.TrialPruned("diverged") from None
    values = {"accuracy": curve[-1], "params": params, "macs": macs}
    if "latency" in objectives:
        values["latency"] = measure_latency(model, arch["input_shape"])
    trial.set_user_attr("values", values)
    trial.set_user_attr("seconds", round(time.perf_counter() - t0, 2))
    log(f"{prefix}: val acc {curve[-1]:.2f}% ({time.perf_counter() - t0:.0f} s)")
    return [float(values[o]) for o in objectives]


# ------------------------------------------------------------------------------------------------ results


def search(dataset: str, config: SearchConfig | None = None, **options: Any) -> SearchResult:
    """Multi-objective architecture search with TCL heads (see the module docstring and docs/search.md).

    ``config`` is a :class:`SearchConfig`, or give its fields as keywords. ``rank_mode="fixed"`` uses
    ``fixed_ranks`` (fractions of the head input's C, H, W dimensions); ``"auto"`` makes them decisions of the
    search. With ``out``, the Pareto set is retrained (``final``) into ``out/pareto/trial-NNNN/`` model directories
    next to the ``baselines``, and ``out/pareto.json`` (and ``out/report/`` with a ``report`` writer such as
    :func:`tensorslim.report.write_report`) are written; ``retrain=False`` only runs the worker part (other
    machines).
    """
    from .final import _trial_entry, finalize, pareto_trials, study_hypervolume  # final imports this module

    cfg = SearchConfig.of(config, options, "search")
    st = run_study(dataset, cfg)
    url = storage_url_for(cfg.storage, cfg.out)
    if cfg.out is not None and cfg.retrain:
        return finalize(st, cfg.out, final=cfg.final, final_top=cfg.final_top, baselines=cfg.baselines,
                        data_dir=cfg.data_dir, image_size=cfg.image_size, dataset_options=cfg.dataset_options,
                        report=cfg.report, seed=cfg.seed or 0, storage_url=url, log=cfg.log)
    front = pareto_trials(st)
    hv, _ = study_hypervolume(st)
    return SearchResult(study=st.study_name, storage=url, counts=_counts(st), hypervolume=hv,
                        out=str(cfg.out) if cfg.out is not None else None,
                        pareto=[{"trial": t.number, **_trial_entry(t)} for t in front])
