"""Measured ONNX Runtime latency of single layers, cached per machine (the optional 4th objective).

Each layer (the dense original or a design point's factorized replacement) is timed alone by a
:data:`LayerTimer` that the caller passes in (the ``explore`` command passes
:func:`tensorslim.cli.explore.ort_layer_ms`: the layer exported alone to ONNX and timed by
:func:`tensorslim.export.benchmark` at batch 1 on one thread, median of ``repeats`` runs). The cache is a JSON
file ``{machine key: {layer signature: ms}}``; the machine key names the CPU, the core count, the ONNX Runtime
version and the thread count, the layer signature the layer's type, ``config()`` and input shape (the
weights do not change the time). A model's latency is estimated as the dense model's measured latency plus,
for every replaced layer, the difference between its replacement's and its own measured latency.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnxruntime
from torch import nn

from .. import _atomic

#: ``timer(module, input_shape, *, threads, repeats, warmup) -> milliseconds`` of one batch-1 forward of a layer
LayerTimer = Callable[..., float]


def machine_key(threads: int = 1) -> str:
    cpu = platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return f"{cpu}|{os.cpu_count()} cpus|ort {onnxruntime.__version__}|{threads} thread(s)"


def layer_key(module: nn.Module, input_shape: tuple[int, ...]) -> str:
    if hasattr(module, "config"):
        cfg = module.config()
    else:
        cfg = {k: v for k, v in vars(module).items() if isinstance(v, (int, float, str, tuple, bool))}
    text = json.dumps([type(module).__name__, cfg, list(input_shape)], sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


class LatencyCache:
    """Per-machine layer latencies in a JSON file (written atomically by :meth:`save`)."""

    def __init__(self, path: str | os.PathLike | None, timer: LayerTimer, *, threads: int = 1, repeats: int = 30,
                 warmup: int = 5):
        self.path = Path(path) if path else None
        self.timer = timer
        self.threads, self.repeats, self.warmup = threads, repeats, warmup
        self.machine = machine_key(threads)
        self.data: dict[str, dict[str, float]] = {}
        if self.path and self.path.is_file():
            try:
                self.data = json.loads(self.path.read_text())
            except ValueError:
                self.data = {}
        self.measured = 0

    @property
    def table(self) -> dict[str, float]:
        return self.data.setdefault(self.machine, {})

    def latency_ms(self, module: nn.Module, input_shape: tuple[int, ...], key: str | None = None) -> float:
        key = key or layer_key(module, input_shape)
        if key not in self.table:
            self.table[key] = float(self.timer(module, tuple(input_shape), threads=self.threads,
                                               repeats=self.repeats, warmup=self.warmup))
            self.measured += 1
        return self.table[key]

    def save(self) -> None:
        if self.path and self.measured:
            _atomic.write_text(self.path, json.dumps(self.data, indent=1, sort_keys=True))


def describe(cache: LatencyCache) -> dict[str, Any]:
    return {"machine": cache.machine, "cache": str(cache.path) if cache.path else None,
            "measured_now": cache.measured, "threads": cache.threads, "repeats": cache.repeats}
