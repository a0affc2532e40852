"""A model directory as the report sees it (:class:`Entry`), and the report's error type."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import TensorSlimError


class ReportError(TensorSlimError):
    """A report cannot be written from the given directories."""


@dataclass
class Entry:
    """One model directory as the report sees it."""

    name: str
    path: Path
    dataset: str | None = None
    builder: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    input_shape: list[int] | None = None
    compressed: bool = False
    method: str = "none"
    layers: list[dict[str, Any]] = field(default_factory=list)  # compression.layers
    accuracy: float | None = None  # percent
    accuracy_split: str | None = None
    params: int | None = None
    macs: int | None = None
    latency_ms: float | None = None
    latency_batch: int | None = None
    latency_source: str | None = None
    profile: list[dict[str, Any]] | None = None  # rows with name, params, macs
    latency_pair: dict[str, Any] | None = None  # the "against" model of the benchmark run, if any
    original_ref: dict[str, Any] | None = None  # metrics.json "original"
    original: str | None = None  # name of the original among the entries
    ratios: dict[str, float | None] = field(default_factory=dict)
    pareto: dict[str, bool] = field(default_factory=dict)
    raw_accuracy: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "path": str(self.path), "dataset": self.dataset, "builder": self.builder,
            "kwargs": self.kwargs, "input_shape": self.input_shape, "compressed": self.compressed,
            "method": self.method, "accuracy": self.accuracy, "accuracy_split": self.accuracy_split,
            "params": self.params, "macs": self.macs, "latency_ms": self.latency_ms,
            "latency_batch": self.latency_batch, "latency_source": self.latency_source,
            "original": self.original, "ratios": self.ratios, "pareto": self.pareto,
            "compressed_layers": [
                {k: layer.get(k) for k in ("name", "type", "method", "rank", "params_before", "params_after",
                                           "macs_before", "macs_after")} for layer in self.layers],
        }


def number(value: Any) -> float | None:
    """``value`` as a finite float; None for anything else (bools, strings, NaN, inf, missing)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None
