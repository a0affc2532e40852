"""The builder registry: built-in model names, and ``module:factory`` / ``file.py:factory`` references.

A build spec is the dict that ``model.json`` stores: ``{"builder": NAME_OR_REFERENCE, "kwargs": {...}}``.
A builder without a colon is a built-in name. With one, the part before the last colon is a module path
(``examples.vgg16_imagenet``, imported from ``sys.path``, else from the working directory, which is then
appended to ``sys.path``) or a Python file (``path/to/file.py``), and the part after it the factory: any
callable in that module (dotted names reach attributes) returning an ``nn.Module``.
Every failure is a one-line :class:`~tensorslim.errors.ModelError`.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from ..cost import profile
from ..errors import ModelError
from ..records import INPUT_SHAPE_ATTR, SPEC_ATTR, check_json_value
from .convnet import convnet
from .lenet import lenet5
from .mobilenet import mobilenetv2
from .resnet import resnet20, resnet32, resnet56
from .vgg import vgg16


@dataclass(frozen=True)
class ModelInfo:
    """A built-in model: its name, default input shape (C, H, W), one-line description and factory."""

    name: str
    input_shape: tuple[int, int, int]
    description: str
    factory: Callable[..., nn.Module]


_MODELS: dict[str, ModelInfo] = {
    info.name: info
    for info in (
        ModelInfo("lenet5", (1, 28, 28), "LeNet-5: 2 convs 5x5 + 3 FC, ReLU, max pooling", lenet5),
        ModelInfo("convnet", (1, 28, 28), "small VGG-style net for Fashion-MNIST: 5 convs 3x3 + BN, FC 256",
                  convnet),
        ModelInfo("resnet20", (3, 32, 32), "CIFAR ResNet-20 (He et al.), option-A shortcuts", resnet20),
        ModelInfo("resnet32", (3, 32, 32), "CIFAR ResNet-32 (He et al.), option-A shortcuts", resnet32),
        ModelInfo("resnet56", (3, 32, 32), "CIFAR ResNet-56 (He et al.), option-A shortcuts", resnet56),
        ModelInfo("vgg16", (3, 32, 32), "CIFAR VGG-16: 13 convs 3x3 + BN, FC 512-512-classes", vgg16),
        ModelInfo("mobilenetv2", (3, 32, 32), "CIFAR MobileNetV2 (stride-1 stem), width_mult", mobilenetv2),
    )
}


def names() -> list[str]:
    """Names of the built-in models, in listing order."""
    return list(_MODELS)


def info(name: str) -> ModelInfo:
    """The :class:`ModelInfo` of a built-in model; unknown names raise :class:`ModelError` listing the known ones."""
    try:
        return _MODELS[name]
    except (KeyError, TypeError):
        raise ModelError(f"unknown model {name!r}; built-in models: {', '.join(_MODELS)}") from None


def build(name: str, in_channels: int | None = None, num_classes: int = 10, **kwargs: Any) -> nn.Module:
    """Build a built-in model. ``in_channels=None`` means the model's own default (1 for the 28 px models,
    3 for the CIFAR ones); extra ``kwargs`` (``input_size``, ``width_mult``, ...) go to its factory.

    The model carries its build spec and default input shape, so ``tensorslim.save`` can write it as is."""
    return _build_builtin(name, {"in_channels": in_channels, "num_classes": num_classes, **kwargs})


def _build_builtin(name: str, kwargs: dict[str, Any]) -> nn.Module:
    entry = info(name)
    if kwargs.get("in_channels") is None:
        kwargs = {**kwargs, "in_channels": entry.input_shape[0]}
    model = _call(name, entry.factory, kwargs)
    setattr(model, SPEC_ATTR, {"builder": name, "kwargs": dict(kwargs)})
    if not hasattr(model, INPUT_SHAPE_ATTR):
        size = kwargs.get("input_size")
        hw = ([size, size] if isinstance(size, int) else list(size)) if size is not None else entry.input_shape[1:]
        setattr(model, INPUT_SHAPE_ATTR, (int(kwargs["in_channels"]), *(int(d) for d in hw)))
    return model


def resolve_factory(builder: str) -> Callable[..., nn.Module]:
    """The callable behind a builder string: a built-in's factory, or the ``module:factory`` it names."""
    if not isinstance(builder, str) or not builder:
        raise ModelError(f"builder must be a model name or 'module:factory', got {builder!r}")
    if ":" not in builder:
        return info(builder).factory
    module_ref, _, attr = builder.rpartition(":")
    if not module_ref or not attr:
        raise ModelError(f"builder {builder!r}: expected 'package.module:factory' or 'path/to/file.py:factory'")
    target: Any = _import(module_ref, builder)
    for part in attr.split("."):
        if not hasattr(target, part):
            raise ModelError(f"builder {builder!r}: {module_ref} has no attribute {attr!r}")
        target = getattr(target, part)
    if not callable(target):
        raise ModelError(f"builder {builder!r}: {attr!r} is not callable")
    return target


def default_input_shape(builder: str) -> tuple[int, ...] | None:
    """Default input shape (C, H, W) of a built-in, or of a factory carrying an ``input_shape`` attribute."""
    if not isinstance(builder, str) or ":" not in builder:
        return info(builder).input_shape
    shape = getattr(resolve_factory(builder), "input_shape", None)
    return tuple(int(d) for d in shape) if shape is not None else None


def build_spec(spec: Mapping[str, Any]) -> nn.Module:
    """Build from ``{"builder": name-or-"module:factory", "kwargs": {...}}`` (the spec ``model.json`` stores)."""
    if not isinstance(spec, Mapping) or "builder" not in spec:
        raise ModelError(f"model spec must be a dict with a 'builder' key, got {spec!r}")
    builder, kwargs = spec["builder"], spec.get("kwargs") or {}
    if not isinstance(kwargs, Mapping):
        raise ModelError(f"builder {builder!r}: 'kwargs' must be a dict, got {type(kwargs).__name__}")
    if isinstance(builder, str) and ":" not in builder:
        return _build_builtin(builder, dict(kwargs))
    return _call(builder, resolve_factory(builder), dict(kwargs))


def check_kwargs(builder: str, factory: Callable[..., Any], kwargs: Mapping[str, Any]) -> None:
    """Keyword arguments must be JSON values (scalars, lists, objects) that the factory's signature takes,
    and every argument it requires must be given: checked before the factory is called."""
    check_json_value(dict(kwargs), f"builder {builder!r}: kwargs")
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # a callable without an introspectable signature: let the call decide
        return
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    named = {n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    unknown = sorted(set(kwargs) - named)
    if unknown:
        raise ModelError(f"builder {builder!r} takes no argument {unknown[0]!r} "
                         f"(it takes: {', '.join(sorted(named)) or 'none'})")
    required = [n for n in named if params[n].default is params[n].empty and n not in kwargs]
    if required:
        raise ModelError(f"builder {builder!r} needs argument {required[0]!r}")


def _call(builder: str, factory: Callable[..., Any], kwargs: dict[str, Any]) -> nn.Module:
    """Call a factory; anything it raises, or a non-Module result, becomes a one-line ModelError."""
    check_kwargs(builder, factory, kwargs)
    try:
        model = factory(**kwargs)
    except ModelError:
        raise
    except Exception as err:
        raise ModelError(f"builder {builder!r} failed with {type(err).__name__}: {_first_line(err)}") from err
    if not isinstance(model, nn.Module):
        raise ModelError(f"builder {builder!r} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def _import(module_ref: str, builder: str) -> ModuleType:
    """Import a dotted module path, or load a ``.py`` file (relative paths from the working directory)."""
    is_file = module_ref.endswith(".py") or "/" in module_ref or "\\" in module_ref
    try:
        return _load_file(Path(module_ref)) if is_file else _import_module(module_ref)
    except ModelError:
        raise
    except Exception as err:  # ImportError, SyntaxError, or whatever the module raises at import time
        raise ModelError(f"builder {builder!r}: cannot import {module_ref}: "
                         f"{type(err).__name__}: {_first_line(err)}") from err


def _import_module(module_ref: str) -> ModuleType:
    """Import from ``sys.path``; if the top-level package is missing there, also look in the working directory
    (so ``examples.vgg16_imagenet:vgg16`` works from the repository root under the ``tensorslim`` command)."""
    try:
        return importlib.import_module(module_ref)
    except ModuleNotFoundError as err:
        cwd = os.getcwd()
        if err.name != module_ref.split(".")[0] or cwd in sys.path or "" in sys.path:
            raise
        sys.path.append(cwd)
        return importlib.import_module(module_ref)


def _load_file(path: Path) -> ModuleType:
    """Load a Python file as a module under a name unique to its resolved path (cached in ``sys.modules``)."""
    if not path.is_file():
        raise ModelError(f"model file {path} not found")
    resolved = path.resolve()
    name = f"tensorslim_user_{resolved.stem}_{hashlib.sha1(str(resolved).encode()).hexdigest()[:10]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, resolved)
    if spec is None or spec.loader is None:
        raise ModelError(f"model file {path}: not loadable as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def summary_rows(num_classes: int = 10) -> list[dict[str, Any]]:
    """One JSON-able row per built-in model at its default input shape:
    ``{"name", "input_shape", "params", "macs", "description"}`` (for ``tensorslim models``)."""
    rows = []
    for entry in _MODELS.values():
        with torch.device("meta"):  # shapes only: no weight init, no memory, no compute
            model = build(entry.name, in_channels=entry.input_shape[0], num_classes=num_classes)
        total = profile(model, entry.input_shape).total
        rows.append({"name": entry.name, "input_shape": list(entry.input_shape), "params": total.params,
                     "macs": total.macs, "description": entry.description})
    return rows
