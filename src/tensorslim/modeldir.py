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

import hashlib
import json
import math
import os
import struct
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from . import _atomic, records, trust
from .errors import ModelError
from .models import build_spec
from .records import (  # noqa: F401 - the names every stage uses
    COMPRESSION_ATTR,
    FORMAT,
    INPUT_SHAPE_ATTR,
    METRICS,
    MODEL_JSON,
    SPEC_ATTR,
    VERSION,
    WEIGHTS,
)
from .surgery import rebuild


def build(spec: dict[str, Any], input_shape: tuple[int, ...] | None = None) -> nn.Module:
    """Build a model from its spec and remember the spec on it, so that :func:`save` can write it back.

    The spec is the caller's own (a name typed on the command line, a dict in Python): it is not checked
    against :mod:`tensorslim.trust`. Specs read from files go through :func:`read_meta`, which is."""
    model = build_spec(spec)
    setattr(model, SPEC_ATTR, {"builder": spec["builder"], "kwargs": dict(spec.get("kwargs") or {})})
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
    """Write ``model`` as a model directory at ``path``, replacing it atomically (all files or none).

    ``spec`` names the factory that rebuilds it (``{"builder": "pkg.module:factory", "kwargs": {...}}``);
    models built by ``tensorslim.models.build`` or :func:`build` carry theirs. A builder that is user code is
    recorded with ``"trust_code": true``: loading the directory then needs ``trust_code=True``."""
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
        "spec": {"builder": spec.get("builder"), "kwargs": dict(spec.get("kwargs") or {})},
        "input_shape": [int(d) for d in input_shape] if input_shape is not None else None,
        "dataset": dataset,
        "compression": getattr(model, COMPRESSION_ATTR, None),
        "trust_code": trust.needs_trust(spec.get("builder")),
    }
    records.parse_model(json.loads(json.dumps(meta)), f"{path}/{MODEL_JSON} (to be written)")
    if metrics:
        records.parse_metrics(json.loads(json.dumps(metrics)), f"{path}/{METRICS} (to be written)")
    # safetensors refuses tensors that share memory; clone to contiguous independent storage.
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    path = Path(path)
    with _atomic.atomic_dir(path) as tmp:
        save_file(state, str(tmp / WEIGHTS), metadata={"format": FORMAT})
        meta["weights_sha256"] = sha256_file(tmp / WEIGHTS)
        (tmp / MODEL_JSON).write_text(json.dumps(meta, indent=2) + "\n")
        (tmp / METRICS).write_text(json.dumps(metrics or {}, indent=2) + "\n")
        for name, data in (extra_files or {}).items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_bytes(data)
    return path


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from a file (size-bounded; NaN/Infinity refused); every problem is one line."""
    return records.read_json_object(Path(path))


def read_record(path: str | os.PathLike, *, trust_code: bool | None = None) -> records.ModelRecord:
    """The validated ``model.json`` of a model directory as a :class:`~tensorslim.records.ModelRecord`.

    Its builder must be a built-in (see :mod:`tensorslim.trust`) unless ``trust_code`` (None: the ambient
    :func:`tensorslim.trust.trusted_code` setting)."""
    path = Path(path)
    if not path.exists():
        raise ModelError(f"{path}: no such model directory")
    if not path.is_dir():
        raise ModelError(f"{path}: not a model directory (expected a folder with {MODEL_JSON})")
    if not (path / MODEL_JSON).is_file():
        raise ModelError(f"{path}: not a model directory (no {MODEL_JSON})")
    record = records.parse_model(read_json(path / MODEL_JSON), path / MODEL_JSON)
    trust.check_builder(record.spec.builder, path / MODEL_JSON, trust_code)
    return record


def read_meta(path: str | os.PathLike, *, trust_code: bool | None = None) -> dict[str, Any]:
    """The validated ``model.json`` of a model directory, as a dict (see :func:`read_record`)."""
    return read_record(path, trust_code=trust_code).to_dict()


def read_metrics(path: str | os.PathLike) -> dict[str, Any]:
    """The validated ``metrics.json`` of a model directory (``{}`` when there is none)."""
    file = Path(path) / METRICS
    return records.parse_metrics(read_json(file), file) if file.exists() else {}


# --- weights ------------------------------------------------------------------------------------------------

_ST_DTYPES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
              "BOOL": 1, "U16": 2, "U32": 4, "U64": 8, "F8_E4M3": 1, "F8_E5M2": 1}
_TORCH_ST = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
             torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
             torch.bool: "BOOL"}
MAX_HEADER_BYTES = 100 * 2**20


def read_safetensors_header(file: str | os.PathLike) -> dict[str, tuple[str, tuple[int, ...]]]:
    """``{name: (dtype, shape)}`` from a safetensors header, checked against the file's size: a truncated,
    overlapping or inconsistent file is a one-line error before any tensor is read."""
    file = Path(file)
    bad = f"{file}: not a valid safetensors file"
    try:
        size = file.stat().st_size
        with file.open("rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise ModelError(f"{bad} (only {size} bytes)")
            (n,) = struct.unpack("<Q", head)
            if n > min(MAX_HEADER_BYTES, size - 8):
                raise ModelError(f"{bad} (header of {n:,} bytes in a {size:,}-byte file: truncated or corrupt)")
            raw = f.read(n)
    except FileNotFoundError:
        raise ModelError(f"{file}: weights file not found") from None
    except OSError as err:
        raise ModelError(f"{file}: cannot read ({err.strerror})") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise ModelError(f"{bad} (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise ModelError(f"{bad} (its header is not an object)")
    body = size - 8 - n
    out: dict[str, tuple[str, tuple[int, ...]]] = {}
    spans = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
            ok = (dtype in _ST_DTYPES and isinstance(shape, list) and len(shape) <= 8
                  and all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**40 for d in shape)
                  and all(isinstance(v, int) and not isinstance(v, bool) for v in (begin, end)))
        except (TypeError, KeyError, ValueError):
            ok = False
        if not ok:
            raise ModelError(f"{bad} (entry {name!r} is malformed)")
        if not 0 <= begin <= end <= body:
            raise ModelError(f"{bad} ({name!r} lies outside the file: truncated?)")
        if end - begin != math.prod(shape) * _ST_DTYPES[dtype]:
            raise ModelError(f"{bad} ({name!r}: {end - begin} bytes for shape {shape} {dtype})")
        spans.append((begin, end))
        out[name] = (dtype, tuple(shape))
    spans.sort()
    if any(b0 < e1 for (_, e1), (b0, _) in zip(spans, spans[1:])):
        raise ModelError(f"{bad} (tensors overlap)")
    return out


def check_header(header: dict[str, tuple[str, tuple[int, ...]]], model: nn.Module, source: Any, *,
                 dtypes: bool = True) -> None:
    """The header's names, shapes (and ``dtypes``) must be the model's (a meta-device model is enough)."""
    own = model.state_dict()
    missing = [k for k in own if k not in header]
    unexpected = [k for k in header if k not in own]
    if missing or unexpected:
        what = f"missing {missing[0]!r}" if missing else f"unexpected {unexpected[0]!r}"
        raise ModelError(
            f"{source}: weights do not fit the model ({what}; {len(missing)} missing, {len(unexpected)} unexpected)"
        )
    for name, tensor in own.items():
        dtype, shape = header[name]
        if shape != tuple(tensor.shape):
            raise ModelError(f"{source}: {name} has shape {shape}, the model expects {tuple(tensor.shape)}")
        if dtypes and _TORCH_ST.get(tensor.dtype) != dtype:
            raise ModelError(f"{source}: {name} is {dtype}, the model expects {tensor.dtype}")


def sha256_file(file: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_weights(file: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or a plain ``.pt/.pth`` (``weights_only=True``: no code runs)."""
    file = Path(file)
    if not file.is_file():
        raise ModelError(f"{file}: weights file not found")
    if file.suffix == ".safetensors":
        read_safetensors_header(file)
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
    check_header({k: (_TORCH_ST.get(v.dtype, str(v.dtype)), tuple(v.shape)) for k, v in state.items()}, model,
                 source, dtypes=False)
    for k, v in state.items():
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise ModelError(f"{source}: {k} contains NaN or inf")
    model.load_state_dict(state, strict=True)


# --- loading ------------------------------------------------------------------------------------------------


def structure(record: records.ModelRecord, source: Any) -> nn.Module:
    """The model a record describes, compressed layers included, with fresh (random) weights."""
    model = build(record.spec.to_dict(), record.input_shape)
    if record.compression is not None:
        model = rebuild(model, record.compression.to_dict(), source=source)
    return model


def load(path: str | os.PathLike, *, trust_code: bool | None = None) -> nn.Module:
    """Rebuild the model saved at ``path`` (a model directory), compressed layers included, in eval mode.

    Nothing is unpickled. ``model.json`` is validated first, and its builder must be a built-in model unless
    ``trust_code=True`` (see :mod:`tensorslim.trust`). The model is then built on the meta device and its
    state's names, dtypes and shapes are checked against the safetensors header (itself checked against the
    file's size) before any memory is allocated or any tensor read."""
    path = Path(path)
    record = read_record(path, trust_code=trust_code)
    source = path / MODEL_JSON
    header = read_safetensors_header(path / WEIGHTS)
    if record.weights_sha256 is not None and sha256_file(path / WEIGHTS) != record.weights_sha256:
        raise ModelError(f"{path / WEIGHTS}: does not match the checksum in {MODEL_JSON} (corrupt or replaced)")
    skeleton = None
    try:
        with torch.device("meta"):
            skeleton = structure(record, source)
    except ModelError:
        if not (trust_code or trust.is_trusted()):
            raise
    except Exception:  # noqa: BLE001 - user code that cannot run on the meta device: checked after the build
        skeleton = None
    if skeleton is not None:
        check_header(header, skeleton, path / WEIGHTS)
    model = structure(record, source)
    apply_state(model, load_weights(path / WEIGHTS), path / WEIGHTS)
    model.tensorslim_dataset = record.dataset
    return model.eval()


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
