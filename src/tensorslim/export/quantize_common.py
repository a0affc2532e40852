"""What both int8 exports share: samples regrouped for a fixed batch, top-1 accuracy measured in a runtime
session, and the job around a model directory (destination, calibration source, evaluation dataset) with the
``exports[file name]`` record of ``metrics.json`` it ends with (schema in :mod:`tensorslim.records`).

:mod:`.quantize` (ONNX Runtime, QDQ) and :mod:`.quantize_pte` (PT2E, XNNPACK) build on it.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .. import data, modeldir, records
from .._atomic import write_text
from ._common import ExportError
from .verify import input_batches


def fixed_batches(xs: list[torch.Tensor], batch: int) -> list[torch.Tensor]:
    """The samples of ``xs`` regrouped in batches of exactly ``batch`` (repeated to fill one when there are
    fewer, the incomplete rest dropped): the inputs of a program or file with a fixed batch."""
    x = torch.cat(xs)
    if x.shape[0] < batch:
        x = x.repeat((-(-batch // x.shape[0]),) + (1,) * (x.ndim - 1))
    return [c for c in torch.split(x, batch) if c.shape[0] == batch]


def _measured(dataset: str | None, split: str, accuracy: float | None, fp32_accuracy: float | None, int8: str,
              fp32: str) -> str:
    """The summary's accuracy clause of an int8 export (empty when nothing was measured)."""
    if accuracy is None:
        return ""
    return (f"; {dataset} {split}: {int8} {accuracy:.2f} %, {fp32} {fp32_accuracy:.2f} % "
            f"({accuracy - fp32_accuracy:+.2f} pt)")


def _top1(path: str | os.PathLike, dataset: Any, split: str, data_dir: str | os.PathLike | None, batch_size: int,
          fixed: int | None, shape: tuple[int, ...] | None, run: Callable[[np.ndarray], np.ndarray]
          ) -> dict[str, Any]:
    """Top-1 accuracy of ``run`` (a runtime session: float32 ``(n, *shape)`` -> logits) on labelled data, fed in
    chunks of exactly ``fixed`` samples when the file has a fixed batch."""
    out: dict[str, Any] = {}
    if isinstance(dataset, str):
        out = {"dataset": dataset, "split": split}
        dataset = data.load(dataset, split, data_dir, augment=False)
    batches = data.batches(dataset, batch_size) if isinstance(dataset, Dataset) else dataset
    correct = total = 0
    for item in batches:
        if not (isinstance(item, (tuple, list)) and len(item) >= 2):
            raise ExportError(f"{path}: evaluation needs (x, y) batches, got {type(item).__name__}")
        x = input_batches(item[0], shape, samples=None, what="evaluation inputs")[0].numpy()
        y = np.asarray(item[1]).reshape(-1)
        n = x.shape[0]
        if y.shape[0] != n:
            raise ExportError(f"{path}: a batch of {n} inputs has {y.shape[0]} labels")
        if fixed and n != fixed:  # a fixed-batch file: pad with the first sample, keep the first n predictions
            x = np.concatenate([x, np.repeat(x[:1], fixed - n % fixed if n % fixed else 0, 0)])
        logits = np.concatenate([run(c) for c in (np.split(x, x.shape[0] // fixed) if fixed else [x])])[:n]
        if logits.ndim != 2:
            raise ExportError(f"{path}: the model's output has shape {logits.shape}, not (batch, classes)")
        if y.size and (y.min() < 0 or y.max() >= logits.shape[1]):
            raise ExportError(f"{path}: labels go up to {int(y.max())} but the model has {logits.shape[1]} outputs")
        correct += int((logits.argmax(1) == y).sum())
        total += n
    if not total:
        raise ExportError(f"{path}: no labelled samples to evaluate on")
    return {**out, "accuracy": 100.0 * correct / total, "samples": total, "correct": correct}


@dataclasses.dataclass
class _Job:
    """What both int8 exports start from: the destination, the metrics to add the record to (None: no record),
    the calibration source and the dataset that measures the file."""

    out: Path
    metrics: dict[str, Any] | None
    calib_name: str | None
    source: Any
    evaluate: str | None


def _job(target: str | os.PathLike, out: str | os.PathLike, calibrate: Any, evaluate: str | None, record: bool,
         data_dir: str | os.PathLike | None, kind: str) -> _Job:
    out = Path(out)
    if out.is_dir():
        raise ExportError(f"{out}: is a directory; give the path of the {kind} file to write")
    is_dir = modeldir.is_model_dir(target)
    metrics = modeldir.read_metrics(target) if is_dir and record else None  # a bad metrics.json fails first
    calib_name = calibrate if isinstance(calibrate, str) else None
    if evaluate == "auto":
        evaluate = calib_name or (modeldir.read_meta(target).get("dataset") if is_dir else None)
    source = data.load(calib_name, "train", data_dir, augment=False) if calib_name else calibrate
    return _Job(out, metrics, calib_name, source, evaluate)


def _add_record(job: _Job, target: str | os.PathLike, dest: Path, *, fmt: str, quantization: dict[str, Any],
                samples: int, seed: int, split: str, accuracy: float | None) -> dict[str, Any] | None:
    """The record of the int8 file ``dest`` (still under its temporary name) under ``exports[out's name]`` of
    ``job.metrics``, validated before anything is written; None when nothing is recorded."""
    if job.metrics is None:
        return None
    entry = {"format": fmt, "int8": True, "path": str(job.out), "bytes": dest.stat().st_size,
             "sha256": modeldir.sha256_file(dest), "quantization": quantization,
             "calibration": {"dataset": job.calib_name, "split": "train" if job.calib_name else None,
                             "samples": samples, "seed": seed},
             "evaluations": {job.evaluate: {split: round(accuracy, 4)}} if job.evaluate else {}}
    job.metrics.setdefault("exports", {})[job.out.name] = entry
    records.parse_metrics(json.loads(json.dumps(job.metrics)), f"{target}/{records.METRICS} (to be written)")
    return entry


def _write_record(job: _Job, target: str | os.PathLike) -> None:
    if job.metrics is not None:
        write_text(Path(target) / records.METRICS, json.dumps(job.metrics, indent=2) + "\n")
