"""Compression methods as objects, one file each, and the registry that every other stage asks.

``plan``, ``surgery``, ``explore``, ``search`` and ``finetune`` know a method only through :func:`get`; a new
method is one file in this package and one line in :data:`REGISTRY` (see :mod:`tensorslim.methods.base` for
the interface)."""

from __future__ import annotations

from ..errors import TensorSlimError
from .base import Candidate, LayerContext, Method
from .cp import CP
from .svd import SVD
from .tcl import TCL
from .tt import TT
from .tucker2 import Tucker2

#: name -> method, in the order commands list them
REGISTRY: dict[str, Method] = {m.name: m for m in (SVD(), CP(), Tucker2(), TT(), TCL())}


def names() -> tuple[str, ...]:
    return tuple(REGISTRY)


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


__all__ = ["REGISTRY", "Candidate", "LayerContext", "Method", "applicable", "get", "layer_types", "names"]
