"""Turn what a user names on the command line into a model.

A target is one of: a model directory (``model.json`` inside), a built-in model name (``lenet5``), or a
factory (``package.module:factory`` or ``path/to/file.py:factory``), optionally with a weights file
(``.safetensors``, or a plain state dict ``.pt/.pth`` read with ``weights_only=True``).
"""

from __future__ import annotations

import difflib
import inspect
import os
from pathlib import Path
from typing import Any

from torch import nn

from . import modeldir, models
from .errors import ModelError


def parse_shape(text: str | None) -> tuple[int, ...] | None:
    """``"3,32,32"`` → ``(3, 32, 32)``; a one-line error for anything else."""
    if text is None:
        return None
    try:
        shape = tuple(int(p) for p in text.replace("x", ",").split(",") if p.strip())
    except ValueError:
        raise ModelError(f"input shape {text!r}: expected integers like 3,32,32") from None
    if not shape or any(d <= 0 for d in shape):
        raise ModelError(f"input shape {text!r}: every dimension must be a positive integer")
    return shape


def spec_for(target: str, *, in_channels: int | None = None, num_classes: int | None = None,
             input_size: int | None = None, kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """A build spec for a built-in name or factory, passing only the arguments the factory accepts."""
    factory = models.resolve_factory(target)
    accepted = _accepted_params(factory)
    merged: dict[str, Any] = {}
    for key, value in (("in_channels", in_channels), ("num_classes", num_classes), ("input_size", input_size)):
        if value is not None and (key in accepted or "**" in accepted):
            merged[key] = value
    merged.update(kwargs or {})
    return {"builder": target, "kwargs": merged}


def _accepted_params(factory) -> set[str]:
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return set()
    return {("**" if p.kind is p.VAR_KEYWORD else p.name) for p in params}


def open_model(target: str, *, input_shape: tuple[int, ...] | None = None, weights: str | None = None,
               num_classes: int | None = None, kwargs: dict[str, Any] | None = None
               ) -> tuple[nn.Module, tuple[int, ...]]:
    """Load or build ``target``; returns the model (eval mode) and the input shape to use with it."""
    if modeldir.is_model_dir(target):
        model = modeldir.load(target)
        shape = input_shape or getattr(model, modeldir.INPUT_SHAPE_ATTR, None)
        if shape is None:
            raise ModelError(f"{target}: model.json has no input_shape; pass --input-shape C,H,W")
        return model, tuple(shape)
    if Path(target).exists() and ":" not in target:
        raise ModelError(f"{target}: not a model directory (no {modeldir.MODEL_JSON})")
    if ":" not in target and ("/" in target or os.sep in target or target.startswith(("~", "."))):
        raise ModelError(_no_such_directory(target))
    default = models.default_input_shape(target)
    shape = input_shape or default
    if shape is None:
        raise ModelError(f"{target}: no default input shape; pass --input-shape C,H,W")
    input_size = shape[-1] if len(shape) == 3 and shape[-1] == shape[-2] else None
    spec = spec_for(target, in_channels=shape[0] if input_shape else None, num_classes=num_classes,
                    input_size=input_size if input_shape else None, kwargs=kwargs)
    model = modeldir.build(spec, shape)
    if weights:
        modeldir.apply_state(model, modeldir.load_weights(weights), weights)
    return model.eval(), tuple(shape)


def _no_such_directory(target: str) -> str:
    """A one-line error for a path that does not exist, naming the closest folder beside it."""
    path = Path(target)
    parent = path.parent
    if not parent.is_dir():
        return f"{target}: no such directory ({parent} does not exist either)"
    near = difflib.get_close_matches(path.name, [p.name for p in parent.iterdir() if p.is_dir()], n=1)
    hint = f"; did you mean {parent / near[0]}?" if near else ""
    return f"{target}: no such directory{hint}"
