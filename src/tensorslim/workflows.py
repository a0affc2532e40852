"""End-to-end jobs behind the CLI commands, usable from Python as they are.

Each job validates all its inputs (dataset present, model buildable, shapes compatible) before it writes
anything, so bad input leaves no output directory behind.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from . import _atomic, data, modeldir
from .errors import ModelError, TensorSlimError
from .resolve import open_model, parse_shape, spec_for
from .train import TrainConfig, evaluate, train


def _check_model_takes(model, input_shape: tuple[int, ...], where: str) -> None:
    """Run one batch-1 forward so a model/input mismatch fails now, with one line, not mid-training."""
    import torch

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


def evaluate_model(path: str | Path, dataset: str | None = None, *, split: str = "test", data_dir: str | None = None,
                   record: bool = True, model=None) -> dict[str, Any]:
    """Accuracy of the model directory ``path`` on a dataset split; with ``record``, kept in metrics.json."""
    meta = modeldir.read_meta(path)
    dataset = dataset or meta.get("dataset")
    if not dataset:
        raise TensorSlimError(f"{path}: model.json names no dataset; pass --data NAME")
    ds = data.load(dataset, split, data_dir)
    model = model if model is not None else modeldir.load(path)
    _check_model_takes(model, tuple(ds.input_shape), str(path))
    result = {"dataset": dataset, "split": split, **evaluate(model, ds)}
    if record:
        metrics = modeldir.read_metrics(path)
        metrics.setdefault("accuracy", {})[split] = round(result["accuracy"], 4)
        metrics.setdefault("evaluated_on", {})[split] = dataset
        _atomic.write_text(Path(path) / modeldir.METRICS, json.dumps(metrics, indent=2) + "\n")
    return result


def inspect_model(target: str, *, input_shape: str | tuple[int, ...] | None = None,
                  weights: str | None = None) -> dict[str, Any]:
    """The cost profile of a model directory, built-in name or factory, as text and JSON."""
    from .cost import profile

    shape = parse_shape(input_shape) if isinstance(input_shape, str) else input_shape
    model, shape = open_model(target, input_shape=shape, weights=weights)
    prof = profile(model, shape)
    text = f"{target}  input {'x'.join(map(str, shape))}\n{prof.table()}"
    record = getattr(model, modeldir.COMPRESSION_ATTR, None)
    if record:
        from .surgery import compression_table

        text += "\n\ncompressed layers (original → factorized)\n" + compression_table(record["layers"],
                                                                                        record.get("skipped", []))
    return {"json": {"target": target, "input_shape": list(shape), **prof.to_dict()}, "text": text,
            "profile": prof}


def compress_model(path: str | Path, plan, out: str | Path, *, evaluate_on: str | None = "auto",
                   data_dir: str | None = None, log=print) -> dict[str, Any]:
    """Compress the model directory ``path`` with ``plan`` (dict, Plan or plan file) into the directory ``out``.

    With ``evaluate_on="auto"`` the test accuracy before fine-tuning is measured on the model's own dataset
    when that dataset is available here; ``None`` skips it.
    """
    from . import plan as plan_mod
    from .cost import profile
    from .surgery import compress_with_report

    if isinstance(plan, (str, Path)):
        plan = plan_mod.read(plan)
    meta = modeldir.read_meta(path)
    model = modeldir.load(path)
    input_shape = tuple(meta.get("input_shape") or ())
    compressed, report = compress_with_report(model, plan, input_shape or None, log=log)
    if not report.layers:
        reasons = "; ".join(f"{s['name']}: {s['reason']}" for s in report.skipped[:3])
        raise TensorSlimError(f"the plan compressed no layer of {path}" + (f" ({reasons})" if reasons else ""))
    before, after = profile(model, input_shape), profile(compressed, input_shape)
    metrics: dict[str, Any] = {"params": after.total.params, "macs": after.total.macs,
                               "original": {"path": str(path), "params": before.total.params,
                                            "macs": before.total.macs,
                                            "accuracy": modeldir.read_metrics(path).get("accuracy", {})}}
    dataset = meta.get("dataset")
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
    return {"report": report, "metrics": metrics, "model": compressed}


def _dataset_found(name: str, data_dir: str | None) -> bool:
    return any(s.name == name and s.found for s in data.available(data_dir))


def demo(dataset: str, out: Path, *, data_dir: str | None = None, epochs: int = 3, log=print) -> dict[str, Any]:
    """The default job: train lenet5 on ``dataset``, evaluate it, and print its cost table."""
    model_dir = out / "lenet5"
    result = train_model("lenet5", dataset, model_dir, data_dir=data_dir, epochs=epochs, log=log)
    log(inspect_model(str(model_dir))["text"])
    log(f"\nmodel directory: {model_dir}  (test accuracy {result['accuracy']:.2f}%)")
    return result
