"""One model ready to be timed in one runtime: an ONNX Runtime session or an eval-mode copy of a module.

A runner is made from a target (:func:`make_runner`: an ``nn.Module``, an ``.onnx`` file or a tensorslim model
directory). ``load(threads)`` builds the session or the copy; ``bind(x)`` returns a zero-argument call that runs
the model on the array ``x``; ``close()`` drops what ``load`` built. A module timed in ONNX Runtime is first
exported (dynamic batch, verified) into the work directory. ORT sessions come from
:func:`.session.ort_session` (all graph optimizations, the file as written); PyTorch runs the copy
with weights and 4-D inputs in ``channels_last`` memory format.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import modeldir
from ._common import BenchError, check_input_shape
from .graph import inspect_onnx
from .onnx import export_onnx
from .session import ort_session


class Runner:
    label: str
    runtime: str
    source: str
    file_bytes: int | None = None
    weight_bytes: int | None = None
    input_shape: tuple[int, ...] | None = None  # without batch; None: any (taken from the other model)
    fixed_batch: int | None = None

    def load(self, threads: int) -> None:
        raise NotImplementedError

    def bind(self, x: np.ndarray) -> Callable[[], object]:
        raise NotImplementedError

    def close(self) -> None:
        """Drop the session / model copy."""


class OrtRunner(Runner):
    runtime = "ort"

    def __init__(self, path: Path, label: str, source: str | None = None):
        info = inspect_onnx(path)  # a one-line ExportError for files that are not ONNX
        if len(info.inputs) != 1:
            raise BenchError(f"{path}: the model has {len(info.inputs)} inputs; only one-input models "
                             "are timed")
        dims = info.inputs[0][1]
        if len(dims) < 2:
            raise BenchError(f"{path}: the input has shape {dims}; expected a batch axis and a sample shape")
        self.path = path
        self.label = label
        self.source = source or str(path)
        self.fixed_batch = dims[0] if isinstance(dims[0], int) else None
        sample = dims[1:]
        self.input_shape = tuple(sample) if all(isinstance(d, int) for d in sample) else None  # type: ignore
        external = path.with_name(path.name + ".data")  # weights stored beside the graph, if any
        self.file_bytes = path.stat().st_size + (external.stat().st_size if external.exists() else 0)
        self.weight_bytes = info.initializer_bytes
        self.session = None

    def load(self, threads: int) -> None:
        self.session = ort_session(self.path, threads=threads)
        inp = self.session.get_inputs()[0]
        if inp.type != "tensor(float)":
            raise BenchError(f"{self.path}: the input is {inp.type}; only float32 inputs are timed")
        self.input_name = inp.name

    def bind(self, x: np.ndarray) -> Callable[[], object]:
        sess, feed = self.session, {self.input_name: x}
        return lambda: sess.run(None, feed)

    def close(self) -> None:
        self.session = None


class TorchRunner(Runner):
    runtime = "torch"

    def __init__(self, model: nn.Module, label: str, source: str, input_shape: tuple[int, ...] | None,
                 file_bytes: int | None = None):
        self.original = model
        self.label = label
        self.source = source
        self.input_shape = input_shape
        self.file_bytes = file_bytes
        self.weight_bytes = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
        self.model: nn.Module | None = None

    def load(self, threads: int) -> None:
        model = copy.deepcopy(self.original).eval()
        if self.input_shape is not None and len(self.input_shape) == 3:
            model = model.to(memory_format=torch.channels_last)
        self.model = model

    def bind(self, x: np.ndarray) -> Callable[[], object]:
        t = torch.from_numpy(x)
        if t.ndim == 4:
            t = t.contiguous(memory_format=torch.channels_last)
        model = self.model
        return lambda: model(t)

    def close(self) -> None:
        self.model = None


def _model_input_shape(model: nn.Module) -> tuple[int, ...] | None:
    shape = getattr(model, "tensorslim_input_shape", None)  # set by tensorslim.modeldir.build / load
    return tuple(int(d) for d in shape) if shape else None


def make_runner(target: Any, runtime: str, label: str | None, input_shape: tuple[int, ...] | None,
                 workdir: Path, tag: str) -> Runner:
    """A runner for ``target`` (module, .onnx file or model directory); exports modules for ``ort``."""
    file_bytes = None
    if isinstance(target, (str, os.PathLike)):
        path = Path(target)
        if not path.exists():
            raise BenchError(f"{path}: no such file or model directory")
        if path.is_dir():
            if not modeldir.is_model_dir(path):
                raise BenchError(f"{path}: not a model directory (no {modeldir.MODEL_JSON}) "
                                 "and not an ONNX file")
            meta = modeldir.read_meta(path)
            module = modeldir.load(path)
            if input_shape is None and meta.get("input_shape"):
                input_shape = check_input_shape(meta["input_shape"],
                                                f"{path / modeldir.MODEL_JSON}: input_shape")
            weights = path / modeldir.WEIGHTS
            file_bytes = weights.stat().st_size if weights.exists() else None
            target, label = module, label or path.name
            source = str(path)
        else:
            if runtime != "ort":
                raise BenchError(f"{path}: an ONNX file can only be timed with runtime 'ort', "
                                 f"not {runtime!r}")
            return OrtRunner(path, label or path.stem)
    elif isinstance(target, nn.Module):
        source = type(target).__name__
        label = label or source
    else:
        raise BenchError(f"cannot benchmark a {type(target).__name__}: give an nn.Module, an .onnx file or a "
                         "model directory")
    shape = input_shape or _model_input_shape(target)
    if runtime == "torch":
        if any(p.device.type != "cpu" for p in target.parameters()):
            raise BenchError(f"{label}: the model must be on the CPU")
        return TorchRunner(target, label, source, shape, file_bytes)
    if shape is None:
        raise BenchError(f"{label}: an input shape is required to export the module (e.g. 1,28,28)")
    onnx_path = workdir / f"{tag}.onnx"
    export_onnx(target, onnx_path, shape, batch="dynamic", verify=True)
    return OrtRunner(onnx_path, label, source)
