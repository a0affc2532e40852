"""Whole-model design-space exploration: pruned per-layer design points, Optuna search, Pareto set.

``explore(model_dir, dataset, out=DIR, ...)``:

1. enumerates the per-layer design points and prunes them before any training (:mod:`.space`);
2. searches the product of the surviving points (plus "dense" per layer) with an Optuna multi-objective
   sampler (NSGA-II by default, TPE optional) at **low fidelity**: the accuracy on ``val_samples`` images of
   the validation split right after decomposition (``low_fidelity="zeroshot"``) or after a fine-tune of
   that many batches (``low_fidelity=N``);
3. re-evaluates at most ``full_evals`` points of the low-fidelity front at **full fidelity**: a fine-tune of
   ``finetune_batches`` batches, then the whole validation split; the Pareto set of those is the result;
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

import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .. import _atomic, modeldir
from ..errors import TensorSlimError
from ..study.pareto import Objective, hypervolume, minimised, pareto_indices
from ..study.progress import Ticker
from ..study.storage import StorageError as _SharedStorageError
from ..study.storage import create_or_load_study
from ..study.storage import open_storage as _shared_open_storage
from ..study.storage import redact as _redact
from .evaluate import _Evaluator, _finetune, lowfi_accuracy
from .latency import LatencyCache, LayerTimer, describe
from .pareto import Budget, parse_budget, pick
from .space import (
    DEFAULT_METHODS,
    ErrorCache,
    ExploreError,
    check_not_empty,
    enumerate_space,
    layer_signature,
    prune,
)

#: the objectives explore can optimise, by name
OBJECTIVE = {"macs": Objective("macs", unit="MACs"), "memory": Objective("memory", unit="bytes"),
             "params": Objective("params", unit="parameters"), "latency": Objective("latency", unit="ms"),
             "accuracy": Objective("accuracy", "maximize", "%")}
OBJECTIVES = tuple(OBJECTIVE)
DEFAULT_OBJECTIVES = ("macs", "memory", "accuracy")
FORMAT = "tensorslim-explore"

#: ``write(model_dirs, out_dir, *, title)``: what :func:`tensorslim.report.write_report` is
ReportWriter = Callable[..., Any]


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


def _check_objectives(objectives: Sequence[str]) -> tuple[str, ...]:
    objs = tuple(dict.fromkeys(objectives))
    bad = [o for o in objs if o not in OBJECTIVES]
    if bad:
        raise ExploreError(f"unknown objective {bad[0]!r}; choose from {', '.join(OBJECTIVES)}")
    if "accuracy" not in objs or len(objs) < 2:
        raise ExploreError("objectives must include accuracy and at least one cost (macs, memory, params, latency)")
    return objs


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


def _spread(indices: list[int], key: Callable[[int], float], k: int) -> list[int]:
    """At most ``k`` of ``indices``, evenly spaced along ``key`` (both ends included)."""
    if len(indices) <= k:
        return list(indices)
    ordered = sorted(indices, key=key)
    picks = sorted({round(i * (len(ordered) - 1) / (k - 1)) for i in range(k)}) if k > 1 else [0]
    return [ordered[i] for i in picks]


def _families(choice: dict[str, str]) -> list[str]:
    return sorted({key.split(":")[0] for key in choice.values() if key != "dense"})


# --- the exploration ----------------------------------------------------------------------------------------


def explore(
    model_dir: str | os.PathLike,
    dataset: str,
    *,
    out: str | os.PathLike,
    methods: Sequence[str] = DEFAULT_METHODS,
    objectives: Sequence[str] = DEFAULT_OBJECTIVES,
    max_evals: int = 100,
    budget: str | dict[str, float] | Budget | None = None,
    storage: str | None = None,
    sampler: str = "nsga2",
    seed: int = 0,
    max_factors: int = 3,
    max_error: float = 0.5,
    low_fidelity: str | int = "zeroshot",
    val_samples: int = 2000,
    full_evals: int = 20,
    finetune_batches: int = 200,
    lr: float = 0.01,
    batch_size: int = 64,
    eval_split: str = "test",
    data_dir: str | os.PathLike | None = None,
    data_options: dict[str, Any] | None = None,
    latency_cache: str | os.PathLike | None = None,
    latency_repeats: int = 30,
    latency_timer: LayerTimer | None = None,
    plots: bool = True,
    report: ReportWriter | None = None,
    log: Callable[[str], None] | None = print,
) -> ExploreResult:
    """Explore the compression design space of the model directory ``model_dir`` on ``dataset``.

    See the module docstring for the stages. Returns the parsed ``pareto.json`` (also written to ``out``).
    """
    import optuna

    from .. import _interrupt
    from .. import data as data_mod
    from ..surgery import candidates
    from ..train import evaluate

    log = log or (lambda _msg: None)
    objectives = _check_objectives(objectives)
    budget = parse_budget(budget)
    if sampler not in ("nsga2", "tpe"):
        raise ExploreError(f"sampler must be nsga2 or tpe, not {sampler!r}")
    if max_evals < 1 or full_evals < 1:
        raise ExploreError(f"max_evals and full_evals must be >= 1 (got {max_evals}, {full_evals})")
    if "latency" in objectives and latency_timer is None:
        raise ExploreError("the latency objective needs latency_timer= (module, input_shape, threads=, repeats=, "
                           "warmup=) -> ms, e.g. tensorslim.cli.explore.ort_layer_ms (ONNX Runtime)")
    if low_fidelity != "zeroshot" and not (isinstance(low_fidelity, int) and low_fidelity > 0):
        raise ExploreError(f"low_fidelity must be 'zeroshot' or a number of fine-tune batches, not {low_fidelity!r}")
    out = Path(out)
    model_dir = Path(model_dir)
    model = modeldir.load(model_dir)
    meta = modeldir.read_meta(model_dir)
    if not meta.get("input_shape"):
        raise ExploreError(f"{model_dir / modeldir.MODEL_JSON}: no input_shape recorded")
    input_shape = tuple(meta["input_shape"])
    url = storage or f"sqlite:///{(out / 'study.db').resolve()}"
    if storage is None:
        out.mkdir(parents=True, exist_ok=True)
    store = open_storage(url)  # fail fast, before any work
    opts = dict(data_options or {})
    train_set = data_mod.load(dataset, "train", data_dir, **opts)
    val_set = data_mod.load(dataset, "val", data_dir, **opts)
    test_set = data_mod.load(dataset, eval_split, data_dir, **opts)
    if tuple(val_set.input_shape) != input_shape:
        raise ExploreError(f"{model_dir}: the model takes {','.join(map(str, input_shape))} inputs, "
                           f"{dataset} has {','.join(map(str, val_set.input_shape))}")

    # 1-2. design space and pruning -------------------------------------------------------------------------
    spaces = enumerate_space(candidates(model, input_shape), methods, max_factors=max_factors)
    out.mkdir(parents=True, exist_ok=True)
    errors = ErrorCache(out / "cache" / "errors.json")
    try:
        pruning = prune(spaces, max_error=max_error, cache=errors, log=log)
    finally:
        errors.save()  # also when interrupted: a rerun reuses the errors computed so far
    check_not_empty(spaces, pruning)
    log(f"design space: {pruning['points']['all']:,} layer points -> {pruning['points']['error-bound']:,} after "
        f"pruning; whole-model space 10^{pruning['space_log10']['all']} -> 10^{pruning['space_log10']['error-bound']}"
        f" (a share of {1 - pruning['removed_share']['error-bound']:.3g} kept, before any training)")
    ev = _Evaluator(model, spaces, input_shape)
    if "latency" in objectives:  # stage (d): measured latency, only for the survivors of (a)-(c)
        lat_cache = LatencyCache(latency_cache or out / "cache" / "latency.json", latency_timer,
                                 repeats=latency_repeats)
        try:
            removed = ev.measure_latency(lat_cache, spaces, meta["spec"])
        finally:
            lat_cache.save()  # also when interrupted: a rerun reuses the measurements made so far
        after = [len(s.survivors) for s in spaces]
        pruning["latency"] = {**describe(lat_cache), "removed": removed, "points_after": sum(after),
                             "space_log10_after": round(math.log10(math.prod(1 + n for n in after)), 3)}
        log(f"measured latency ({lat_cache.measured} new measurements): {sum(removed.values())} points not "
            f"faster than their dense layer removed, {sum(after)} left")
        if not sum(after):
            raise ExploreError("design space is empty after pruning: stage (d) measured latency below the "
                               "original layer's removed the last points")
    live = [s for s in spaces if s.survivors]

    # 3. low-fidelity search ------------------------------------------------------------------------------
    base_val_lowfi = lowfi_accuracy(model, val_set, val_samples)
    signature = hashlib.sha1(json.dumps({
        "layers": [layer_signature(s.ctx) for s in spaces], "dataset": dataset, "methods": sorted(methods),
        "objectives": objectives, "max_factors": max_factors, "max_error": max_error, "lowfi": low_fidelity,
        "val_samples": val_samples, "seed": seed, "sampler": sampler, "data": opts,
        "choices": [[s.name, [p.key for p in s.survivors]] for s in live]}, sort_keys=True).encode()).hexdigest()
    study_name = f"explore-{signature[:16]}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    objs = [OBJECTIVE[o] for o in objectives]
    directions = [o.direction for o in objs]
    if sampler == "nsga2":
        samp = optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(50, max_evals // 5)))
    else:
        samp = optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=max(4, max_evals // 5))
    try:
        study = create_or_load_study(study_name, store, directions=directions, sampler=samp)  # race-safe
    except Exception as err:  # noqa: BLE001
        raise StorageError(f"cannot create study in {_redact(url)!r}: {str(err).splitlines()[0][:200]}") from None
    choices = {s.name: ["dense", *[p.key for p in s.survivors]] for s in live}

    def objective(trial) -> tuple[float, ...]:
        choice = {name: trial.suggest_categorical(name, keys) for name, keys in choices.items()}
        with _interrupt.allowed():  # Ctrl-C may stop the computation; the storage writes around it run whole
            if low_fidelity == "zeroshot":
                model_t = ev.build(choice)
            else:
                model_t, _ = _finetune(lambda: ev.build(choice), train_set, int(low_fidelity), lr=lr,
                                       batch_size=batch_size, seed=seed)
            acc = lowfi_accuracy(model_t, val_set, val_samples)
            c = ev.costs(model_t, choice)
        for k, v in c.items():
            trial.set_user_attr(k, v)
        return tuple(acc if o == "accuracy" else float(c[o]) for o in objectives)

    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        study.enqueue_trial(dict.fromkeys(choices, "dense"))
    todo = max(0, max_evals - len(done))
    log(f"study {study_name} in {_redact(url)}: {len(done)} trials done, running {todo} more")
    if todo:
        _interrupt.quiet_optuna_interrupts()
        with _interrupt.deferred():  # Ctrl-C stops a trial's computation (Optuna records it failed), never
            study.optimize(objective, n_trials=todo,  # Optuna's bookkeeping and storage writes half-way
                           callbacks=[Ticker(todo, "low-fidelity trials", log)])
    trials = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]

    lowfi_front = [trials[i] for i in pareto_indices([minimised(t.values, objs) for t in trials])]
    # deduplicate equal choices (a resumed NSGA-II may repeat a point)
    uniq: dict[str, Any] = {}
    for t in lowfi_front:
        uniq.setdefault(json.dumps(t.params, sort_keys=True), t)
    lowfi_front = list(uniq.values())
    idx = _spread(list(range(len(lowfi_front))), lambda i: lowfi_front[i].user_attrs["macs"], full_evals)
    chosen = [lowfi_front[i] for i in idx]
    log(f"low-fidelity front: {len(lowfi_front)} points; full-fidelity evaluation of {len(chosen)}")

    # 4. full fidelity ------------------------------------------------------------------------------------
    hifi = []
    for t in chosen:
        choice = {name: t.params.get(name, "dense") for name in choices}
        model_t, rate = _finetune(lambda choice=choice: ev.build(choice), train_set, finetune_batches, lr=lr,
                                  batch_size=batch_size, seed=seed)
        val_acc = evaluate(model_t, val_set)["accuracy"]
        c = ev.costs(model_t, choice)
        hifi.append({"trial": t.number, "choice": choice, "model": model_t, "val_accuracy": val_acc,
                     "finetune_lr": rate,
                     "lowfi_accuracy": t.values[objectives.index("accuracy")], **c})
        log(f"  trial {t.number}: MACs {c['macs']:,} memory {c['memory']:,} val acc {val_acc:.2f} %")
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
        selected = pick(points, budget)["id"] if budget is not None else None
    except ExploreError as err:
        if not points:
            raise
        selected, missed = None, err

    ref = [1.1 if o != "accuracy" else 1.0 for o in objectives]

    def normalised(p: dict[str, Any], acc_key: str) -> list[float]:
        return [(1.0 - p[acc_key] / 100.0) if o == "accuracy" else p[o] / ev.base[o] for o in objectives]

    pareto = {
        "format": FORMAT, "version": 1, "model": str(model_dir), "dataset": dataset, "objectives": list(objectives),
        "eval_split": eval_split,
        "original": {**ev.base, "accuracy": base_test, "val_accuracy": base_val,
                     "lowfi_accuracy": base_val_lowfi},
        "pruning": pruning,
        "search": {"study": study_name, "storage": _redact(url), "sampler": sampler, "seed": seed,
                   "low_fidelity": low_fidelity, "val_samples": val_samples, "trials": len(trials),
                   "lowfi_front": len(lowfi_front), "full_evaluations": len(hifi),
                   "finetune_batches": finetune_batches,
                   "hypervolume_lowfi": hypervolume([normalised({**t.user_attrs, "a": t.values[
                       objectives.index("accuracy")]}, "a") for t in lowfi_front], ref),
                   "hypervolume": hypervolume([normalised(p, "val_accuracy") for p in points], ref),
                   "hypervolume_reference_point": ref},
        "budget": str(budget) if budget else None,
        "selected": selected,
        "points": points,
    }
    trials_json = [{"trial": t.number, "choices": t.params, "methods": _families(t.params),
                    "lowfi_accuracy": t.values[objectives.index("accuracy")],
                    **{k: t.user_attrs[k] for k in ("params", "macs", "memory", "latency") if k in t.user_attrs}}
                   for t in trials]
    space_json = {"pruning": pruning, "layers": [{"layer": s.name, "dense": s.dense_cost(),
                                                 "survivors": [p.to_dict() for p in s.survivors]} for s in spaces]}

    # 5. write the results (all computed; each file or folder atomically). pareto.json goes first and comes
    # back last: whenever it exists, the files and folders it names are complete and belong to it.
    (out / "pareto.json").unlink(missing_ok=True)
    with _atomic.atomic_dir(out / "pareto") as tmp:
        for h in front:
            metrics = {"accuracy": {eval_split: h["accuracy"], "val": h["val_accuracy"]}, "params": h["params"],
                       "macs": h["macs"], "memory": h["memory"], "explore": {"trial": h["trial"],
                                                                           "choices": h["choice"]}}
            modeldir.save(h["model"], tmp / h["id"], dataset=dataset, metrics=metrics, input_shape=input_shape)
    if plots:
        from .plots import front_plot, methods_plot

        _atomic.write_bytes(out / "plots" / "front.png", front_plot(pareto, trials_json, hifi))
        _atomic.write_bytes(out / "plots" / "methods.png", methods_plot(pareto, trials_json))
    if plots and report is not None:  # the HTML report over the original model and the Pareto set
        try:
            report([model_dir, *[out / "pareto" / h["id"] for h in front]], out / "report",
                   title=f"tensorslim explore: {model_dir.name} on {dataset}")
        except TensorSlimError as err:
            log(f"note: no HTML report ({str(err).splitlines()[0] if str(err) else type(err).__name__})")
    _atomic.write_text(out / "space.json", json.dumps(space_json, indent=1) + "\n")
    _atomic.write_text(out / "trials.json", json.dumps(trials_json, indent=1) + "\n")
    _atomic.write_text(out / "pareto.json", json.dumps(pareto, indent=2) + "\n")
    if missed is not None:
        raise ExploreError(f"{missed}; the front is in {out / 'pareto.json'}")
    if selected:
        sel = next(p for p in points if p["id"] == selected)
        log(f"budget {budget}: {selected} ({out / sel['path']}) macs x{sel['relative']['macs']:.3f} "
            f"params x{sel['relative']['params']:.3f} accuracy {sel['accuracy']:.2f} % "
            f"(drop {sel['relative']['drop']:.2f})")
    return ExploreResult(out, pareto)
