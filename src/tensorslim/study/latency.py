"""Measured latency of single layers on the target runtime, cached per CPU model: the latency table that
``finetune --budget latency<=F`` allocates from and that ``explore`` uses as its latency objective.

Each layer (a dense original or a factorized replacement) is timed alone by a :data:`LayerTimer` that the caller
passes in: the commands pass :func:`tensorslim.cli.explore.ort_layer_ms` (the layer exported alone to ONNX, with
the target's graph passes, and timed by :func:`tensorslim.export.benchmark` at batch 1 on ``threads`` threads,
median of ``repeats`` runs). The stages here cannot import the exporter, so the timer is injected.

The table is a JSON file ``{machine key: {layer signature: ms}}``:

* the machine key (:func:`machine_key`) names the CPU model (``/proc/cpuinfo``'s ``model name``, else the
  architecture), the core count, the runtime and its version, the deployment target
  (:mod:`tensorslim.methods.targets`) and the thread count: a table measured elsewhere is never used here;
* the layer signature (:func:`layer_key`) is a hash of the layer's type, its ``config()`` (or its scalar
  attributes for ``nn.Conv2d`` / ``nn.Linear``) and its input shape: the weights do not change the time;
  a whole model is keyed by :func:`model_key` (its build spec and input shape).

A model's latency is estimated as the dense model's measured latency plus, for every replaced layer, the
difference between its replacement's and its own measured latency (:func:`estimate_ms`).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from torch import nn

from .. import _atomic
from ..methods import targets

#: ``timer(module, input_shape, *, threads, repeats, warmup) -> milliseconds`` of one batch-1 forward of a layer
LayerTimer = Callable[..., float]
#: ``measure(model, dense, input_shape) -> {"ratio", "ms", "dense_ms"}``: a whole model's latency against the
#: dense one's, timed in alternation at batch 1 (the commands pass :func:`tensorslim.cli.explore.ort_model_latency`)
ModelLatency = Callable[..., Mapping[str, float]]
CACHE_NAME = "latency.json"


def default_cache_path() -> Path:
    """``$TENSORSLIM_CACHE_DIR/latency.json`` (default ``~/.cache/tensorslim``): the table every run shares."""
    return Path(os.environ.get("TENSORSLIM_CACHE_DIR") or Path.home() / ".cache" / "tensorslim") / CACHE_NAME


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), platform.machine())
    except OSError:
        return platform.machine()


def runtime_version(runtime: str = "ort") -> str:
    if runtime == "ort":
        import onnxruntime

        return f"ort {onnxruntime.__version__}"
    return runtime


def machine_key(threads: int = 1, *, runtime: str = "ort", target: str | None = None) -> str:
    """``cpu model|N cpus|runtime version|target T|K thread(s)``; ``target`` None: this machine's default."""
    target = targets.get(target).name
    return f"{cpu_model()}|{os.cpu_count()} cpus|{runtime_version(runtime)}|target {target}|{threads} thread(s)"


def layer_key(module: nn.Module, input_shape: Iterable[int]) -> str:
    if hasattr(module, "config"):
        cfg = module.config()
    else:
        cfg = {k: v for k, v in vars(module).items() if isinstance(v, (int, float, str, tuple, bool))}
    text = json.dumps([type(module).__name__, cfg, list(input_shape)], sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def model_key(spec: Any, input_shape: Iterable[int]) -> str:
    """The key of a whole model: its build spec (the ``model.json`` ``spec``) and input shape."""
    return f"model|{json.dumps(spec, sort_keys=True, default=str)}|{list(input_shape)}"


class LatencyCache:
    """Per-machine layer latencies in a JSON file (written atomically by :meth:`save`), measured on demand.

    ``path`` None: kept in memory only. A file that is not a JSON object of objects is ignored (and replaced
    at the next save)."""

    def __init__(self, path: str | os.PathLike | None, timer: LayerTimer, *, threads: int = 1, repeats: int = 30,
                 warmup: int = 5, runtime: str = "ort", target: str | None = None):
        self.path = Path(path) if path else None
        self.timer = timer
        self.threads, self.repeats, self.warmup = threads, repeats, warmup
        self.machine = machine_key(threads, runtime=runtime, target=target)
        self.data: dict[str, dict[str, float]] = {}
        if self.path and self.path.is_file():
            try:
                data = json.loads(self.path.read_text())
            except (OSError, ValueError):
                data = None
            if isinstance(data, dict) and all(isinstance(v, dict) for v in data.values()):
                self.data = data
        self.measured = 0

    @property
    def table(self) -> dict[str, float]:
        return self.data.setdefault(self.machine, {})

    def latency_ms(self, module: nn.Module, input_shape: tuple[int, ...], key: str | None = None) -> float:
        key = key or layer_key(module, input_shape)
        value = self.table.get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            self.table[key] = float(self.timer(module, tuple(input_shape), threads=self.threads,
                                               repeats=self.repeats, warmup=self.warmup))
            self.measured += 1
        return self.table[key]

    def save(self) -> None:
        if self.path and self.measured:
            _atomic.write_text(self.path, json.dumps(self.data, indent=1, sort_keys=True))


def estimate_ms(model_ms: float, swaps: Iterable[tuple[float, float]]) -> float:
    """The model estimate: ``model_ms`` + Σ (replacement ms − dense layer ms) over ``swaps`` = (dense, replacement)."""
    return model_ms + sum(new - dense for dense, new in swaps)


def describe(cache: LatencyCache) -> dict[str, Any]:
    return {"machine": cache.machine, "cache": str(cache.path) if cache.path else None,
            "measured_now": cache.measured, "threads": cache.threads, "repeats": cache.repeats}


__all__ = ["CACHE_NAME", "LatencyCache", "LayerTimer", "ModelLatency", "cpu_model", "default_cache_path",
           "describe", "estimate_ms", "layer_key", "machine_key", "model_key"]
