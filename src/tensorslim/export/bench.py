"""Latency benchmarks on the CPU: ONNX Runtime, ExecuTorch or PyTorch, one model or two timed in alternation.

:func:`benchmark` times a target (an ``nn.Module``, an ``.onnx`` or ``.pte`` file, or a tensorslim model
directory) at several batch sizes and returns a :class:`BenchResult` (``to_dict()`` is JSON-able; :func:`format_table`
renders it for a terminal).

How the timing is done
----------------------
* ``torch.set_flush_denormal(True)`` for the whole run (tiny weights of compressed layers must not hit the
  slow denormal path). The setting is process-wide and torch cannot report its previous value, so it is set
  back to torch's default (off) when the benchmark ends.
* ``threads`` sets ONNX Runtime's ``intra_op_num_threads`` (``inter_op`` 1, sequential execution, all graph
  optimizations) and ``torch.set_num_threads`` (restored afterwards); default: ``torch.get_num_threads()``.
* PyTorch runs a private copy of the model in eval mode, in ``torch.inference_mode()``, with weights and
  inputs in ``channels_last`` memory format (4-D inputs). A module timed with ``runtime="ort"`` is first
  exported with :func:`tensorslim.export.export_onnx` (dynamic batch, verified) into a temporary file.
* ``runtime="executorch"`` (the ``tensorslim[edge]`` extra) runs ``.pte`` programs lowered to XNNPACK in
  ``executorch.runtime``, the XNNPACK thread pool set to ``threads`` (:class:`.pte.PteRunner`). Programs have
  a fixed batch: a module is exported (verified) to one program per batch size, a ``.pte`` file is timed at
  its own batch.
* Per batch size: ``warmup`` untimed runs of every model, then ``repeats`` timed rounds. With ``against`` the
  two models run in ALTERNATION (A, B, A, B, ...) on the same input array, so slow drifts of the machine
  (frequency, other tenants) hit both alike. The reported speedup is the median over rounds of
  ``t_against / t_target`` (paired ratios), with their min and max; > 1 means the target is faster.
* Each timing is one ``perf_counter_ns`` around one call; results give median, min, max and mean in ms and the
  throughput ``batch / median`` in samples/s.

What the memory figures are (be careful with them)
--------------------------------------------------
There is no API for the peak memory of an ONNX Runtime or ExecuTorch session, so every runtime is measured
the same way, from the process's resident set size (``/proc/self/statm``, Linux; ``None`` elsewhere;
:class:`.memory.PeakRss`):

* ``load_rss_bytes``: RSS after creating the session (or loading the programs, or copying the module) minus
  RSS just before: weights, session structures, pre-packed weights (ORT, XNNPACK).
* ``peak_rss_bytes`` of a model: the highest RSS sampled every millisecond during one first run at every
  batch size, minus the same baseline: weights plus activations and allocator arenas at the largest batch.
  Each :class:`Timing` has its own ``peak_rss_bytes``: the same peak up to the end of that batch size's first
  run (batch sizes run in the order given, so a later one includes the arenas an earlier one left).
  For ExecuTorch, a module's session holds one program per batch size.

Both are process-level deltas: memory that an earlier step freed but the allocator kept is reused silently,
so with ``against`` the second model's figures can read low; compare memory from separate runs when it
matters.
``file_bytes`` is the ONNX or ``.pte`` file size (or ``weights.safetensors`` for a model directory timed in
PyTorch);
``weight_bytes`` the bytes of the stored initializers / the module's parameters and buffers.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import statistics
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from . import roofline
from ._common import BenchError, check_input_shape, one_line
from .hardware import machine
from .memory import PeakRss, rss_bytes
from .runners import Runner, make_runner

Runtime = Literal["ort", "torch", "executorch"]
RUNTIMES = ("ort", "torch", "executorch")
Target = nn.Module | str | os.PathLike

DEFAULT_WARMUP = 5
DEFAULT_REPEATS = 30
_MAX_THREADS = 1024
_MAX_BATCH = 1 << 16


@dataclasses.dataclass
class Timing:
    """Timings of one model at one batch size (milliseconds)."""

    batch: int
    median_ms: float
    min_ms: float
    max_ms: float
    mean_ms: float
    throughput: float  # samples per second at the median
    times_ms: list[float]
    peak_rss_bytes: int | None = None  # session's peak RSS growth up to this batch size's first run

    @classmethod
    def of(cls, batch: int, times_ns: Sequence[int], peak_rss_bytes: int | None = None) -> Timing:
        ms = [t / 1e6 for t in times_ns]
        med = statistics.median(ms)
        return cls(batch, med, min(ms), max(ms), statistics.fmean(ms),
                   batch / (med / 1e3) if med > 0 else float("inf"), [round(t, 6) for t in ms], peak_rss_bytes)


@dataclasses.dataclass
class ModelBench:
    """One benchmarked model."""

    label: str
    runtime: str
    source: str  # file or directory path, or the module's class name
    file_bytes: int | None
    weight_bytes: int | None
    load_rss_bytes: int | None
    peak_rss_bytes: int | None
    timings: list[Timing] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Ratio:
    """Paired speedup ``t_against / t_target`` at one batch size (> 1: the target is faster)."""

    batch: int
    speedup: float  # median over rounds
    min: float
    max: float


@dataclasses.dataclass
class BenchResult:
    """What :func:`benchmark` measured; ``to_dict()`` gives plain JSON types."""

    runtime: str
    threads: int
    warmup: int
    repeats: int
    input_shape: tuple[int, ...]
    batch_sizes: tuple[int, ...]
    machine: dict[str, Any]
    models: list[ModelBench]
    comparison: list[Ratio] | None
    notes: list[str] = dataclasses.field(default_factory=list)
    roofline: dict[str, Any] | None = None  # ORT: GFLOP/s against this CPU's measured GEMM peak (.roofline)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["input_shape"] = list(self.input_shape)
        d["batch_sizes"] = list(self.batch_sizes)
        return d

    def table(self) -> str:
        return format_table(self)


# ----------------------------------------------------------------------------------------------------------
# argument checks


def _check_threads(threads: Any) -> int:
    if threads is None:
        return max(1, torch.get_num_threads())
    if (isinstance(threads, bool) or not isinstance(threads, (int, np.integer))
            or not 1 <= threads <= _MAX_THREADS):
        raise BenchError(f"threads must be an integer from 1 to {_MAX_THREADS}, got {threads!r}")
    return int(threads)


def _check_batches(batch_sizes: Any) -> tuple[int, ...]:
    if isinstance(batch_sizes, (int, np.integer)) and not isinstance(batch_sizes, bool):
        batch_sizes = (batch_sizes,)
    if isinstance(batch_sizes, (str, bytes)) or not isinstance(batch_sizes, Iterable):
        raise BenchError(f"batch sizes must be a list of positive integers, got {batch_sizes!r}")
    out: list[int] = []
    for b in batch_sizes:
        if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or not 1 <= b <= _MAX_BATCH:
            raise BenchError(f"batch sizes must be integers from 1 to {_MAX_BATCH}, got {b!r}")
        if int(b) not in out:
            out.append(int(b))
    if not out:
        raise BenchError("batch sizes must list at least one positive integer")
    return tuple(out)


def _check_count(value: Any, what: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise BenchError(f"{what} must be an integer >= {low}, got {value!r}")
    return int(value)


# ----------------------------------------------------------------------------------------------------------
# public API


def benchmark(
    target: Target,
    *,
    batch_sizes: Sequence[int] | int = (1, 32),
    threads: int | None = None,
    runtime: Runtime = "ort",
    against: Target | None = None,
    warmup: int = DEFAULT_WARMUP,
    repeats: int = DEFAULT_REPEATS,
    input_shape: Sequence[int] | None = None,
    labels: tuple[str, str] | None = None,
    seed: int = 0,
) -> BenchResult:
    """Time ``target`` (and ``against``, in alternation) at each batch size; see the module docstring.

    Args:
        target: an ``nn.Module``, an ``.onnx`` file, a ``.pte`` file (``runtime="executorch"``), or a
            tensorslim model directory.
        batch_sizes: batch sizes to time (an ONNX or ``.pte`` file with a fixed batch is timed at its own
            batch only, and the result's notes say so).
        threads: intra-op threads for both runtimes; None: ``torch.get_num_threads()``.
        runtime: ``"ort"`` (ONNX Runtime; modules are exported first), ``"executorch"`` (ExecuTorch with
            XNNPACK, the ``tensorslim[edge]`` extra; modules are exported first) or ``"torch"`` (PyTorch eager).
        against: a second model, timed in alternation with the target; the result then has ``comparison``.
        warmup: untimed runs per model and batch size; repeats: timed runs per model and batch size.
        input_shape: one sample's shape without batch; needed for a module unless it carries one (models
            built or loaded by tensorslim do) or ``against`` / the ONNX file fixes it.
        labels: names for target and against in the result (default: class name / file or directory name).
        seed: seed of the random input.

    Raises:
        BenchError (a TensorSlimError): bad arguments, an unreadable file, mismatched input shapes;
        ``pte.EdgeUnavailableError`` (a TensorSlimError) for ``"executorch"`` without the extra.
    """
    if runtime not in RUNTIMES:
        raise BenchError(f"runtime must be one of {', '.join(map(repr, RUNTIMES))}, got {runtime!r}")
    n_threads = _check_threads(threads)
    batches = _check_batches(batch_sizes)
    warmup = _check_count(warmup, "warmup", 0)
    repeats = _check_count(repeats, "repeats", 1)
    shape = None if input_shape is None else check_input_shape(input_shape)
    if labels is not None and (len(labels) != 2 or not all(isinstance(s, str) and s for s in labels)):
        raise BenchError(f"labels must be two non-empty strings, got {labels!r}")

    torch.set_flush_denormal(True)
    previous_threads = torch.get_num_threads()
    runners: list[Runner] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="tensorslim-bench-") as tmp:
        try:
            torch.set_num_threads(n_threads)
            targets = [target] if against is None else [target, against]
            make = make_runner
            if runtime == "executorch":
                from .pte import make_pte_runner as make
            for i, t in enumerate(targets):
                runners.append(make(t, runtime, labels[i] if labels else None, shape, Path(tmp), f"model{i}"))
            shape = _common_shape(runners, shape)
            if len(runners) == 2 and runners[0].label == runners[1].label:
                runners[0].label += " (target)"
                runners[1].label += " (against)"
            batches = _fixed_batch(runners, batches, notes)
            for r in runners:
                prepare = getattr(r, "prepare", None)  # ExecuTorch: one program per batch size
                if prepare is not None:
                    prepare(shape, batches)
            rng = np.random.default_rng(seed)
            inputs = {b: rng.standard_normal((b, *shape), dtype=np.float32) for b in batches}
            measured = [_load_and_measure(r, n_threads, inputs) for r in runners]
            results = [m for m, _ in measured]
            comparison = [] if len(runners) == 2 else None
            with torch.inference_mode():
                for b in batches:
                    calls = [r.bind(inputs[b]) for r in runners]
                    for _ in range(warmup):
                        for call in calls:
                            call()
                    times: list[list[int]] = [[] for _ in calls]
                    for _ in range(repeats):
                        for k, call in enumerate(calls):  # alternation: A, B, A, B, ...
                            t0 = time.perf_counter_ns()
                            call()
                            times[k].append(time.perf_counter_ns() - t0)
                    for (res, peaks), ts in zip(measured, times):
                        res.timings.append(Timing.of(b, ts, peaks[b]))
                    if comparison is not None:
                        ratios = [tb / ta for ta, tb in zip(times[0], times[1]) if ta > 0]
                        comparison.append(Ratio(b, statistics.median(ratios), min(ratios), max(ratios)))
            roof = roofline.of_runners(runners, results, n_threads) if runtime == "ort" else None
        finally:
            torch.set_num_threads(previous_threads)
            torch.set_flush_denormal(False)
            for r in reversed(runners):  # the last one loaded restores process-wide settings first
                r.close()
    if n_threads > (os.cpu_count() or n_threads):
        notes.append(f"{n_threads} threads on {os.cpu_count()} logical CPUs: timings are oversubscribed")
    return BenchResult(runtime=runtime, threads=n_threads, warmup=warmup, repeats=repeats, input_shape=shape,
                       batch_sizes=batches, machine=machine(), models=results, comparison=comparison,
                       notes=notes, roofline=roof)


def _fixed_batch(runners: list[Runner], batches: tuple[int, ...], notes: list[str]) -> tuple[int, ...]:
    """The batch sizes to time: a file with a fixed batch is timed at its own batch, with a note."""
    fixed = [r for r in runners if r.fixed_batch is not None]
    if not fixed:
        return batches
    if len({r.fixed_batch for r in fixed}) > 1:
        raise BenchError(f"{fixed[0].label} has a fixed batch of {fixed[0].fixed_batch} and {fixed[1].label} one of "
                         f"{fixed[1].fixed_batch}: they cannot be timed at the same batch size")
    own = fixed[0].fixed_batch
    if batches != (own,):
        notes.append(f"{fixed[0].label}: the file has a fixed batch of {own}; timed at batch {own} only "
                     f"(asked for {', '.join(map(str, batches))})")
    return (own,)


def _common_shape(runners: list[Runner], shape: tuple[int, ...] | None) -> tuple[int, ...]:
    for r in runners:
        if r.input_shape is None:
            continue
        if shape is None:
            shape = r.input_shape
        elif r.input_shape != shape:
            raise BenchError(f"{r.label}: takes input shape {r.input_shape}, not {shape}")
    if shape is None:
        raise BenchError("an input shape is required (e.g. 1,28,28): no model fixes it")
    return shape


def _load_and_measure(r: Runner, threads: int, inputs: dict[int, np.ndarray]
                      ) -> tuple[ModelBench, dict[int, int | None]]:
    """Load ``r`` and run it once per batch size, measuring the RSS growth (see the module docstring); also
    the peak growth up to each batch size's run."""
    gc.collect()
    base = rss_bytes()
    r.load(threads)
    loaded = rss_bytes()

    def delta(rss: int | None) -> int | None:
        return None if base is None or rss is None else max(0, rss - base)

    per_batch: dict[int, int | None] = {}
    with torch.inference_mode(), PeakRss() as peak:
        for b, x in inputs.items():
            try:
                r.bind(x)()
            except Exception as err:  # noqa: BLE001 - report the user's model failure in one line
                raise BenchError(f"{r.label}: fails at batch {x.shape[0]} with input shape {x.shape[1:]}: "
                                 f"{one_line(err)}") from None
            per_batch[b] = delta(peak.sample())
    return ModelBench(
        label=r.label, runtime=r.runtime, source=r.source, file_bytes=r.file_bytes,
        weight_bytes=r.weight_bytes, load_rss_bytes=delta(loaded), peak_rss_bytes=delta(peak.peak),
    ), per_batch


def _fmt_bytes(n: int | None) -> str:
    if n is None:
        return "n/a"
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"  # pragma: no cover


def format_table(result: BenchResult | dict[str, Any]) -> str:
    """A plain-text table of a :class:`BenchResult` (or its ``to_dict()``), speedups per batch size last."""
    d = result.to_dict() if isinstance(result, BenchResult) else result
    shape = "x".join(str(s) for s in d["input_shape"])
    lines = [f"runtime {d['runtime']}, {d['threads']} thread(s), input {shape}, "
             f"warm-up {d['warmup']}, {d['repeats']} timed runs per model and batch"]
    width = max([len("model"), *(len(m["label"]) for m in d["models"])])
    lines.append(f"{'model':<{width}}  {'batch':>5}  {'median ms':>10}  {'min-max ms':>17}  "
                 f"{'samples/s':>10}  {'peak RSS':>9}  {'file':>9}")
    for m in d["models"]:
        for t in m["timings"]:
            span = f"{t['min_ms']:.3f}-{t['max_ms']:.3f}"
            peak = t.get("peak_rss_bytes")
            peak = "n/a" if peak is None else "+" + _fmt_bytes(peak)
            lines.append(f"{m['label']:<{width}}  {t['batch']:>5}  {t['median_ms']:>10.3f}  {span:>17}  "
                         f"{t['throughput']:>10.1f}  {peak:>9}  {_fmt_bytes(m['file_bytes']):>9}")
    for m in d["models"]:
        lines.append(f"{m['label']}: file {_fmt_bytes(m['file_bytes'])}, "
                     f"weights {_fmt_bytes(m['weight_bytes'])}, "
                     f"RSS +{_fmt_bytes(m['load_rss_bytes'])} loaded, "
                     f"+{_fmt_bytes(m['peak_rss_bytes'])} peak")
    if d.get("comparison"):
        a, b = d["models"][0]["label"], d["models"][1]["label"]
        lines.append(f"speedup of {a!r} vs {b!r} (t_{b} / t_{a} per alternating round: median, min-max; "
                     f"> 1 means {a!r} is faster):")
        for c in d["comparison"]:
            lines.append(f"  batch {c['batch']:>5}: {c['speedup']:.2f}x  ({c['min']:.2f}-{c['max']:.2f})")
    lines.extend(roofline.format_lines(d.get("roofline") or {}))
    lines.extend(f"note: {n}" for n in d.get("notes", []))
    return "\n".join(lines)
