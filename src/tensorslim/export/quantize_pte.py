"""int8 ExecuTorch programs: PT2E static quantization with XNNPACK's quantizer, and accuracy measured on the file.

The phone runtime's int8 path is PT2E: :func:`quantize_pt2e` (``torch.export``, ``prepare_pt2e`` with
ExecuTorch's ``XNNPACKQuantizer``, calibration, ``convert_pt2e``, ``torch.export`` again) and
:func:`export_pte_int8`, which lowers that program to XNNPACK (:func:`.pte.lower_program`), verifies the
``.pte`` in ``executorch.runtime`` against the converted (fake-quantized) module within :data:`PTE_RTOL`,
measures its accuracy there (:func:`evaluate_pte`) and records it like the ONNX file of
:func:`.quantize.export_int8` (``format: "pte"``). :mod:`.quantize` re-exports these names.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import data, train
from .._atomic import atomic_path
from ..resolve import open_model
from . import pte
from ._common import ExportError, one_line
from .diagnose import probe
from .quantize_common import _add_record, _job, _measured, _top1, _write_record, fixed_batches
from .verify import DEFAULT_SAMPLES, input_batches

#: The tolerance of an int8 ``.pte`` against the converted (fake-quantized) PyTorch module, on
#: ``max |executorch - reference| / max |reference|``. The two compute the same quantized network but round
#: differently: XNNPACK requantizes each layer's int32 accumulator with a fixed-point multiplier, the reference
#: dequantizes, computes in float32 and rounds again, so an activation near a rounding boundary can land one
#: int8 step apart, and that step travels on through every later layer to the output. One output step is
#: (calibrated output range) / 255, about 1/255 to 2/255 of the largest output; a correct program is a few
#: steps off, more in a deeper network where more flips add up. 10 % allows some 12-25 output steps; a wrong
#: scale, zero point, layout or weight is off by order 1 (100 %).
PTE_RTOL = 0.1


def evaluate_pte(path: str | os.PathLike, dataset: Any, split: str = "test", *,
                 data_dir: str | os.PathLike | None = None, batch_size: int = 256) -> dict[str, Any]:
    """Top-1 accuracy (percent) of the ExecuTorch program ``path`` (fp32 or int8) in a plain
    ``executorch.runtime`` session, as :func:`.quantize.evaluate_onnx` measures an ONNX file: same arguments and result.
    The program's fixed batch is filled with repeats of a batch's first sample; only real samples count."""
    method = pte.load_method(path)
    fixed, shape = pte.method_input(method, path)
    where = Path(path).name

    def run(x: np.ndarray) -> np.ndarray:
        return pte.execute(method, torch.from_numpy(x), where, quiet=False)[0].numpy()

    with pte._silenced():  # once around the loop: silencing costs far more than a small program's run
        return _top1(path, dataset, split, data_dir, batch_size, fixed, shape, run)



def quantize_pt2e(model: torch.nn.Module, example: torch.Tensor, calibration: list[torch.Tensor], *,
                  per_channel: bool = True) -> tuple[torch.nn.Module, torch.export.ExportedProgram]:
    """PT2E static int8 quantization of ``model`` for XNNPACK, calibrated on real inputs.

    ``torch.export`` on ``example`` (its batch is the program's fixed batch), ``prepare_pt2e`` with
    ``XNNPACKQuantizer`` (symmetric int8 weights, one scale per output channel with ``per_channel``; int8
    activations with observed ranges), every ``calibration`` batch (each of ``example``'s shape) run through the
    observers, ``convert_pt2e``, and ``torch.export`` again. Returns the converted (fake-quantized) module, the
    reference the program is verified against, and its exported program, ready for :func:`.pte.lower_program`.
    """
    pte.edge()
    program = pte.export_program(model, example)
    try:
        with pte._silenced():
            from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
                XNNPACKQuantizer,
                get_symmetric_quantization_config,
            )
            from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

            quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=per_channel))
            prepared = prepare_pt2e(program.module(), quantizer)
            with torch.no_grad():
                for x in calibration:
                    prepared(x)
            converted = convert_pt2e(prepared)
            return converted, torch.export.export(converted, (example,))
    except ImportError:
        raise pte.EdgeUnavailableError(pte.EDGE_HINT) from None
    except Exception as err:  # noqa: BLE001 - the quantizer and torch.export raise many types
        raise ExportError(f"PT2E quantization (XNNPACKQuantizer) failed: {one_line(err)}") from None


@dataclasses.dataclass
class Int8PteExport:
    """The outcome of :func:`export_pte_int8`: the lowered program (verified against the fake-quantized module)
    and its accuracy measured in ``executorch.runtime``."""

    program: pte.PteResult
    samples: int  # calibration samples
    dataset: str | None
    split: str
    accuracy: float | None  # the .pte file's, measured in executorch.runtime
    fp32_accuracy: float | None  # the fp32 PyTorch model's, on the same split
    record: dict[str, Any] | None

    def quantization(self) -> dict[str, Any]:
        return {"tool": "torchao.pt2e", "quantizer": "XNNPACKQuantizer", "weights": "int8", "activations": "int8",
                "per_channel": True, "batch": self.program.batch}

    def summary(self) -> str:
        line = f"{self.program.summary()}; int8, calibrated on {self.samples} samples"
        return line + _measured(self.dataset, self.split, self.accuracy, self.fp32_accuracy, "int8 .pte",
                                "fp32 PyTorch")


def export_pte_int8(target: str | os.PathLike, /, out: str | os.PathLike, calibrate: Any, *,
                    samples: int = DEFAULT_SAMPLES, evaluate: str | None = "auto", split: str = "test",
                    data_dir: str | os.PathLike | None = None, input_shape: Any = None, weights: str | None = None,
                    batch: int = 1, rtol: float = PTE_RTOL, verify_samples: int = 64, seed: int = 0,
                    record: bool = True, log: Callable[[str], None] | None = None) -> Int8PteExport:
    """Export ``target`` (a model directory or name) to an int8 ExecuTorch program ``out`` (XNNPACK) and measure
    its accuracy in ``executorch.runtime``.

    :func:`quantize_pt2e` on ``samples`` calibration images (``calibrate``, ``evaluate``, ``split``, ``record``
    as in :func:`.quantize.export_int8`), :func:`.pte.lower_program` at the fixed ``batch``, verified against the
    converted module on random inputs and ``verify_samples`` of the calibration images within ``rtol``
    (:data:`PTE_RTOL`), then :func:`evaluate_pte` on the file. The file is renamed into place, and the record written to
    ``metrics.json`` (``exports[out's name]``, ``format: "pte"``), only after all of that passed.
    """
    log = log or (lambda _msg: None)
    pte.edge()
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise ExportError(f"batch must be a positive integer (ExecuTorch programs have a fixed batch), got {batch!r}")
    job = _job(target, out, calibrate, evaluate, record, data_dir, ".pte")
    model, shape = open_model(str(target), input_shape=tuple(input_shape) if input_shape else None, weights=weights)
    xs = input_batches(job.source, tuple(shape), samples=samples, batch_size=int(batch), seed=seed,
                       what="calibration inputs")
    n_calib = sum(len(x) for x in xs)
    model.eval()
    example = torch.randn((int(batch), *shape), generator=torch.Generator().manual_seed(seed + 1))
    probe(model, example)
    log(f"quantizing {target} with PT2E (XNNPACKQuantizer, per-channel int8 weights) on {n_calib} calibration "
        "samples")
    converted, program = quantize_pt2e(model, example, fixed_batches(xs, int(batch)))
    with atomic_path(job.out) as dest:
        log(f"lowering to XNNPACK and verifying against the quantized PyTorch module (rtol {rtol:g})")
        result = pte.lower_program(program, dest, reference=converted, inputs=torch.cat(xs)[:verify_samples],
                                   rtol=rtol, seed=seed)
        accuracy = fp32_accuracy = None
        if job.evaluate:
            log(f"measuring the .pte on {job.evaluate} {split} in executorch.runtime")
            test = data.load(job.evaluate, split, data_dir, augment=False)
            accuracy = evaluate_pte(dest, test)["accuracy"]
            fp32_accuracy = train.evaluate(model, test)["accuracy"]
        done = Int8PteExport(program=result, samples=n_calib, dataset=job.evaluate, split=split, accuracy=accuracy,
                             fp32_accuracy=fp32_accuracy, record=None)
        done.record = _add_record(job, target, dest, fmt="pte", quantization=done.quantization(), samples=n_calib,
                                  seed=seed, split=split, accuracy=accuracy)
    result.path = job.out
    _write_record(job, target)
    return done
