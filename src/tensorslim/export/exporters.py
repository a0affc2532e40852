"""The two ONNX exporters of torch, run quietly, checked, and tried in order.

torch 2.13 ships two exporters; both produce plain ``Conv`` / ``Gemm`` / ``MatMul`` nodes for our layers and
fold eval-mode BatchNorm into the preceding convolution. ``exporter="auto"`` uses the legacy **TorchScript**
exporter first and falls back to the **dynamo** (``torch.export``) exporter only when the first one fails to
export or to verify (:func:`exporter_order`):

* TorchScript exports several times faster than the dynamo exporter, which matters for ``bench`` (which exports
  before timing) and for the test suite.
* TorchScript keeps the graph as the forward pass runs it: a layer that rebuilds its dense weight from
  factors in ``forward`` shows up as a ``MatMul`` between initializers (flagged by
  ``GraphInfo.weight_only_nodes``). The dynamo exporter's optimizer constant-folds that into a dense
  initializer, which hides the problem (it then shows only as ``ExportResult.onnx_params`` exceeding the
  model's own parameter count; both are reported).
* TorchScript covers opsets 7-20, the dynamo exporter 18-23 (``auto`` picks dynamo for opset 21+).
* Weakness of TorchScript: tracing turns data-dependent Python control flow and ``int(x.shape[0])`` into
  constants. It emits ``TracerWarning`` for these (kept in ``ExportResult.notes``; shape comparisons such as a
  ResNet's ``if y.shape == x.shape`` warn too, harmlessly). Verification therefore runs ONNX Runtime at batch
  sizes different from the traced one (:data:`TRACE_BATCH`), which catches a frozen batch size; ``auto`` then
  retries with the dynamo exporter. ``exporter="dynamo"`` suits models with value-dependent branches: it
  refuses them instead of tracing one branch.

Both are run with their prints, log lines and warnings silenced (:func:`run_exporter`); a failure becomes one
:class:`ExportError` line (:func:`export_and_check`, :func:`combined`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
import torch
from torch import nn

from ._common import ExportError, one_line
from .diagnose import blame

Exporter = Literal["auto", "torchscript", "dynamo"]

#: Opsets each exporter can target in torch 2.13.
TORCHSCRIPT_OPSETS = range(7, 21)
DYNAMO_OPSETS = range(18, 24)
#: Batch size of the example input a dynamic-batch model is traced with (verification runs other sizes).
TRACE_BATCH = 2


def check_opset(opset: Any, exporter: str) -> int | None:
    """``opset`` as an int that ``exporter`` (or, for ``auto``, either exporter) supports; None stays None."""
    if opset is None:
        return None
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)):
        raise ExportError(f"opset must be an integer, got {opset!r}")
    opset = int(opset)
    allowed = {"torchscript": TORCHSCRIPT_OPSETS, "dynamo": DYNAMO_OPSETS,
               "auto": range(TORCHSCRIPT_OPSETS.start, DYNAMO_OPSETS.stop)}[exporter]
    if opset not in allowed:
        raise ExportError(f"opset {opset} is not supported by the {exporter} exporter "
                          f"(supported: {allowed.start}-{allowed.stop - 1})")
    return opset


@contextlib.contextmanager
def _quiet() -> Iterator[list[str]]:
    """Silence the exporters' prints, log lines and warnings; yield the list that collects TracerWarnings."""
    notes: list[str] = []
    saved: dict[str, int] = {}
    for name in list(logging.root.manager.loggerDict):
        if name == "torch" or name.startswith(("torch.", "onnxscript")):
            lg = logging.getLogger(name)
            saved[name] = lg.level
            lg.setLevel(logging.CRITICAL + 1)
    sink = io.StringIO()
    try:
        with (warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(sink),
              contextlib.redirect_stderr(sink)):
            warnings.simplefilter("always")
            yield notes
        for w in caught:
            if issubclass(w.category, torch.jit.TracerWarning):
                line = "TracerWarning: " + one_line(w.message, 160)
                if line not in notes:
                    notes.append(line)
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


@contextlib.contextmanager
def _silence_native_output() -> Iterator[None]:
    """Discard what native code writes to file descriptors 1 and 2 while the block runs.

    The TorchScript exporter's C++ logger prints the whole IR graph to stdout when it fails (its
    ``setup_onnx_logging`` enables the log unconditionally in torch 2.13); our one-line error replaces it.
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved: list[tuple[int, int]] = []
    with tempfile.TemporaryFile() as sink:
        try:
            for fd in (1, 2):
                with contextlib.suppress(OSError):  # a closed descriptor: nothing to silence
                    saved.append((fd, os.dup(fd)))
                    os.dup2(sink.fileno(), fd)
            yield
        finally:
            for fd, copy in saved:
                os.dup2(copy, fd)
                os.close(copy)


def run_exporter(exporter: str, model: nn.Module, example: torch.Tensor, dest: Path, *, opset: int | None,
                 dynamic: bool, n_outputs: int) -> list[str]:
    """Export with one exporter to ``dest``; returns the TracerWarnings seen."""
    output_names = ["output"] if n_outputs == 1 else [f"output_{i}" for i in range(n_outputs)]
    common: dict[str, Any] = dict(input_names=["input"], output_names=output_names, opset_version=opset)
    with _quiet() as notes:
        if exporter == "torchscript":
            axes = {n: {0: "batch"} for n in ["input", *output_names]} if dynamic else None
            with _silence_native_output():
                torch.onnx.export(model, (example,), str(dest), dynamo=False, dynamic_axes=axes,
                                  do_constant_folding=True, **common)
        else:
            shapes = ({0: torch.export.Dim("batch")},) if dynamic else None
            torch.onnx.export(model, (example,), str(dest), dynamo=True, dynamic_shapes=shapes,
                              external_data=False, optimize=True, verbose=False, **common)
    return notes


def exporter_order(exporter: str, opset: int | None) -> list[str]:
    """The exporters to try, in order: ``auto`` is TorchScript then dynamo, less those without ``opset``."""
    if exporter != "auto":
        return [exporter]
    if opset is not None and opset not in TORCHSCRIPT_OPSETS:
        return ["dynamo"]
    if opset is not None and opset not in DYNAMO_OPSETS:
        return ["torchscript"]
    return ["torchscript", "dynamo"]


def export_and_check(model: nn.Module, example: torch.Tensor, dest: Path, exporter: str, *,
                     opset: int | None, batch: str | int, n_outputs: int) -> list[str]:
    """Export with ``exporter`` to ``dest`` and run ``onnx.checker`` (full check); returns the TracerWarnings."""
    try:
        notes = run_exporter(exporter, model, example, dest, opset=opset, dynamic=batch == "dynamic",
                             n_outputs=n_outputs)
    except Exception as err:  # noqa: BLE001 - exporters raise many types; all mean "cannot export this"
        raise ExportError(f"ONNX export ({exporter}) failed: {blame(err, model, example)}") from None
    try:
        onnx.checker.check_model(str(dest), full_check=True)
    except Exception as err:  # noqa: BLE001 - checker raises ValidationError and others
        raise ExportError(f"ONNX export ({exporter}) produced an invalid graph: {one_line(err)}") from None
    return notes


def combined(failures: list[tuple[str, ExportError]]) -> ExportError:
    """One error for all exporters that failed: the first one's message, the others' appended briefly."""
    first_name, first = failures[0]
    msg = str(first)
    for name, err in failures[1:]:
        reason = str(err).removeprefix(f"ONNX export ({name}) failed: ")
        msg += f" (the {name} exporter failed too: {one_line(reason, 120)})"
    return type(first)(msg)
