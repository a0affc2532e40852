"""The typed records that model directories store, validated before anything is built or allocated.

``model.json``::

    {"format": "tensorslim-model", "version": 1,
     "spec": {"builder": "convnet", "kwargs": {"num_classes": 10}},
     "input_shape": [1, 28, 28],            # 1–4 positive ints, at most MAX_INPUT_ELEMENTS elements, or null
     "dataset": "fashion-mnist",            # or null
     "compression": null | {"plans": [PLAN, ...], "layers": [LAYER, ...], "skipped": [{"name", "reason"}]},
     "trust_code": false,                   # true when the builder is user code (see tensorslim.trust)
     "weights_sha256": "…"}                 # checksum of weights.safetensors (checked on load when present)

where ``LAYER`` is ``{"name", "type", "config", "method", "rank", "rel_error", "params_before", "params_after",
"macs_before", "macs_after"}`` (``name``, ``type`` and ``config`` are required: they rebuild the layer).

``metrics.json`` is an object whose known keys are typed (``accuracy``: a percentage, or split → percent;
``evaluated_on``: split → dataset; ``evaluations``: dataset → split → percent, every ``evaluate`` run;
``params``/``macs``: counts; ``history``: a list of per-epoch objects; ``exports``: exported files measured on
their own, see :func:`parse_exports`); other keys are kept as free-form JSON, since each stage adds its own record.

Every check raises :class:`~tensorslim.errors.ModelError` with one line naming the file and the field. The
parsers touch only JSON: the checks of a record against a model (does a layer's config fit its slot) are in
``tensorslim.surgery.rebuild`` and ``tensorslim.modeldir``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from .errors import ModelError

FORMAT = "tensorslim-model"
VERSION = 1
MODEL_JSON = "model.json"
WEIGHTS = "weights.safetensors"
METRICS = "metrics.json"

#: model attributes that carry a model's records between the stages (set by build / compress / load)
SPEC_ATTR = "tensorslim_spec"
COMPRESSION_ATTR = "tensorslim_compression"
INPUT_SHAPE_ATTR = "tensorslim_input_shape"

MAX_JSON_BYTES = 16 * 2**20  # model.json, metrics.json and plans are small; a larger file is not ours
MAX_INPUT_ELEMENTS = 2**24  # C·H·W of one input (a 3×2048×2048 image fits)
MAX_DIM = 2**31 - 1
MAX_DEPTH = 8  # nesting of kwargs / configs
MAX_ITEMS = 4096  # length of any list or object inside kwargs / configs
MAX_LAYERS = 100_000

MODEL_KEYS = {"format", "version", "spec", "input_shape", "dataset", "compression", "trust_code", "weights_sha256"}
SPEC_KEYS = {"builder", "kwargs"}
COMPRESSION_KEYS = {"plans", "layers", "skipped"}
LAYER_REQUIRED = {"name", "type", "config"}
LAYER_OPTIONAL = {"method", "rank", "rel_error", "params_before", "params_after", "macs_before", "macs_after",
                  "forced"}


@dataclasses.dataclass(frozen=True)
class BuildSpec:
    builder: str
    kwargs: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"builder": self.builder, "kwargs": dict(self.kwargs)}


@dataclasses.dataclass(frozen=True)
class LayerRecord:
    """One factorized layer: the slot it replaces, its layer class and the config that rebuilds it."""

    name: str
    type: str
    config: dict[str, Any]
    extra: dict[str, Any]  # method, rank, costs before/after, error: what the report shows

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "config": self.config, **self.extra}


@dataclasses.dataclass(frozen=True)
class CompressionRecord:
    plans: list[dict[str, Any]]
    layers: list[LayerRecord]
    skipped: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {"plans": self.plans, "layers": [entry.to_dict() for entry in self.layers], "skipped": self.skipped}


@dataclasses.dataclass(frozen=True)
class ModelRecord:
    """A validated ``model.json``."""

    spec: BuildSpec
    input_shape: tuple[int, ...] | None
    dataset: str | None
    compression: CompressionRecord | None
    trust_code: bool = False
    version: int = VERSION
    weights_sha256: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {"format": FORMAT, "version": self.version, "spec": self.spec.to_dict(),
               "input_shape": list(self.input_shape) if self.input_shape is not None else None,
               "dataset": self.dataset,
               "compression": self.compression.to_dict() if self.compression is not None else None,
               "trust_code": self.trust_code}
        if self.weights_sha256 is not None:
            out["weights_sha256"] = self.weights_sha256
        return out


# --- reading JSON files -------------------------------------------------------------------------------------


def read_json_object(path: Path, what: str = "file") -> dict[str, Any]:
    """A JSON object from ``path``: missing, oversized, undecodable, non-object or non-finite content is one line."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ModelError(f"{path}: {what} not found") from None
    except OSError as err:
        raise ModelError(f"{path}: cannot read ({err.strerror})") from None
    if not path.is_file():
        raise ModelError(f"{path}: not a file")
    if size > MAX_JSON_BYTES:
        raise ModelError(f"{path}: {size:,} bytes is too large for a tensorslim JSON file")
    try:
        data = json.loads(path.read_bytes().decode("utf-8"), parse_constant=_no_constant)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelError(f"{path}: not valid JSON ({_first_line(err)})") from None
    except ValueError as err:
        raise ModelError(f"{path}: {err}") from None
    except RecursionError:
        raise ModelError(f"{path}: JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise ModelError(f"{path}: expected a JSON object, found {_json_type(data)}")
    return data


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed (JSON numbers must be finite)")


# --- model.json ---------------------------------------------------------------------------------------------


def parse_model(data: Any, source: Any = MODEL_JSON) -> ModelRecord:
    """Validate a ``model.json`` object (types, ranges, unknown keys) into a :class:`ModelRecord`."""
    where = str(source)
    if not isinstance(data, dict):
        raise ModelError(f"{where}: expected a JSON object, found {_json_type(data)}")
    if data.get("format") != FORMAT:
        raise ModelError(f"{where}: not a tensorslim model (format={data.get('format')!r})")
    _no_unknown(data, MODEL_KEYS, where)
    version = data.get("version", VERSION)
    if not _is_int(version) or version < 1:
        raise ModelError(f"{where}: 'version' must be a positive integer, not {_show(version)}")
    if version > VERSION:
        raise ModelError(f"{where}: format version {version} is newer than this tensorslim (reads {VERSION})")
    spec = parse_spec(data.get("spec"), where)
    shape = parse_input_shape(data.get("input_shape"), f"{where}: 'input_shape'")
    dataset = data.get("dataset")
    if dataset is not None and not (isinstance(dataset, str) and 0 < len(dataset) <= 200):
        raise ModelError(f"{where}: 'dataset' must be a dataset name or null, not {_show(dataset)}")
    trust = data.get("trust_code", False)
    if not isinstance(trust, bool):
        raise ModelError(f"{where}: 'trust_code' must be true or false, not {_show(trust)}")
    digest = data.get("weights_sha256")
    if "weights_sha256" in data and not (isinstance(digest, str) and len(digest) == 64
                                   and all(c in "0123456789abcdef" for c in digest)):
        raise ModelError(f"{where}: 'weights_sha256' must be 64 lowercase hex digits, not {_show(digest)}")
    compression = data.get("compression")
    record = parse_compression(compression, where) if compression is not None else None
    return ModelRecord(spec, shape, dataset, record, trust, version, digest)


def parse_spec(spec: Any, where: str) -> BuildSpec:
    if not isinstance(spec, dict):
        raise ModelError(f"{where}: 'spec' must be an object with a 'builder' string, not {_show(spec)}")
    _no_unknown(spec, SPEC_KEYS, f"{where}: 'spec'")
    builder = spec.get("builder")
    if not isinstance(builder, str) or not builder or len(builder) > 500:
        raise ModelError(f"{where}: 'spec.builder' must be a model name or 'module:factory', not {_show(builder)}")
    kwargs = spec.get("kwargs", {})
    if not isinstance(kwargs, dict):
        raise ModelError(f"{where}: 'spec.kwargs' must be an object, not {_show(kwargs)}")
    check_json_value(kwargs, f"{where}: 'spec.kwargs'")
    return BuildSpec(builder, dict(kwargs))


def parse_input_shape(value: Any, what: str, *, required: bool = False) -> tuple[int, ...] | None:
    """1–4 positive ints whose product is at most :data:`MAX_INPUT_ELEMENTS` (None allowed unless required)."""
    if value is None and not required:
        return None
    if not isinstance(value, (list, tuple)) or not 1 <= len(value) <= 4 or not all(_is_int(d) for d in value):
        raise ModelError(f"{what} must be a list of 1 to 4 positive integers, not {_show(value)}")
    if any(d < 1 for d in value):
        raise ModelError(f"{what} must have positive dimensions, not {_show(value)}")
    if math.prod(value) > MAX_INPUT_ELEMENTS:
        raise ModelError(f"{what} {_show(value)} has {math.prod(value):,} elements per input "
                         f"(at most {MAX_INPUT_ELEMENTS:,})")
    return tuple(int(d) for d in value)


def parse_compression(value: Any, where: str) -> CompressionRecord:
    if not isinstance(value, dict):
        raise ModelError(f"{where}: 'compression' must be an object or null, not {_show(value)}")
    _no_unknown(value, COMPRESSION_KEYS, f"{where}: 'compression'")
    plans = value.get("plans", [])
    if not isinstance(plans, list) or not all(isinstance(p, dict) for p in plans):
        raise ModelError(f"{where}: 'compression.plans' must be a list of plan objects")
    check_json_value(plans, f"{where}: 'compression.plans'")
    layers = value.get("layers", [])
    if not isinstance(layers, list):
        raise ModelError(f"{where}: 'compression.layers' must be a list, not {_show(layers)}")
    if len(layers) > MAX_LAYERS:
        raise ModelError(f"{where}: 'compression.layers' has {len(layers):,} entries")
    parsed = [parse_layer(entry, f"{where}: compression layer {i + 1}") for i, entry in enumerate(layers)]
    names = [entry.name for entry in parsed]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ModelError(f"{where}: 'compression.layers' names layer {dup!r} twice")
    skipped = value.get("skipped", [])
    if not isinstance(skipped, list) or not all(
            isinstance(s, dict) and isinstance(s.get("name"), str) and isinstance(s.get("reason"), str)
            for s in skipped):
        raise ModelError(f"{where}: 'compression.skipped' must be a list of {{\"name\", \"reason\"}} objects")
    check_json_value(skipped, f"{where}: 'compression.skipped'")
    return CompressionRecord(plans, parsed, skipped)


def parse_layer(entry: Any, where: str) -> LayerRecord:
    _check_keys(entry, LAYER_REQUIRED, LAYER_OPTIONAL, where)
    name, type_, config = entry["name"], entry["type"], entry["config"]
    if not isinstance(name, str) or not name or len(name) > 500:
        raise ModelError(f"{where}: 'name' must be a module name, not {_show(name)}")
    if not isinstance(type_, str) or not type_:
        raise ModelError(f"{where} ({name}): 'type' must be a layer class name, not {_show(type_)}")
    if not isinstance(config, dict):
        raise ModelError(f"{where} ({name}): 'config' must be an object, not {_show(config)}")
    check_json_value(config, f"{where} ({name}): 'config'")
    extra = {k: entry[k] for k in LAYER_OPTIONAL if k in entry}
    check_json_value(extra, f"{where} ({name})")
    for key in ("params_before", "params_after", "macs_before", "macs_after"):
        if key in extra and not (_is_count(extra[key])):
            raise ModelError(f"{where} ({name}): {key!r} must be a non-negative integer, not {_show(extra[key])}")
    if "rel_error" in extra and not (extra["rel_error"] is None or _is_number(extra["rel_error"])):
        raise ModelError(f"{where} ({name}): 'rel_error' must be a number, not {_show(extra['rel_error'])}")
    return LayerRecord(name, type_, dict(config), extra)


# --- metrics.json -------------------------------------------------------------------------------------------


def parse_metrics(data: Any, source: Any = METRICS) -> dict[str, Any]:
    """Validate the typed keys of a ``metrics.json`` object; returns it unchanged."""
    where = str(source)
    if not isinstance(data, dict):
        raise ModelError(f"{where}: expected a JSON object, found {_json_type(data)}")
    check_json_value(data, where, depth_limit=32, items_limit=1_000_000)
    accuracy = data.get("accuracy")
    if accuracy is not None:
        def percent(v: Any) -> bool:
            return _is_number(v) and 0 <= v <= 100

        if not (percent(accuracy) or (isinstance(accuracy, dict) and all(
                v is None or percent(v) or isinstance(v, dict) for v in accuracy.values()))):
            raise ModelError(f"{where}: 'accuracy' must be a percentage or map splits to percentages in [0, 100]")
    evaluated = data.get("evaluated_on")
    if evaluated is not None and (not isinstance(evaluated, dict) or not all(
            isinstance(v, (str, dict)) for v in evaluated.values())):
        raise ModelError(f"{where}: 'evaluated_on' must map splits to dataset names")
    evaluations = data.get("evaluations")
    if evaluations is not None and not _is_evaluations(evaluations):
        raise ModelError(f"{where}: 'evaluations' must map datasets to splits to percentages in [0, 100]")
    for key in ("params", "macs"):
        if key in data and not _is_count(data[key]):
            raise ModelError(f"{where}: {key!r} must be a non-negative integer, not {_show(data[key])}")
    history = data.get("history")
    if history is not None and (not isinstance(history, list) or not all(isinstance(h, dict) for h in history)):
        raise ModelError(f"{where}: 'history' must be a list of per-epoch objects")
    if data.get("exports") is not None:
        parse_exports(data["exports"], where)
    return data


EXPORT_FORMATS = ("onnx", "pte")
EXPORT_REQUIRED = {"format", "int8", "bytes", "evaluations"}
EXPORT_OPTIONAL = {"path", "sha256", "quantization", "calibration"}
CALIBRATION_KEYS = {"dataset", "split", "samples", "seed"}


def parse_exports(value: Any, where: str) -> dict[str, Any]:
    """Validate ``metrics.json``'s ``exports``: file name → the measurement of that exported file::

        {"model.int8.onnx": {"format": "onnx" | "pte", "int8": true, "bytes": 61234,
                             "path": "out/model.int8.onnx", "sha256": "…",          # the file measured
                             "quantization": {...settings...},
                             "calibration": {"dataset": "fashion-mnist", "split": "train", "samples": 512,
                                             "seed": 0},                           # or null: not quantized
                             "evaluations": {"fashion-mnist": {"test": 91.84}}}}   # dataset → split → percent

    ``evaluations`` is measured by running the file itself; calibration data comes from ``calibration.split``.
    """
    if not isinstance(value, dict):
        raise ModelError(f"{where}: 'exports' must map file names to export records, not {_show(value)}")
    for name, entry in value.items():
        at = f"{where}: exports[{name!r}]"
        _check_keys(entry, EXPORT_REQUIRED, EXPORT_OPTIONAL, at)
        if entry["format"] not in EXPORT_FORMATS:
            raise ModelError(f"{at}: 'format' must be one of {', '.join(EXPORT_FORMATS)}, not {_show(entry['format'])}")
        if not isinstance(entry["int8"], bool):
            raise ModelError(f"{at}: 'int8' must be true or false, not {_show(entry['int8'])}")
        if not _is_count(entry["bytes"]):
            raise ModelError(f"{at}: 'bytes' must be a non-negative integer, not {_show(entry['bytes'])}")
        for key in ("path", "sha256"):
            if key in entry and not isinstance(entry[key], str):
                raise ModelError(f"{at}: {key!r} must be a string, not {_show(entry[key])}")
        if "quantization" in entry and not isinstance(entry["quantization"], dict):
            raise ModelError(f"{at}: 'quantization' must be an object, not {_show(entry['quantization'])}")
        calibration = entry.get("calibration")
        if calibration is not None:
            if not isinstance(calibration, dict):
                raise ModelError(f"{at}: 'calibration' must be an object or null, not {_show(calibration)}")
            _no_unknown(calibration, CALIBRATION_KEYS, f"{at}: 'calibration'")
            if "samples" in calibration and not _is_count(calibration["samples"]):
                raise ModelError(f"{at}: 'calibration.samples' must be a count, not {_show(calibration['samples'])}")
        evaluations = entry["evaluations"]
        if not _is_evaluations(evaluations):
            raise ModelError(f"{at}: 'evaluations' must map datasets to splits to percentages in [0, 100]")
    return value


# --- helpers ------------------------------------------------------------------------------------------------


def check_json_value(value: Any, where: str, *, depth_limit: int = MAX_DEPTH, items_limit: int = MAX_ITEMS) -> None:
    """JSON scalars (finite numbers, ints within ±2^63), lists and string-keyed objects, bounded in depth/size."""

    def walk(v: Any, depth: int) -> None:
        if depth > depth_limit:
            raise ModelError(f"{where}: nested more than {depth_limit} levels deep")
        if v is None or isinstance(v, (bool, str)):
            return
        if isinstance(v, int):
            if abs(v) >= 2**63:
                raise ModelError(f"{where}: integer {v} is out of range")
            return
        if isinstance(v, float):
            if not math.isfinite(v):
                raise ModelError(f"{where}: {v} is not a finite number")
            return
        if isinstance(v, (list, tuple)):
            if len(v) > items_limit:
                raise ModelError(f"{where}: a list of {len(v):,} items is too long")
            for item in v:
                walk(item, depth + 1)
            return
        if isinstance(v, dict):
            if len(v) > items_limit:
                raise ModelError(f"{where}: an object of {len(v):,} keys is too large")
            for key, item in v.items():
                if not isinstance(key, str):
                    raise ModelError(f"{where}: object keys must be strings")
                walk(item, depth + 1)
            return
        raise ModelError(f"{where}: {type(v).__name__} is not a JSON value")

    walk(value, 0)


def _check_keys(entry: Any, required: set[str], optional: set[str], where: str) -> None:
    """``entry`` is an object with every ``required`` key and no key outside ``required | optional``."""
    if not isinstance(entry, dict):
        raise ModelError(f"{where}: expected an object, not {_show(entry)}")
    missing = required - set(entry)
    if missing:
        raise ModelError(f"{where}: missing {sorted(missing)[0]!r}")
    _no_unknown(entry, required | optional, where)


def _no_unknown(obj: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = set(obj) - allowed
    if unknown:
        raise ModelError(f"{where}: unknown key {sorted(unknown)[0]!r} (allowed: {', '.join(sorted(allowed))})")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and abs(v) <= MAX_DIM


def _is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**63


def _is_evaluations(v: Any) -> bool:
    """dataset → split → percent in [0, 100]."""
    return isinstance(v, dict) and all(
        isinstance(splits, dict) and all(_is_number(x) and 0 <= x <= 100 for x in splits.values())
        for splits in v.values())


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _json_type(v: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(v), "a number")


def _show(v: Any) -> str:
    text = json.dumps(v) if _jsonable(v) else repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _jsonable(v: Any) -> bool:
    try:
        json.dumps(v)
    except (TypeError, ValueError):
        return False
    return True


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
