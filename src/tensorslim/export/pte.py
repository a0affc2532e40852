"""ExecuTorch programs (``.pte``) lowered to XNNPACK, verified in ``executorch.runtime``, and timed.

A phone runtime: :func:`export_pte` captures the model with ``torch.export`` at a **fixed batch** (default 1),
lowers it with ``to_edge_transform_and_lower(..., partitioner=[XnnpackPartitioner()])`` and
``.to_executorch()``, writes the program under a temporary name, loads that file in a plain
``executorch.runtime.Runtime`` session and compares it with PyTorch on random and (when given) real inputs,
with the rule of :mod:`.verify` (max error relative to the largest ``|output|``, ``rtol`` 1e-4 by default).
Only then is the file renamed into place: a failed export or verification leaves no file.

Why a fixed batch: an ExecuTorch program plans all its memory ahead for static shapes; a dynamic batch
needs an upper bound and gives XNNPACK kernels that are planned for the largest size. The file is made for
one batch size (the usual phone case: batch 1); export another file for another batch. Real inputs are run
in chunks of that batch (samples repeated to fill one batch when there are fewer).

:func:`lower_program` does the lowering, writing and verification for an already exported (e.g. PT2E
quantized) ``torch.export.ExportedProgram``, against any reference module. Its :class:`PteResult` records how
much of the graph XNNPACK took: the operators inside delegate calls against the operators left to the
portable CPU kernels (``other_ops``), which are slow; ``getitem`` (tuple access) is not counted.

:class:`PteRunner` times a program in :func:`tensorslim.export.benchmark` (``runtime="executorch"``): a module
or model directory is exported once per batch size; the XNNPACK thread pool is set to ``threads``.

ExecuTorch is an optional extra (``pip install 'tensorslim[edge]'``); without it every entry point raises
:class:`EdgeUnavailableError` with that one line. It is imported only by the first call that needs it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import types
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .._atomic import atomic_path
from ._common import BenchError, ExportError, check_input_shape, one_line
from .diagnose import blame, probe
from .exporters import _quiet, _silence_native_output
from .onnx import export_target
from .runners import Runner, make_runner
from .verify import Check, CheckedResult, VerificationError, as_inputs, compare, flatten_outputs

#: The one line every edge entry point gives when the extra is not installed.
EDGE_HINT = "ExecuTorch is not installed: pip install 'tensorslim[edge]'"
#: The runtime's name in messages and benchmark results.
RUNTIME = "executorch"


class EdgeUnavailableError(ExportError):
    """The optional ExecuTorch extra (``tensorslim[edge]``) is not installed."""


@contextlib.contextmanager
def _silenced() -> Iterator[list[str]]:
    """Python-level noise (prints, warnings, torch/torchao log lines) and native log lines, both discarded."""
    with _quiet() as notes, _silence_native_output():
        yield notes


def edge() -> types.SimpleNamespace:
    """The ExecuTorch names tensorslim uses; :class:`EdgeUnavailableError` when the extra is missing.

    Importing executorch loads torchao, which logs a warning for each CUDA kernel library it cannot load on a
    CPU-only machine; those lines are silenced.
    """
    saved = {n: logging.getLogger(n).level for n in ("torchao", "torch.utils._pytree")}
    try:
        for n in saved:
            logging.getLogger(n).setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
            from executorch.exir import to_edge_transform_and_lower
            from executorch.extension.pybindings import portable_lib
            from executorch.runtime import Runtime
    except ImportError:
        raise EdgeUnavailableError(EDGE_HINT) from None
    finally:
        for n, level in saved.items():
            logging.getLogger(n).setLevel(level)
    return types.SimpleNamespace(XnnpackPartitioner=XnnpackPartitioner,
                                 to_edge_transform_and_lower=to_edge_transform_and_lower,
                                 portable_lib=portable_lib, Runtime=Runtime)


@dataclasses.dataclass
class PteResult(CheckedResult):
    """The outcome of :func:`export_pte` / :func:`lower_program`; ``to_dict()`` is JSON-able."""

    path: Path
    batch: int  # the program's fixed batch size
    input_shape: tuple[int, ...]  # without the batch axis
    file_bytes: int
    delegate_calls: int  # XNNPACK subgraphs (executorch_call_delegate nodes)
    delegated_ops: int  # operators inside them
    other_ops: dict[str, int]  # operators left outside XNNPACK (portable kernels), by name
    checks: list[Check]
    rtol: float
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def delegated_share(self) -> float:
        """Delegated operators / all operators (1.0: XNNPACK runs the whole graph)."""
        total = self.delegated_ops + sum(self.other_ops.values())
        return self.delegated_ops / total if total else 1.0

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.update(path=str(self.path), input_shape=list(self.input_shape), checks=[c.to_dict() for c in self.checks],
                 delegated_share=self.delegated_share, max_abs_err=self.max_abs_err, max_rel_err=self.max_rel_err)
        return d

    def summary(self) -> str:
        """One line for a terminal."""
        err = (f"max abs err {self.max_abs_err:.2e}, max rel err {self.max_rel_err:.2e}"
               if self.checks else "not verified")
        rest = ", ".join(f"{k}×{v}" for k, v in sorted(self.other_ops.items())) or "none"
        return (f"{self.path}: {self.file_bytes:,} bytes, ExecuTorch/XNNPACK, batch {self.batch}; {err}; "
                f"{self.delegated_ops} ops in {self.delegate_calls} XNNPACK call(s), outside: {rest}")


class _Root(nn.Module):
    """Puts the model under one attribute, so that no parameter name starts with a digit.

    ExecuTorch 1.4's XNNPACK batch-norm fusion names the fused weight after the parameter (``0.weight`` of an
    ``nn.Sequential`` gives ``0_weight_fused_bn``), which torch.fx renames, and then fails to find it.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> Any:
        return self.model(x)


def _delegation(graph_module: torch.fx.GraphModule) -> tuple[int, int, dict[str, int]]:
    """(delegate calls, operators inside them, operators outside by name) of a lowered graph."""
    calls = inside = 0
    outside: dict[str, int] = {}
    for node in graph_module.graph.nodes:
        if node.op == "get_attr" and node.name.startswith("lowered_module_"):
            lowered = getattr(graph_module, node.target)
            inside += sum(1 for n in lowered.original_module.graph.nodes if n.op == "call_function")
        elif node.op == "call_function":
            name = getattr(node.target, "__name__", str(node.target))
            if name == "executorch_call_delegate":
                calls += 1
            elif name != "getitem":
                outside[name] = outside.get(name, 0) + 1
    return calls, inside, outside


def _program_input(program: Any) -> tuple[int, tuple[int, ...]]:
    """(batch, sample shape) of the one float32 user input of an ExportedProgram."""
    if not isinstance(program, torch.export.ExportedProgram):
        raise ExportError(f"expected a torch.export.ExportedProgram, got {type(program).__name__}")
    user = set(program.graph_signature.user_inputs)
    vals = [n.meta.get("val") for n in program.graph.nodes if n.op == "placeholder" and n.name in user]
    if len(vals) != 1 or not isinstance(vals[0], torch.Tensor):
        raise ExportError(f"the program has {len(vals)} inputs; only programs of one tensor input are lowered")
    val = vals[0]
    if val.dtype != torch.float32 or val.ndim < 2:
        raise ExportError(f"the program's input is a {val.dtype} tensor of shape {tuple(val.shape)}; expected "
                          "float32 with a batch axis")
    if not all(isinstance(d, int) for d in val.shape):
        raise ExportError(f"the program's input shape {tuple(val.shape)} is dynamic; export it at a fixed batch")
    return int(val.shape[0]), tuple(int(d) for d in val.shape[1:])


def load_method(path: str | os.PathLike) -> Any:
    """The ``forward`` method of the program at ``path`` in a plain ``executorch.runtime`` session."""
    rt = edge().Runtime
    try:
        with _silenced():
            return rt.get().load_program(Path(path)).load_method("forward")
    except Exception as err:  # noqa: BLE001 - the runtime raises RuntimeError/ValueError for bad files
        raise ExportError(f"{path}: ExecuTorch cannot load the program ({one_line(err)})") from None


def method_input(method: Any, path: str | os.PathLike) -> tuple[int, tuple[int, ...]]:
    """(batch, sample shape) of a loaded method's one input."""
    meta = method.metadata
    if meta.num_inputs() != 1:
        raise BenchError(f"{path}: the program has {meta.num_inputs()} inputs; only one-input programs are timed")
    sizes = tuple(int(d) for d in meta.input_tensor_meta(0).sizes())
    if len(sizes) < 2:
        raise BenchError(f"{path}: the input has shape {sizes}; expected a batch axis and a sample shape")
    return sizes[0], sizes[1:]


def execute(method: Any, x: torch.Tensor, where: str, *, quiet: bool = True) -> list[torch.Tensor]:
    """Run a loaded method on ``x``; VerificationError (one line) when the runtime fails. ``quiet``: discard the
    runtime's log lines (a caller running many batches silences them once around its loop instead)."""
    try:
        with _silenced() if quiet else contextlib.nullcontext():
            return list(method.execute([x]))
    except Exception as err:  # noqa: BLE001 - the runtime's own error types
        raise VerificationError(f"{where}: ExecuTorch cannot run the program ({one_line(err)})") from None


def verify_pte(reference: Callable[[torch.Tensor], Any], path: str | os.PathLike, shape: tuple[int, ...],
               batch: int, inputs: torch.Tensor | None, rtol: float, seed: int, name: str) -> list[Check]:
    """Compare the program at ``path`` in ``executorch.runtime`` with ``reference`` (PyTorch), like
    :func:`.verify.verify`: one :class:`Check` for a random batch of ``shape`` (seeded by ``seed``) and one for
    all real ``inputs`` ``(N, *shape)`` in chunks of ``batch``. VerificationError above ``rtol``."""
    method = load_method(path)
    runs = [("random", torch.randn((batch, *shape), generator=torch.Generator().manual_seed(seed)))]
    if inputs is not None:
        if inputs.shape[0] < batch:  # too few samples for one batch: repeat them
            inputs = inputs.repeat((math.ceil(batch / inputs.shape[0]),) + (1,) * (inputs.ndim - 1))
        runs += [("inputs", c) for c in torch.split(inputs, batch) if c.shape[0] == batch]
    worst: dict[str, tuple[int, float, float]] = {}
    for source, x in runs:
        where = f"{name} on {source} input at batch {batch}"
        with torch.no_grad():
            ref = flatten_outputs(reference(x), where)
        got = [g.numpy() for g in execute(method, x.contiguous(), where)]
        a, r = compare(ref, got, where, runtime="ExecuTorch")
        if not r <= rtol:  # also catches NaN
            raise VerificationError(f"{where}: ExecuTorch differs from PyTorch: max abs error {a:.3g}, "
                                    f"max relative error {r:.3g} > rtol {rtol:g}")
        n, a0, r0 = worst.get(source, (0, 0.0, 0.0))
        worst[source] = (n + int(x.shape[0]), max(a0, a), max(r0, r))
    return [Check(source, n, a, r) for source, (n, a, r) in worst.items()]


def _check_rtol(rtol: Any) -> float:
    if isinstance(rtol, bool) or not isinstance(rtol, (int, float)) or not rtol > 0:
        raise ExportError(f"rtol must be a positive number, got {rtol!r}")
    return float(rtol)


def lower_program(program: Any, path: str | os.PathLike, *, reference: Callable[[torch.Tensor], Any] | None,
                  inputs: torch.Tensor | None = None, rtol: float = 1e-4, seed: int = 0,
                  notes: Sequence[str] = ()) -> PteResult:
    """Lower an exported program to XNNPACK, write it atomically to ``path`` and verify it against ``reference``.

    ``program``: a ``torch.export.ExportedProgram`` of one float32 input at a fixed batch (e.g. a PT2E
    quantized model, exported). ``reference``: what the program must equal (the PyTorch module, in eval mode),
    or None to skip verification. ``inputs``: real samples ``(N, *shape)`` checked too. Raises ExportError
    when the lowering fails, VerificationError when the runtime differs beyond ``rtol``.
    """
    et = edge()
    rtol = _check_rtol(rtol)
    batch, shape = _program_input(program)
    path = Path(path)
    if path.is_dir():
        raise ExportError(f"{path}: is a directory; give the path of the .pte file to write")
    try:
        with _silenced():
            lowered = et.to_edge_transform_and_lower(program, partitioner=[et.XnnpackPartitioner()])
            calls, inside, outside = _delegation(lowered.exported_program().graph_module)
            buffer = lowered.to_executorch().buffer
    except Exception as err:  # noqa: BLE001 - the lowering passes raise many types
        raise ExportError(f"ExecuTorch lowering (XNNPACK) failed: {one_line(err)}") from None
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer)
        checks = ([] if reference is None
                  else verify_pte(reference, tmp, shape, batch, inputs, rtol, seed, path.name))
        file_bytes = tmp.stat().st_size
    return PteResult(path=path, batch=batch, input_shape=shape, file_bytes=file_bytes, delegate_calls=calls,
                     delegated_ops=inside, other_ops=outside, checks=checks, rtol=rtol, notes=list(notes))


def export_program(model: nn.Module, example: torch.Tensor) -> Any:
    """``torch.export`` of ``model`` (eval mode, CPU) on ``example``: static shapes; one-line ExportError."""
    try:
        with _silenced():
            return torch.export.export(_Root(model).eval(), (example,))
    except Exception as err:  # noqa: BLE001 - torch.export raises many types
        raise ExportError(f"torch.export failed: {blame(err, model, example)}") from None


def export_pte(model: nn.Module, path: str | os.PathLike, input_shape: Sequence[int] | None = None, *,
               batch: int = 1, verify: bool = True, inputs: Any = None, samples: int | None = None,
               rtol: float = 1e-4, seed: int = 0) -> PteResult:
    """Export ``model`` to the ExecuTorch program ``path`` (XNNPACK), verified in ``executorch.runtime``.

    Args:
        model: the network; exported in eval mode, its own mode is restored afterwards.
        path: destination ``.pte``, written atomically (nothing is written when any step fails).
        input_shape: one sample's shape without batch, e.g. ``(1, 28, 28)``; may be omitted when ``inputs``
            fixes it or the model was built or loaded by tensorslim.
        batch: the program's fixed batch size.
        verify: compare ExecuTorch with PyTorch on random and real inputs within ``rtol``.
        inputs: real samples (any source :func:`.verify.as_inputs` accepts), checked besides random ones.
        samples: at most this many of ``inputs`` (None: all of a tensor, array or list, 512 of anything else).
        rtol: tolerance on ``max |executorch - torch| / max |torch|``.
        seed: seed of the random inputs.

    Raises:
        EdgeUnavailableError: ExecuTorch is not installed. ExportError: bad arguments, a failing forward or
        ``torch.export``, a failed lowering. VerificationError: the program differs from PyTorch.
    """
    edge()
    if not isinstance(model, nn.Module):
        raise ExportError(f"expected a torch.nn.Module to export, got {type(model).__name__}")
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise ExportError(f"batch must be a positive integer (ExecuTorch programs have a fixed batch), "
                          f"got {batch!r}")
    if input_shape is None and inputs is None:
        input_shape = getattr(model, "tensorslim_input_shape", None)
    real = as_inputs(inputs, None if input_shape is None else check_input_shape(input_shape), samples)
    if input_shape is None and real is not None:
        input_shape = tuple(real.shape[1:])
    shape = check_input_shape(input_shape)
    if any(p.device.type != "cpu" for p in model.parameters()):
        raise ExportError("export the model from the CPU: move it with model.cpu() first")
    was_training = model.training
    model.eval()
    try:
        example = torch.randn((int(batch), *shape), generator=torch.Generator().manual_seed(seed + 1))
        probe(model, example)
        program = export_program(model, example)
        return lower_program(program, path, reference=model if verify else None, inputs=real, rtol=rtol,
                             seed=seed)
    finally:
        model.train(was_training)


class PteRunner(Runner):
    """One model in ExecuTorch for :func:`tensorslim.export.benchmark`: a ``.pte`` file (its own batch), or a
    module that :meth:`prepare` exports (verified) to one program per batch size into a work directory.

    ``file_bytes`` is the program's size (for a module, the first batch size's: the programs differ only in
    their memory plan); ``weight_bytes`` the module's parameters and buffers (None for a file).
    """

    runtime = RUNTIME

    def __init__(self, label: str, source: str, *, path: Path | None = None, module: nn.Module | None = None,
                 input_shape: tuple[int, ...] | None = None, workdir: Path | None = None, tag: str = "model"):
        self.label = label
        self.source = source
        self.files: dict[int, Path] = {}
        self.module, self.workdir, self.tag = module, workdir, tag
        self.input_shape = input_shape
        if path is not None:
            batch, self.input_shape = method_input(load_method(path), path)
            self.files, self.fixed_batch, self.file_bytes = {batch: path}, batch, path.stat().st_size
        if module is not None:
            self.weight_bytes = sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])
        self.methods: dict[int, Any] = {}
        self._threads_before: int | None = None

    def prepare(self, shape: tuple[int, ...], batches: Sequence[int]) -> None:
        """Export the module to one program per batch size (nothing to do for a file)."""
        if self.module is None or self.workdir is None:
            return
        for b in batches:
            self.files[b] = self.workdir / f"{self.tag}-b{b}.pte"
            export_pte(self.module, self.files[b], shape, batch=b)
        self.file_bytes = self.files[batches[0]].stat().st_size

    def load(self, threads: int) -> None:
        pl = edge().portable_lib
        with _silenced():
            self._threads_before = pl._threadpool_get_thread_count()
            pl._unsafe_reset_threadpool(int(threads))
        self.methods = {b: load_method(p) for b, p in self.files.items()}

    def bind(self, x: np.ndarray) -> Callable[[], object]:
        method = self.methods.get(x.shape[0])
        if method is None:
            raise BenchError(f"{self.label}: no ExecuTorch program for batch {x.shape[0]}")
        args = [torch.from_numpy(x)]
        return lambda: method.execute(args)

    def close(self) -> None:
        self.methods = {}
        if self._threads_before is not None:
            with _silenced():
                edge().portable_lib._unsafe_reset_threadpool(self._threads_before)
            self._threads_before = None


def export_pte_target(target: str | os.PathLike, /, out: str | os.PathLike, **options: Any) -> PteResult:
    """:func:`.onnx.export_target` with :func:`export_pte`: a model directory or name to a verified ``.pte``,
    checked on real images of its dataset too (``options``: ``input_shape``, ``weights``, ``dataset``,
    ``samples``, ``data_dir``, ``inputs``, and :func:`export_pte`'s ``batch``, ``rtol``, ``verify``)."""
    edge()
    return export_target(target, out, export=export_pte, **options)


def make_pte_runner(target: Any, runtime: str, label: str | None, input_shape: tuple[int, ...] | None,
                    workdir: Path, tag: str) -> PteRunner:
    """A :class:`PteRunner` for ``target``: a ``.pte`` file, or a module / model directory (resolved as
    :func:`.runners.make_runner` does for PyTorch) exported by :meth:`PteRunner.prepare`."""
    edge()
    if isinstance(target, (str, os.PathLike)) and Path(target).is_file():
        path = Path(target)
        return PteRunner(label or path.stem, str(path), path=path)
    module = make_runner(target, "torch", label, input_shape, workdir, tag)
    return PteRunner(module.label, module.source, module=module.original, input_shape=module.input_shape,
                     workdir=workdir, tag=tag)
