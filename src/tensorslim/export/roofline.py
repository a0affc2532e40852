"""The physical limit beside a latency: a model's achieved GFLOP/s against the measured GEMM peak of this CPU.

* :func:`gemm_peak_gflops` times two large single-node ONNX Runtime models with ``threads`` intra-op threads, a
  ``MatMul`` (1024×1024 by 1024×1024) and a 3×3 ``Conv`` 256→256 on 28×28 (ORT's NCHWc kernels), float32, and
  takes the fastest run of either: the most this runtime computes per second on this CPU. Measured once per CPU
  model (:func:`.hardware.cpu_model`), ONNX Runtime version and thread count, then read from
  ``$TENSORSLIM_CACHE_DIR/roofline.json`` (default ``~/.cache/tensorslim``).
* :func:`onnx_macs` counts the multiply-accumulates of one sample of an ONNX file: ``Conv`` (output elements ×
  input channels per group × kernel), ``ConvTranspose`` alike, ``MatMul`` and ``Gemm`` (M·N·K), from the shapes
  ONNX shape inference gives with the batch axis set to 1. Other ops are not counted.
* ``GFLOP/s = 2 · MACs · batch / time``; the share of the peak says how close a layer or model runs to what the
  CPU's GEMM kernels reach (depthwise convolutions and small layers stay far below it: they are memory-bound).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
from onnx import TensorProto, helper

from .hardware import cpu_model
from .session import ort_session

PEAK_SIZE = 1024
PEAK_RUNS = 20


def _cache_path() -> Path:
    return Path(os.environ.get("TENSORSLIM_CACHE_DIR") or Path.home() / ".cache" / "tensorslim") / "roofline.json"


def gemm_peak_gflops(threads: int = 1, *, cache: bool = True) -> float:
    """The measured float32 GEMM peak of ONNX Runtime on this CPU with ``threads`` threads, in GFLOP/s."""
    key = json.dumps([cpu_model(), onnxruntime.__version__, int(threads), PEAK_SIZE, "matmul+conv"])
    path = _cache_path()
    stored: dict[str, Any] = {}
    if cache:
        with contextlib.suppress(OSError, ValueError):
            stored = json.loads(path.read_text())
        if isinstance(stored, dict) and isinstance(stored.get(key), (int, float)):
            return float(stored[key])
    n, c, hw = PEAK_SIZE, 256, 28
    rng = np.random.default_rng(0)
    matmul = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["y"])], "peak",
                               [helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n])],
                               [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, n])],
                               [onnx.numpy_helper.from_array(rng.standard_normal((n, n), dtype=np.float32) / n, "b")])
    conv = helper.make_graph([helper.make_node("Conv", ["a", "w"], ["y"], pads=[1, 1, 1, 1])], "peak",
                             [helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, c, hw, hw])],
                             [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, c, hw, hw])],
                             [onnx.numpy_helper.from_array(
                                 rng.standard_normal((c, c, 3, 3), dtype=np.float32) / (3 * c), "w")])
    peak = 0.0
    for graph, shape, flops in ((matmul, (n, n), 2 * n ** 3), (conv, (1, c, hw, hw), 2 * c * c * 9 * hw * hw)):
        with tempfile.TemporaryDirectory(prefix="tensorslim-peak-") as tmp:
            file = Path(tmp) / "peak.onnx"
            onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(file))
            sess = ort_session(file, threads=threads)
        feed = {"a": rng.standard_normal(shape, dtype=np.float32)}
        for _ in range(3):  # warm-up: pre-packing, caches, clock
            sess.run(None, feed)
        best = math.inf
        for _ in range(PEAK_RUNS):
            t0 = time.perf_counter_ns()
            sess.run(None, feed)
            best = min(best, time.perf_counter_ns() - t0)
        peak = max(peak, flops / best)  # FLOP per ns = GFLOP/s
    if cache and isinstance(stored, dict):
        from .._atomic import write_text

        stored[key] = peak
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            write_text(path, json.dumps(stored, indent=1, sort_keys=True) + "\n")
    return peak


def onnx_macs(path_or_model: str | os.PathLike | onnx.ModelProto) -> int:
    """Multiply-accumulates of one sample (batch 1) of an ONNX model's Conv, ConvTranspose, MatMul and Gemm."""
    model = path_or_model if isinstance(path_or_model, onnx.ModelProto) else onnx.load(str(path_or_model))
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for v in m.graph.input:  # the batch axis (symbolic or not) at 1
        dims = v.type.tensor_type.shape.dim
        if dims:
            dims[0].Clear()
            dims[0].dim_value = 1
    g = onnx.shape_inference.infer_shapes(m).graph
    shapes: dict[str, list[int]] = {t.name: list(t.dims) for t in g.initializer}
    for v in [*g.input, *g.value_info, *g.output]:
        dims = v.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            shapes[v.name] = [int(d.dim_value) for d in dims]
    total = 0
    for node in g.node:
        if node.domain not in ("", "ai.onnx"):
            continue
        if node.op_type in ("Conv", "ConvTranspose") and node.input[1] in shapes:
            w = shapes[node.input[1]]
            ref = node.output[0] if node.op_type == "Conv" else node.input[0]
            if ref in shapes:
                per = math.prod(w[1:]) if node.op_type == "Conv" else w[1] * math.prod(w[2:])
                total += math.prod(shapes[ref]) * per
        elif node.op_type in ("MatMul", "Gemm") and all(i in shapes for i in node.input[:2]):
            a, b = shapes[node.input[0]], shapes[node.input[1]]
            trans_a = next((x.i for x in node.attribute if x.name == "transA"), 0)
            k = a[-2] if trans_a else a[-1]
            if node.output[0] in shapes:
                total += math.prod(shapes[node.output[0]]) * k
            elif len(b) >= 2:
                total += math.prod(a) // max(k, 1) * k * b[-1]
    return int(total)


def gflops(macs: int, batch: int, ms: float) -> float:
    """GFLOP/s of ``macs`` multiply-accumulates per sample at ``batch`` samples in ``ms`` milliseconds."""
    return 2 * macs * batch / (ms * 1e6) if ms > 0 else math.inf


def roofline(models: list[tuple[str, str | os.PathLike | None, dict[int, float]]], threads: int) -> dict[str, Any]:
    """``{"peak_gflops", "threads", "models": [{"label", "macs", "gflops": {batch: x}, "share": {batch: x}}]}``
    for ``(label, onnx file or None, {batch: median ms})`` each; models without a file are left out."""
    peak = gemm_peak_gflops(threads)
    out = []
    for label, path, medians in models:
        if path is None:
            continue
        macs = onnx_macs(path)
        rates = {str(b): gflops(macs, b, ms) for b, ms in medians.items()}
        out.append({"label": label, "macs": macs, "gflops": rates,
                    "share": {b: r / peak for b, r in rates.items()}})
    return {"peak_gflops": peak, "threads": threads, "models": out}


def format_lines(roof: dict[str, Any]) -> list[str]:
    """The roofline columns for a terminal: per model and batch, GFLOP/s and the share of the GEMM peak."""
    if not roof or not roof.get("models"):
        return []
    lines = [f"roofline: measured {roof['threads']}-thread GEMM peak {roof['peak_gflops']:.1f} GFLOP/s "
             "(fastest of an ORT MatMul 1024^3 and a 3x3 Conv 256->256 @28x28)",
             f"  {'model':<22}  {'batch':>5}  {'MACs/sample':>12}  {'GFLOP/s':>8}  {'of peak':>7}"]
    for m in roof["models"]:
        for b, rate in m["gflops"].items():
            lines.append(f"  {m['label']:<22}  {b:>5}  {m['macs']:>12,}  {rate:>8.2f}  {m['share'][b]:>6.1%}")
    return lines


def of_runners(runners: list[Any], results: list[Any], threads: int) -> dict[str, Any] | None:
    """The roofline of the ONNX Runtime models of a benchmark (runners with a file, their median timings);
    None when it cannot be computed (it never fails a benchmark)."""
    try:
        return roofline([(res.label, getattr(r, "path", None), {t.batch: t.median_ms for t in res.timings})
                         for r, res in zip(runners, results)], threads)
    except Exception:  # noqa: BLE001 - a model ONNX shape inference cannot read: no roofline, the timings stand
        return None
