"""Export a model to ONNX, check the graph, and verify the file against PyTorch with ONNX Runtime.

:func:`export_onnx` puts the model in eval mode (restoring its mode afterwards), runs it once (a failing forward
is reported naming the module, :mod:`.diagnose`), exports it with a dynamic batch axis by default (or a fixed
batch), with the exporters of :mod:`.exporters` in turn (``auto``: TorchScript, then dynamo when TorchScript
fails to export or to verify), runs ``onnx.checker`` and then :func:`.verify.verify` (ONNX Runtime against
PyTorch on random inputs at batch sizes other than the traced one and, optionally, on real inputs). The file is
written under a temporary name and renamed only once every check passed: a failed export never leaves a file
behind. The result (:class:`ExportResult`) reports the exporter used, the opset, the op counts, stored weights
against the model's own parameters, weights computed in the graph (:mod:`.graph`) and every check.

:func:`export_target` does the same for a model directory or a built-in model name, verifying on the images of
the model's dataset when it is installed (:func:`dataset_inputs`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import data, modeldir
from .._atomic import atomic_path
from ..errors import DataError
from ..resolve import open_model
from ._common import ExportError, check_input_shape, one_line
from .diagnose import probe
from .exporters import TRACE_BATCH, Exporter, check_opset, combined, export_and_check, exporter_order
from .graph import inspect_onnx
from .hardware import nchwc_block  # noqa: F401 - re-exported: scripts in benchmarks/ import it from here
from .realise import check_realise, finish_file
from .session import ort_session  # noqa: F401 - re-exported: scripts in benchmarks/ import it from here
from .verify import Check, CheckedResult, as_inputs
from .verify import verify as verify_onnx


@dataclasses.dataclass
class ExportResult(CheckedResult):
    """The outcome of :func:`export_onnx`; ``to_dict()`` is JSON-able."""

    path: Path
    exporter: str  # "torchscript" or "dynamo": the one that produced the file
    opset: int | None
    batch: str | int  # "dynamic" or the fixed batch size
    input_shape: tuple[int, ...]  # without the batch axis
    file_bytes: int
    ops: dict[str, int]
    torch_params: int  # elements in the model's parameters and buffers
    onnx_params: int  # elements of the floating-point ONNX initializers
    weight_only_nodes: list[str]
    checks: list[Check]
    rtol: float
    notes: list[str] = dataclasses.field(default_factory=list)
    padded_params: int = 0  # zero weights the pad_channels pass added to onnx_params

    @property
    def reconstructs_weights(self) -> bool:
        """True when the graph computes on weights alone, or stores more weights than the model has.

        Either means a factorized layer's dense weight is rebuilt (at run time, or folded by the exporter).
        """
        return bool(self.weight_only_nodes) or self.onnx_params - self.padded_params > self.torch_params

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "exporter": self.exporter,
            "opset": self.opset,
            "batch": self.batch,
            "input_shape": list(self.input_shape),
            "file_bytes": self.file_bytes,
            "ops": dict(self.ops),
            "torch_params": self.torch_params,
            "onnx_params": self.onnx_params,
            "weight_only_nodes": list(self.weight_only_nodes),
            "reconstructs_weights": self.reconstructs_weights,
            "checks": [c.to_dict() for c in self.checks],
            "max_abs_err": self.max_abs_err,
            "max_rel_err": self.max_rel_err,
            "rtol": self.rtol,
            "notes": list(self.notes),
            "padded_params": self.padded_params,
        }

    def summary(self) -> str:
        """One line for a terminal."""
        ops = ", ".join(f"{k}×{v}" for k, v in list(self.ops.items())[:8])
        err = (f"max abs err {self.max_abs_err:.2e}, max rel err {self.max_rel_err:.2e}"
               if self.checks else "not verified")
        return (f"{self.path}: {self.file_bytes:,} bytes, opset {self.opset}, {self.exporter} exporter, "
                f"batch {self.batch}; {err}; ops {ops}")


def _check_module(model: Any) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise ExportError(f"expected a torch.nn.Module to export, got {type(model).__name__}")
    return model


def _check_batch(batch: Any) -> str | int:
    if batch == "dynamic" and isinstance(batch, str):
        return "dynamic"
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise ExportError(f"batch must be 'dynamic' or a positive integer, got {batch!r}")
    return int(batch)


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    input_shape: Sequence[int] | None = None,
    *,
    opset: int | None = None,
    batch: str | int = "dynamic",
    verify: bool = True,
    inputs: Any = None,
    samples: int | None = None,
    rtol: float = 1e-4,
    exporter: Exporter = "auto",
    seed: int = 0,
    target: str | None = None,
    passes: Sequence[str] | None = None,
    realise: str = "as_exported",
) -> ExportResult:
    """Export ``model`` to the ONNX file ``path`` and check it with ONNX Runtime.

    Args:
        model: the network; exported in eval mode, its own mode is restored afterwards.
        path: destination file, written atomically (nothing is written when any step fails).
        input_shape: one sample's shape without the batch axis, e.g. ``(1, 28, 28)``. May be omitted when
            ``inputs`` is given (taken from it) or the model was built or loaded by tensorslim (its own).
        opset: ONNX opset; None lets the exporter choose (20 in torch 2.13).
        batch: ``"dynamic"`` (a symbolic batch axis; verified at batch 1 and 3) or a fixed batch size.
        verify: compare ONNX Runtime with PyTorch; raises :class:`VerificationError` above ``rtol``.
        inputs: real samples, checked too, besides the random inputs: a tensor or array ``(N, *input_shape)``,
            a list of samples, a ``torch.utils.data.Dataset`` or ``DataLoader`` (items ``x`` or ``(x, y)``) or any
            iterable of batches (:func:`.verify.input_batches`).
        samples: at most this many real inputs (None: all of a tensor, array or list, 512 of anything else).
        rtol: tolerance on ``max |ort - torch| / max |torch|`` for every output.
        exporter: ``"auto"`` (TorchScript, falling back to dynamo; see :mod:`tensorslim.export.exporters`),
            ``"torchscript"`` or ``"dynamo"``.
        seed: seed of the random verification inputs.
        target, passes, realise: the deployment target (None: the one the model was compressed for, else the
            machine's default), the graph passes applied to the file (None: ``pad_channels`` on x86 ONNX Runtime
            targets) and the CP layers' realisation (``as_exported``, ``cp3``, ``fused_in``, ``fused_out`` or
            ``fastest``, timed on this CPU); recorded in the file's metadata, see :mod:`.realise`. The file is
            verified as rewritten.

    Raises:
        ExportError: bad arguments, a forward pass that fails (naming the module), an operator the exporter
            cannot translate (naming the operator and the module that calls it), an invalid ONNX graph.
        VerificationError: ONNX Runtime cannot run the file, or its outputs differ from PyTorch's.
    """
    model = _check_module(model)
    if exporter not in ("auto", "torchscript", "dynamo"):
        raise ExportError(f"exporter must be 'auto', 'torchscript' or 'dynamo', got {exporter!r}")
    batch = _check_batch(batch)
    check_realise(realise)
    opset = check_opset(opset, exporter)
    if isinstance(rtol, bool) or not isinstance(rtol, (int, float)) or not rtol > 0:
        raise ExportError(f"rtol must be a positive number, got {rtol!r}")
    if input_shape is None and inputs is None:  # models built or loaded by tensorslim know their input shape
        input_shape = getattr(model, "tensorslim_input_shape", None)
    real = as_inputs(inputs, None if input_shape is None else check_input_shape(input_shape), samples)
    if input_shape is None and real is not None:
        input_shape = tuple(real.shape[1:])
    shape = check_input_shape(input_shape)
    path = Path(path)
    if path.is_dir():
        raise ExportError(f"{path}: is a directory; give the path of the .onnx file to write")
    if any(p.device.type != "cpu" for p in model.parameters()):
        raise ExportError("export the model from the CPU: move it with model.cpu() first")

    was_training = model.training
    model.eval()
    try:
        example = torch.randn((TRACE_BATCH if batch == "dynamic" else int(batch), *shape),
                              generator=torch.Generator().manual_seed(seed + 1))
        n_outputs = probe(model, example)
        notes: list[str] = []
        failures: list[tuple[str, ExportError]] = []
        with atomic_path(path) as tmp:
            for name in exporter_order(exporter, opset):
                try:
                    notes_one = export_and_check(model, example, tmp, name, opset=opset, batch=batch,
                                                 n_outputs=n_outputs)
                    added, padded = finish_file(tmp, model=model, target=target, passes=passes, realise=realise)
                    notes_one += added
                    checks = (verify_onnx(model, tmp, shape, batch, real, float(rtol), seed, path.name)
                              if verify else [])
                except ExportError as err:
                    failures.append((name, err))
                    continue
                notes.extend(notes_one)
                notes.extend(f"{n} exporter failed: {e}" for n, e in failures)
                used = name
                break
            else:
                raise combined(failures)
            info = inspect_onnx(tmp)
            file_bytes = tmp.stat().st_size
    finally:
        model.train(was_training)
    torch_params = sum(t.numel() for t in model.parameters()) + sum(t.numel() for t in model.buffers()
                                                                     if t.is_floating_point())
    return ExportResult(path=path, exporter=used, opset=info.opset, batch=batch, input_shape=shape,
                        file_bytes=file_bytes, ops=info.ops, torch_params=int(torch_params),
                        onnx_params=info.initializer_params, weight_only_nodes=info.weight_only_nodes,
                        checks=checks, rtol=float(rtol), notes=notes, padded_params=padded)


def dataset_inputs(name: str, samples: int = 64, *, split: str = "test",
                   data_dir: str | os.PathLike | None = None) -> torch.Tensor:
    """The first ``samples`` images (normalised, no augmentation) of a dataset split, as ``(N, C, H, W)``.

    Raises ``tensorslim.errors.DataError`` when the dataset is not available.
    """
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ExportError(f"samples must be a positive integer, got {samples!r}")
    ds = data.load(name, split, data_dir, augment=False)
    x, _ = next(iter(data.batches(ds, min(samples, len(ds)), shuffle=False)))
    return x


def export_target(target: str | os.PathLike, /, out: str | os.PathLike, *,
                  input_shape: Sequence[int] | None = None, weights: str | None = None,
                  dataset: str | None = "auto", samples: int = 64,
                  data_dir: str | os.PathLike | None = None, inputs: Any = None,
                  export: Callable[..., Any] | None = None, **options: Any) -> ExportResult:
    """Export a model directory or built-in model name (``tensorslim.resolve.open_model``) to ``out``.

    Besides random inputs, the export is verified on ``samples`` real images: of ``inputs`` when given (any
    source of :func:`.verify.input_batches`: a tensor, array, Dataset, DataLoader or iterable of batches), else
    of ``dataset`` (``"auto"``: the dataset named in ``model.json``, skipped with a note in ``notes`` when it is
    not installed here; a name: that dataset, a missing one raising ``DataError``; ``None``: random inputs
    only). ``options`` go to :func:`export_onnx` (``opset``, ``batch``, ``rtol``, ``exporter``, ``verify``,
    ``target``, ``realise``: ``target`` is the deployment target, the model is the positional ``target``), or
    to ``export``, the export function used instead (:func:`.pte.export_pte` for an ExecuTorch program).
    """
    export = export or export_onnx
    model, shape = open_model(str(target), input_shape=tuple(input_shape) if input_shape else None,
                              weights=weights)
    if inputs is not None:
        return export(model, out, shape, inputs=inputs, samples=samples, **options)
    notes: list[str] = []
    auto = dataset == "auto"
    if auto:
        dataset = modeldir.read_meta(target).get("dataset") if modeldir.is_model_dir(target) else None
    inputs = None
    if dataset:
        try:
            inputs = dataset_inputs(dataset, samples, data_dir=data_dir)
        except DataError as err:
            if not auto:
                raise
            notes.append(f"dataset {dataset!r} unavailable ({one_line(err, 120)}): "
                         "verified on random inputs only")
        if auto and inputs is not None and tuple(inputs.shape[1:]) != tuple(shape):
            notes.append(f"dataset {dataset!r} has samples of shape {tuple(inputs.shape[1:])}, "
                         f"the model takes {tuple(shape)}: verified on random inputs only")
            inputs = None
    result = export(model, out, shape, inputs=inputs, **options)
    result.notes.extend(notes)
    return result
