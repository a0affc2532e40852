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

What the two int8 exports share is :mod:`.quantize_common`. The ``.pte`` path (PT2E with XNNPACK's quantizer:
:func:`quantize_pt2e`, :func:`export_pte_int8`, :func:`evaluate_pte`, :data:`PTE_RTOL`) is :mod:`.quantize_pte`,
re-exported here.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from .. import data
from .._atomic import atomic_path
from ._common import ExportError, one_line
from .bench import benchmark
from .compact import compact_names, drop_zero_points
from .graph import inspect_onnx
from .onnx import ExportResult, export_onnx, export_target
from .quantize_common import _add_record, _job, _measured, _top1, _write_record, fixed_batches
from .quantize_pte import PTE_RTOL as PTE_RTOL
from .quantize_pte import Int8PteExport as Int8PteExport
from .quantize_pte import evaluate_pte as evaluate_pte
from .quantize_pte import export_pte_int8 as export_pte_int8
from .quantize_pte import quantize_pt2e as quantize_pt2e
from .session import ort_session
from .verify import DEFAULT_SAMPLES, VerificationError, compare, input_batches

#: Activation types ORT's static quantization takes; weights are always int8. uint8 is the default: on x86, ORT's
#: integer kernels (MLAS) multiply u8 x s8 natively (VPMADDUBSW and VNNI's VPDPBUSD take one unsigned and one
#: signed operand). The CPU provider fuses either into the same graph (QLinearConv, QGemm, NHWC MaxPool), and
#: benchmarks/bench_int8.py times the two files in alternation: equal within the noise on the reference machine.
ACTIVATIONS = ("uint8", "int8")
#: Weights in 7 bits (``reduce_range``, the default) or the full int8 range. Why 7: on x86 CPUs without VNNI
#: (AVX2, AVX-512 without VNNI), MLAS multiplies u8 x s8 with VPMADDUBSW, which adds pairs of products into int16
#: and saturates (255 * 127 * 2 > 32767); ONNX Runtime's quantization docs name reduce_range as the remedy. With
#: 7-bit weights the pair sum fits (255 * 63 * 2 < 32767), so the file computes the same integers on every x86
#: CPU (VNNI, which sums in int32, and AVX2 alike) and on Arm. Measured on the committed convnet-wide (p007): the
#: full-range file 93.08 % on an earlier session's CPU but 91.65 % on an AVX2-only one, the 7-bit file 93.00 % on
#: the AVX2 one; BENCHMARKS.md's int8 table has both machines.
REDUCE_RANGE = True
#: Calibration methods (``onnxruntime.quantization.CalibrationMethod``): min/max of the activations, the
#: 99.999th percentile, or the range minimising the KL divergence of the histogram.
METHODS = {"minmax": "MinMax", "percentile": "Percentile", "entropy": "Entropy"}
#: The compute ops, in graph order, whose first ``keep_float`` stay in float (the quantizer leaves them out).
COMPUTE_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
#: ``keep_float="auto"`` times the files that keep the first 0, 1, ..., AUTO_MAX_FLOAT compute nodes in float
#: against the fp32 file and keeps the fastest. Why a prefix: ORT's integer kernels are slowest where channels
#: are fewest (a 1-channel image into a 3x3 QLinearConv ran 6x slower than the float NCHWc kernel on the
#: reference machine), and the float/int8 boundary must follow a Conv, since ORT moves a QuantizeLinear up
#: through ReLU and MaxPool (a uint8 NCHW MaxPool is far slower than the float one).
AUTO_MAX_FLOAT = 4
#: A longer float prefix is kept only when it is this much faster (geometric mean over the timed batches) than
#: the best shorter one: timings are noisy, and every float node costs file bytes.
AUTO_MARGIN = 1.03
#: Batch sizes, threads and timed runs of the ``keep_float="auto"`` measurement (ORT, in alternation with fp32).
AUTO_BATCHES = (1, 32)
AUTO_THREADS = 1
AUTO_REPEATS = 30


@dataclasses.dataclass
class QuantizeResult:
    """The outcome of :func:`quantize_onnx`; ``to_dict()`` is JSON-able."""

    path: Path
    file_bytes: int
    fp32_bytes: int
    samples: int  # calibration samples used
    activations: str  # "uint8" or "int8"
    per_channel: bool
    reduce_range: bool  # 7-bit weights (see REDUCE_RANGE)
    method: str
    ops: dict[str, int]
    max_rel_err: float  # max |int8 - fp32| / max |fp32| over the calibration samples
    agreement: float  # fraction of calibration samples whose top-1 class is the fp32 file's
    float_nodes: list[str] = dataclasses.field(default_factory=list)  # compute nodes left in float
    selection: dict[str, Any] | None = None  # keep_float="auto": what was timed and chosen

    @property
    def size_ratio(self) -> float:
        """fp32 file bytes over int8 file bytes."""
        return self.fp32_bytes / self.file_bytes

    def quantization(self) -> dict[str, Any]:
        """The settings, as recorded in ``metrics.json``."""
        out = {"tool": "onnxruntime.quantize_static", "format": "QDQ", "weights": "int8",
               "activations": self.activations, "per_channel": self.per_channel,
               "weight_bits": 7 if self.reduce_range else 8, "method": self.method,
               "float_nodes": list(self.float_nodes)}
        if self.selection is not None:
            out["float_selection"] = self.selection
        return out

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


def _check_options(activations: str, method: str, per_channel: Any, keep_float: Any = 0,
                   reduce_range: Any = True) -> None:
    ok = (keep_float == "auto" or (isinstance(keep_float, int) and not isinstance(keep_float, bool) and keep_float >= 0)
          or (isinstance(keep_float, (list, tuple)) and all(isinstance(n, str) and n for n in keep_float)))
    if not ok:
        raise ExportError(f"keep_float must be 'auto', a count of leading compute nodes (>= 0) or a list of node "
                          f"names, got {keep_float!r}")
    if activations not in ACTIVATIONS:
        raise ExportError(f"activations must be one of {', '.join(ACTIVATIONS)}, got {activations!r}")
    if method not in METHODS:
        raise ExportError(f"calibration method must be one of {', '.join(METHODS)}, got {method!r}")
    for what, flag in (("per_channel", per_channel), ("reduce_range", reduce_range)):
        if not isinstance(flag, bool):
            raise ExportError(f"{what} must be true or false, got {flag!r}")


def compute_nodes(model: onnx.ModelProto) -> list[str]:
    """The named compute nodes (:data:`COMPUTE_OPS`) of ``model``, in graph (topological) order."""
    return [n.name for n in model.graph.node if n.op_type in COMPUTE_OPS and n.name]


def float_nodes(model: onnx.ModelProto, keep_float: int | list[str] | tuple[str, ...]) -> list[str]:
    """The node names the quantizer must leave in float: the first ``keep_float`` compute nodes, or the names
    given (each must be a node of ``model``)."""
    if isinstance(keep_float, int):
        compute = compute_nodes(model)
        if keep_float > len(compute):
            raise ExportError(f"keep_float={keep_float}: the model has only {len(compute)} compute nodes")
        return compute[:keep_float]
    known = {n.name for n in model.graph.node}
    unknown = [n for n in keep_float if n not in known]
    if unknown:
        raise ExportError(f"keep_float: no node named {unknown[0]!r} in the model (its compute nodes: "
                          f"{', '.join(compute_nodes(model)[:8])}...)")
    return list(keep_float)


def _quantize(fp32_path: Path, dest: Path, batches: list[np.ndarray], *, per_channel: bool, activations: str,
              method: str, keep_float: int | list[str] | tuple[str, ...] = 0,
              reduce_range: bool = REDUCE_RANGE) -> QuantizeResult:
    """Quantize ``fp32_path`` into ``dest`` (written in place: callers pass a temporary) and run it against fp32.

    ``keep_float``: a count of leading compute nodes, or node names, that stay in float (``"auto"`` is
    :func:`_quantize_auto`'s)."""
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
        except Exception as err:  # noqa: BLE001 - the quantizer raises what its ops raise
            raise ExportError(f"{fp32_path}: ONNX Runtime cannot quantize the model ({one_line(err)})") from None
        keep = float_nodes(onnx.load(str(pre), load_external_data=False), keep_float)
        try:
            quantize_static(str(pre), str(dest), _reader(name, batches), quant_format=QuantFormat.QDQ,
                            per_channel=per_channel, reduce_range=reduce_range, weight_type=QuantType.QInt8,
                            activation_type=qtype,
                            calibrate_method=getattr(CalibrationMethod, METHODS[method]), nodes_to_exclude=keep)
            # The quantizer's long generated names and its all-zero bias and conv-weight zero points are a large
            # share of a small model's file: shortened and dropped, exactly (the file is then run against fp32
            # below, as written).
            onnx.save(compact_names(drop_zero_points(onnx.load(str(dest)))), str(dest))
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
                          samples=total, activations=activations, per_channel=per_channel,
                          reduce_range=reduce_range, method=method,
                          ops=inspect_onnx(dest).ops, max_rel_err=float(max_rel), agreement=agree / total,
                          float_nodes=keep)


def _quantize_auto(fp32_path: Path, dest: Path, batches: list[np.ndarray], *, per_channel: bool, activations: str,
                   method: str, reduce_range: bool = REDUCE_RANGE, log: Callable[[str], None] | None = None,
                   repeats: int = AUTO_REPEATS) -> QuantizeResult:
    """``keep_float="auto"``: quantize with the first 0..:data:`AUTO_MAX_FLOAT` compute nodes left in float, time
    each file against the fp32 one in alternation (ONNX Runtime, :data:`AUTO_THREADS` thread, batches
    :data:`AUTO_BATCHES`, or the file's fixed batch) and write the fastest into ``dest``.

    A longer prefix must beat the best shorter one by :data:`AUTO_MARGIN`. What was timed and chosen is in the
    result's ``selection`` (and so in the file's ``metrics.json`` record). The timing is of the files as
    written, in plain sessions: the speed the user's file gets on this machine.
    """
    log = log or (lambda _msg: None)
    with tempfile.TemporaryDirectory(prefix="tensorslim-keep-float-") as tmp:
        n = len(compute_nodes(onnx.load(str(fp32_path), load_external_data=False)))
        timed: dict[str, dict[str, float]] = {}
        best: tuple[float, int, QuantizeResult] | None = None
        for k in range(min(AUTO_MAX_FLOAT, n) + 1):
            path = Path(tmp) / f"float{k}.onnx"
            q = _quantize(fp32_path, path, batches, per_channel=per_channel, activations=activations,
                          method=method, keep_float=k, reduce_range=reduce_range)
            res = benchmark(str(path), against=str(fp32_path), batch_sizes=AUTO_BATCHES, threads=AUTO_THREADS,
                            repeats=repeats, labels=(f"int8, {k} float", "fp32"))
            ratios = {str(r.batch): round(float(r.speedup), 4) for r in res.comparison}
            score = float(np.exp(np.mean(np.log(list(ratios.values())))))
            timed[str(k)] = ratios
            log(f"int8 with the first {k} compute node(s) in float: "
                + ", ".join(f"batch {b} {v:.2f}x" for b, v in ratios.items()) + " the fp32 file's speed")
            if best is None or score > best[0] * AUTO_MARGIN:
                best = (score, k, q)
        assert best is not None
        score, k, q = best
        shutil.copyfile(q.path, dest)
    q.path = dest
    q.selection = {"keep_float": "auto", "chosen": k, "speedup_vs_fp32": timed, "margin": AUTO_MARGIN,
                   "batches": list(AUTO_BATCHES), "threads": AUTO_THREADS, "repeats": repeats,
                   "runtime": "onnxruntime"}
    return q


def _quantize_any(fp32_path: Path, dest: Path, batches: list[np.ndarray], *, keep_float: Any = 0,
                  log: Callable[[str], None] | None = None, **opts: Any) -> QuantizeResult:
    if keep_float == "auto":
        return _quantize_auto(fp32_path, dest, batches, log=log, **opts)
    return _quantize(fp32_path, dest, batches, keep_float=keep_float, **opts)


def quantize_onnx(fp32_path: str | os.PathLike, out_path: str | os.PathLike, calibration: Any, *,
                  per_channel: bool = True, samples: int = DEFAULT_SAMPLES, activations: str = "uint8",
                  method: str = "minmax", batch_size: int = 32, seed: int | None = 0,
                  keep_float: int | str | list[str] = 0, reduce_range: bool = REDUCE_RANGE,
                  log: Callable[[str], None] | None = None) -> QuantizeResult:
    """Quantize the fp32 ONNX file ``fp32_path`` to int8 (QDQ) into ``out_path``, calibrated on ``calibration``.

    Args:
        calibration: real inputs: a tensor or array ``(N, C, H, W)``, a ``Dataset`` or ``DataLoader`` yielding
            ``x`` or ``(x, y)``, or any iterable of batches (:func:`.verify.input_batches`). Samples must have
            the file's input shape and finite values.
        per_channel: one weight scale per output channel (else one per tensor).
        samples: at most this many calibration samples (a Dataset: a random subset drawn with ``seed``).
        activations: ``"uint8"`` (default; see :data:`ACTIVATIONS`) or ``"int8"``; weights are always int8.
        method: ``"minmax"``, ``"percentile"`` or ``"entropy"`` (:data:`METHODS`).
        keep_float: compute nodes left in float: the first ``keep_float`` of them (0: all quantized), a list
            of node names, or ``"auto"``: 0 to :data:`AUTO_MAX_FLOAT` leading ones, each file timed against the
            fp32 one on this machine and the fastest kept (:func:`_quantize_auto`; the result's ``selection``).
        reduce_range: 7-bit weights (default), so that x86 CPUs without VNNI compute the same as others
            (:data:`REDUCE_RANGE`); False: the full int8 range, for CPUs known to have VNNI (or Arm).

    ``out_path`` is written atomically, after the int8 file was run in ONNX Runtime on the calibration inputs
    beside the fp32 one (``max_rel_err`` and ``agreement`` of the result). Raises ExportError (one line) for bad
    arguments, bad calibration inputs or a model the quantizer cannot take.
    """
    _check_options(activations, method, per_channel, keep_float, reduce_range)
    fp32_path, out_path = Path(fp32_path), Path(out_path)
    if out_path.is_dir():
        raise ExportError(f"{out_path}: is a directory; give the path of the .onnx file to write")
    batches = calibration_batches(calibration, fp32_path, samples=samples, batch_size=batch_size, seed=seed)
    with atomic_path(out_path) as tmp:
        result = _quantize_any(fp32_path, tmp, batches, per_channel=per_channel, activations=activations,
                               method=method, keep_float=keep_float, reduce_range=reduce_range, log=log)
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
        if q.float_nodes:
            line += f"; {len(q.float_nodes)} compute node(s) left in float ({', '.join(q.float_nodes)})"
        if q.selection:
            fast = q.selection["speedup_vs_fp32"][str(q.selection["chosen"])]
            line += " (chosen by timing; " + ", ".join(f"batch {b} {v:.2f}x" for b, v in fast.items()) + " fp32)"
        return line + _measured(self.dataset, self.split, self.accuracy, self.fp32_accuracy, "int8", "fp32")


def export_int8(target: str | os.PathLike, /, out: str | os.PathLike, calibrate: Any, *,
                samples: int = DEFAULT_SAMPLES, evaluate: str | None = "auto", split: str = "test",
                data_dir: str | os.PathLike | None = None, input_shape: Any = None, weights: str | None = None,
                per_channel: bool = True, activations: str = "uint8", method: str = "minmax", seed: int = 0,
                keep_float: int | str | list[str] = 0, reduce_range: bool = REDUCE_RANGE, record: bool = True,
                log: Callable[[str], None] | None = None, **options: Any) -> Int8Export:
    """Export ``target`` (a model directory or name) to an int8 ONNX file ``out`` and measure its accuracy.

    ``calibrate``: a dataset name (a random sample of ``samples`` images of its **training** split, no
    augmentation) or any source of :func:`.verify.input_batches`. ``evaluate``: the dataset whose ``split``
    (default test) measures both files (``"auto"``: ``calibrate`` when it is a name, else the model's own
    dataset; None: no accuracy). ``keep_float``, ``reduce_range``: as in :func:`quantize_onnx`. With ``record``
    and a model directory, the measurement goes to its ``metrics.json`` under ``exports[out's file name]``
    (:func:`tensorslim.records.parse_exports`).
    ``options`` go to :func:`.onnx.export_target` (``opset``, ``batch``, ``rtol``, ``exporter``, ``target``,
    ``realise``).
    """
    log = log or (lambda _msg: None)
    _check_options(activations, method, per_channel, keep_float, reduce_range)
    job = _job(target, out, calibrate, evaluate, record, data_dir, ".onnx")
    if "passes" in inspect.signature(export_onnx).parameters:  # the exporter's graph passes: none for int8, since
        options.setdefault("passes", [])  # channel padding serves ORT's float NCHWc kernels; in int8 it is zeros
    with tempfile.TemporaryDirectory(prefix="tensorslim-int8-") as tmp:
        log(f"exporting {target} to fp32 ONNX and verifying it against PyTorch")
        fp32 = export_target(target, Path(tmp) / "fp32.onnx", input_shape=input_shape, weights=weights,
                             dataset=job.evaluate, data_dir=data_dir, **options)
        batches = calibration_batches(job.source, fp32.path, samples=samples, seed=seed)
        log(f"quantizing to int8 (QDQ, per-channel {7 if reduce_range else 8}-bit weights) on "
            f"{sum(len(b) for b in batches)} calibration samples")
        with atomic_path(job.out) as dest:
            q = _quantize_any(fp32.path, dest, batches, per_channel=per_channel, activations=activations,
                              method=method, keep_float=keep_float, reduce_range=reduce_range, log=log)
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
