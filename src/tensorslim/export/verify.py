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


def as_inputs(inputs: Any, shape: tuple[int, ...] | None) -> torch.Tensor | None:
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


def flatten_outputs(out: Any, where: str) -> list[torch.Tensor]:
    """A model's output as a list of tensors; ExportError for anything but a tensor or a tuple of them."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (list, tuple)) and out and all(isinstance(t, torch.Tensor) for t in out):
        return list(out)
    raise ExportError(f"{where}: the model must return a tensor or a tuple of tensors, "
                      f"got {type(out).__name__}")


def compare(ref: list[torch.Tensor], got: list[np.ndarray], where: str) -> tuple[float, float]:
    """(max abs error, max error relative to the largest ``|ref|``) over all outputs; NaN in both is equal."""
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
