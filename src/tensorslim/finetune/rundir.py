"""A fine-tuning run's output directory: its file names, ``progress.json``, the JSON round trip by which stored
and fresh settings compare, and the latency allocation, made once per run and kept in ``steps/latency.json`` so
that a resumed run and every process under torchrun use the same plan (see :mod:`.schedules`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from .. import _atomic
from .. import distributed as D
from ..errors import TensorSlimError
from ..study.latency import LatencyCache, default_cache_path
from .allocation import allocate_for_latency
from .sensitivity import measure_latency

PROGRESS = "progress.json"
RECORD = "finetune.json"
SENSITIVITY = "sensitivity.json"
LATENCY = "latency.json"  # in steps/: the latency allocation of this run
STEPS_DIR = "steps"


class FinetuneError(TensorSlimError):
    """Bad arguments or an output directory that does not belong to this run."""


def _latency_plan(original, budget, sens_table, input_shape, out, info, log, *, timer, model_latency, cache_path,
                  repeats) -> tuple[dict[str, Any], dict[str, Any]]:
    """The latency allocation (plan, record), made once per run: on rank 0, kept in ``steps/latency.json``."""

    stored = out / STEPS_DIR / LATENCY if out is not None else None
    if stored is None and info.active:
        raise FinetuneError("a latency budget under torchrun needs out= (the processes share the allocation there)")
    if stored is not None and stored.is_file():
        saved = json.loads(stored.read_text())
        if saved.get("budget") == _jsonify(budget):
            log(f"latency allocation: reusing {stored}")
            return saved["plan"], saved["record"]
    if info.is_main:
        cache = LatencyCache(cache_path or default_cache_path(), timer, repeats=repeats)
        try:
            measure_latency(original, sens_table, cache, input_shape=input_shape, log=log)
        finally:
            cache.save()  # also when interrupted: a rerun reuses the measurements made so far
        plan, rec = allocate_for_latency(original, budget, sens_table, model_latency=model_latency,
                                         input_shape=input_shape, log=log)
        if stored is not None:
            stored.parent.mkdir(parents=True, exist_ok=True)
            _atomic.write_text(stored, json.dumps(_jsonify({"budget": budget, "plan": plan, "record": rec}),
                                                  indent=1) + "\n")
    D.barrier()
    if not info.is_main:
        saved = json.loads(stored.read_text())
        plan, rec = saved["plan"], saved["record"]
    return plan, rec


def _temporary(name: str) -> bool:
    """A temporary of an atomic write (``.name.host-pid.xxx.tmp``), e.g. left by a killed run."""
    return name.startswith(".") and name.endswith(".tmp")


def _write_progress(out: Path, settings: dict, steps: list[dict]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    _atomic.write_text(out / PROGRESS, json.dumps(_jsonify({"settings": settings, "steps": steps}), indent=1) + "\n")


def _jsonify(obj: Any) -> Any:
    """A JSON round trip (tuples → lists, numbers normalised), so that stored and fresh settings compare."""
    return json.loads(json.dumps(obj, default=lambda o: o.item() if isinstance(o, torch.Tensor) else str(o)))
