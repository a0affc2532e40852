"""The end of a search: the Pareto set of the study, its hypervolume, and retraining it (and the baselines) at
full fidelity into model directories, ``pareto.json`` and, with a report writer passed in (the ``search``
command passes :func:`tensorslim.report.write_report`), a report."""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from optuna.trial import TrialState

from .. import _atomic, modeldir
from ..cost import profile
from ..errors import TensorSlimError
from ..models import resolve_factory
from ..study.pareto import hypervolume, minimised, pareto_indices
from ..study.progress import format_seconds
from ..train import TrainingDiverged, evaluate, train
from .estimate import final_estimate
from .objectives import OBJECTIVES, normalise
from .run import ATTR, DEFAULT_FINAL, Fidelity, SearchResult, _counts, _load_data, throughput
from .space import SearchSpace, count, spec

#: ``write(model_dirs, out_dir, *, title)``: what :func:`tensorslim.report.write_report` is
ReportWriter = Callable[..., Any]


def pareto_trials(study: Any) -> list[Any]:
    """Non-dominated COMPLETE trials on the study's objectives, one per architecture, by accuracy."""
    objectives = study.user_attrs[ATTR]["objectives"]
    trials = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if "values" in t.user_attrs]
    vecs = [minimised(t.user_attrs["values"], [OBJECTIVES[o] for o in objectives]) for t in trials]
    keep = [trials[i] for i in pareto_indices(vecs)]
    seen, out = set(), []
    for t in sorted(keep, key=lambda t: -t.user_attrs["values"]["accuracy"]):
        key = json.dumps(t.user_attrs["arch"], sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(t)
    return out


def study_hypervolume(study: Any, reference: dict[str, float] | None = None) -> tuple[float, dict[str, float]]:
    """Hypervolume of the study's COMPLETE trials (normalised, see :mod:`.objectives`) and the reference used."""
    defn = study.user_attrs[ATTR]
    objectives = defn["objectives"]
    if reference is None:
        space = SearchSpace.from_dict(defn["space"])
        big = space.max_architecture()
        params, macs = count(big)
        reference = {"params": params, "macs": macs, "latency": None}
        if "latency" in objectives:
            lat = [t.user_attrs["values"]["latency"] for t in study.get_trials(deepcopy=False, states=(
                TrialState.COMPLETE,)) if "values" in t.user_attrs]
            reference["latency"] = max(lat) * 1.1 if lat else 1.0
    pts = [normalise(t.user_attrs["values"], objectives, reference)
           for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if "values" in t.user_attrs]
    return hypervolume(pts, [1.0] * len(objectives)), reference


def _trial_entry(t: Any) -> dict[str, Any]:
    """A Pareto trial as results list it: its architecture and low-fidelity measurements."""
    a = t.user_attrs
    return {"summary": a["summary"], "arch": a["arch"], "params": a["params"], "macs": a["macs"],
            "low_fidelity": a["values"]}


def _select(trials: list[Any], top: int | None) -> list[Any]:
    """At most ``top`` trials spread evenly over the params axis (smallest and largest kept)."""
    if top is None or len(trials) <= top:
        return trials
    by_size = sorted(trials, key=lambda t: t.user_attrs["params"])
    if top == 1:
        return [max(trials, key=lambda t: t.user_attrs["values"]["accuracy"])]
    idx = sorted({round(i * (len(by_size) - 1) / (top - 1)) for i in range(top)})
    return [by_size[i] for i in idx]


def _finished(dest: Path, fid: Fidelity) -> dict[str, Any] | None:
    """The metrics of a model directory already trained and tested with this fidelity's epochs and
    augmentation, else None."""
    metrics_file = dest / modeldir.METRICS
    if not metrics_file.is_file():
        return None
    done = json.loads(metrics_file.read_text())
    if isinstance(done.get("accuracy"), dict) and "test" in done["accuracy"] and \
            done.get("final_epochs") == fid.epochs and done.get("final_augment") == fid.augment:
        return done
    return None


def train_final(model: torch.nn.Module, dest: Path, dataset: str, fid: Fidelity, *, data_dir: Any = None,
                image_size: int | None = None, dataset_options: dict[str, Any] | None = None, seed: int = 0,
                extra_metrics: dict[str, Any] | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train at full fidelity into the model directory ``dest`` (resumable), evaluate on the test split and
    record accuracy, params and MACs in its ``metrics.json``. Skips a directory that is already finished."""
    done = _finished(dest, fid)
    if done is not None:
        log(f"{dest}: already trained and evaluated")
        return done
    train_set, val_set, test_set = _load_data(dataset, data_dir, image_size, dataset_options or {}, fid.augment,
                                              ("train", "val", "test"))
    shape = tuple(train_set.input_shape)
    t0 = time.perf_counter()
    # val_batches=None: the whole validation split after every epoch; else a subset, after the last one only
    history = train(model, train_set, val_set if fid.val_batches is None else None, fid.train_config(seed),
                    out=dest, save_kwargs={"dataset": dataset, "input_shape": shape}, log=log)
    val_acc = history[-1].get("val_accuracy")
    if val_acc is None:
        val_acc = evaluate(model, val_set, max_batches=fid.val_batches)["accuracy"]
    test = evaluate(model, test_set)
    total = profile(model, shape).total
    metrics = {"accuracy": {"test": test["accuracy"], "val": val_acc},
               "params": int(total.params), "macs": int(total.macs), "final_epochs": fid.epochs,
               "final_max_batches": fid.max_batches, "final_augment": fid.augment,
               "train_seconds": round(time.perf_counter() - t0, 1),
               "history": history, **(extra_metrics or {})}
    modeldir.save(model, dest, dataset=dataset, input_shape=shape, metrics=metrics)
    log(f"{dest}: test acc {test['accuracy']:.2f}%, {int(total.params):,} params, {int(total.macs) / 1e6:.2f} M MACs")
    return metrics


def _train_or_diverged(label: str, *args: Any, log: Callable[[str], None], **kwargs: Any) -> dict[str, Any]:
    """:func:`train_final`, or ``{"diverged": reason}`` when its training diverges: one model's recipe failing
    must not cost the whole run (it is left out of the report and listed with no accuracy)."""
    try:
        return train_final(*args, log=log, **kwargs)
    except TrainingDiverged as err:
        log(f"{label}: final training diverged, left out: {err}")
        return {"diverged": str(err)}


def _accuracies(m: dict[str, Any]) -> dict[str, Any]:
    """The accuracy fields of a pareto.json entry from :func:`_train_or_diverged`'s result."""
    if "diverged" in m:
        return {"test_accuracy": None, "val_accuracy": None, "diverged": m["diverged"]}
    return {"test_accuracy": m["accuracy"]["test"], "val_accuracy": m["accuracy"].get("val")}


def baseline_spec(name: str, input_shape: Sequence[int], num_classes: int) -> dict[str, Any]:
    """Build spec of a reference model for this data (``input_size`` passed when its factory takes one)."""
    kwargs: dict[str, Any] = {"in_channels": int(input_shape[0]), "num_classes": int(num_classes)}
    try:
        if "input_size" in inspect.signature(resolve_factory(name)).parameters:
            kwargs["input_size"] = int(input_shape[1]) if input_shape[1] == input_shape[2] else list(input_shape[1:])
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        pass
    return {"builder": name, "kwargs": kwargs}


def _say_final_estimate(todo: list[tuple[str, Callable[[], torch.nn.Module], Path]], shape: Any, classes: Any,
                        final: Fidelity, dataset: str, data_dir: Any, image_size: int | None,
                        dataset_options: dict[str, Any] | None, log: Callable[[str], None]) -> dict[str, float]:
    """Time the finalists and baselines still to train, say how long their training will take, and return the
    seconds per model (recorded in pareto.json beside each model's measured ``train_seconds``)."""
    left = [(label, build()) for label, build, dest in todo if _finished(dest, final) is None]
    if not left:
        return {}
    train_set, val_set = _load_data(dataset, data_dir, image_size, dataset_options or {}, final.augment,
                                    ("train", "val"))
    est = final_estimate(left, shape, classes, final, len(train_set), len(val_set))
    log(f"final training: ~{format_seconds(sum(est.values()))} for {len(est)} model(s) x {final.epochs} epochs ("
        + ", ".join(f"{label} ~{format_seconds(s)}" for label, s in est.items())
        + "; from their own training batches timed here)")
    return {label: round(s, 3) for label, s in est.items()}


def finalize(
    study: Any,
    out: str | os.PathLike,
    *,
    final: Fidelity | None = None,
    final_top: int | None = 4,
    baselines: Sequence[str] = ("mobilenetv2", "resnet20"),
    data_dir: Any = None,
    image_size: int | None = None,
    dataset_options: dict[str, Any] | None = None,
    report: ReportWriter | None = None,
    seed: int = 0,
    storage_url: str | None = None,
    log: Callable[[str], None] = print,
) -> SearchResult:
    """Retrain the Pareto set and the baselines at full fidelity; write model directories, ``pareto.json`` and,
    with ``report`` (``write(model_dirs, out_dir, *, title)``, e.g. :func:`tensorslim.report.write_report`), a
    report under ``out``. Reruns skip what is finished."""
    if report and not callable(report):
        raise TensorSlimError(f"report must be a report writer such as tensorslim.report.write_report (or None); "
                              f"got {report!r}")
    if final_top is not None and (not isinstance(final_top, int) or final_top < 1):
        raise TensorSlimError(f"final_top must be a positive integer or None, got {final_top!r}")
    out = Path(out)
    defn = study.user_attrs[ATTR]
    dataset = defn["dataset"]
    final = final or DEFAULT_FINAL
    front = pareto_trials(study)
    chosen = _select(front, final_top)
    hv, reference = study_hypervolume(study)
    shape = chosen[0].user_attrs["arch"]["input_shape"] if chosen else None
    classes = chosen[0].user_attrs["arch"]["num_classes"] if chosen else None

    def build_finalist(t: Any) -> torch.nn.Module:
        torch.manual_seed(seed)
        return modeldir.build(spec(t.user_attrs["arch"]), t.user_attrs["arch"]["input_shape"])

    def build_baseline(name: str) -> torch.nn.Module:
        torch.manual_seed(seed)
        return modeldir.build(baseline_spec(name, shape, classes), shape)

    todo = [(f"trial {t.number}", lambda t=t: build_finalist(t), out / "pareto" / f"trial-{t.number:04d}")
            for t in chosen]
    todo += [(f"baseline {n}", lambda n=n: build_baseline(n), out / "baselines" / n)
             for n in (baselines if chosen else ())]
    final_est = _say_final_estimate(todo, shape, classes, final, dataset, data_dir, image_size, dataset_options,
                                    log)
    entries, dirs = [], []
    for t in chosen:
        dest = out / "pareto" / f"trial-{t.number:04d}"
        model = build_finalist(t)
        m = _train_or_diverged(f"trial {t.number}", model, dest, dataset, final, data_dir=data_dir,
                               image_size=image_size, dataset_options=dataset_options, seed=seed, log=log,
                               extra_metrics={"search": {"study": study.study_name, "trial": t.number,
                                                         "low_fidelity": t.user_attrs["values"]}})
        entry = {"trial": t.number, "dir": str(dest), **_trial_entry(t), **_accuracies(m)}
        entries.append(entry)
        if "diverged" not in entry:
            dirs.append(dest)
    base_entries = []
    for name in baselines if chosen else ():
        dest = out / "baselines" / name
        model = build_baseline(name)
        m = _train_or_diverged(f"baseline {name}", model, dest, dataset, final, data_dir=data_dir,
                               image_size=image_size, dataset_options=dataset_options, seed=seed, log=log)
        if "diverged" in m:
            base_entries.append({"model": name, "dir": str(dest), **_accuracies(m)})
            continue
        dirs.append(dest)
        base_entries.append({"model": name, "dir": str(dest), "params": m["params"], "macs": m["macs"],
                             **_accuracies(m)})
    result = SearchResult(study=study.study_name, storage=storage_url or "", counts=_counts(study),
                          pareto=entries, hypervolume=hv, out=str(out), baselines=base_entries)
    doc = {**result.to_dict(), "dataset": dataset, "objectives": defn["objectives"], "rank_mode": defn["rank_mode"],
           "fixed_ranks": defn["fixed_ranks"], "space": defn["space"], "hypervolume_reference": reference,
           "pareto_size": len(front), "final": dataclasses.asdict(final), "throughput": throughput(study),
           "final_estimate_s": final_est}
    # pareto.json is removed before the report is replaced and written after it: whenever it exists, what it
    # names is complete (an interrupted rerun leaves none, and the next rerun writes it again)
    (out / "pareto.json").unlink(missing_ok=True)
    if report and dirs:
        report(dirs, out / "report", title=f"tensorslim search: {study.study_name}")
        log(f"report: {out / 'report' / 'index.html'}")
    _atomic.write_text(out / "pareto.json", json.dumps(doc, indent=2) + "\n")
    return result

