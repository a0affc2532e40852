"""Compression methods as objects, one file each, and the registry that every other stage asks.

``plan``, ``surgery``, ``explore``, ``search`` and ``finetune`` know a method only through :func:`get`; a new
method is one file in this package and one line in :data:`REGISTRY` (see :mod:`tensorslim.methods.base` for
the interface)."""

from __future__ import annotations

import importlib

from ..errors import TensorSlimError
from .base import Candidate, LayerContext, Method

#: "module:Class" of each method in this package, in the order commands list them: one line per method
_CLASSES = (
    "svd:SVD",
    "cp:CP",
    "tucker2:Tucker2",
    "tt:TT",
    "tcl:TCL",
    "tensor_ring:TensorRing",
)


def _load(ref: str) -> Method:
    module, cls = ref.split(":")
    return getattr(importlib.import_module(f".{module}", __name__), cls)()


#: name -> method
REGISTRY: dict[str, Method] = {m.name: m for m in map(_load, _CLASSES)}


def names() -> tuple[str, ...]:
    return tuple(REGISTRY)


def explored() -> tuple[str, ...]:
    """The methods that design-space exploration tries when no list is given."""
    return tuple(name for name, m in REGISTRY.items() if m.explored_by_default)


def get(name: str) -> Method:
    """The method called ``name``; unknown names are a one-line error listing the known ones."""
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise TensorSlimError(f"unknown method {name!r}; methods: {', '.join(REGISTRY)}") from None


def applicable(ctx: LayerContext) -> list[str]:
    """The methods that can factorize this layer (structurally; ranks are another question)."""
    return [name for name, method in REGISTRY.items() if method.accepts(ctx) is None]


def layer_types() -> dict[str, type]:
    """Every layer class a method builds, by class name (what a saved record rebuilds from)."""
    return {cls.__name__: cls for method in REGISTRY.values() for cls in method.layer_types}


__all__ = ["REGISTRY", "Candidate", "LayerContext", "Method", "applicable", "explored", "get", "layer_types",
           "names"]
