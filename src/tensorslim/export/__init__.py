"""ONNX and ExecuTorch export, verified in their runtimes, graph passes, and latency benchmarks.

One job per module:

* :mod:`.onnx` - :func:`export_onnx`, :func:`export_target`, :func:`dataset_inputs`, :class:`ExportResult`
* :mod:`.exporters` - torch's TorchScript and dynamo exporters, opsets, the fallback order
* :mod:`.diagnose` - a failing forward pass or untranslatable operator, named in one line
* :mod:`.verify` - ONNX Runtime against PyTorch on random and real inputs (:class:`Check`), and
  :func:`input_batches`, the one adapter for real inputs (tensors, arrays, a Dataset, a DataLoader, batches)
* :mod:`.quantize` - int8: :func:`quantize_onnx` (ORT static, QDQ, per-channel), :func:`evaluate_onnx` (a file's
  top-1 accuracy in ORT), :func:`export_int8` (a model directory, measured and recorded in metrics.json); with
  :mod:`.quantize_pte`, the ``.pte`` path: :func:`quantize_pt2e` (PT2E, XNNPACKQuantizer), :func:`export_pte_int8`,
  :func:`evaluate_pte`; and :mod:`.quantize_common`, what both share (fixed batches, top-1 in a runtime, the record)
* :mod:`.graph` - :func:`inspect_onnx`, :func:`node_summary` (:class:`GraphInfo`)
* :mod:`.passes` - graph-rewrite passes on an ``onnx.ModelProto`` (:func:`pad_channels`, :func:`apply_passes`)
* :mod:`.session` - :func:`ort_session`, the ONNX Runtime CPU session every check and benchmark uses
* :mod:`.hardware` - CPU model and flags, :func:`nchwc_block`, the machine description of a benchmark
* :mod:`.pte` - :func:`export_pte`, :func:`lower_program` (:class:`PteResult`): ExecuTorch programs lowered to
  XNNPACK, verified in ``executorch.runtime`` (the ``tensorslim[edge]`` extra; :class:`EdgeUnavailableError`)
* :mod:`.bench` - :func:`benchmark` (paired alternation), :func:`format_table`; with :mod:`.runners` (one
  model in one runtime) and :mod:`.memory` (resident set size)

The HTML/JSON report is a stage above this one: :mod:`tensorslim.report`.

Names are imported lazily, so that ``import tensorslim.export`` stays cheap (torch, onnx and onnxruntime are
only loaded by the first name used).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_NAMES = {
    "export_onnx": "onnx", "export_target": "onnx", "dataset_inputs": "onnx", "ExportResult": "onnx",
    "ExportError": "_common", "BenchError": "_common",
    "Check": "verify", "VerificationError": "verify", "input_batches": "verify",
    "quantize_onnx": "quantize", "evaluate_onnx": "quantize", "export_int8": "quantize",
    "QuantizeResult": "quantize", "Int8Export": "quantize", "evaluate_pte": "quantize_pte",
    "export_pte_int8": "quantize_pte", "quantize_pt2e": "quantize_pte", "Int8PteExport": "quantize_pte",
    "node_summary": "graph", "inspect_onnx": "graph", "GraphInfo": "graph",
    "pad_channels": "passes", "apply_passes": "passes",
    "ort_session": "session", "nchwc_block": "hardware",
    "benchmark": "bench", "format_table": "bench", "BenchResult": "bench",
    "export_pte": "pte", "export_pte_target": "pte", "lower_program": "pte", "PteResult": "pte",
    "EdgeUnavailableError": "pte",
}

__all__ = [
    "BenchError", "BenchResult", "Check", "EdgeUnavailableError", "ExportError", "ExportResult", "GraphInfo",
    "PteResult", "VerificationError", "apply_passes", "benchmark", "dataset_inputs", "export_onnx",
    "export_pte", "export_pte_target", "export_target", "format_table", "inspect_onnx", "lower_program", "nchwc_block",
    "node_summary", "ort_session", "pad_channels",
    "Int8Export", "QuantizeResult", "evaluate_onnx", "export_int8", "input_batches", "quantize_onnx",
    "Int8PteExport", "evaluate_pte", "export_pte_int8", "quantize_pt2e",
]

if TYPE_CHECKING:  # pragma: no cover
    from ._common import BenchError, ExportError
    from .bench import BenchResult, benchmark, format_table
    from .graph import GraphInfo, inspect_onnx, node_summary
    from .hardware import nchwc_block
    from .onnx import ExportResult, dataset_inputs, export_onnx, export_target
    from .passes import apply_passes, pad_channels
    from .pte import EdgeUnavailableError, PteResult, export_pte, export_pte_target, lower_program
    from .quantize import Int8Export, QuantizeResult, evaluate_onnx, export_int8, quantize_onnx
    from .quantize_pte import Int8PteExport, evaluate_pte, export_pte_int8, quantize_pt2e
    from .session import ort_session
    from .verify import Check, VerificationError, input_batches


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        return getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_NAMES])
