"""tensorslim: make CNNs small and fast for edge devices with tensor methods.

The public API, imported on first use so that ``import tensorslim`` stays light::

    tensorslim.save(model, path)          # model directory: model.json + weights.safetensors + metrics.json
    tensorslim.load(path)                 # never unpickles, never runs code named in the directory
    tensorslim.models.build("resnet20")   # built-in models carry their build spec: they save as they are
    tensorslim.profile(model, (C, H, W))  # per-layer params / MACs / bytes
    tensorslim.compress(model, plan)      # a new, factorized model; the original is untouched
    tensorslim.export_onnx(model, path, (C, H, W))
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_API = {
    "save": ("modeldir", "save"),
    "load": ("modeldir", "load"),
    "profile": ("cost", "profile"),
    "compress": ("surgery", "compress"),
    "export_onnx": ("export", "export_onnx"),
    "TensorSlimError": ("errors", "TensorSlimError"),
}

_SUBMODULES = {"models", "data", "trust", "records", "modeldir", "plan", "surgery", "layers", "decompose", "methods",
               "study", "report",
               "export", "finetune", "explore", "search", "train", "cost"}

__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        module, attr = _API[name]
        return getattr(importlib.import_module(f".{module}", __name__), attr)
    if name in _SUBMODULES:  # ``tensorslim.models.build(...)`` works after a bare ``import tensorslim``
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'tensorslim' has no attribute {name!r}")
