"""The model directory: what every stage of tensorslim reads and writes.

```
DIR/model.json           what to build: {"format", "version", "spec", "input_shape", "dataset", "compression"}
DIR/weights.safetensors  the state dict (tensors only: nothing is ever unpickled)
DIR/metrics.json         accuracy, cost and history, free-form but JSON
```

``spec`` is ``{"builder": "lenet5" | "package.module:factory", "kwargs": {...}}``. ``compression`` is null or
``{"plan": {...}, "layers": [{"name": "features.3", "type": "CPConv2d", "config": {...}}, ...]}``: loading
re-applies each layer structurally from its config before the weights are loaded, so a compressed model
comes back exactly as it was saved.

Models built by tensorslim carry their spec in the attribute ``tensorslim_spec`` (and compressed ones
``tensorslim_compression``); :func:`save` reads them from there when they are not given.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import _atomic
from .errors import ModelError

FORMAT = "tensorslim-model"
VERSION = 1
MODEL_JSON = "model.json"
WEIGHTS = "weights.safetensors"
METRICS = "metrics.json"

SPEC_ATTR = "tensorslim_spec"
COMPRESSION_ATTR = "tensorslim_compression"
INPUT_SHAPE_ATTR = "tensorslim_input_shape"


def build(spec: dict[str, Any], input_shape: tuple[int, ...] | None = None) -> nn.Module:
    """Build a model from its spec and remember the spec on it, so that :func:`save` can write it back."""
    from .models import build_spec

    model = build_spec(spec)
    setattr(model, SPEC_ATTR, {"builder": spec["builder"], "kwargs": dict(spec.get("kwargs", {}))})
    if input_shape is not None:
        setattr(model, INPUT_SHAPE_ATTR, tuple(int(d) for d in input_shape))
    return model


def is_model_dir(path: str | os.PathLike) -> bool:
    return (Path(path) / MODEL_JSON).is_file()


def save(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    spec: dict[str, Any] | None = None,
    input_shape: tuple[int, ...] | None = None,
    dataset: str | None = None,
    metrics: dict[str, Any] | None = None,
    extra_files: dict[str, bytes] | None = None,
) -> Path:
    """Write ``model`` as a model directory at ``path``, replacing it atomically (all files or none)."""
    from safetensors.torch import save_file

    spec = spec or getattr(model, SPEC_ATTR, None)
    if spec is None:
        raise ModelError(
            f"cannot save {type(model).__name__}: it has no build spec; build it with tensorslim.models or "
            "pass spec={'builder': 'package.module:factory', 'kwargs': {...}}"
        )
    input_shape = input_shape or getattr(model, INPUT_SHAPE_ATTR, None)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "spec": spec,
        "input_shape": list(input_shape) if input_shape is not None else None,
        "dataset": dataset,
        "compression": getattr(model, COMPRESSION_ATTR, None),
    }
    # safetensors refuses tensors that share memory; clone to contiguous independent storage.
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    path = Path(path)
    with _atomic.atomic_dir(path) as tmp:
        save_file(state, str(tmp / WEIGHTS), metadata={"format": FORMAT})
        (tmp / MODEL_JSON).write_text(json.dumps(meta, indent=2) + "\n")
        (tmp / METRICS).write_text(json.dumps(metrics or {}, indent=2) + "\n")
        for name, data in (extra_files or {}).items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_bytes(data)
    return path


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise ModelError(f"{path}: expected a JSON object")
    return data


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The validated ``model.json`` of a model directory."""
    path = Path(path)
    if not path.exists():
        raise ModelError(f"{path}: no such model directory")
    if not path.is_dir():
        raise ModelError(f"{path}: not a model directory (expected a folder with {MODEL_JSON})")
    meta = read_json(path / MODEL_JSON)
    if meta.get("format") != FORMAT:
        raise ModelError(f"{path / MODEL_JSON}: not a tensorslim model (format={meta.get('format')!r})")
    if meta.get("version", 0) > VERSION:
        raise ModelError(f"{path / MODEL_JSON}: format version {meta['version']} is newer than this tensorslim")
    spec = meta.get("spec")
    if not isinstance(spec, dict) or not isinstance(spec.get("builder"), str):
        raise ModelError(f"{path / MODEL_JSON}: 'spec' must be an object with a 'builder' string")
    return meta


def read_metrics(path: str | os.PathLike) -> dict[str, Any]:
    file = Path(path) / METRICS
    return read_json(file) if file.exists() else {}


def load_weights(file: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or a plain ``.pt/.pth`` (``weights_only=True``: no code runs)."""
    file = Path(file)
    if not file.is_file():
        raise ModelError(f"{file}: weights file not found")
    if file.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(file))
        except (SafetensorError, OSError, ValueError, RuntimeError) as err:
            raise ModelError(f"{file}: not a valid safetensors file ({_first_line(err)})") from None
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure is the user's file at fault
        raise ModelError(f"{file}: cannot read as a weights-only state dict ({_first_line(err)})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{file}: expected a state dict of tensors")
    return state


def apply_state(model: nn.Module, state: dict[str, torch.Tensor], source: str | os.PathLike) -> None:
    """``load_state_dict(strict=True)`` with a one-line error naming the file and the first mismatch."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        what = f"missing {missing[0]!r}" if missing else f"unexpected {unexpected[0]!r}"
        raise ModelError(
            f"{source}: weights do not fit the model ({what}; {len(missing)} missing, {len(unexpected)} unexpected)"
        )
    for k, v in state.items():
        if own[k].shape != v.shape:
            raise ModelError(f"{source}: {k} has shape {tuple(v.shape)}, the model expects {tuple(own[k].shape)}")
        if not torch.isfinite(v).all() and v.is_floating_point():
            raise ModelError(f"{source}: {k} contains NaN or inf")
    model.load_state_dict(state, strict=True)


def load(path: str | os.PathLike) -> nn.Module:
    """Rebuild the model saved at ``path`` (a model directory), compressed layers included, in eval mode."""
    path = Path(path)
    meta = read_meta(path)
    model = build(meta["spec"], meta.get("input_shape"))
    compression = meta.get("compression")
    if compression:
        from .surgery import rebuild

        model = rebuild(model, compression, source=path / MODEL_JSON)
    apply_state(model, load_weights(path / WEIGHTS), path / WEIGHTS)
    model.tensorslim_dataset = meta.get("dataset")
    return model.eval()


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
