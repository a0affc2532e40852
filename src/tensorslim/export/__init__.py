"""ONNX export with ONNX Runtime verification, latency benchmarks, and HTML/JSON reports.

* :func:`export_onnx`, :func:`node_summary`, :func:`inspect_onnx` (:mod:`.onnx`)
* :func:`benchmark`, :func:`format_table` (:mod:`.bench`)
* :func:`write_report` (:mod:`.report`)

Names are imported lazily, so that ``import tensorslim.export`` stays cheap (matplotlib and onnxruntime are
only loaded by the functions that need them).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_NAMES = {
    "export_onnx": "onnx", "export_target": "onnx", "dataset_inputs": "onnx",
    "node_summary": "onnx", "inspect_onnx": "onnx", "ExportResult": "onnx",
    "GraphInfo": "onnx", "Check": "onnx", "ExportError": "onnx", "VerificationError": "onnx",
    "benchmark": "bench", "format_table": "bench", "BenchResult": "bench", "BenchError": "bench",
    "write_report": "report", "pareto_front": "report", "ReportError": "report",
}

__all__ = [
    "BenchError", "BenchResult", "Check", "ExportError", "ExportResult", "GraphInfo", "ReportError",
    "VerificationError", "benchmark", "dataset_inputs", "export_onnx", "export_target",
    "format_table", "inspect_onnx", "node_summary",
    "pareto_front", "write_report",
]

if TYPE_CHECKING:  # pragma: no cover
    from .bench import BenchError, BenchResult, benchmark, format_table
    from .onnx import (
        Check,
        ExportError,
        ExportResult,
        GraphInfo,
        VerificationError,
        dataset_inputs,
        export_onnx,
        export_target,
        inspect_onnx,
        node_summary,
    )
    from .report import ReportError, pareto_front, write_report


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        return getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_NAMES])
