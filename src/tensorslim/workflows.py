"""End-to-end jobs behind the CLI commands, usable from Python as they are.

Each job validates all its inputs (dataset present, model buildable, shapes compatible) before it writes
anything, so bad input leaves no output directory behind.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

from . import _atomic, data, modeldir
from . import plan as plan_mod
from .cost import profile
from .data import user as user_data
from .errors import ModelError, TensorSlimError
from .finetune import finetune
from .resolve import open_model, parse_shape, spec_for
from .surgery import compress_with_report, compression_table, output_errors, predict
from .train import TrainConfig, evaluate, finished_history, train


def _check_model_takes(model, input_shape: tuple[int, ...], where: str) -> None:
    """Run one batch-1 forward so a model/input mismatch fails now, with one line, not mid-training."""
    with torch.inference_mode():
        try:
            model.eval()(torch.zeros(1, *input_shape))
        except Exception as err:  # noqa: BLE001 - any failure here is a shape the model cannot take
            msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ModelError(f"{where} cannot take input shape {','.join(map(str, input_shape))}: {msg}") from None


def train_model(target: str, dataset: str, out: str | Path, *, data_dir: str | None = None, epochs: int = 10,
                batch_size: int = 128, optimizer: str = "sgd", lr: float | None = None,
                weight_decay: float | None = None, label_smoothing: float = 0.0, seed: int = 0,
                val_fraction: float = 0.1, model_kwargs: dict[str, Any] | None = None, augment: bool | None = None,
                log=print) -> dict[str, Any]:
    """Train a built-in or factory model on ``dataset``; writes (and resumes) the model directory ``out``.

    ``augment`` None uses the dataset's standard training augmentation (CIFAR/Imagenette crop + flip, none for
    the 28×28 sets); True forces random crop (+ flip where it makes sense), False turns it off.
    """
    done = _finished_run(out, dataset, epochs, log)
    if done is not None:
        return done
    info = data.info(dataset)
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr, weight_decay=weight_decay,
                      label_smoothing=label_smoothing, seed=seed)
    train_set = data.load(dataset, "train", data_dir, val_fraction=val_fraction, seed=seed, augment=augment)
    val_set = data.load(dataset, "val", data_dir, val_fraction=val_fraction, seed=seed)
    input_shape = tuple(train_set.input_shape)
    c, h, w = input_shape
    spec = spec_for(target, in_channels=c, num_classes=info.num_classes, input_size=h if h == w else None,
                    kwargs=model_kwargs)
    model = modeldir.build(spec, input_shape)
    _check_model_takes(model, input_shape, target)
    log(f"training {target} on {dataset}: {len(train_set)} train / {len(val_set)} val images, {epochs} epochs, "
        f"{optimizer} lr {cfg.lr}")
    history = train(model, train_set, val_set, cfg, out=out,
                    save_kwargs={"dataset": dataset, "input_shape": input_shape})
    result = evaluate_model(out, dataset, split="test", data_dir=data_dir, record=True, model=model)
    log(f"{dataset} test accuracy: {result['accuracy']:.2f}%")
    return {"history": history, **result}


def _finished_run(out: str | Path, dataset: str, epochs: int, log) -> dict[str, Any] | None:
    """The result of a finished ``train`` into ``out`` on ``dataset`` (its test accuracy recorded), read from
    the checkpoint and metrics.json without loading any data; None when there is more to do."""
    history = finished_history(out, epochs)
    if history is None or modeldir.read_meta(out).get("dataset") != dataset:
        return None
    accuracy = modeldir.read_metrics(out).get("accuracy")
    test = accuracy.get("test") if isinstance(accuracy, dict) else None
    if not isinstance(test, (int, float)):
        return None
    log(f"{out}: already trained for {len(history)} epochs; nothing to do")
    log(f"{dataset} test accuracy: {test:.2f}% (recorded)")
    return {"history": history, "dataset": dataset, "split": "test", "accuracy": float(test)}


def evaluate_model(path: str | Path, dataset: Any = None, *, split: str = "test", data_dir: str | None = None,
                   record: bool = True, model=None, force: bool = False, name: str = "user") -> dict[str, Any]:
    """Accuracy of the model directory ``path`` on a dataset split; with ``record``, kept in metrics.json.

    Every result is recorded under ``evaluations[dataset][split]``; ``accuracy[split]`` (what the report and
    other readers show) only for the model's own dataset. A dataset whose input shape or number of classes
    differ from the model's is refused unless ``force``. ``dataset`` may also be your own
    ``torch.utils.data.Dataset`` or ``DataLoader`` (:mod:`tensorslim.data.user`), recorded as
    ``evaluations[name][split]``.
    """
    if user_data.is_user_data(dataset):
        return _evaluate_user_data(path, dataset, split=split, record=record, model=model, name=name)
    meta = modeldir.read_meta(path)
    own = meta.get("dataset")
    dataset = dataset or own
    if not dataset:
        raise TensorSlimError(f"{path}: model.json names no dataset; pass --data NAME")
    info = data.info(dataset)
    recorded = tuple(meta.get("input_shape") or ())
    if not force and recorded and tuple(info.input_shape) != recorded:
        raise TensorSlimError(f"{path}: {dataset} images are {','.join(map(str, info.input_shape))} but the model "
                              f"takes {','.join(map(str, recorded))}; pass --force to evaluate anyway")
    model = model if model is not None else modeldir.load(path)
    outputs = _output_width(model, recorded or tuple(info.input_shape))
    if not force and outputs is not None and outputs != info.num_classes:
        raise TensorSlimError(f"{path}: {dataset} has {info.num_classes} classes but the model has {outputs} "
                              f"outputs; pass --force to evaluate anyway")
    ds = data.load(dataset, split, data_dir)
    _check_model_takes(model, tuple(ds.input_shape), str(path))
    result = {"dataset": dataset, "split": split, **evaluate(model, ds)}
    if record:
        metrics = modeldir.read_metrics(path)
        accuracy = round(result["accuracy"], 4)
        metrics.setdefault("evaluations", {}).setdefault(dataset, {})[split] = accuracy
        if own is None or dataset == own:
            metrics.setdefault("accuracy", {})[split] = accuracy
            metrics.setdefault("evaluated_on", {})[split] = dataset
        _atomic.write_text(Path(path) / modeldir.METRICS, json.dumps(metrics, indent=2) + "\n")
    return result


def _evaluate_user_data(path, dataset, *, split: str, record: bool, model, name: str) -> dict[str, Any]:
    if not isinstance(name, str) or not name or name in data.names():
        raise TensorSlimError(f"name must be a non-empty string that is not a built-in dataset's, not {name!r}")
    meta = modeldir.read_meta(path)
    given = user_data.as_dataset(dataset, f"{name} data")
    recorded = tuple(meta.get("input_shape") or ())
    if recorded and given.input_shape != recorded:
        raise TensorSlimError(f"{path}: the {name} images are {','.join(map(str, given.input_shape))} but the "
                              f"model takes {','.join(map(str, recorded))}")
    model = model if model is not None else modeldir.load(path)
    result = {"dataset": name, "split": split, **evaluate(model, given.dataset)}
    if record:
        metrics = modeldir.read_metrics(path)
        metrics.setdefault("evaluations", {}).setdefault(name, {})[split] = round(result["accuracy"], 4)
        _atomic.write_text(Path(path) / modeldir.METRICS, json.dumps(metrics, indent=2) + "\n")
    return result


def _output_width(model, input_shape: tuple[int, ...]) -> int | None:
    """The number of outputs of a batch-1 forward (classes), or None when it cannot be told here."""
    try:
        with torch.inference_mode():
            out = model.eval()(torch.zeros(1, *input_shape))
    except Exception:  # noqa: BLE001 - the shape check that follows reports it with one line
        return None
    return int(out.shape[-1]) if isinstance(out, torch.Tensor) and out.dim() == 2 else None


def inspect_model(target: str, *, input_shape: str | tuple[int, ...] | None = None,
                  weights: str | None = None) -> dict[str, Any]:
    """The cost profile of a model directory, built-in name or factory, as text and JSON."""
    shape = parse_shape(input_shape) if isinstance(input_shape, str) else input_shape
    model, shape = open_model(target, input_shape=shape, weights=weights)
    prof = profile(model, shape)
    text = f"{target}  input {'x'.join(map(str, shape))}\n{prof.table()}"
    record = getattr(model, modeldir.COMPRESSION_ATTR, None)
    if record:
        text += "\n\ncompressed layers (original → factorized)\n" + compression_table(record["layers"],
                                                                                        record.get("skipped", []))
    return {"json": {"target": target, "input_shape": list(shape), **prof.to_dict()}, "text": text,
            "profile": prof}


def compress_model(path: str | Path, plan, out: str | Path | None, *, evaluate_on: str | None = "auto",
                   data_dir: str | None = None, warn_error: float = 0.3, calibration: int = 256,
                   dry_run: bool = False, log=print, warn=None) -> dict[str, Any]:
    """Compress the model directory ``path`` with ``plan`` (dict, Plan or plan file) into the directory ``out``.

    With ``evaluate_on="auto"`` the test accuracy before fine-tuning is measured on the model's own dataset
    when that dataset is available here; ``None`` skips it.

    When the model's dataset is available, ``calibration`` training images go through the original and the
    compressed model and each compressed layer's relative OUTPUT error on them is measured
    (:func:`tensorslim.surgery.output_errors`: dense layer and replacement on the same input activation); it is
    recorded in metrics.json (``output_error``, ``calibration``) and every layer above ``warn_error`` gets one
    ``warning:`` line through ``warn`` (default: stderr). ``dry_run`` logs the predicted costs (analytic, no
    decomposition) and, with the data, the output errors, and writes nothing (``out`` may be None).
    """
    if warn is None:
        def warn(msg: str) -> None:
            print(msg, file=sys.stderr)
    if not isinstance(warn_error, (int, float)) or not warn_error >= 0:
        raise TensorSlimError(f"--warn-error {warn_error!r}: expected a number >= 0")
    if not isinstance(calibration, int) or calibration < 1:
        raise TensorSlimError(f"calibration {calibration!r}: expected a positive number of images")
    if out is None and not dry_run:
        raise TensorSlimError("compress needs --out DIR (or --dry-run)")
    if isinstance(plan, (str, Path)):
        plan = plan_mod.read(plan)
    meta = modeldir.read_meta(path)
    model = modeldir.load(path)
    input_shape = tuple(meta.get("input_shape") or ())
    dataset = meta.get("dataset")
    calib = _calibration_batch(dataset, data_dir, calibration, input_shape, log)
    if dry_run:
        predicted = predict(model, plan, input_shape or None)
        _check_compressed_some(predicted, path)
        errors = {}
        if calib is not None:
            compressed, report = compress_with_report(model, plan, input_shape or None)
            errors = output_errors(model, compressed, calib, [e["name"] for e in report.layers])
        before = profile(model, input_shape).total
        p1 = before.params - sum(e["params_before"] - e["params_after"] for e in predicted.layers)
        m1 = before.macs - sum(e["macs_before"] - e["macs_after"] for e in predicted.layers)
        log(_dry_run_table(predicted, errors, calib is not None))
        log(f"predicted params {before.params:,} → {p1:,} ({before.params / max(p1, 1):.2f}×), "
            f"MACs {before.macs:,} → {m1:,} ({before.macs / max(m1, 1):.2f}×)")
        _warn_output_errors(errors, warn_error, warn)
        log("dry run: nothing written")
        return {"report": predicted, "output_error": errors, "params": [before.params, p1],
                "macs": [before.macs, m1]}
    compressed, report = compress_with_report(model, plan, input_shape or None)  # the table below lists them
    _check_compressed_some(report, path)
    before, after = profile(model, input_shape), profile(compressed, input_shape)
    metrics: dict[str, Any] = {"params": after.total.params, "macs": after.total.macs,
                               "original": {"path": str(path), "params": before.total.params,
                                            "macs": before.total.macs,
                                            "accuracy": modeldir.read_metrics(path).get("accuracy", {})}}
    errors = {}
    if calib is not None:
        errors = output_errors(model, compressed, calib, [e["name"] for e in report.layers])
        metrics["output_error"] = {k: round(v, 6) if math.isfinite(v) else None for k, v in errors.items()}
        metrics["calibration"] = {"dataset": dataset, "split": "train", "images": len(calib)}
    if evaluate_on == "auto":
        evaluate_on = dataset if dataset and _dataset_found(dataset, data_dir) else None
    if evaluate_on:
        ds = data.load(evaluate_on, "test", data_dir)
        metrics["accuracy"] = {"test": round(evaluate(compressed, ds)["accuracy"], 4)}
        metrics["evaluated_on"] = {"test": evaluate_on}
    modeldir.save(compressed, out, spec=meta["spec"], input_shape=input_shape, dataset=dataset, metrics=metrics)
    log(report.table())
    log(f"params {before.total.params:,} → {after.total.params:,} "
        f"({before.total.params / after.total.params:.2f}×), MACs {before.total.macs:,} → {after.total.macs:,} "
        f"({before.total.macs / after.total.macs:.2f}×)"
        + (f", test accuracy before fine-tuning {metrics['accuracy']['test']:.2f}%" if evaluate_on else ""))
    _warn_output_errors(errors, warn_error, warn)
    return {"report": report, "metrics": metrics, "model": compressed, "output_error": errors}


def _check_compressed_some(report, path) -> None:
    if not report.layers:
        reasons = "; ".join(f"{s['name']}: {s['reason']}" for s in report.skipped[:3])
        raise TensorSlimError(f"the plan compressed no layer of {path}" + (f" ({reasons})" if reasons else ""))


def _calibration_batch(dataset: str | None, data_dir: str | None, n: int, input_shape: tuple[int, ...], log):
    """The first ``n`` training images of the model's own dataset (no augmentation), or None when the dataset
    is not available here or its images are not the model's input shape."""
    if not dataset or not _dataset_found(dataset, data_dir):
        return None
    ds = data.load(dataset, "train", data_dir, augment=False)
    if input_shape and tuple(ds.input_shape) != tuple(input_shape):
        log(f"note: {dataset} images are {','.join(map(str, ds.input_shape))}, the model takes "
            f"{','.join(map(str, input_shape))}: no output-error check")
        return None
    return next(iter(data.batches(ds, min(n, len(ds)), False, 0)))[0]


def _warn_output_errors(errors: dict[str, float], limit: float, warn) -> None:
    for name, err in errors.items():
        if err > limit:
            warn(f"warning: layer {name}: relative output error {err:.2f} on real data (> {limit:g}); "
                 f"expect a large accuracy drop before fine-tuning")


def _dry_run_table(report, errors: dict[str, float], measured: bool) -> str:
    """The predicted per-layer costs, and the measured output errors where there is data."""
    head = (f"{'layer':<26} {'method':<8} {'rank':<13} {'params':>23} {'×':>6} {'MACs':>27} {'×':>6} "
            f"{'out.err':>8}")
    rows = [head, "-" * len(head)]
    for e in report.layers:
        p0, p1, m0, m1 = e["params_before"], e["params_after"], e["macs_before"], e["macs_after"]
        err = f"{errors[e['name']]:.4f}" if e["name"] in errors else "-"
        rows.append(f"{e['name']:<26} {e['method']:<8} {str(e['rank']):<13} {p0:>11,}→{p1:<11,} "
                    f"{p0 / max(p1, 1):>6.2f} {m0:>13,}→{m1:<13,} {m0 / max(m1, 1):>6.2f} {err:>8}")
    rows += [f"{s['name']:<26} skipped: {s['reason']}" for s in report.skipped]
    if not measured:
        rows.append("(output errors need the model's dataset here)")
    return "\n".join(rows)


def _dataset_found(name: str, data_dir: str | None) -> bool:
    return any(s.name == name and s.found for s in data.available(data_dir))


def demo(dataset: str, out: Path, *, data_dir: str | None = None, model: str = "convnet", epochs: int = 4,
         budget: str = "macs<=0.3", finetune_epochs: float = 1.0, log=print) -> dict[str, Any]:
    """The default job, end to end: baseline → rank allocation for a budget → compress → fine-tune → ONNX →
    latency → a before/after table, ``demo.json`` and an HTML report under ``out``.

    The baseline is reused when ``out/<model>-baseline`` already holds a model trained for ``epochs`` epochs.
    """
    from .export import benchmark, export_target  # ONNX, ONNX Runtime and matplotlib: only the demo needs them
    from .report import write_report

    t0 = time.perf_counter()
    out = Path(out)
    base_dir, small_dir = out / f"{model}-baseline", out / f"{model}-compressed"
    history = modeldir.read_metrics(base_dir).get("history", []) if modeldir.is_model_dir(base_dir) else []
    if len(history) >= epochs and modeldir.read_metrics(base_dir).get("accuracy", {}).get("test") is not None:
        log(f"[1/5] reusing the baseline in {base_dir}")
    else:
        log(f"[1/5] training the {model} baseline on {dataset} for {epochs} epochs")
        train_model(model, dataset, base_dir, data_dir=data_dir, epochs=epochs, log=log)
    log(f"[2/5] allocating ranks for the budget {budget} from per-layer sensitivity, compressing, fine-tuning")
    finetune(base_dir, dataset, budget=budget, schedule="one-shot", epochs=finetune_epochs,
             out=small_dir, data_dir=data_dir, log=log)
    log("[3/5] exporting both models to ONNX and verifying them in ONNX Runtime")
    onnx_dir = out / "onnx"
    exports = {name: export_target(path, onnx_dir / f"{name}.onnx", data_dir=data_dir)
               for name, path in (("baseline", base_dir), ("compressed", small_dir))}
    # One intra-op thread, as on a small edge core: with more, ORT's per-op thread hand-off dominates a
    # model this small at batch 1, and a factorized model (more, smaller ops) pays it more often.
    log("[4/5] timing both in ONNX Runtime (1 thread), in alternation")
    bench = benchmark(str(exports["compressed"].path), against=str(exports["baseline"].path), batch_sizes=(1, 32),
                      labels=(small_dir.name, base_dir.name), threads=1, repeats=100)
    _atomic.write_text(small_dir / "bench.json", json.dumps(bench.to_dict(), indent=2) + "\n")
    log("[5/5] writing the report")
    report_dir = out / "report"
    write_report([base_dir, small_dir], report_dir, title=f"tensorslim demo: {model} on {dataset}")

    rows = _before_after(base_dir, small_dir, bench)
    table = _format_before_after(rows)
    summary = {"dataset": dataset, "model": model, "budget": budget, "rows": rows,
               "bench": bench.to_dict(), "report": str(report_dir / "index.html"),
               "seconds": round(time.perf_counter() - t0, 1)}
    _atomic.write_text(out / "demo.json", json.dumps(summary, indent=2) + "\n")
    log("\nONNX Runtime latency: median of 100 alternating runs, 1 thread\n" + table)
    log(f"\nreport: {report_dir / 'index.html'}   results: {out / 'demo.json'}   ({summary['seconds']:.0f} s)")
    return summary


def _before_after(base_dir: Path, small_dir: Path, bench) -> list[dict[str, Any]]:
    """One row per model: test accuracy, params, MACs and the median ORT latency at each batch size."""
    latency = {m.label: {t.batch: t.median_ms for t in m.timings} for m in bench.models}
    rows = []
    for path in (base_dir, small_dir):
        model = modeldir.load(path)
        total = profile(model, tuple(modeldir.read_meta(path)["input_shape"])).total
        rows.append({"model": path.name, "accuracy": modeldir.read_metrics(path).get("accuracy", {}).get("test"),
                     "params": total.params, "macs": total.macs, "latency_ms": latency.get(path.name, {})})
    return rows


def _format_before_after(rows: list[dict[str, Any]]) -> str:
    base = rows[0]
    batches = sorted(base["latency_ms"])
    head = f"{'model':<22} {'test acc':>9} {'params':>11} {'×':>6} {'MACs':>12} {'×':>6}" + "".join(
        f" {f'ORT b{b} ms':>11} {'×':>6}" for b in batches)
    lines = [head, "-" * len(head)]
    for r in rows:
        acc = f"{r['accuracy']:.2f}%" if r["accuracy"] is not None else "-"
        line = (f"{r['model']:<22} {acc:>9} {r['params']:>11,} {base['params'] / r['params']:>6.2f}"
                f" {r['macs']:>12,} {base['macs'] / r['macs']:>6.2f}")
        for b in batches:
            ms = r["latency_ms"].get(b)
            line += f" {ms:>11.3f} {base['latency_ms'][b] / ms:>6.2f}" if ms else f" {'-':>11} {'-':>6}"
        lines.append(line)
    return "\n".join(lines)
