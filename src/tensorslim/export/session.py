"""ONNX Runtime CPU sessions, set up alike for verification and for benchmarks.

:func:`ort_session` runs all graph optimizations (``ORT_ENABLE_ALL``), sequential execution with one inter-op
thread, denormals flushed to zero in ORT's own threads, and optionally a fixed number of intra-op threads. It
loads the file exactly as it is: what it times is what a user's own ONNX Runtime session on the file runs. The
channel padding for ORT's NCHWc kernels is a graph pass that :func:`tensorslim.export.export_onnx` applies to the
file it writes (:mod:`.realise`); ``pad_channels=True`` still pads in memory, for comparisons only (no
benchmark's headline uses it).
"""

from __future__ import annotations

import os

import onnx
import onnxruntime as ort

from . import passes
from ._common import ExportError, one_line
from .hardware import nchwc_block


def _padded_bytes(path: str | os.PathLike, block: int) -> bytes | None:
    """The model at ``path`` after the ``pad_channels`` pass, serialized; None when there is nothing to pad or
    the file cannot be read or rewritten here (ONNX Runtime then loads the file itself and reports any error)."""
    try:
        proto = onnx.load(str(path))
        if not passes.conv_chains(proto, block):
            return None
        return passes.apply_passes(proto, ["pad_channels"], block=block).SerializeToString()
    except Exception:  # noqa: BLE001 - unreadable or huge (> 2 GB) models: let ORT load the file as it is
        return None


def ort_session(path: str | os.PathLike, *, threads: int | None = None,
                pad_channels: bool = False) -> ort.InferenceSession:
    """An ONNX Runtime CPU session for the file ``path`` as it is; ``threads`` sets intra-op threads (None: ORT's
    default).

    ``pad_channels`` (opt-in, off by default): run the ``pad_channels`` pass (ranks padded to this CPU's NCHWc
    block) on the graph in memory first; exact, the file is not changed. Raises ExportError when ORT cannot
    load the file.
    """
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Flush denormals in ORT's own threads too: the tiny values that factorized layers produce can otherwise
    # take the slow denormal path (torch.set_flush_denormal only covers PyTorch's threads).
    opts.add_session_config_entry("session.set_denormal_as_zero", "1")
    if threads is not None:
        opts.intra_op_num_threads = int(threads)
    source: str | bytes = str(path)
    block = nchwc_block()
    if pad_channels and block > 1:
        source = _padded_bytes(path, block) or source
    try:
        return ort.InferenceSession(source, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as err:  # noqa: BLE001 - ORT raises its own exception types for bad files
        raise ExportError(f"{path}: ONNX Runtime cannot load the model ({one_line(err)})") from None
