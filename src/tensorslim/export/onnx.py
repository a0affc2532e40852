"""Export a model to ONNX and check the file against PyTorch with ONNX Runtime.

:func:`export_onnx` puts the model in eval mode (restoring its mode afterwards), exports it with a dynamic
batch axis by default, runs ``onnx.checker`` and then compares ONNX Runtime (``CPUExecutionProvider``) with
PyTorch on random inputs at several batch sizes and, optionally, on real inputs (e.g. a batch of dataset
images). The error is reported as the max absolute difference and the max relative difference, the latter
relative to the largest ``|output|`` of PyTorch (a scale-free measure that does not explode on outputs near
zero). Above ``rtol`` a :class:`VerificationError` is raised. The file is written under a temporary name and
renamed only once every check passed: a failed export never leaves a file behind.

Exporter choice
---------------
torch 2.13 ships two exporters; both produce plain ``Conv`` / ``Gemm`` / ``MatMul`` nodes for our layers and
fold eval-mode BatchNorm into the preceding convolution. ``exporter="auto"`` (the default) uses the legacy
**TorchScript** exporter first and falls back to the **dynamo** (``torch.export``) exporter only when the
first one fails to export or to verify:

* TorchScript exports our models in 0.05-1.5 s, the dynamo exporter in 2-8 s (resnet20: 1.3 s vs 8.3 s on
  two cores) — it matters for ``bench`` (which exports before timing) and for the test suite.
* TorchScript keeps the graph as the forward pass runs it: a layer that rebuilds its dense weight from
  factors in ``forward`` shows up as a ``MatMul`` between initializers (flagged by
  :attr:`GraphInfo.weight_only_nodes`). The dynamo exporter's optimizer constant-folds that into a dense
  initializer, which hides the problem (it then shows only as :attr:`ExportResult.onnx_params` exceeding the
  model's own parameter count; both are reported).
* TorchScript covers opsets 7-20, the dynamo exporter 18-23 (``auto`` picks dynamo for opset 21+).
* Weakness of TorchScript: tracing turns data-dependent Python control flow and ``int(x.shape[0])`` into
  constants. It emits ``TracerWarning`` for these (kept in :attr:`ExportResult.notes`; note that shape
  comparisons such as a ResNet's ``if y.shape == x.shape`` warn too, harmlessly). Verification therefore
  always runs ONNX Runtime at batch sizes *different* from the traced one (1 and 3, traced at 2), which
  catches a frozen batch size; ``auto`` then retries with the dynamo exporter. Use ``exporter="dynamo"`` for
  models with value-dependent branches: it refuses them instead of tracing one branch.

ONNX Runtime sessions
---------------------
:func:`ort_session` (used by verification and by ``bench``) runs all graph optimizations and, on x86 CPUs, first
zero-pads the inner channels of conv chains — the ranks of CP (1×1 → depthwise → 1×1) and Tucker (1×1 → core →
1×1) layers — to a multiple of ONNX Runtime's NCHWc block (16 with AVX-512, 8 with AVX2), in memory
(:func:`pad_conv_channels`; exact, the file on disk is unchanged). Without it a rank such as 67 keeps the
depthwise and last 1×1 conv out of ORT's blocked-layout kernels, with layout reorders in between: CP-3 layers
ran 1.3–1.7× slower (VGG-size layers, one thread, timed in alternation). Users running ORT on the exported file
themselves get the same effect by choosing ranks that are multiples of 16.

Graph inspection
----------------
:func:`node_summary` counts op types; :func:`inspect_onnx` returns a :class:`GraphInfo` with, besides the
counts, the number of initializer elements and the compute nodes (``MatMul``, ``Gemm``, ``Einsum``, ``Conv``,
...) whose inputs are all constants, i.e. weight reconstruction done in the graph.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import math
import os
import re
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from .._atomic import atomic_path
from ..errors import ModelError

Exporter = Literal["auto", "torchscript", "dynamo"]

#: Opsets each exporter can target in torch 2.13.
TORCHSCRIPT_OPSETS = range(7, 21)
DYNAMO_OPSETS = range(18, 24)
#: Batch sizes at which a dynamic-batch export is verified; the example input used for tracing has batch 2.
VERIFY_BATCHES = (1, 3)
TRACE_BATCH = 2
#: Compute ops that, fed only by constants, mean the graph recomputes a weight on every run.
COMPUTE_OPS = frozenset({"MatMul", "Gemm", "Einsum", "Conv", "ConvTranspose", "MatMulInteger",
                         "QLinearMatMul"})
#: Real inputs are run through both runtimes in chunks of at most this many samples.
_INPUT_CHUNK = 256


class ExportError(ModelError):
    """The model cannot be exported to ONNX, or a file is not a usable ONNX model."""


class VerificationError(ExportError):
    """ONNX Runtime's output differs from PyTorch's beyond the tolerance, or ORT cannot run the file."""


@dataclasses.dataclass(frozen=True)
class Check:
    """One comparison of ONNX Runtime against PyTorch."""

    source: str  # "random" or "inputs" (real samples, all chunks merged into one entry)
    samples: int  # batch size of the run (random) or number of real samples checked (inputs)
    max_abs_err: float
    max_rel_err: float  # max |ort - torch| / max |torch|

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class GraphInfo:
    """What an ONNX file contains (see :func:`inspect_onnx`)."""

    path: Path
    opset: int | None
    ops: dict[str, int]  # op type -> count, most frequent first (nodes of subgraphs included)
    inputs: list[tuple[str, list[int | str]]]  # name, shape (symbolic dims as their name, "?" if unnamed)
    outputs: list[tuple[str, list[int | str]]]
    initializer_params: int  # elements of the floating-point initializers (the weights as stored in the file)
    initializer_bytes: int  # bytes of all initializers
    weight_only_nodes: list[str]  # "OpType name" of compute nodes whose inputs are all constants

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["path"] = str(self.path)
        return d


@dataclasses.dataclass
class ExportResult:
    """The outcome of :func:`export_onnx`; ``to_dict()`` is JSON-able."""

    path: Path
    exporter: str  # "torchscript" or "dynamo": the one that produced the file
    opset: int | None
    batch: str | int  # "dynamic" or the fixed batch size
    input_shape: tuple[int, ...]  # without the batch axis
    file_bytes: int
    ops: dict[str, int]
    torch_params: int  # elements in the model's parameters and buffers
    onnx_params: int  # elements of the floating-point ONNX initializers
    weight_only_nodes: list[str]
    checks: list[Check]
    rtol: float
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def verified(self) -> bool:
        return bool(self.checks)

    @property
    def max_abs_err(self) -> float | None:
        return max((c.max_abs_err for c in self.checks), default=None)

    @property
    def max_rel_err(self) -> float | None:
        return max((c.max_rel_err for c in self.checks), default=None)

    @property
    def reconstructs_weights(self) -> bool:
        """True when the graph computes on weights alone, or stores more weights than the model has.

        Either means a factorized layer's dense weight is rebuilt (at run time, or folded by the exporter).
        """
        return bool(self.weight_only_nodes) or self.onnx_params > self.torch_params

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "exporter": self.exporter,
            "opset": self.opset,
            "batch": self.batch,
            "input_shape": list(self.input_shape),
            "file_bytes": self.file_bytes,
            "ops": dict(self.ops),
            "torch_params": self.torch_params,
            "onnx_params": self.onnx_params,
            "weight_only_nodes": list(self.weight_only_nodes),
            "reconstructs_weights": self.reconstructs_weights,
            "checks": [c.to_dict() for c in self.checks],
            "max_abs_err": self.max_abs_err,
            "max_rel_err": self.max_rel_err,
            "rtol": self.rtol,
            "notes": list(self.notes),
        }

    def summary(self) -> str:
        """One line for a terminal."""
        ops = ", ".join(f"{k}×{v}" for k, v in list(self.ops.items())[:8])
        err = (f"max abs err {self.max_abs_err:.2e}, max rel err {self.max_rel_err:.2e}"
               if self.checks else "not verified")
        return (f"{self.path}: {self.file_bytes:,} bytes, opset {self.opset}, {self.exporter} exporter, "
                f"batch {self.batch}; {err}; ops {ops}")


# ----------------------------------------------------------------------------------------------------------
# small helpers


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def one_line(text: object, limit: int = 300) -> str:
    """The first meaningful line of ``text`` (ANSI colours removed), shortened to ``limit`` characters."""
    lines = [ln.strip() for ln in _ANSI.sub("", str(text)).splitlines()]
    lines = [ln for ln in lines if ln]
    line = lines[0] if lines else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _exception_chain(err: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    seen: set[int] = set()
    cur: BaseException | None = err
    while cur is not None and id(cur) not in seen:
        chain.append(cur)
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return chain


def _check_module(model: Any) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise ExportError(f"expected a torch.nn.Module to export, got {type(model).__name__}")
    return model


def check_input_shape(input_shape: Any, what: str = "input shape") -> tuple[int, ...]:
    """``input_shape`` (without batch, e.g. ``(1, 28, 28)``) as a tuple of positive ints, else ExportError."""
    if input_shape is None:
        raise ExportError(f"{what} is required (e.g. 1,28,28 for channels, height, width; no batch axis)")
    if (isinstance(input_shape, (str, bytes)) or not isinstance(input_shape, Sequence)
            or len(input_shape) == 0):
        raise ExportError(f"{what} must be a non-empty sequence of positive integers, got {input_shape!r}")
    dims = []
    for d in input_shape:
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
            raise ExportError(f"{what} must contain positive integers only, got {list(input_shape)!r}")
        dims.append(int(d))
    return tuple(dims)


def _check_batch(batch: Any) -> str | int:
    if batch == "dynamic" and isinstance(batch, str):
        return "dynamic"
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise ExportError(f"batch must be 'dynamic' or a positive integer, got {batch!r}")
    return int(batch)


def _check_opset(opset: Any, exporter: str) -> int | None:
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


def _as_inputs(inputs: Any, shape: tuple[int, ...] | None) -> torch.Tensor | None:
    """Real inputs as a float32 CPU tensor of shape (N, *shape)."""
    if inputs is None:
        return None
    if isinstance(inputs, (list, tuple)) and inputs and all(isinstance(t, torch.Tensor) for t in inputs):
        try:
            inputs = torch.stack(list(inputs))
        except RuntimeError as err:
            raise ExportError(f"inputs: cannot stack the given tensors ({one_line(err)})") from None
    if isinstance(inputs, np.ndarray):
        inputs = torch.from_numpy(np.ascontiguousarray(inputs))
    if not isinstance(inputs, torch.Tensor):
        raise ExportError("inputs must be a tensor or array of shape (N, C, H, W), "
                          f"got {type(inputs).__name__}")
    x = inputs.detach().to("cpu", torch.float32)
    if shape is not None and tuple(x.shape) == shape:
        x = x.unsqueeze(0)
    if x.ndim < 2 or x.shape[0] == 0:
        raise ExportError("inputs must hold at least one sample with a batch axis, "
                          f"got shape {tuple(x.shape)}")
    if shape is not None and tuple(x.shape[1:]) != shape:
        raise ExportError(f"inputs have sample shape {tuple(x.shape[1:])}, the input shape is {shape}")
    if not torch.isfinite(x).all():
        raise ExportError("inputs contain NaN or inf")
    return x


def _flatten_outputs(out: Any, where: str) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (list, tuple)) and out and all(isinstance(t, torch.Tensor) for t in out):
        return list(out)
    raise ExportError(f"{where}: the model must return a tensor or a tuple of tensors, "
                      f"got {type(out).__name__}")


# ----------------------------------------------------------------------------------------------------------
# probe: run the model once, name the failing module, and remember which module calls which aten op


def _norm_op(name: str) -> str:
    """``aten::_linalg_svd.default`` / ``aten._linalg_svd`` -> ``linalg_svd``."""
    name = name.split("::")[-1]
    if name.startswith("aten."):
        name = name[len("aten."):]
    name = name.split(".")[0]
    return name.lstrip("_")


@contextlib.contextmanager
def _module_stack(model: nn.Module) -> Iterator[list[tuple[str, nn.Module]]]:
    """Keep a stack of the modules whose forward is running (innermost last) while the block runs."""
    stack: list[tuple[str, nn.Module]] = []
    handles = []

    def pre(name: str):
        def hook(mod: nn.Module, args: Any) -> None:
            stack.append((name, mod))
        return hook

    def post(mod: nn.Module, args: Any, out: Any) -> None:
        if stack and stack[-1][1] is mod:
            stack.pop()

    for name, mod in model.named_modules():
        handles.append(mod.register_forward_pre_hook(pre(name)))
        handles.append(mod.register_forward_hook(post))
    try:
        yield stack
    finally:
        for h in handles:
            h.remove()


def _describe(name: str, mod: nn.Module) -> str:
    kind = type(mod).__name__
    return f"module {name!r} ({kind})" if name else f"the top-level module ({kind})"


def _probe(model: nn.Module, example: torch.Tensor) -> int:
    """Run ``model(example)`` and return its number of outputs; a failing forward raises ExportError naming
    the innermost module that was running."""
    with _module_stack(model) as stack:
        try:
            with torch.no_grad():
                out = model(example)
        except Exception as err:  # noqa: BLE001 - any failure of the user's forward is reported in one line
            where = _describe(*stack[-1]) if stack else _describe("", model)
            raise ExportError(f"the model's forward fails in {where} on input of shape "
                              f"{tuple(example.shape)}: {one_line(err)}") from None
    return len(_flatten_outputs(out, "forward"))


def _op_sites(model: nn.Module, example: torch.Tensor) -> dict[str, str]:
    """Per aten op (normalised name), the first module (described) whose forward calls it.

    Only run after an exporter failed: the dispatch mode imports torch._dynamo (~3 s, once per process).
    Returns an empty dict when the op cannot be attributed.
    """
    sites: dict[str, str] = {}
    try:
        from torch.utils._python_dispatch import TorchDispatchMode  # private but long-stable API
    except ImportError:  # pragma: no cover - naming the module is a nicety
        return sites
    with _module_stack(model) as stack:

        class _Recorder(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
                key = _norm_op(str(getattr(func, "__name__", func)))
                if key not in sites and stack:
                    sites[key] = _describe(*stack[-1])
                return func(*args, **(kwargs or {}))

        with contextlib.suppress(Exception), torch.no_grad(), _Recorder():
            model(example)
    return sites


def _blame(err: BaseException, model: nn.Module, example: torch.Tensor) -> str:
    """A one-line reason for an exporter failure, naming the aten op and the module that calls it if known."""
    chain = _exception_chain(err)
    text = " ".join(_ANSI.sub("", str(e)) for e in chain)
    # The innermost exception usually says what is wrong; the dynamo exporter wraps it in long guidance text.
    reason = ""
    for e in reversed(chain):
        line = one_line(e)
        if line and not line.startswith("Failed to "):
            reason = line
            break
    reason = reason or one_line(err) or type(err).__name__
    ops = [_norm_op(m.group(1)) for m in re.finditer(r"aten(?:::|\.)(\w+)", text)]
    if ops:
        sites = _op_sites(model, example)
        for key in ops:
            if key in sites:
                return f"{sites[key]} uses aten::{key}: {reason}"
    return reason


# ----------------------------------------------------------------------------------------------------------
# exporters


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
    import sys
    import tempfile

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


def _run_exporter(exporter: str, model: nn.Module, example: torch.Tensor, dest: Path, *, opset: int | None,
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


def _exporter_order(exporter: str, opset: int | None) -> list[str]:
    if exporter != "auto":
        return [exporter]
    if opset is not None and opset not in TORCHSCRIPT_OPSETS:
        return ["dynamo"]
    if opset is not None and opset not in DYNAMO_OPSETS:
        return ["torchscript"]
    return ["torchscript", "dynamo"]


# ----------------------------------------------------------------------------------------------------------
# verification


def nchwc_block() -> int:
    """Channel block of ONNX Runtime's NCHWc convolution kernels on this CPU: 16 with AVX-512, 8 with AVX2,
    1 (no NCHWc layout) elsewhere. Read from ``/proc/cpuinfo`` (Linux); other systems get 1."""
    global _NCHWC_BLOCK
    if _NCHWC_BLOCK is None:
        flags: set[str] = set()
        with contextlib.suppress(OSError):
            with open("/proc/cpuinfo") as f:
                for line in f:
                    if line.startswith("flags"):
                        flags = set(line.split(":", 1)[1].split())
                        break
        _NCHWC_BLOCK = 16 if "avx512f" in flags else 8 if "avx2" in flags else 1
    return _NCHWC_BLOCK


_NCHWC_BLOCK: int | None = None


def pad_conv_channels(proto: Any, block: int) -> int:
    """Zero-pad the channels *inside* chains of convolutions to a multiple of ``block``, in place.

    A chain is a ``Conv`` (groups 1) whose output feeds only depthwise ``Conv`` nodes (groups == channels, one
    filter per channel) and finally one ``Conv`` with groups 1 — the inner channels of a CP (1×1 → depthwise →
    1×1) or Tucker (1×1 → core → 1×1) layer, i.e. its ranks. The first conv gets zero filters (and zero bias),
    the depthwise convs zero filters, the last conv zero input columns: the output is exactly unchanged.

    Why: ONNX Runtime's NCHWc transformer (``ORT_ENABLE_ALL`` on x86) runs a convolution in its blocked layout
    only when the channel counts are multiples of the CPU's block (16 with AVX-512, 8 with AVX2); a rank such as
    67 otherwise sends the depthwise and the last 1×1 conv back to plain NCHW kernels with layout reorders in
    between, which measured 1.3–1.7× slower than the padded chain (see ``benchmarks/bench_layers.py``).
    Returns the number of chains padded; initializers shared with other nodes are copied, never changed in place.
    """
    from onnx import numpy_helper

    if block <= 1:
        return 0
    g = proto.graph
    inits = {t.name: t for t in g.initializer}
    consumers: dict[str, list[Any]] = {}
    for node in g.node:
        for name in node.input:
            if name:
                consumers.setdefault(name, []).append(node)
    graph_outputs = {o.name for o in g.output}

    def attr(node: Any, name: str, default: Any) -> Any:
        for a in node.attribute:
            if a.name == name:
                return a.i if a.type == a.INT else list(a.ints)
        return default

    def weight(node: Any) -> np.ndarray | None:
        if node.op_type != "Conv" or node.domain not in ("", "ai.onnx") or len(node.input) < 2:
            return None
        init = inits.get(node.input[1])
        return None if init is None else numpy_helper.to_array(init)

    def only_consumer(tensor: str) -> Any | None:
        users = consumers.get(tensor, [])
        if len(users) != 1 or tensor in graph_outputs or users[0].input[0] != tensor:
            return None
        return users[0]

    def set_input(node: Any, index: int, array: np.ndarray) -> None:
        """Replace initializer input ``index`` of ``node`` by ``array`` under a fresh name."""
        base = node.input[index]
        name, k = f"{base}_pad", 0
        while name in inits:
            k += 1
            name = f"{base}_pad{k}"
        t = numpy_helper.from_array(array.astype(numpy_helper.to_array(inits[base]).dtype, copy=False), name)
        g.initializer.append(t)
        inits[name] = t
        node.input[index] = name

    padded = 0
    for first in list(g.node):
        w0 = weight(first)
        if w0 is None or attr(first, "group", 1) != 1 or w0.ndim != 4:
            continue
        channels = int(w0.shape[0])
        extra = -channels % block
        if extra == 0:
            continue
        chain: list[Any] = []
        node = only_consumer(first.output[0])
        while node is not None:
            w = weight(node)
            group = attr(node, "group", 1)
            if w is None or w.ndim != 4:
                node = None
            elif group == channels and w.shape[0] == channels and w.shape[1] == 1:
                chain.append(node)
                node = only_consumer(node.output[0])
            elif group == 1 and w.shape[1] == channels:
                break
            else:
                node = None
        if node is None:
            continue
        if len(first.input) > 2 and first.input[2] not in inits:
            continue
        if any(len(n.input) > 2 and n.input[2] for n in chain):
            continue  # a bias inside the chain would make the padded channels non-zero
        set_input(first, 1, np.concatenate([w0, np.zeros((extra, *w0.shape[1:]), w0.dtype)]))
        if len(first.input) > 2 and first.input[2]:
            b0 = numpy_helper.to_array(inits[first.input[2]])
            set_input(first, 2, np.concatenate([b0, np.zeros(extra, b0.dtype)]))
        for dw in chain:
            w = weight(dw)
            set_input(dw, 1, np.concatenate([w, np.zeros((extra, *w.shape[1:]), w.dtype)]))
            for a in dw.attribute:
                if a.name == "group":
                    a.i = channels + extra
        w = weight(node)
        set_input(node, 1, np.concatenate([w, np.zeros((w.shape[0], extra, *w.shape[2:]), w.dtype)], axis=1))
        padded += 1
    if padded:
        used = {name for n in g.node for name in n.input} | graph_outputs | {i.name for i in g.input}
        keep = [t for t in g.initializer if t.name in used]
        del g.initializer[:]
        g.initializer.extend(keep)
        # shapes recorded for the padded tensors are stale: drop them, ORT infers them again
        stale = {n.output[0] for n in g.node}
        keep_vi = [v for v in g.value_info if v.name not in stale]
        del g.value_info[:]
        g.value_info.extend(keep_vi)
    return padded


def _padded_bytes(path: str | os.PathLike, block: int) -> bytes | None:
    """The model at ``path`` with :func:`pad_conv_channels` applied, serialized; None when nothing was padded or
    the file cannot be read or rewritten here (ONNX Runtime then loads the file itself and reports any error)."""
    import onnx

    try:
        proto = onnx.load(str(path))
        if not pad_conv_channels(proto, block):
            return None
        return proto.SerializeToString()
    except Exception:  # noqa: BLE001 - unreadable or huge (> 2 GB) models: let ORT load the file as it is
        return None


def ort_session(path: str | os.PathLike, *, threads: int | None = None,
                pad_channels: bool = True):  # -> onnxruntime.InferenceSession
    """An ONNX Runtime CPU session for ``path``; ``threads`` sets intra-op threads (None: ORT's default).

    ``pad_channels``: pad the inner channels of conv chains (factorized layers' ranks) to ONNX Runtime's NCHWc
    block in memory (:func:`pad_conv_channels`; exact, the file is not changed).
    """
    import onnxruntime as ort

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
    if pad_channels and nchwc_block() > 1:
        source = _padded_bytes(path, nchwc_block()) or source
    try:
        return ort.InferenceSession(source, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as err:  # noqa: BLE001 - ORT raises its own exception types for bad files
        raise ExportError(f"{path}: ONNX Runtime cannot load the model ({one_line(err)})") from None


def _compare(ref: list[torch.Tensor], got: list[np.ndarray], where: str) -> tuple[float, float]:
    if len(ref) != len(got):
        raise VerificationError(f"{where}: ONNX Runtime returns {len(got)} outputs, PyTorch {len(ref)}")
    max_abs, max_rel = 0.0, 0.0
    for i, (r, g) in enumerate(zip(ref, got)):
        r = r.detach().cpu().numpy().astype(np.float64)
        g = np.asarray(g, dtype=np.float64)
        if r.shape != g.shape:
            raise VerificationError(
                f"{where}: output {i} has shape {g.shape} in ONNX Runtime but {r.shape} in PyTorch "
                "(a shape was frozen during export; try exporter='dynamo' or a fixed batch)")
        diff = np.abs(r - g)
        both_nan = np.isnan(r) & np.isnan(g)
        diff = np.where(both_nan, 0.0, np.where(np.isnan(diff), np.inf, diff))
        scale = float(np.max(np.abs(np.nan_to_num(r, nan=0.0)), initial=0.0))
        a = float(np.max(diff, initial=0.0))
        rel = a / scale if scale > 0 else (0.0 if a == 0 else math.inf)
        max_abs, max_rel = max(max_abs, a), max(max_rel, rel)
    return max_abs, max_rel


def _verify(model: nn.Module, onnx_path: Path, shape: tuple[int, ...], batch: str | int,
            inputs: torch.Tensor | None, rtol: float, seed: int, name: str) -> list[Check]:
    sess = ort_session(onnx_path, pad_channels=False)  # check the file exactly as written
    in_name = sess.get_inputs()[0].name
    gen = torch.Generator().manual_seed(seed)
    runs: list[tuple[str, torch.Tensor]] = []
    for b in (VERIFY_BATCHES if batch == "dynamic" else (int(batch),)):
        runs.append(("random", torch.randn((b, *shape), generator=gen)))
    if inputs is not None:
        if batch == "dynamic":
            runs += [("inputs", c) for c in torch.split(inputs, _INPUT_CHUNK)]
        else:
            b = int(batch)
            if inputs.shape[0] < b:  # too few samples for one fixed-size batch: repeat them
                inputs = inputs.repeat((math.ceil(b / inputs.shape[0]),) + (1,) * (inputs.ndim - 1))
            runs += [("inputs", c) for c in torch.split(inputs, b) if c.shape[0] == b]
    checks: list[Check] = []
    for source, x in runs:
        where = f"{name} on {source} input at batch {x.shape[0]}"
        with torch.no_grad():
            ref = _flatten_outputs(model(x), where)
        try:
            got = sess.run(None, {in_name: x.numpy()})
        except Exception as err:  # noqa: BLE001 - ORT's own exception types
            raise VerificationError(f"{where}: ONNX Runtime cannot run the exported model "
                                    f"({one_line(err)})") from None
        a, r = _compare(ref, got, where)
        if not r <= rtol:  # also catches NaN
            raise VerificationError(f"{where}: ONNX Runtime differs from PyTorch: max abs error {a:.3g}, "
                                    f"max relative error {r:.3g} > rtol {rtol:g}")
        last = checks[-1] if checks else None
        if source == "inputs" and last is not None and last.source == "inputs":  # one entry for all chunks
            checks[-1] = Check("inputs", last.samples + int(x.shape[0]), max(last.max_abs_err, a),
                               max(last.max_rel_err, r))
        else:
            checks.append(Check(source, int(x.shape[0]), a, r))
    return checks


# ----------------------------------------------------------------------------------------------------------
# public API


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    input_shape: Sequence[int] | None = None,
    *,
    opset: int | None = None,
    batch: str | int = "dynamic",
    verify: bool = True,
    inputs: torch.Tensor | np.ndarray | Sequence[torch.Tensor] | None = None,
    rtol: float = 1e-4,
    exporter: Exporter = "auto",
    seed: int = 0,
) -> ExportResult:
    """Export ``model`` to the ONNX file ``path`` and check it with ONNX Runtime.

    Args:
        model: the network; exported in eval mode, its own mode is restored afterwards.
        path: destination file, written atomically (nothing is written when any step fails).
        input_shape: one sample's shape without the batch axis, e.g. ``(1, 28, 28)``. May be omitted when
            ``inputs`` is given (taken from it) or the model was built or loaded by tensorslim (its own).
        opset: ONNX opset; None lets the exporter choose (20 in torch 2.13).
        batch: ``"dynamic"`` (a symbolic batch axis; verified at batch 1 and 3) or a fixed batch size.
        verify: compare ONNX Runtime with PyTorch; raises :class:`VerificationError` above ``rtol``.
        inputs: real samples, shape ``(N, *input_shape)`` (a tensor, an array or a list of tensors); they are
            checked too, besides the random inputs.
        rtol: tolerance on ``max |ort - torch| / max |torch|`` for every output.
        exporter: ``"auto"`` (TorchScript, falling back to dynamo; see the module docstring),
            ``"torchscript"`` or ``"dynamo"``.
        seed: seed of the random verification inputs.

    Raises:
        ExportError: bad arguments, a forward pass that fails (naming the module), an operator the exporter
            cannot translate (naming the operator and the module that calls it), an invalid ONNX graph.
        VerificationError: ONNX Runtime cannot run the file, or its outputs differ from PyTorch's.
    """
    model = _check_module(model)
    if exporter not in ("auto", "torchscript", "dynamo"):
        raise ExportError(f"exporter must be 'auto', 'torchscript' or 'dynamo', got {exporter!r}")
    batch = _check_batch(batch)
    opset = _check_opset(opset, exporter)
    if isinstance(rtol, bool) or not isinstance(rtol, (int, float)) or not rtol > 0:
        raise ExportError(f"rtol must be a positive number, got {rtol!r}")
    real = _as_inputs(inputs, None if input_shape is None else check_input_shape(input_shape))
    if input_shape is None and real is not None:
        input_shape = tuple(real.shape[1:])
    if input_shape is None:  # models built or loaded by tensorslim know their input shape
        input_shape = getattr(model, "tensorslim_input_shape", None)
    shape = check_input_shape(input_shape)
    path = Path(path)
    if path.is_dir():
        raise ExportError(f"{path}: is a directory; give the path of the .onnx file to write")
    if any(p.device.type != "cpu" for p in model.parameters()):
        raise ExportError("export the model from the CPU: move it with model.cpu() first")

    was_training = model.training
    model.eval()
    try:
        example = torch.randn((TRACE_BATCH if batch == "dynamic" else int(batch), *shape),
                              generator=torch.Generator().manual_seed(seed + 1))
        n_outputs = _probe(model, example)
        notes: list[str] = []
        failures: list[tuple[str, ExportError]] = []
        with atomic_path(path) as tmp:
            for name in _exporter_order(exporter, opset):
                try:
                    notes_one = _export_and_check(model, example, tmp, name, opset=opset, batch=batch,
                                                  n_outputs=n_outputs)
                    checks = (_verify(model, tmp, shape, batch, real, float(rtol), seed, path.name)
                              if verify else [])
                except ExportError as err:
                    failures.append((name, err))
                    continue
                notes.extend(notes_one)
                notes.extend(f"{n} exporter failed: {e}" for n, e in failures)
                used = name
                break
            else:
                raise _combined(failures)
            info = inspect_onnx(tmp)
            file_bytes = tmp.stat().st_size
    finally:
        model.train(was_training)
    torch_params = sum(t.numel() for t in model.parameters()) + sum(t.numel() for t in model.buffers()
                                                                     if t.is_floating_point())
    return ExportResult(path=path, exporter=used, opset=info.opset, batch=batch, input_shape=shape,
                        file_bytes=file_bytes, ops=info.ops, torch_params=int(torch_params),
                        onnx_params=info.initializer_params, weight_only_nodes=info.weight_only_nodes,
                        checks=checks, rtol=float(rtol), notes=notes)


def _export_and_check(model: nn.Module, example: torch.Tensor, dest: Path, exporter: str, *,
                      opset: int | None, batch: str | int, n_outputs: int) -> list[str]:
    import onnx

    try:
        notes = _run_exporter(exporter, model, example, dest, opset=opset, dynamic=batch == "dynamic",
                              n_outputs=n_outputs)
    except Exception as err:  # noqa: BLE001 - exporters raise many types; all mean "cannot export this"
        raise ExportError(f"ONNX export ({exporter}) failed: {_blame(err, model, example)}") from None
    try:
        onnx.checker.check_model(str(dest), full_check=True)
    except Exception as err:  # noqa: BLE001 - checker raises ValidationError and others
        raise ExportError(f"ONNX export ({exporter}) produced an invalid graph: {one_line(err)}") from None
    return notes


def _combined(failures: list[tuple[str, ExportError]]) -> ExportError:
    """One error for all exporters that failed: the first one's message, the others' appended briefly."""
    first_name, first = failures[0]
    msg = str(first)
    for name, err in failures[1:]:
        reason = str(err).removeprefix(f"ONNX export ({name}) failed: ")
        msg += f" (the {name} exporter failed too: {one_line(reason, 120)})"
    return type(first)(msg)


def _load_model_proto(path: str | os.PathLike):  # -> onnx.ModelProto
    import onnx

    path = Path(path)
    if not path.exists():
        raise ExportError(f"{path}: file not found")
    if not path.is_file():
        raise ExportError(f"{path}: not a file")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # noqa: BLE001 - protobuf DecodeError and friends
        raise ExportError(f"{path}: not an ONNX model ({one_line(err, 160)})") from None
    # protobuf parses many non-ONNX byte strings (even an empty file) into an empty message
    if proto.ir_version <= 0 or not proto.opset_import or not proto.graph.node:
        raise ExportError(f"{path}: not an ONNX model (no graph, IR version or opset found)")
    return proto


def _dims(value_info) -> list[int | str]:  # noqa: ANN001 - onnx.ValueInfoProto
    dims: list[int | str] = []
    for d in value_info.type.tensor_type.shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        else:
            dims.append(d.dim_param or "?")
    return dims


def inspect_onnx(path: str | os.PathLike) -> GraphInfo:
    """Op counts, inputs/outputs, stored weights and weight-only compute nodes of an ONNX file."""
    import onnx

    proto = _load_model_proto(path)
    g = proto.graph
    ops: Counter[str] = Counter()

    def walk(graph) -> None:  # noqa: ANN001 - onnx.GraphProto
        for node in graph.node:
            ops[node.op_type] += 1
            for attr in node.attribute:
                if attr.HasField("g"):
                    walk(attr.g)
                for sub in attr.graphs:
                    walk(sub)

    walk(g)
    float_types = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE,
                   onnx.TensorProto.BFLOAT16}
    n_init = n_bytes = 0
    for t in g.initializer:
        n = int(np.prod(t.dims)) if len(t.dims) else 1
        if t.data_type in float_types:  # weights; integer initializers are shapes and indices
            n_init += n
        try:
            n_bytes += n * np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.data_type)).itemsize
        except (KeyError, TypeError, ValueError):  # string tensors and exotic types: count 4 bytes
            n_bytes += 4 * n
    # constants: initializers, Constant nodes, and anything computed from constants alone
    const = {t.name for t in g.initializer}
    weight_only: list[str] = []
    for node in g.node:  # nodes are topologically sorted in a valid ONNX graph
        ins = [i for i in node.input if i]
        if node.op_type == "Constant" or (ins and all(i in const for i in ins)):
            const.update(node.output)
            if node.op_type in COMPUTE_OPS:
                weight_only.append(f"{node.op_type} {node.name or node.output[0]}")
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    init_names = {t.name for t in g.initializer}
    return GraphInfo(
        path=Path(path),
        opset=opset,
        ops=dict(ops.most_common()),
        inputs=[(v.name, _dims(v)) for v in g.input if v.name not in init_names],
        outputs=[(v.name, _dims(v)) for v in g.output],
        initializer_params=n_init,
        initializer_bytes=n_bytes,
        weight_only_nodes=weight_only,
    )


def node_summary(path: str | os.PathLike) -> dict[str, int]:
    """Counts of op types in the ONNX file ``path`` (subgraphs included), most frequent first."""
    return inspect_onnx(path).ops


# ----------------------------------------------------------------------------------------------------------
# convenience for the command line: model directory / built-in name in, verified ONNX file out


def dataset_inputs(name: str, samples: int = 64, *, split: str = "test",
                   data_dir: str | os.PathLike | None = None) -> torch.Tensor:
    """The first ``samples`` images (normalised, no augmentation) of a dataset split, as ``(N, C, H, W)``.

    Raises ``tensorslim.errors.DataError`` when the dataset is not available.
    """
    from .. import data

    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ExportError(f"samples must be a positive integer, got {samples!r}")
    ds = data.load(name, split, data_dir, augment=False)
    x, _ = next(iter(data.batches(ds, min(samples, len(ds)), shuffle=False)))
    return x


def export_target(target: str | os.PathLike, out: str | os.PathLike, *,
                  input_shape: Sequence[int] | None = None, weights: str | None = None,
                  dataset: str | None = "auto", samples: int = 64,
                  data_dir: str | os.PathLike | None = None, **options: Any) -> ExportResult:
    """Export a model directory or built-in model name (``tensorslim.resolve.open_model``) to ``out``.

    Besides random inputs, the export is verified on ``samples`` real images of ``dataset`` (``"auto"``: the
    dataset named in ``model.json``, skipped with a note in ``notes`` when it is not installed here; a name:
    that dataset, a missing one raising ``DataError``; ``None``: random inputs only). ``options`` go to
    :func:`export_onnx` (``opset``, ``batch``, ``rtol``, ``exporter``, ``verify``).
    """
    from .. import modeldir
    from ..errors import DataError
    from ..resolve import open_model

    model, shape = open_model(str(target), input_shape=tuple(input_shape) if input_shape else None,
                              weights=weights)
    notes: list[str] = []
    auto = dataset == "auto"
    if auto:
        dataset = modeldir.read_meta(target).get("dataset") if modeldir.is_model_dir(target) else None
    inputs = None
    if dataset:
        try:
            inputs = dataset_inputs(dataset, samples, data_dir=data_dir)
        except DataError as err:
            if not auto:
                raise
            notes.append(f"dataset {dataset!r} unavailable ({one_line(err, 120)}): "
                         "verified on random inputs only")
        if auto and inputs is not None and tuple(inputs.shape[1:]) != tuple(shape):
            notes.append(f"dataset {dataset!r} has samples of shape {tuple(inputs.shape[1:])}, "
                         f"the model takes {tuple(shape)}: verified on random inputs only")
            inputs = None
    result = export_onnx(model, out, shape, inputs=inputs, **options)
    result.notes.extend(notes)
    return result
