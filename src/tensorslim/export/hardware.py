"""The machine that runs ONNX Runtime: CPU model and flags, logical CPUs, and what they mean for ORT.

:func:`cpu_model` and :func:`cpu_flags` come from ``/proc/cpuinfo`` (Linux; the first processor entry). Where
that file does not exist, the model falls back to :func:`platform.processor` / :func:`platform.machine` and the
flags are empty. :func:`nchwc_block` derives from the flags the channel block of ONNX Runtime's NCHWc
convolution kernels, which :func:`tensorslim.export.passes.pad_channels` pads to. :func:`machine` is the
description stored with every benchmark result (``BenchResult.machine``).
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
from typing import Any

import onnxruntime
import torch


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> dict[str, str]:
    """The ``key: value`` lines of the first processor entry of ``/proc/cpuinfo``; empty where unreadable."""
    fields: dict[str, str] = {}
    with contextlib.suppress(OSError, UnicodeDecodeError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    if fields:
                        break  # end of the first processor entry
                    continue
                key, sep, value = line.partition(":")
                if sep:
                    fields.setdefault(key.strip(), value.strip())
    return fields


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what :mod:`platform` reports."""
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as the kernel reports them (``avx2``, ``avx512f``, ...); empty off Linux."""
    return frozenset(_cpuinfo().get("flags", "").split())


def nchwc_block() -> int:
    """Channel block of ONNX Runtime's NCHWc convolution kernels on this CPU: 16 with AVX-512, 8 with AVX2,
    1 (no NCHWc layout) elsewhere."""
    flags = cpu_flags()
    return 16 if "avx512f" in flags else 8 if "avx2" in flags else 1


def machine() -> dict[str, Any]:
    """What a benchmark ran on: ``cpu`` (model name), ``cpu_count`` (logical CPUs), ``platform``, and the
    versions of ``python``, ``torch`` and ``onnxruntime``."""
    return {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__}
