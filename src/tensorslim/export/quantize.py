"""int8 on top of factorization: ONNX Runtime static quantization, and accuracy measured on the int8 file.

:func:`quantize_onnx` turns an fp32 ``.onnx`` file into an int8 one with ONNX Runtime's static quantization:
QDQ format (``QuantizeLinear``/``DequantizeLinear`` pairs around each quantized op, which ORT's CPU provider
fuses into integer kernels such as ``QLinearConv`` when it loads the file), int8 weights with one scale per
output channel, and activation ranges calibrated on real inputs. The calibration inputs come from any source of
:func:`.verify.input_batches` (tensors, arrays, a ``Dataset``, a ``DataLoader``, an iterable of batches),
capped at ``samples`` and checked against the model's input shape first.

:func:`evaluate_onnx` measures an ``.onnx`` file's top-1 accuracy (fp32 or int8) in an ONNX Runtime session on a
dataset split. :func:`export_int8` does the whole job for a model directory: export to fp32 ONNX (verified
against PyTorch), quantize with a random sample of the **training** split, measure the int8 file on the
**test** split, and record that measurement under ``exports[file name]`` in the directory's ``metrics.json``
(schema in :mod:`tensorslim.records`). Accuracy is always the int8 file's own: nothing is copied from the fp32
model. The ``.onnx`` file is written under a temporary name and renamed only after it was quantized, run and
measured, and the record is validated before that; a failure leaves neither the file nor a record behind.

The phone runtime's int8 path is PT2E: :func:`quantize_pt2e` (``torch.export``, ``prepare_pt2e`` with
ExecuTorch's ``XNNPACKQuantizer``, calibration, ``convert_pt2e``, ``torch.export`` again) and
:func:`export_pte_int8`, which lowers that program to XNNPACK (:func:`.pte.lower_program`), verifies the
``.pte`` in ``executorch.runtime`` against the converted (fake-quantized) module within :data:`PTE_RTOL`,
measures its accuracy there (:func:`evaluate_pte`) and records it like the ONNX file (``format: "pte"``).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch.utils.data import Dataset

from .. import data, modeldir, records, train
from .._atomic import atomic_path, write_text
from ..resolve import open_model
from . import pte
from ._common import ExportError, one_line
from .diagnose import probe
from .graph import inspect_onnx
from .onnx import ExportResult, export_onnx, export_target
from .session import ort_session
from .verify import DEFAULT_SAMPLES, VerificationError, compare, input_batches

#: Activation types ORT's static quantization takes; weights are always int8. uint8 is the default: on x86, ORT's
#: integer kernels (MLAS) multiply u8 x s8 natively (VPMADDUBSW and VNNI's VPDPBUSD take one unsigned and one
#: signed operand). The CPU provider fuses either into the same graph (QLinearConv, QGemm, NHWC MaxPool), and
#: benchmarks/bench_int8.py times the two files in alternation: equal within the noise on the reference machine.
ACTIVATIONS = ("uint8", "int8")
#: Calibration methods (``onnxruntime.quantization.CalibrationMethod``): min/max of the activations, the
#: 99.999th percentile, or the range minimising the KL divergence of the histogram.
METHODS = {"minmax": "MinMax", "percentile": "Percentile", "entropy": "Entropy"}


@dataclasses.dataclass
class QuantizeResult:
    """The outcome of :func:`quantize_onnx`; ``to_dict()`` is JSON-able."""

    path: Path
    file_bytes: int
    fp32_bytes: int
    samples: int  # calibration samples used
    activations: str  # "uint8" or "int8"
    per_channel: bool
    method: str
    ops: dict[str, int]
    max_rel_err: float  # max |int8 - fp32| / max |fp32| over the calibration samples
    agreement: float  # fraction of calibration samples whose top-1 class is the fp32 file's

    @property
    def size_ratio(self) -> float:
        """fp32 file bytes over int8 file bytes."""
        return self.fp32_bytes / self.file_bytes

    def quantization(self) -> dict[str, Any]:
        """The settings, as recorded in ``metrics.json``."""
        return {"tool": "onnxruntime.quantize_static", "format": "QDQ", "weights": "int8",
                "activations": self.activations, "per_channel": self.per_channel, "method": self.method}

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "file_bytes": self.file_bytes, "fp32_bytes": self.fp32_bytes,
                "size_ratio": self.size_ratio, "samples": self.samples, **self.quantization(),
                "ops": dict(self.ops), "max_rel_err": self.max_rel_err, "agreement": self.agreement}


def onnx_input(path: str | os.PathLike) -> tuple[str, int | None, tuple[int, ...] | None]:
    """The first graph input of an ONNX file: (name, fixed batch or None, sample shape or None when symbolic)."""
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # noqa: BLE001 - protobuf and onnx raise many types
        raise ExportError(f"{path}: not a readable ONNX file ({one_line(err)})") from None
    inits = {t.name for t in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in inits]
    if not inputs:
        raise ExportError(f"{path}: the graph has no input")
    dims = inputs[0].type.tensor_type.shape.dim
    fixed = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    batch = fixed[0] if fixed else None
    shape = tuple(fixed[1:]) if fixed and all(d is not None for d in fixed[1:]) else None
    return inputs[0].name, batch, shape


def calibration_batches(source: Any, path: str | os.PathLike, *, samples: int = DEFAULT_SAMPLES,
                        batch_size: int = 32, seed: int | None = 0) -> list[np.ndarray]:
    """Calibration inputs for the ONNX file ``path`` as float32 ``(n, C, H, W)`` arrays, at most ``samples``.

    ``source``: any source of :func:`.verify.input_batches` (a map-style Dataset is sampled at random with
    ``seed``). Each sample must have the file's input shape. A file with a fixed batch gets batches of exactly
    that size (the samples repeated to fill one when there are fewer, the incomplete rest dropped).
    """
    _, fixed, shape = onnx_input(path)
    xs = input_batches(source, shape, samples=samples, batch_size=fixed or batch_size, seed=seed,
                       what="calibration inputs")
    return [x.numpy() for x in (fixed_batches(xs, fixed) if fixed else xs)]


def fixed_batches(xs: list[torch.Tensor], batch: int) -> list[torch.Tensor]:
    """The samples of ``xs`` regrouped in batches of exactly ``batch`` (repeated to fill one when there are
    fewer, the incomplete rest dropped): the inputs of a program or file with a fixed batch."""
    x = torch.cat(xs)
    if x.shape[0] < batch:
        x = x.repeat((-(-batch // x.shape[0]),) + (1,) * (x.ndim - 1))
    return [c for c in torch.split(x, batch) if c.shape[0] == batch]


def _reader(name: str, batches: list[np.ndarray]) -> Any:
    """An ``onnxruntime.quantization.CalibrationDataReader`` over ``batches`` (rewindable)."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.rewind()

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

        def rewind(self) -> None:
            self._it: Iterator[dict[str, np.ndarray]] = iter({name: b} for b in batches)

    return Reader()


def _check_options(activations: str, method: str, per_channel: Any) -> None:
    if activations not in ACTIVATIONS:
        raise ExportError(f"activations must be one of {', '.join(ACTIVATIONS)}, got {activations!r}")
    if method not in METHODS:
        raise ExportError(f"calibration method must be one of {', '.join(METHODS)}, got {method!r}")
    if not isinstance(per_channel, bool):
        raise ExportError(f"per_channel must be true or false, got {per_channel!r}")


def _quantize(fp32_path: Path, dest: Path, batches: list[np.ndarray], *, per_channel: bool, activations: str,
              method: str) -> QuantizeResult:
    """Quantize ``fp32_path`` into ``dest`` (written in place: callers pass a temporary) and run it against fp32."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    name, _, _ = onnx_input(fp32_path)
    qtype = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}[activations]
    with tempfile.TemporaryDirectory(prefix="tensorslim-quant-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        try:
            # Shape inference (which the quantizer needs for per-channel axes) and ORT's fusions before the
            # QDQ pairs are placed, so that each fused op is quantized once.
            quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=False)
            quantize_static(str(pre), str(dest), _reader(name, batches), quant_format=QuantFormat.QDQ,
                            per_channel=per_channel, weight_type=QuantType.QInt8, activation_type=qtype,
                            calibrate_method=getattr(CalibrationMethod, METHODS[method]))
        except Exception as err:  # noqa: BLE001 - the quantizer raises what its ops raise
            raise ExportError(f"{fp32_path}: ONNX Runtime cannot quantize the model ({one_line(err)})") from None
    reference, quantized = ort_session(fp32_path, pad_channels=False), ort_session(dest, pad_channels=False)
    max_rel, agree, total = 0.0, 0, 0
    for b in batches:
        try:
            ref, got = reference.run(None, {name: b}), quantized.run(None, {name: b})
        except Exception as err:  # noqa: BLE001 - ORT's own exception types
            raise VerificationError(f"{dest.name}: ONNX Runtime cannot run the int8 model ({one_line(err)})") from None
        max_rel = max(max_rel, compare([torch.from_numpy(r) for r in ref], got, dest.name)[1])
        if ref[0].ndim == 2:
            agree += int((ref[0].argmax(1) == got[0].argmax(1)).sum())
        total += b.shape[0]
    return QuantizeResult(path=dest, file_bytes=dest.stat().st_size, fp32_bytes=Path(fp32_path).stat().st_size,
                          samples=total, activations=activations, per_channel=per_channel, method=method,
                          ops=inspect_onnx(dest).ops, max_rel_err=float(max_rel), agreement=agree / total)


def quantize_onnx(fp32_path: str | os.PathLike, out_path: str | os.PathLike, calibration: Any, *,
                  per_channel: bool = True, samples: int = DEFAULT_SAMPLES, activations: str = "uint8",
                  method: str = "minmax", batch_size: int = 32, seed: int | None = 0) -> QuantizeResult:
    """Quantize the fp32 ONNX file ``fp32_path`` to int8 (QDQ) into ``out_path``, calibrated on ``calibration``.

    Args:
        calibration: real inputs: a tensor or array ``(N, C, H, W)``, a ``Dataset`` or ``DataLoader`` yielding
            ``x`` or ``(x, y)``, or any iterable of batches (:func:`.verify.input_batches`). Samples must have
            the file's input shape and finite values.
        per_channel: one weight scale per output channel (else one per tensor).
        samples: at most this many calibration samples (a Dataset: a random subset drawn with ``seed``).
        activations: ``"uint8"`` (default; see :data:`ACTIVATIONS`) or ``"int8"``; weights are always int8.
        method: ``"minmax"``, ``"percentile"`` or ``"entropy"`` (:data:`METHODS`).

    ``out_path`` is written atomically, after the int8 file was run in ONNX Runtime on the calibration inputs
    beside the fp32 one (``max_rel_err`` and ``agreement`` of the result). Raises ExportError (one line) for bad
    arguments, bad calibration inputs or a model the quantizer cannot take.
    """
    _check_options(activations, method, per_channel)
    fp32_path, out_path = Path(fp32_path), Path(out_path)
    if out_path.is_dir():
        raise ExportError(f"{out_path}: is a directory; give the path of the .onnx file to write")
    batches = calibration_batches(calibration, fp32_path, samples=samples, batch_size=batch_size, seed=seed)
    with atomic_path(out_path) as tmp:
        result = _quantize(fp32_path, tmp, batches, per_channel=per_channel, activations=activations,
                           method=method)
    result.path = out_path
    return result


def evaluate_onnx(path: str | os.PathLike, dataset: Any, split: str = "test", *,
                  data_dir: str | os.PathLike | None = None, batch_size: int = 256,
                  threads: int | None = None) -> dict[str, Any]:
    """Top-1 accuracy (percent) of the ONNX file ``path`` in an ONNX Runtime CPU session, on labelled data.

    ``dataset``: a dataset name (its ``split``, no augmentation), a ``Dataset`` of ``(x, y)`` samples, or an
    iterable of ``(x, y)`` batches. The file is run exactly as written (no graph pass). Returns ``{"accuracy",
    "samples", "correct"}``, plus ``"dataset"`` and ``"split"`` for a name.
    """
    name, fixed, shape = onnx_input(path)
    sess = ort_session(path, threads=threads, pad_channels=False)
    return _top1(path, dataset, split, data_dir, batch_size, fixed, shape, lambda x: sess.run(None, {name: x})[0])


def evaluate_pte(path: str | os.PathLike, dataset: Any, split: str = "test", *,
                 data_dir: str | os.PathLike | None = None, batch_size: int = 256) -> dict[str, Any]:
    """Top-1 accuracy (percent) of the ExecuTorch program ``path`` (fp32 or int8) in a plain
    ``executorch.runtime`` session, as :func:`evaluate_onnx` measures an ONNX file: same arguments and result.
    The program's fixed batch is filled with repeats of a batch's first sample; only real samples count."""
    method = pte.load_method(path)
    fixed, shape = pte.method_input(method, path)
    where = Path(path).name

    def run(x: np.ndarray) -> np.ndarray:
        return pte.execute(method, torch.from_numpy(x), where, quiet=False)[0].numpy()

    with pte._silenced():  # once around the loop: silencing costs far more than a small program's run
        return _top1(path, dataset, split, data_dir, batch_size, fixed, shape, run)


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
class Int8Export:
    """The outcome of :func:`export_int8`: the fp32 export, the quantization and both files' measured accuracy."""

    fp32: ExportResult  # the verified fp32 export the int8 file was made from (a temporary file, removed)
    quantized: QuantizeResult
    dataset: str | None
    split: str
    accuracy: float | None  # the int8 file's, measured
    fp32_accuracy: float | None  # the fp32 file's, measured the same way
    record: dict[str, Any] | None  # what metrics.json got under exports[file name]; None: nothing recorded

    def summary(self) -> str:
        q = self.quantized
        line = (f"{q.path}: {q.file_bytes:,} bytes int8 ({q.size_ratio:.2f}x smaller than fp32 "
                f"{q.fp32_bytes:,}), calibrated on {q.samples} samples, top-1 agreement with fp32 "
                f"{100 * q.agreement:.1f} %")
        if self.accuracy is not None:
            line += (f"; {self.dataset} {self.split}: int8 {self.accuracy:.2f} %, fp32 {self.fp32_accuracy:.2f} % "
                     f"({self.accuracy - self.fp32_accuracy:+.2f} pt)")
        return line


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


def export_int8(target: str | os.PathLike, /, out: str | os.PathLike, calibrate: Any, *,
                samples: int = DEFAULT_SAMPLES, evaluate: str | None = "auto", split: str = "test",
                data_dir: str | os.PathLike | None = None, input_shape: Any = None, weights: str | None = None,
                per_channel: bool = True, activations: str = "uint8", method: str = "minmax", seed: int = 0,
                record: bool = True, log: Callable[[str], None] | None = None, **options: Any) -> Int8Export:
    """Export ``target`` (a model directory or name) to an int8 ONNX file ``out`` and measure its accuracy.

    ``calibrate``: a dataset name (a random sample of ``samples`` images of its **training** split, no
    augmentation) or any source of :func:`.verify.input_batches`. ``evaluate``: the dataset whose ``split``
    (default test) measures both files (``"auto"``: ``calibrate`` when it is a name, else the model's own
    dataset; None: no accuracy). With ``record`` and a model directory, the measurement goes to its
    ``metrics.json`` under ``exports[out's file name]`` (:func:`tensorslim.records.parse_exports`).
    ``options`` go to :func:`.onnx.export_target` (``opset``, ``batch``, ``rtol``, ``exporter``, ``target``,
    ``realise``).
    """
    log = log or (lambda _msg: None)
    _check_options(activations, method, per_channel)
    job = _job(target, out, calibrate, evaluate, record, data_dir, ".onnx")
    if "passes" in inspect.signature(export_onnx).parameters:  # the exporter's graph passes: none for int8, since
        options.setdefault("passes", [])  # channel padding serves ORT's float NCHWc kernels; in int8 it is zeros
    with tempfile.TemporaryDirectory(prefix="tensorslim-int8-") as tmp:
        log(f"exporting {target} to fp32 ONNX and verifying it against PyTorch")
        fp32 = export_target(target, Path(tmp) / "fp32.onnx", input_shape=input_shape, weights=weights,
                             dataset=job.evaluate, data_dir=data_dir, **options)
        batches = calibration_batches(job.source, fp32.path, samples=samples, seed=seed)
        log(f"quantizing to int8 (QDQ, per-channel weights) on {sum(len(b) for b in batches)} calibration samples")
        with atomic_path(job.out) as dest:
            q = _quantize(fp32.path, dest, batches, per_channel=per_channel, activations=activations,
                          method=method)
            accuracy = fp32_accuracy = None
            if job.evaluate:
                log(f"measuring both files on {job.evaluate} {split} in ONNX Runtime")
                test = data.load(job.evaluate, split, data_dir, augment=False)
                accuracy = evaluate_onnx(dest, test)["accuracy"]
                fp32_accuracy = evaluate_onnx(fp32.path, test)["accuracy"]
            entry = _add_record(job, target, dest, fmt="onnx", quantization=q.quantization(), samples=q.samples,
                                seed=seed, split=split, accuracy=accuracy)
    q.path = job.out
    _write_record(job, target)
    return Int8Export(fp32=fp32, quantized=q, dataset=job.evaluate, split=split, accuracy=accuracy,
                      fp32_accuracy=fp32_accuracy, record=entry)


# --- int8 ExecuTorch programs: PT2E with XNNPACK's quantizer -------------------------------------------------

#: The tolerance of an int8 ``.pte`` against the converted (fake-quantized) PyTorch module, on
#: ``max |executorch - reference| / max |reference|``. The two compute the same quantized network but round
#: differently: XNNPACK requantizes each layer's int32 accumulator with a fixed-point multiplier, the reference
#: dequantizes, computes in float32 and rounds again, so an activation near a rounding boundary can land one
#: int8 step apart, and that step travels on through every later layer to the output. One output step is
#: (calibrated output range) / 255, about 1/255 to 2/255 of the largest output; a correct program is a few
#: steps off, more in a deeper network where more flips add up. 10 % allows some 12-25 output steps; a wrong
#: scale, zero point, layout or weight is off by order 1 (100 %).
PTE_RTOL = 0.1


def quantize_pt2e(model: torch.nn.Module, example: torch.Tensor, calibration: list[torch.Tensor], *,
                  per_channel: bool = True) -> tuple[torch.nn.Module, torch.export.ExportedProgram]:
    """PT2E static int8 quantization of ``model`` for XNNPACK, calibrated on real inputs.

    ``torch.export`` on ``example`` (its batch is the program's fixed batch), ``prepare_pt2e`` with
    ``XNNPACKQuantizer`` (symmetric int8 weights, one scale per output channel with ``per_channel``; int8
    activations with observed ranges), every ``calibration`` batch (each of ``example``'s shape) run through the
    observers, ``convert_pt2e``, and ``torch.export`` again. Returns the converted (fake-quantized) module, the
    reference the program is verified against, and its exported program, ready for :func:`.pte.lower_program`.
    """
    pte.edge()
    program = pte.export_program(model, example)
    try:
        with pte._silenced():
            from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
                XNNPACKQuantizer,
                get_symmetric_quantization_config,
            )
            from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

            quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=per_channel))
            prepared = prepare_pt2e(program.module(), quantizer)
            with torch.no_grad():
                for x in calibration:
                    prepared(x)
            converted = convert_pt2e(prepared)
            return converted, torch.export.export(converted, (example,))
    except ImportError:
        raise pte.EdgeUnavailableError(pte.EDGE_HINT) from None
    except Exception as err:  # noqa: BLE001 - the quantizer and torch.export raise many types
        raise ExportError(f"PT2E quantization (XNNPACKQuantizer) failed: {one_line(err)}") from None


@dataclasses.dataclass
class Int8PteExport:
    """The outcome of :func:`export_pte_int8`: the lowered program (verified against the fake-quantized module)
    and its accuracy measured in ``executorch.runtime``."""

    program: pte.PteResult
    samples: int  # calibration samples
    dataset: str | None
    split: str
    accuracy: float | None  # the .pte file's, measured in executorch.runtime
    fp32_accuracy: float | None  # the fp32 PyTorch model's, on the same split
    record: dict[str, Any] | None

    def quantization(self) -> dict[str, Any]:
        return {"tool": "torchao.pt2e", "quantizer": "XNNPACKQuantizer", "weights": "int8", "activations": "int8",
                "per_channel": True, "batch": self.program.batch}

    def summary(self) -> str:
        line = f"{self.program.summary()}; int8, calibrated on {self.samples} samples"
        if self.accuracy is not None:
            line += (f"; {self.dataset} {self.split}: int8 .pte {self.accuracy:.2f} %, fp32 PyTorch "
                     f"{self.fp32_accuracy:.2f} % ({self.accuracy - self.fp32_accuracy:+.2f} pt)")
        return line


def export_pte_int8(target: str | os.PathLike, /, out: str | os.PathLike, calibrate: Any, *,
                    samples: int = DEFAULT_SAMPLES, evaluate: str | None = "auto", split: str = "test",
                    data_dir: str | os.PathLike | None = None, input_shape: Any = None, weights: str | None = None,
                    batch: int = 1, rtol: float = PTE_RTOL, verify_samples: int = 64, seed: int = 0,
                    record: bool = True, log: Callable[[str], None] | None = None) -> Int8PteExport:
    """Export ``target`` (a model directory or name) to an int8 ExecuTorch program ``out`` (XNNPACK) and measure
    its accuracy in ``executorch.runtime``.

    :func:`quantize_pt2e` on ``samples`` calibration images (``calibrate``, ``evaluate``, ``split``, ``record``
    as in :func:`export_int8`), :func:`.pte.lower_program` at the fixed ``batch``, verified against the converted
    module on random inputs and ``verify_samples`` of the calibration images within ``rtol`` (:data:`PTE_RTOL`),
    then :func:`evaluate_pte` on the file. The file is renamed into place, and the record written to
    ``metrics.json`` (``exports[out's name]``, ``format: "pte"``), only after all of that passed.
    """
    log = log or (lambda _msg: None)
    pte.edge()
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise ExportError(f"batch must be a positive integer (ExecuTorch programs have a fixed batch), got {batch!r}")
    job = _job(target, out, calibrate, evaluate, record, data_dir, ".pte")
    model, shape = open_model(str(target), input_shape=tuple(input_shape) if input_shape else None, weights=weights)
    xs = input_batches(job.source, tuple(shape), samples=samples, batch_size=int(batch), seed=seed,
                       what="calibration inputs")
    n_calib = sum(len(x) for x in xs)
    model.eval()
    example = torch.randn((int(batch), *shape), generator=torch.Generator().manual_seed(seed + 1))
    probe(model, example)
    log(f"quantizing {target} with PT2E (XNNPACKQuantizer, per-channel int8 weights) on {n_calib} calibration "
        "samples")
    converted, program = quantize_pt2e(model, example, fixed_batches(xs, int(batch)))
    with atomic_path(job.out) as dest:
        log(f"lowering to XNNPACK and verifying against the quantized PyTorch module (rtol {rtol:g})")
        result = pte.lower_program(program, dest, reference=converted, inputs=torch.cat(xs)[:verify_samples],
                                   rtol=rtol, seed=seed)
        accuracy = fp32_accuracy = None
        if job.evaluate:
            log(f"measuring the .pte on {job.evaluate} {split} in executorch.runtime")
            test = data.load(job.evaluate, split, data_dir, augment=False)
            accuracy = evaluate_pte(dest, test)["accuracy"]
            fp32_accuracy = train.evaluate(model, test)["accuracy"]
        done = Int8PteExport(program=result, samples=n_calib, dataset=job.evaluate, split=split, accuracy=accuracy,
                             fp32_accuracy=fp32_accuracy, record=None)
        done.record = _add_record(job, target, dest, fmt="pte", quantization=done.quantization(), samples=n_calib,
                                  seed=seed, split=split, accuracy=accuracy)
    result.path = job.out
    _write_record(job, target)
    return done
