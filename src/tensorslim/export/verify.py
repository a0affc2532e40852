"""ONNX Runtime against PyTorch on random and real inputs, within a tolerance.

:func:`verify` runs an exported file in ONNX Runtime (``CPUExecutionProvider``, the file exactly as written:
no graph pass) and the model in PyTorch on the same inputs: random ones at several batch sizes and,
optionally, real ones (e.g. a batch of dataset images). The error is reported as the max absolute difference
and the max relative difference, the latter relative to the largest ``|output|`` of PyTorch (a scale-free
measure that does not explode on outputs near zero). Above ``rtol`` a :class:`VerificationError` is raised.
A dynamic-batch file is run at batch sizes *different* from the one it was traced at (see
:data:`VERIFY_BATCHES`), which catches a batch size frozen into the graph by tracing.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, IterableDataset

from ._common import ExportError, one_line
from .session import ort_session

#: Batch sizes at which a dynamic-batch export is verified (the exporters trace at batch 2).
VERIFY_BATCHES = (1, 3)
#: Real inputs are run through both runtimes in chunks of at most this many samples.
_INPUT_CHUNK = 256


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


class CheckedResult:
    """The verification summary of an export result that has a ``checks`` list of :class:`Check`."""

    checks: list[Check]

    @property
    def verified(self) -> bool:
        return bool(self.checks)

    @property
    def max_abs_err(self) -> float | None:
        return max((c.max_abs_err for c in self.checks), default=None)

    @property
    def max_rel_err(self) -> float | None:
        return max((c.max_rel_err for c in self.checks), default=None)


#: How many real samples a Dataset, DataLoader or other iterable gives by default (a tensor: all of it).
DEFAULT_SAMPLES = 512


def input_batches(source: Any, shape: tuple[int, ...] | None, *, samples: int | None = DEFAULT_SAMPLES,
                  batch_size: int = 64, seed: int | None = None, what: str = "inputs") -> list[torch.Tensor]:
    """Real inputs from any source, as float32 CPU batches ``(n, *shape)``: at most ``samples`` in all.

    ``source`` is one of:

    * a tensor or array ``(N, *shape)``, or one sample ``shape``;
    * a map-style ``torch.utils.data.Dataset`` whose items are ``x`` or ``(x, y, ...)`` samples: the first
      ``samples`` items, or with ``seed`` a random subset of them drawn with that seed;
    * any other iterable (a ``DataLoader``, a generator, a list) of batches ``(n, *shape)`` or samples
      ``shape``, each as ``x`` or ``(x, y, ...)``; it is read only as far as ``samples`` requires.

    ``shape`` None: the first item's (a list or tuple of bare tensors is then a list of samples, anything
    else a sequence of batches). ``samples`` None: no limit. ``batch_size`` groups samples into batches.
    Raises ExportError, one line starting with ``what``, for anything else, a sample of another shape,
    non-numeric or non-finite values, or no sample at all.
    """
    if samples is not None and (isinstance(samples, bool) or not isinstance(samples, int) or samples < 1):
        raise ExportError(f"{what}: the number of samples must be a positive integer, got {samples!r}")
    limit = math.inf if samples is None else samples
    if isinstance(source, (torch.Tensor, np.ndarray)):
        items: Any = [_as_float(source, what)]
        if shape is None:
            shape = tuple(items[0].shape[1:])
    elif isinstance(source, Dataset) and not isinstance(source, IterableDataset) and hasattr(source, "__len__"):
        n = len(source)
        order = (torch.randperm(n, generator=torch.Generator().manual_seed(seed)) if seed is not None
                 else torch.arange(n))[: int(min(n, limit))]
        items = _grouped((_x_of(source[int(i)], what) for i in order), batch_size)
        if shape is None and len(order):
            shape = tuple(_x_of(source[int(order[0])], what).shape)
    elif isinstance(source, (str, bytes, dict)) or not hasattr(source, "__iter__"):
        raise ExportError(f"{what} must be a tensor or array (N, C, H, W), a Dataset, a DataLoader or an "
                          f"iterable of batches, got {type(source).__name__}")
    else:
        if shape is None and isinstance(source, (list, tuple)) and source and all(
                isinstance(t, (torch.Tensor, np.ndarray)) for t in source):
            shape = tuple(np.shape(source[0]))  # a list of bare tensors: a list of samples
        items = (_x_of(item, what) for item in source)
    out: list[torch.Tensor] = []
    taken = 0
    for x in items:
        if shape is None:
            shape = tuple(x.shape[1:])
        if tuple(x.shape) == shape:
            x = x.unsqueeze(0)
        if x.ndim < 2 or tuple(x.shape[1:]) != shape:
            raise ExportError(f"{what} have sample shape {tuple(x.shape[1:]) if x.ndim > 1 else tuple(x.shape)}, "
                              f"the input shape is {shape}")
        x = x[: int(min(x.shape[0], limit - taken))]
        if not torch.isfinite(x).all():
            raise ExportError(f"{what} contain NaN or inf")
        if x.shape[0]:
            out.append(x)
            taken += int(x.shape[0])
        if taken >= limit:
            break
    if not out:
        raise ExportError(f"{what} must hold at least one sample, got none")
    return out


def _as_float(x: Any, what: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
            raise ExportError(f"{what}: expected numbers, got an array of {x.dtype}")
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise ExportError(f"{what}: expected tensors or arrays of shape (N, C, H, W), got {type(x).__name__}")
    if x.is_complex():
        raise ExportError(f"{what}: expected real numbers, got a {x.dtype} tensor")
    return x.detach().to("cpu", torch.float32)


def _x_of(item: Any, what: str) -> torch.Tensor:
    """The input of an item: ``x`` itself, or the first element of ``(x, y, ...)``."""
    if isinstance(item, (tuple, list)) and item:
        item = item[0]
    return _as_float(item, what)


def _grouped(xs: Any, batch_size: int) -> Any:
    """Samples stacked into batches of ``batch_size`` (the last one smaller); one sample of another shape than the
    first ones ends its batch, so that the caller reports it."""
    group: list[torch.Tensor] = []
    for x in xs:
        if group and x.shape != group[0].shape:
            yield torch.stack(group)
            group = []
            yield x.unsqueeze(0) if x.ndim else x
            continue
        group.append(x)
        if len(group) == batch_size:
            yield torch.stack(group)
            group = []
    if group:
        yield torch.stack(group)


def as_inputs(inputs: Any, shape: tuple[int, ...] | None, samples: int | None = None) -> torch.Tensor | None:
    """Real inputs (any source of :func:`input_batches`) as one float32 CPU tensor ``(N, *shape)``; None for None.

    ``samples``: at most that many (None: all of a tensor, array or list; :data:`DEFAULT_SAMPLES` of a Dataset or
    other iterable).
    """
    if inputs is None:
        return None
    if samples is None and not isinstance(inputs, (torch.Tensor, np.ndarray, list, tuple)):
        samples = DEFAULT_SAMPLES
    return torch.cat(input_batches(inputs, shape, samples=samples, batch_size=_INPUT_CHUNK))


def flatten_outputs(out: Any, where: str) -> list[torch.Tensor]:
    """A model's output as a list of tensors; ExportError for anything but a tensor or a tuple of them."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (list, tuple)) and out and all(isinstance(t, torch.Tensor) for t in out):
        return list(out)
    raise ExportError(f"{where}: the model must return a tensor or a tuple of tensors, "
                      f"got {type(out).__name__}")


def compare(ref: list[torch.Tensor], got: list[np.ndarray], where: str,
            runtime: str = "ONNX Runtime") -> tuple[float, float]:
    """(max abs error, max error relative to the largest ``|ref|``) over all outputs; NaN in both is equal."""
    if len(ref) != len(got):
        raise VerificationError(f"{where}: {runtime} returns {len(got)} outputs, PyTorch {len(ref)}")
    max_abs, max_rel = 0.0, 0.0
    for i, (r, g) in enumerate(zip(ref, got)):
        r = r.detach().cpu().numpy().astype(np.float64)
        g = np.asarray(g, dtype=np.float64)
        if r.shape != g.shape:
            raise VerificationError(
                f"{where}: output {i} has shape {g.shape} in {runtime} but {r.shape} in PyTorch "
                "(a shape was frozen during export; try exporter='dynamo' or a fixed batch)")
        diff = np.abs(r - g)
        both_nan = np.isnan(r) & np.isnan(g)
        diff = np.where(both_nan, 0.0, np.where(np.isnan(diff), np.inf, diff))
        scale = float(np.max(np.abs(np.nan_to_num(r, nan=0.0)), initial=0.0))
        a = float(np.max(diff, initial=0.0))
        rel = a / scale if scale > 0 else (0.0 if a == 0 else math.inf)
        max_abs, max_rel = max(max_abs, a), max(max_rel, rel)
    return max_abs, max_rel


def verify(model: nn.Module, onnx_path: Path, shape: tuple[int, ...], batch: str | int,
           inputs: torch.Tensor | None, rtol: float, seed: int, name: str) -> list[Check]:
    """Compare ONNX Runtime on ``onnx_path`` with ``model`` (in eval mode); one :class:`Check` per random batch
    and one for all real ``inputs``. Raises VerificationError above ``rtol``; ``name`` starts its messages.

    Random inputs of ``shape`` (seeded by ``seed``) at each of :data:`VERIFY_BATCHES` for a dynamic ``batch``,
    else one at the fixed batch; ``inputs`` ``(N, *shape)`` in chunks of at most 256 samples (dynamic) or of
    the fixed batch size (samples repeated to fill one batch when there are fewer).
    """
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
            ref = flatten_outputs(model(x), where)
        try:
            got = sess.run(None, {in_name: x.numpy()})
        except Exception as err:  # noqa: BLE001 - ORT's own exception types
            raise VerificationError(f"{where}: ONNX Runtime cannot run the exported model "
                                    f"({one_line(err)})") from None
        a, r = compare(ref, got, where)
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
