"""Whole-model design-space exploration: pruned per-layer design points, Optuna search, Pareto set.

``explore(model_dir, dataset, out=DIR, ...)``:

1. enumerates the per-layer design points and prunes them before any training (:mod:`.space`);
2. searches the product of the surviving points (plus "dense" per layer) with an Optuna multi-objective
   sampler (NSGA-II by default, TPE optional) at **low fidelity**: the accuracy on ``val_samples`` images of
   the validation split right after decomposition (``low_fidelity="zeroshot"``) or after a fine-tune of
   that many batches (``low_fidelity=N``); with ``screen``, its first trials are the combinations that rung (b),
   the summed layer errors, ranks best within the budget's costs (:mod:`.screen`; no model built to judge them);
3. re-evaluates at most ``full_evals`` points of the low-fidelity front at **full fidelity** (the most accurate
   one, and the others spread along MACs): a fine-tune of ``finetune_batches`` batches, then the whole
   validation split; the Pareto set of those is the result;
4. saves every Pareto point as a model directory ``DIR/pareto/<id>/``, writes ``DIR/pareto.json``,
   ``DIR/space.json``, ``DIR/trials.json`` and ``DIR/plots/*.png``, and with a budget picks one point.

Objectives: ``macs``, ``memory`` (bytes: weights + output activations as :func:`tensorslim.cost.profile`
counts them, batch 1, float32), ``params``, ``latency`` (measured per layer by the ``latency_timer`` passed in,
cached per machine, see :mod:`.latency`; adds pruning stage (d): survivors not faster than their dense layer are
removed) and ``accuracy``; all minimised but accuracy. With ``report`` (a function like
:func:`tensorslim.report.write_report`, which the ``explore`` command passes), an HTML report over the original
model and the Pareto set is written to ``DIR/report/``. The Optuna study lives
in ``storage`` (default ``sqlite:///DIR/study.db``; any database URL works, to share a study between
machines); a rerun with the same settings resumes it (``load_if_exists``) and only runs the missing trials.
The reconstruction errors are cached in ``DIR/cache/errors.json``. Results are written only at the end, each
file atomically, ``pareto.json`` last (it is removed first): an error (empty space...), Ctrl-C
or ``kill -9`` leaves no ``pareto.json`` (or the previous, complete one), only the resumable study and cache;
a budget no point meets still writes the whole front (``selected`` null), then raises one line naming the
closest compressed point;
rerunning the same command continues the study (a trial interrupted by Ctrl-C is recorded as failed, one
killed stays RUNNING and is not counted).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import optuna
import torch

from .. import _atomic, _interrupt, modeldir
from .. import data as data_mod
from ..data import user as user_data
from ..errors import TensorSlimError
from ..methods import targets
from ..study.pareto import hypervolume, minimised, pareto_indices
from ..study.progress import Deadline, Ticker, format_seconds
from ..study.storage import StorageError as _SharedStorageError
from ..study.storage import create_or_load_study
from ..study.storage import open_storage as _shared_open_storage
from ..study.storage import redact as _redact
from ..surgery import candidates
from ..train import evaluate
from .config import FORMAT, OBJECTIVE, ExploreConfig
from .evaluate import _Evaluator, _finetune, lowfi_accuracy
from .latency import LatencyCache, describe
from .layer_errors import ErrorCache, capture_inputs
from .pareto import pick
from .plots import front_plot, methods_plot
from .promotion import promote, skip_for_time
from .pruning import check_not_empty, prune, pruning_report, reachable
from .screen import screen
from .seeds import add_warm_starts, warm_trials
from .space import ExploreError, enumerate_space, layer_signature


class StorageError(_SharedStorageError):
    """The Optuna storage URL cannot be opened (a :class:`tensorslim.study.StorageError`)."""


@dataclasses.dataclass
class ExploreResult:
    """What :func:`explore` found; ``pareto`` is the content of ``pareto.json``."""

    out: Path
    pareto: dict[str, Any]

    @property
    def points(self) -> list[dict[str, Any]]:
        return self.pareto["points"]

    @property
    def selected(self) -> dict[str, Any] | None:
        sel = self.pareto.get("selected")
        return next((p for p in self.points if p["id"] == sel), None)


# --- helpers ------------------------------------------------------------------------------------------------


def open_storage(url: str):  # -> optuna.storages.BaseStorage
    """The Optuna storage for ``url`` (:func:`tensorslim.study.open_storage`, race-safe, no heartbeat); a
    one-line StorageError when it cannot be opened."""
    try:
        return _shared_open_storage(url, heartbeat_interval=None)
    except _SharedStorageError as err:
        text, head = str(err), f"storage {_redact(url)!r}"
        if text.startswith(head):  # keep explore's wording: "cannot open storage URL: why"
            text = text[len(head):].removeprefix(" cannot be opened").lstrip(": ")
            text = text[1:-1] if text.startswith("(") and text.endswith(")") else text
        raise StorageError(f"cannot open storage {_redact(url)!r}: {text[:240]}") from None


def _calibration_indices(n: int, k: int, seed: int) -> list[int]:
    """``k`` distinct training indices out of ``n``, seeded (the same images on a rerun)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:k].tolist()


def _time_per_batch(model, train_set, batch_size: int, lr: float, seed: int, batches: int = 3,
                    teacher=None) -> float:
    """Seconds per fine-tuning batch, measured on a copy of ``model`` (distilled from ``teacher`` if given)."""
    start = time.perf_counter()
    _finetune(lambda: copy.deepcopy(model), train_set, batches, lr=lr, batch_size=batch_size, seed=seed,
              teacher=teacher)
    return (time.perf_counter() - start) / batches


def _choice(trial: Any, choices: dict[str, Any]) -> dict[str, str]:
    """A trial's per-layer choice, every layer named ("dense" where the trial has none)."""
    return {name: trial.params.get(name, "dense") for name in choices}


def _families(choice: dict[str, str]) -> list[str]:
    return sorted({key.split(":")[0] for key in choice.values() if key != "dense"})


# --- the exploration ----------------------------------------------------------------------------------------


def explore(model_dir: str | os.PathLike, dataset: Any, config: ExploreConfig | None = None,
            **options: Any) -> ExploreResult:
    """Explore the compression design space of the model directory ``model_dir`` on ``dataset``: a built-in
    dataset's name, or your own data (a Dataset / DataLoader, a ``(train, val[, test])`` tuple or a
    ``{"train", "val", "test"}`` dict: :func:`tensorslim.data.user.splits`).

    ``config`` is an :class:`ExploreConfig`; or give its fields as keywords (``out=DIR, max_evals=...``). See the
    module docstring for the stages. Returns the parsed ``pareto.json`` (also written to ``config.out``).
    """
    if config is None:
        config = ExploreConfig(**options)
    elif options:
        raise TypeError(f"explore() takes a config or keyword options, not both ({', '.join(options)})")
    return _explore(Path(model_dir), dataset, config)


def _explore(model_dir: Path, dataset: Any, cfg: ExploreConfig) -> ExploreResult:
    model = modeldir.load(model_dir)
    meta = modeldir.read_meta(model_dir)
    if not meta.get("input_shape"):
        raise ExploreError(f"{model_dir / modeldir.MODEL_JSON}: no input_shape recorded")
    input_shape = tuple(meta["input_shape"])
    url = cfg.storage or f"sqlite:///{(cfg.out / 'study.db').resolve()}"
    if cfg.storage is None:
        cfg.out.mkdir(parents=True, exist_ok=True)
    store = open_storage(url)  # fail fast, before any work
    opts = dict(cfg.data_options or {})
    eval_split = cfg.eval_split
    if isinstance(dataset, str):
        train_set = data_mod.load(dataset, "train", cfg.data_dir, **opts)
        val_set = data_mod.load(dataset, "val", cfg.data_dir, **opts)
        test_set = data_mod.load(dataset, eval_split, cfg.data_dir, **opts)
        data_shape, dataset_name, data_record = tuple(val_set.input_shape), dataset, dataset
    else:  # your own Dataset / DataLoader: {"train", "val", "test"}, a tuple, or one training set
        if opts:
            raise ExploreError("data_options apply to a named dataset, not to your own Dataset or DataLoader")
        train_u, val_u, test_u, data_record = user_data.splits(dataset, seed=cfg.seed)
        train_set, val_set = train_u.dataset, val_u.dataset
        if test_u is None:
            cfg.log("note: no test split given: the front is reported on the validation split")
            eval_split = "val"
        test_set = test_u.dataset if test_u is not None else val_set
        data_shape, dataset_name = train_u.input_shape, None
        dataset = f"user:{data_record['fingerprint']}"
    if data_shape != input_shape:
        raise ExploreError(f"{model_dir}: the model takes {','.join(map(str, input_shape))} inputs, "
                           f"{dataset} has {','.join(map(str, data_shape))}")

    # 1-2. design space and pruning -------------------------------------------------------------------------
    deadline = Deadline(cfg.time_budget)
    spaces = enumerate_space(candidates(model, input_shape), cfg.methods, max_factors=cfg.max_factors,
                             multiple=targets.get(cfg.target).multiple if cfg.target else 1)
    seeds = add_warm_starts(model, input_shape, spaces, cfg.warm_start)  # their points join the layers' spaces
    cfg.out.mkdir(parents=True, exist_ok=True)
    errors = ErrorCache(cfg.out / "cache" / "errors.json")
    calib = None
    if cfg.calibration:  # rung (b): each point judged on the activations its layer really receives
        n = min(cfg.calibration, len(train_set))
        x = torch.stack([train_set[i][0] for i in _calibration_indices(len(train_set), n, cfg.seed)])
        calib = capture_inputs(model, [s.name for s in spaces], x)
    try:
        pruning = prune(spaces, max_error=cfg.max_error, cache=errors, log=cfg.log, calibration=calib)
    finally:
        errors.save()  # also when interrupted: a rerun reuses the errors computed so far
    check_not_empty(spaces, pruning)
    if calib is not None:
        pruning["calibration"] = {"dataset": dataset, "split": "train", "images": len(x), "seed": cfg.seed}
    cfg.log(f"design space: {pruning['points']['all']:,} layer points -> {pruning['points']['error-bound']:,} after "
            f"pruning ({pruning['points_removed_share']:.1%} of the layer points removed, judged by "
            f"{pruning['judged_by']}); whole-model space 10^{pruning['space_log10']['all']} -> "
            f"10^{pruning['space_log10']['error-bound']}")
    cfg.log("survivors per method: " + ", ".join(
        f"{m} {v['survivors']}/{v['points']}" + (f" (none: {v['vanished']['reason']})" if "vanished" in v else "")
        for m, v in sorted(pruning["methods"].items())))
    ev = _Evaluator(model, spaces, input_shape, target=cfg.target)
    if "latency" in cfg.objectives:  # stage (d): measured latency, only for the survivors of (a)-(c)
        lat_cache = LatencyCache(cfg.latency_cache or cfg.out / "cache" / "latency.json", cfg.latency_timer,
                                 repeats=cfg.latency_repeats)
        try:
            removed = ev.measure_latency(lat_cache, spaces, meta["spec"])
        finally:
            lat_cache.save()  # also when interrupted: a rerun reuses the measurements made so far
        after = [len(s.survivors) for s in spaces]
        pruning.update(pruning_report(spaces, cfg.max_error, pruning["judged_by"]))  # stage (d) per method too
        pruning["latency"] = {**describe(lat_cache), "removed": removed, "points_after": sum(after),
                             "space_log10_after": round(math.log10(math.prod(1 + n for n in after)), 3)}
        cfg.log(f"measured latency ({lat_cache.measured} new measurements): {sum(removed.values())} points not "
            f"faster than their dense layer removed, {sum(after)} left; survivors per method: " + ", ".join(
                f"{m} {v['survivors']}/{v['points']}" for m, v in sorted(pruning["methods"].items())))
        check_not_empty(spaces, pruning)
    reach = reachable(ev.base, spaces)
    pruning["reachable"] = reach
    for key, limit in (cfg.budget.limits if cfg.budget else ()):
        if key in reach and reach[key] > limit:
            cfg.log(f"note: after pruning no combination reaches {key}<={limit:g} (the smallest is {reach[key]:.3g} "
                    f"of the original's); a larger --max-error (now {cfg.max_error:g}) keeps more aggressive points")
    live = [s for s in spaces if s.survivors]

    # 3. low-fidelity search ------------------------------------------------------------------------------
    t_eval = time.perf_counter()
    base_val_lowfi = lowfi_accuracy(model, val_set, cfg.val_samples)
    t_eval = time.perf_counter() - t_eval
    # the budget's cost limits steer the sampler (Optuna trial constraints, set in the objective)
    limits = [(k, v) for k, v in (cfg.budget.limits if cfg.budget else ())
              if k in ("params", "macs", "memory", "latency")]
    constraints = (lambda t: [t.user_attrs[k] / ev.base[k] - v for k, v in limits]) if limits else None
    signature = hashlib.sha1(json.dumps({
        "layers": [layer_signature(s.ctx) for s in spaces], "dataset": dataset, "methods": sorted(cfg.methods),
        "objectives": cfg.objectives, "max_factors": cfg.max_factors, "max_error": cfg.max_error,
        "lowfi": cfg.low_fidelity, "val_samples": cfg.val_samples, "seed": cfg.seed, "sampler": cfg.sampler,
        "data": opts, "constraints": limits, **({"screen": cfg.screen} if cfg.screen else {}),
        **({"warm_start": [p.to_dict() for p in cfg.warm_start]} if cfg.warm_start else {}),
        "choices": [[s.name, [p.key for p in s.survivors]] for s in live],
        **({"target": cfg.target} if cfg.target else {})}, sort_keys=True).encode()).hexdigest()
    study_name = f"explore-{signature[:16]}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    objs = [OBJECTIVE[o] for o in cfg.objectives]
    directions = [o.direction for o in objs]
    if cfg.sampler == "nsga2":
        samp = optuna.samplers.NSGAIISampler(seed=cfg.seed, population_size=max(4, min(50, cfg.max_evals // 5)))
    else:
        samp = optuna.samplers.TPESampler(seed=cfg.seed, multivariate=True, n_startup_trials=max(4, cfg.max_evals // 5))
    try:
        study = create_or_load_study(study_name, store, directions=directions, sampler=samp,  # race-safe
                                     metric_names=[o.label for o in objs])
    except Exception as err:  # noqa: BLE001
        raise StorageError(f"cannot create study in {_redact(url)!r}: {str(err).splitlines()[0][:200]}") from None
    choices = {s.name: ["dense", *[p.key for p in s.survivors]] for s in live}

    def objective(trial) -> tuple[float, ...]:
        choice = {name: trial.suggest_categorical(name, keys) for name, keys in choices.items()}
        with _interrupt.allowed():  # Ctrl-C may stop the computation; the storage writes around it run whole
            if cfg.low_fidelity == "zeroshot":
                model_t = ev.build(choice)
            else:
                model_t, _ = _finetune(lambda: ev.build(choice), train_set, int(cfg.low_fidelity), lr=cfg.lr,
                                       batch_size=cfg.batch_size, seed=cfg.seed)
            acc = lowfi_accuracy(model_t, val_set, cfg.val_samples)
            c = ev.costs(model_t, choice)
        for k, v in c.items():
            trial.set_user_attr(k, v)
        for k, limit in limits:  # the samplers prefer feasible trials (feasible: every constraint <= 0)
            trial.set_constraint(k, c[k] / ev.base[k] - limit)
        return tuple(acc if o == "accuracy" else float(c[o]) for o in cfg.objectives)

    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    screened, warm = None, warm_trials(live, seeds)
    if not done:
        for ch in [dict.fromkeys(choices, "dense"), *warm]:  # the warm starts and their neighbours come first
            study.enqueue_trial(ch)
        if warm:
            cfg.log(f"warm start: {len(seeds)} plan(s) and {len(warm) - len(seeds)} neighbours are the first trials")
        if cfg.screen and cfg.max_evals // 2:  # rung (b) over whole models: its best are the first trials
            cands, screened = screen(live, lambda ch: {**ev.estimate(ch), **(
                {"latency": ev.latency_of(ch)} if ev.latency is not None else {})}, ev.base, cfg.objectives,
                limits, cfg.max_evals // 2, cfg.screen, cfg.seed)
            for ch in cands:
                study.enqueue_trial(ch)
            cfg.log(f"rung (b) screen: {screened['evaluated']:,} combinations judged by their summed layer "
                    f"errors in {screened['seconds']:.1f} s ({'all' if screened['exhaustive'] else 'NSGA-II'}); "
                    f"{screened['feasible']:,} meet the budget's costs, {screened['front']} not dominated; the "
                    f"{len(cands)} best are the first low-fidelity trials")
    todo = max(0, cfg.max_evals - len(done))
    cfg.log(f"study {study_name} in {_redact(url)}: {len(done)} trials done, running {todo} more")
    t_batch = _time_per_batch(model, train_set, cfg.batch_size, cfg.lr, cfg.seed)
    teacher = model.eval() if cfg.distill else None  # the full-fidelity batches run the teacher too
    t_full_batch = _time_per_batch(model, train_set, cfg.batch_size, cfg.lr, cfg.seed, teacher=teacher)
    lowfi_batches = 0 if cfg.low_fidelity == "zeroshot" else int(cfg.low_fidelity)
    t_full_eval = t_eval * len(val_set) / max(1, min(cfg.val_samples, len(val_set)))
    estimate = {"lowfi_s": todo * (t_eval + lowfi_batches * t_batch),
                "full_s": cfg.full_evals * (cfg.finetune_batches * t_full_batch + t_full_eval)}
    estimate["total_s"] = estimate["lowfi_s"] + estimate["full_s"]
    cfg.log(f"estimated wall time: {format_seconds(estimate['total_s'])} ({todo} low-fidelity trials ~"
            f"{format_seconds(estimate['lowfi_s'])}, up to {cfg.full_evals} full-fidelity fine-tunings of "
            f"{cfg.finetune_batches} batches ~{format_seconds(estimate['full_s'])}; measured here: "
            f"{t_batch * 1000:.0f} ms per batch, {t_full_batch * 1000:.0f} distilled, {t_eval:.1f} s per "
            "low-fidelity evaluation)"
            + (f"; time budget {format_seconds(cfg.time_budget)}" if cfg.time_budget else ""))
    # with a time budget the search leaves time for the finalists' fine-tuning (its estimate, at most half)
    reserve = min(estimate["full_s"], 0.5 * cfg.time_budget) if cfg.time_budget else 0.0
    search_deadline = Deadline(None if cfg.time_budget is None else
                               max(0.0, cfg.time_budget - deadline.elapsed() - reserve))
    if todo:  # the deadline is checked after each trial: at least one runs, so the front is never empty
        _interrupt.quiet_optuna_interrupts()
        with _interrupt.deferred():  # Ctrl-C stops a trial's computation (Optuna records it failed), never
            study.optimize(objective, n_trials=todo,  # Optuna's bookkeeping and storage writes half-way
                           callbacks=[Ticker(todo, "low-fidelity trials", cfg.log), search_deadline.stop_callback])
    if search_deadline.hit:
        cfg.log(f"time budget: the search stops after {format_seconds(deadline.elapsed())}, leaving "
                f"{format_seconds(reserve)} for the full-fidelity fine-tuning")
    if deadline.expired():
        cfg.log(f"time budget {format_seconds(cfg.time_budget)} reached after "
                f"{format_seconds(deadline.elapsed())}: the front is made of the trials done so far")
    trials = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]

    feasible = [t for t in trials if constraints is None or max(constraints(t)) <= 0]
    if constraints is not None:
        wanted = ", ".join(f"{k}<={v:g}" for k, v in limits)
        cfg.log(f"{len(feasible)} of {len(trials)} trials meet the budget's {wanted}"
                + ("" if feasible else "; the front is made of all trials"))
    pool = feasible or trials
    lowfi_front = [pool[i] for i in pareto_indices([minimised(t.values, objs) for t in pool])]
    # deduplicate equal choices (a resumed NSGA-II may repeat a point)
    uniq: dict[str, Any] = {}
    for t in lowfi_front:
        uniq.setdefault(json.dumps(t.params, sort_keys=True), t)
    lowfi_front = list(uniq.values())
    idx = promote(lowfi_front, objs, cfg.full_evals)
    chosen = [lowfi_front[i] for i in idx]
    cfg.log(f"low-fidelity front: {len(lowfi_front)} points; full-fidelity evaluation of {len(chosen)}")

    # 4. full fidelity ------------------------------------------------------------------------------------
    hifi, t_hifi = [], time.perf_counter()
    # with a time budget, each finalist's own batches are timed first: a factorized model can train several
    # times slower than the original whose batch made the estimate, and a fine-tune that cannot end in the
    # budget is skipped (not started and overrun), unless the front would otherwise stay empty
    projected = {} if cfg.time_budget is None else {
        t.number: cfg.finetune_batches * _time_per_batch(ev.build(_choice(t, choices)), train_set, cfg.batch_size,
                                                         cfg.lr, cfg.seed, teacher=teacher) + t_full_eval
        for t in chosen}
    if projected:
        cfg.log("finalists' fine-tunes, timed on their own batches: " + ", ".join(
            f"trial {n} ~{format_seconds(v)}" for n, v in projected.items())
            + f"; {format_seconds(deadline.left())} of the time budget left")
    skipped, in_order = [], [projected[t.number] for t in chosen] if projected else []
    for j, t in enumerate(chosen):
        if hifi and deadline.expired():  # at least one point is fine-tuned, so the front is never empty
            cfg.log(f"time budget reached: {len(chosen) - len(hifi) - len(skipped)} full-fidelity evaluations "
                    "skipped")
            break
        left = deadline.left()
        if projected and skip_for_time(in_order, j, left, bool(hifi)):
            skipped.append(t.number)
            cfg.log(f"  trial {t.number}: its fine-tuning would take ~{format_seconds(projected[t.number])} (its "
                    f"batches timed), more than the {format_seconds(left)} left of the time budget: skipped")
            continue
        choice = _choice(t, choices)
        model_t, rate = _finetune(lambda choice=choice: ev.build(choice), train_set, cfg.finetune_batches, lr=cfg.lr,
                                  batch_size=cfg.batch_size, seed=cfg.seed, teacher=teacher)
        val_acc = evaluate(model_t, val_set)["accuracy"]
        c = ev.costs(model_t, choice)
        hifi.append({"trial": t.number, "choice": choice, "model": model_t, "val_accuracy": val_acc,
                     "finetune_lr": rate,
                     "lowfi_accuracy": t.values[cfg.objectives.index("accuracy")], **c})
        left = (sum(in_order[j + 1:]) if projected else
                (time.perf_counter() - t_hifi) / len(hifi) * (len(chosen) - len(hifi) - len(skipped)))
        cfg.log(f"  [{len(hifi)}/{len(chosen)}] trial {t.number}: MACs {c['macs']:,} memory {c['memory']:,} "
                f"val acc {val_acc:.2f} %, ETA {format_seconds(left)}")
    front = [hifi[i] for i in pareto_indices([minimised({**h, "accuracy": h["val_accuracy"]}, objs) for h in hifi])]
    front.sort(key=lambda h: h["macs"])
    base_test = evaluate(model, test_set)["accuracy"]
    base_val = evaluate(model, val_set)["accuracy"]
    points = []
    for i, h in enumerate(front):
        h["id"] = f"p{i:02d}"
        h["accuracy"] = evaluate(h["model"], test_set)["accuracy"]
        rel = {k: h[k] / ev.base[k] for k in ("params", "macs", "memory", "latency") if k in h}
        rel["drop"] = base_test - h["accuracy"]
        points.append({
            "id": h["id"], "path": f"pareto/{h['id']}", "trial": h["trial"], "choices": h["choice"],
            "methods": _families(h["choice"]), "params": h["params"], "macs": h["macs"], "memory": h["memory"],
            "accuracy": h["accuracy"], "val_accuracy": h["val_accuracy"], "lowfi_accuracy": h["lowfi_accuracy"],
            **({"latency": h["latency"]} if "latency" in h else {}), "finetune_lr": h["finetune_lr"],
            "relative": rel,
        })
    # a budget no point meets: the front is still written (as a normal run does), then the error is raised
    missed: ExploreError | None = None
    try:
        selected = pick(points, cfg.budget)["id"] if cfg.budget is not None else None
    except ExploreError as err:
        if not points:
            raise
        selected, missed = None, err
    measured = _measure_selected(cfg, front, points, selected, model, input_shape)

    ref = [1.1 if o != "accuracy" else 1.0 for o in cfg.objectives]

    def normalised(p: dict[str, Any], acc_key: str) -> list[float]:
        return [(1.0 - p[acc_key] / 100.0) if o == "accuracy" else p[o] / ev.base[o] for o in cfg.objectives]

    pareto = {
        "format": FORMAT, "version": 1, "model": str(model_dir), "dataset": data_record,
        "objectives": list(cfg.objectives), "eval_split": eval_split, "target": cfg.target,
        "original": {**ev.base, "accuracy": base_test, "val_accuracy": base_val,
                     "lowfi_accuracy": base_val_lowfi},
        "pruning": pruning,
        "search": {"study": study_name, "storage": _redact(url), "sampler": cfg.sampler, "seed": cfg.seed,
                   "low_fidelity": cfg.low_fidelity, "val_samples": cfg.val_samples, "trials": len(trials),
                   "lowfi_front": len(lowfi_front), "full_evaluations": len(hifi),
                   "finetune_batches": cfg.finetune_batches, "distill": cfg.distill,
                   "estimate_s": {k: round(v, 3) for k, v in estimate.items()},
                   "wall_s": round(deadline.elapsed(), 3), "time_budget_s": cfg.time_budget,
                   "stopped_by_time_budget": deadline.hit or search_deadline.hit or bool(skipped),
                   "full_projected_s": {str(k): round(v, 1) for k, v in projected.items()},
                   "full_skipped_over_budget": skipped, "screen": screened,
                   "warm_start": {"plans": seeds, "trials": warm} if seeds else None,
                   "hypervolume_lowfi": hypervolume([normalised({**t.user_attrs, "a": t.values[
                       cfg.objectives.index("accuracy")]}, "a") for t in lowfi_front], ref),
                   "hypervolume": hypervolume([normalised(p, "val_accuracy") for p in points], ref),
                   "hypervolume_reference_point": ref},
        "budget": str(cfg.budget) if cfg.budget else None,
        "selected": selected,
        **({"selected_latency": measured} if measured else {}),
        "points": points,
    }
    trials_json = [{"trial": t.number, "choices": t.params, "methods": _families(t.params),
                    "lowfi_accuracy": t.values[cfg.objectives.index("accuracy")],
                    **{k: t.user_attrs[k] for k in ("params", "macs", "memory", "latency") if k in t.user_attrs}}
                   for t in trials]
    space_json = {"pruning": pruning, "layers": [{"layer": s.name, "dense": s.dense_cost(),
                                                 "survivors": [p.to_dict() for p in s.survivors]} for s in spaces]}

    # 5. write the results (all computed; each file or folder atomically). pareto.json goes first and comes
    # back last: whenever it exists, the files and folders it names are complete and belong to it.
    (cfg.out / "pareto.json").unlink(missing_ok=True)
    with _atomic.atomic_dir(cfg.out / "pareto") as tmp:
        for h in front:
            metrics = {"accuracy": {eval_split: h["accuracy"], "val": h["val_accuracy"]}, "params": h["params"],
                       "macs": h["macs"], "memory": h["memory"], "explore": {"trial": h["trial"],
                                                                           "choices": h["choice"]}}
            modeldir.save(h["model"], tmp / h["id"], dataset=dataset_name, metrics=metrics, input_shape=input_shape)
    if cfg.plots:
        _atomic.write_bytes(cfg.out / "plots" / "front.png", front_plot(pareto, trials_json, hifi))
        _atomic.write_bytes(cfg.out / "plots" / "methods.png", methods_plot(pareto, trials_json))
    if cfg.plots and cfg.report is not None:  # the HTML report over the original model and the Pareto set
        try:
            cfg.report([model_dir, *[cfg.out / "pareto" / h["id"] for h in front]], cfg.out / "report",
                   title=f"tensorslim explore: {model_dir.name} on {dataset}")
        except TensorSlimError as err:
            cfg.log(f"note: no HTML report ({str(err).splitlines()[0] if str(err) else type(err).__name__})")
    _atomic.write_text(cfg.out / "space.json", json.dumps(space_json, indent=1) + "\n")
    _atomic.write_text(cfg.out / "trials.json", json.dumps(trials_json, indent=1) + "\n")
    _atomic.write_text(cfg.out / "pareto.json", json.dumps(pareto, indent=2) + "\n")
    if missed is not None:
        raise ExploreError(f"{missed}; the front is in {cfg.out / 'pareto.json'}")
    if selected:
        sel = next(p for p in points if p["id"] == selected)
        cfg.log(f"budget {cfg.budget}: {selected} ({cfg.out / sel['path']}) macs x{sel['relative']['macs']:.3f} "
            f"params x{sel['relative']['params']:.3f} accuracy {sel['accuracy']:.2f} % "
            f"(drop {sel['relative']['drop']:.2f})")
    return ExploreResult(cfg.out, pareto)


def _measure_selected(cfg: ExploreConfig, front, points, selected, model, input_shape) -> dict[str, Any] | None:
    """The selected point's latency measured on the whole model against the original (``model_latency``, e.g.
    both exported and timed in alternation in ONNX Runtime), beside the table's estimate and the budget."""
    if not selected or cfg.model_latency is None or "latency" not in (cfg.budget or ()):
        return None
    h = next(h for h in front if h["id"] == selected)
    m = dict(cfg.model_latency(h["model"], model, input_shape))
    limit = cfg.budget.get("latency")
    est = next(p for p in points if p["id"] == selected)["relative"].get("latency")
    out = {"estimate": est, "measured": float(m["ratio"]), "ms": m.get("ms"), "dense_ms": m.get("dense_ms"),
           "budget": limit, "within_10_percent": float(m["ratio"]) <= limit * 1.1}
    cfg.log(f"selected {selected}: latency measured {out['measured']:.3f} of the original's (table estimate "
            f"{est:.3f}, budget {limit:g})" + ("" if out["within_10_percent"] else "; misses it by more than 10 %"))
    return out
