"""Per-layer design points (method × rank × TT shape) with analytic costs; pruning is in :mod:`.pruning`,
the error measures in :mod:`.layer_errors`.

A **design point** replaces one Conv2d/Linear layer by one factorized layer: a method, its rank value and its
options (CP form and algorithm, TT in/out shapes). Each point carries its analytic cost:

* ``params``: parameters of the replacement (``params()`` of the layer, built on the meta device);
* ``macs``: multiply-accumulates for one sample (``macs(input_shape)`` of the layer);
* ``memory``: bytes = ``4 · params`` (float32 weights) ``+ output_bytes`` (the layer's float32 output
  activation for one sample). This is exactly how :func:`tensorslim.cost.profile` counts a layer
  (``weight_bytes + output_bytes``), so the memory of a whole model is ``profile.total.weight_bytes +
  profile.total.output_bytes`` and a layer swap changes it by the difference of the two layers' memories.

The whole-model design space is the product over layers of (1 + number of points): "keep dense" is a choice.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn

from .. import methods as method_registry
from .. import surgery
from ..errors import TensorSlimError
from ..methods import LayerContext
from ..methods.base import FLOAT_BYTES
from ..methods.tt import GRID_RANKS as TT_RANKS

ALL_METHODS = method_registry.names()  # what --methods may name
DEFAULT_METHODS = method_registry.explored()  # what is explored when nothing is named


class ExploreError(TensorSlimError):
    """The exploration cannot proceed as asked (empty design space, unmet budget, bad option)."""


@dataclasses.dataclass
class DesignPoint:
    """One way to replace one layer; ``error`` is filled in by pruning stage (b)."""

    layer: str
    method: str
    rank: Any  # int or list of ints, as in a plan rule
    options: dict[str, Any]
    params: int
    macs: int
    memory: int
    error: float | None = None  # what pruning judged the point by: output error with calibration, else weight error
    weight_error: float | None = None
    seed: bool = False  # a warm-start plan's choice (:mod:`.seeds`): judged by pruning, never removed

    @property
    def key(self) -> str:
        """A stable id of the point within its layer, e.g. ``cp:8:algorithm=als,form=cp4``."""
        rank = "x".join(map(str, self.rank)) if isinstance(self.rank, (list, tuple)) else str(self.rank)
        opts = ",".join(f"{k}={'x'.join(map(str, v)) if isinstance(v, (list, tuple)) else v}"
                        for k, v in sorted(self.options.items()))
        return f"{self.method}:{rank}" + (f":{opts}" if opts else "")

    @property
    def label(self) -> str:
        """The method as a reader names it: ``cp3-als``, ``tt``, ``svd``..."""
        if self.method == "cp":
            return f"{self.options['form']}-{self.options['algorithm']}"
        return self.method

    def rule(self) -> dict[str, Any]:
        """The plan rule that applies this point (explicit layer name: it must apply)."""
        rule = {"layers": self.layer, "method": self.method, "rank": self.rank}
        if self.options:
            rule["options"] = dict(self.options)
        return rule

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, **dataclasses.asdict(self)}


@dataclasses.dataclass
class LayerSpace:
    """The design points of one layer and what pruning did to them."""

    ctx: LayerContext
    points: list[DesignPoint]  # all enumerated points
    survivors: list[DesignPoint] = dataclasses.field(default_factory=list)
    removed: dict[str, int] = dataclasses.field(default_factory=dict)  # stage -> points removed
    removed_by_method: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)  # stage -> label -> n

    @property
    def name(self) -> str:
        return self.ctx.name

    @property
    def output_bytes(self) -> int:
        return FLOAT_BYTES * math.prod(self.ctx.output_shape)

    @property
    def dense_memory(self) -> int:
        return FLOAT_BYTES * self.ctx.dense_params + self.output_bytes

    def dense_cost(self) -> dict[str, int]:
        return {"params": self.ctx.dense_params, "macs": self.ctx.dense_macs, "memory": self.dense_memory}


# --- enumeration --------------------------------------------------------------------------------------------


def design_point(ctx: LayerContext, method: str, rank: Any, options: dict[str, Any], params: int, macs: int,
                 **extra: Any) -> DesignPoint:
    """A point with its memory as the module doc counts it: float32 weights plus the layer's output."""
    memory = FLOAT_BYTES * params + FLOAT_BYTES * math.prod(ctx.output_shape)
    return DesignPoint(ctx.name, method, rank, options, params, macs, memory, **extra)


def layer_points(ctx: LayerContext, methods: Sequence[str] = DEFAULT_METHODS, *, max_factors: int = 3,
                 tt_ranks: Sequence[int] = TT_RANKS, multiple: int = 1) -> list[DesignPoint]:
    """Every design point of ``methods`` that applies to this layer, with its analytic costs: each method's own
    grid (:meth:`tensorslim.methods.Method.design_points`), its channel ranks rounded to ``multiple`` (a
    deployment target's, :mod:`tensorslim.methods.targets`; 1: as the grid gives them); duplicates once."""
    settings = {"max_factors": max_factors, "tt_ranks": tuple(tt_ranks), "multiple": multiple}
    unique: dict[str, DesignPoint] = {}
    for name in (m for m in method_registry.applicable(ctx) if m in methods):
        for c in method_registry.get(name).design_points(ctx, settings):
            p = design_point(ctx, name, c.rank, dict(c.options), c.params, c.macs)
            unique.setdefault(p.key, p)
    return list(unique.values())


def enumerate_space(candidates: Sequence[LayerContext], methods: Sequence[str] = DEFAULT_METHODS, *,
                    max_factors: int = 3, tt_ranks: Sequence[int] = TT_RANKS, multiple: int = 1) -> list[LayerSpace]:
    """The design points of every candidate layer (layers without any point are left out)."""
    bad = [m for m in methods if m not in ALL_METHODS]
    if bad:
        raise ExploreError(f"unknown method {bad[0]!r}; choose from {', '.join(ALL_METHODS)}")
    if not methods:
        raise ExploreError("no methods given")
    spaces = []
    for ctx in candidates:
        pts = layer_points(ctx, methods, max_factors=max_factors, tt_ranks=tt_ranks, multiple=multiple)
        if pts:
            spaces.append(LayerSpace(ctx, pts))
    return spaces


# --- building a point ------------------------------------------------------------------------------------


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Small decompositions run faster on one thread than on contended ones."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def layer_signature(ctx: LayerContext) -> str:
    """A hash of the layer's name, shapes and weights: a cache key that changes when the weights do."""
    h = hashlib.sha1(f"{ctx.name}|{ctx.input_shape}|{ctx.output_shape}|{ctx.flatten_from}".encode())
    for p in ctx.module.parameters():
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def convert(ctx: LayerContext, point: DesignPoint) -> nn.Module:
    """Decompose the layer at this design point (the factorized module, initialised from the weights)."""
    return surgery.convert(ctx, point.method, point.rank, point.options)
