"""What a compression method is: the interface every method implements, and the layer it is asked about.

A :class:`Method` answers, for one Conv2d/Linear layer (a :class:`LayerContext`):

* ``accepts(ctx)``: None when it can factorize the layer, else the reason;
* ``rank_kinds``: which plan rank specs it takes (``rank``, ``ratio``, ``macs_ratio``, ``energy``, ``vbmf``);
  ``check_rank(value)`` validates an explicit rank's shape, ``check_options(options)`` its options (derived
  from the real function signatures where a method has algorithms);
* ``rank_for(ctx, kind, value, options)``: the explicit rank a spec asks for on this layer;
* ``structure(ctx, rank, options)``: the factorized layer with random weights (safe on the meta device);
* ``cost(ctx, rank, options)``: analytic params, MACs and weight bytes of a candidate, no weights touched;
* ``design_points(ctx)``: its grid of candidates for design-space exploration, with their costs;
* ``fit(ctx, rank, options)``: the factorized layer initialised from the pretrained weights;
* ``layer_types``: the layer classes it builds, which a saved record rebuilds from ``config()``.

Ranks given as fractions (``ratio``, ``macs_ratio``) are met by a binary search of the method's scalar rank knob
(``rank_space`` / ``knob_rank``) against its own analytic cost, so one mechanism serves every method.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from ..errors import DecompositionError
from . import targets

FLOAT_BYTES = 4


@dataclasses.dataclass
class LayerContext:
    """One candidate layer of a model: its qualified name, the module, and the shapes it sees (batch 1)."""

    name: str
    module: nn.Module
    input_shape: tuple[int, ...]  # without batch
    output_shape: tuple[int, ...]
    flatten_from: tuple[int, ...] | None = None  # C,H,W when a Linear is fed by an nn.Flatten of that shape
    is_output: bool = False  # its output is the model's output as is (a classifier's logits)

    @property
    def dense_params(self) -> int:
        return sum(p.numel() for p in self.module.parameters())

    @property
    def dense_macs(self) -> int:
        m = self.module
        if isinstance(m, nn.Linear):
            return m.in_features * m.out_features
        ho, wo = self.output_shape[-2:]
        kh, kw = m.kernel_size
        return m.out_channels * (m.in_channels // m.groups) * kh * kw * ho * wo

    @property
    def channels(self) -> tuple[int, int]:
        """(inputs, outputs): features of a Linear, channels of a conv."""
        m = self.module
        return (m.in_features, m.out_features) if isinstance(m, nn.Linear) else (m.in_channels, m.out_channels)


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One design point of one method on one layer, with its analytic cost."""

    rank: Any
    options: dict[str, Any]
    params: int
    macs: int


class Method:
    """The interface of a compression method (see the module docstring); subclasses fill in the hooks."""

    name: ClassVar[str]
    layer_types: ClassVar[tuple[type[nn.Module], ...]] = ()
    rank_kinds: ClassVar[tuple[str, ...]] = ("rank", "ratio", "macs_ratio")
    option_names: ClassVar[frozenset[str]] = frozenset()
    rank_form: ClassVar[str] = "an integer >= 1"
    #: part of design-space exploration unless asked for by name (off for methods whose fit is slow)
    explored_by_default: ClassVar[bool] = True

    # --- what it accepts -----------------------------------------------------------------------------------

    def accepts(self, ctx: LayerContext) -> str | None:
        raise NotImplementedError

    def check_rank(self, value: Any) -> None:
        """Raise ValueError unless ``value`` is an explicit rank of this method (shape only, not bounds)."""
        if not _is_positive_int(value):
            raise ValueError(f"a {self.name} rank is {self.rank_form}, not {value!r}")

    def check_options(self, options: dict[str, Any]) -> None:
        """Raise ValueError naming an option this method does not take."""
        bad = sorted(set(options) - self.option_names)
        if bad:
            raise ValueError(f"option {bad[0]!r} does not apply to {self.name}")

    def explicit_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """``options`` with the defaults this method would use filled in, as its design points name them (so
        that a plan rule without options and the grid point it equals are one point)."""
        return dict(options)

    # --- ranks ---------------------------------------------------------------------------------------------

    def rank_space(self, ctx: LayerContext, options: dict[str, Any]) -> tuple[int, int]:
        """The search range of the scalar rank knob."""
        raise NotImplementedError

    def knob_rank(self, ctx: LayerContext, knob: int, options: dict[str, Any]) -> Any:
        """The method's rank value for a knob value (identity for scalar ranks)."""
        return knob

    def rank_for(self, ctx: LayerContext, kind: str, value: Any, options: dict[str, Any], *,
                 multiple: int = 1) -> Any:
        """The explicit rank that the spec ``kind: value`` asks for on this layer.

        ``multiple`` > 1 (a deployment target's channel multiple, :mod:`.targets`): a rank chosen by the rule
        (every kind but ``rank``) has its channel entries (:meth:`channel_ranks`) rounded to it, within the
        method's bounds, never larger than the dense layer and never over a ``ratio`` / ``macs_ratio`` budget.
        """
        rank = self._spec_rank(ctx, kind, value, options)
        if multiple <= 1 or kind == "rank":
            return rank
        if kind in ("ratio", "macs_ratio"):
            key = "params" if kind == "ratio" else "macs"
            return self.round_to(ctx, rank, options, multiple,
                                 limit=(key, value * (ctx.dense_params if key == "params" else ctx.dense_macs)))
        return self.round_to(ctx, rank, options, multiple)

    def round_to(self, ctx: LayerContext, rank: Any, options: dict[str, Any], multiple: int, *,
                 limit: tuple[str, float] | None = None) -> Any:
        """``rank`` with its channel entries rounded to ``multiple`` (:func:`.targets.round_rank`), within the
        method's bounds, never to a layer with more params or MACs than the dense one, and with ``limit``
        (``("params" | "macs", most)``) never over it."""
        spec = self.channel_ranks(ctx, rank) if multiple > 1 else None
        if spec is None:
            return rank
        key, most = limit or ("params", math.inf)

        def allowed(candidate: Any) -> bool:
            try:
                c = self.cost(ctx, candidate, options)
            except (DecompositionError, ValueError, RuntimeError):
                return False  # out of the method's bounds
            return c["params"] <= ctx.dense_params and c["macs"] <= ctx.dense_macs and c[key] <= most

        return targets.round_rank(rank, spec[0], multiple, allowed, spec[1])

    def channel_ranks(self, ctx: LayerContext, rank: Any
                      ) -> tuple[list[tuple[int | None, int]], Callable[[list[int]], Any]] | None:
        """The entries of ``rank`` that become channel counts in the exported graph, as ``(value, upper
        bound)`` pairs, and how to make a rank from new values; None (the default): the rank is not rounded."""
        return None

    def _spec_rank(self, ctx: LayerContext, kind: str, value: Any, options: dict[str, Any]) -> Any:
        if kind == "rank":
            return list(value) if isinstance(value, list) else value
        if kind in ("ratio", "macs_ratio"):
            key = "params" if kind == "ratio" else "macs"
            budget = value * (ctx.dense_params if kind == "ratio" else ctx.dense_macs)
            lo, hi = self.rank_space(ctx, options)

            def cost(knob: int) -> int:
                return self.cost(ctx, self.knob_rank(ctx, knob, options), options)[key]

            knob = largest_within(budget, cost, lo, hi)
            if knob is None:
                raise DecompositionError(ctx.name, f"even the smallest {self.name} rank exceeds {kind}={value}")
            return self.knob_rank(ctx, knob, options)
        return self.spectral_rank(ctx, kind, value, options)

    def spectral_rank(self, ctx: LayerContext, kind: str, value: Any, options: dict[str, Any]) -> Any:
        """Ranks from the weight's spectrum (``energy``, ``vbmf``), for the methods that list them."""
        raise DecompositionError(ctx.name, f"{kind} ranks do not apply to {self.name}")

    # --- structure and cost --------------------------------------------------------------------------------

    def structure(self, ctx: LayerContext, rank: Any, options: dict[str, Any]) -> nn.Module:
        raise NotImplementedError

    def cost(self, ctx: LayerContext, rank: Any, options: dict[str, Any]) -> dict[str, int]:
        """``{"params", "macs", "bytes"}`` of the factorized layer, from its own analytic counts (meta device)."""
        layer = on_meta(lambda: self.structure(ctx, rank, options))
        params = layer.params()
        return {"params": params, "macs": layer.macs(ctx.input_shape), "bytes": FLOAT_BYTES * params}

    def grid(self, ctx: LayerContext) -> list[tuple[Any, dict[str, Any]]]:
        """The (rank, options) pairs that design-space exploration tries on this layer."""
        raise NotImplementedError

    def design_points(self, ctx: LayerContext, settings: Mapping[str, Any] | None = None) -> list[Candidate]:
        """The grid with analytic costs; ranks that do not fit the layer are left out. ``settings`` are
        exploration settings a method may read (TT: ``max_factors``, ``tt_ranks``; every method: ``multiple``,
        a deployment target's channel multiple that each point's channel ranks are rounded to, as
        :meth:`rank_for` rounds a rule's rank, never to a layer larger than the dense one)."""
        multiple = int((settings or {}).get("multiple", 1))
        out = []
        for rank, options in self.grid(ctx):
            if multiple > 1:
                rank = self.round_to(ctx, rank, options, multiple)
            try:
                c = self.cost(ctx, rank, options)
            except (DecompositionError, ValueError, RuntimeError):
                continue
            out.append(Candidate(rank, dict(options), c["params"], c["macs"]))
        return out

    # --- weights -------------------------------------------------------------------------------------------

    def fit(self, ctx: LayerContext, rank: Any, options: dict[str, Any]) -> nn.Module:
        """The factorized layer initialised from the layer's pretrained weights (sets ``rel_error``)."""
        raise NotImplementedError


# --- helpers shared by the methods --------------------------------------------------------------------------


def largest_within(budget: float, cost: Callable[[int], int], lo: int, hi: int) -> int | None:
    """Largest integer x in [lo, hi] with cost(x) <= budget, for cost non-decreasing in x; None if none."""
    if cost(lo) > budget:
        return None
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if cost(mid) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return lo


def on_meta(factory: Callable[[], nn.Module]) -> nn.Module:
    """Build a module on the meta device: shapes and analytic counts only, no memory, no initialisation."""
    with torch.device("meta"):
        return factory()


def conv_reason(ctx: LayerContext, method: str, *, allow_1x1: bool = False) -> str | None:
    """Why ``method`` cannot factorize this layer as a conv (None when it can)."""
    m = ctx.module
    if not isinstance(m, nn.Conv2d):
        return f"{method} applies to Conv2d layers, not {type(m).__name__}"
    if m.groups != 1:
        return f"{method} cannot factorize a grouped or depthwise conv (groups={m.groups})"
    if m.kernel_size == (1, 1) and not allow_1x1:
        return f"{method} of a 1x1 conv is plain low-rank; use svd on it instead"
    if isinstance(m.padding, str) or m.padding_mode != "zeros":
        return f"{method} needs numeric zero padding (padding={m.padding!r}, padding_mode={m.padding_mode!r})"
    return None


def linear_reason(ctx: LayerContext, method: str) -> str | None:
    return None if isinstance(ctx.module, nn.Linear) else f"{method} applies to Linear layers here"


def conv_kwargs(m: nn.Conv2d) -> dict[str, Any]:
    """The geometry of a conv as the factorized conv layers take it."""
    return dict(in_channels=m.in_channels, out_channels=m.out_channels, kernel_size=m.kernel_size,
                stride=m.stride, padding=m.padding, dilation=m.dilation, bias=m.bias is not None)


def unique(values) -> list[Any]:
    out: list[Any] = []
    for v in values:
        if v not in out:
            out.append(v)
    return out


def percent_of(dim: int, percent: float, upper: int | None = None) -> int:
    """``percent`` % of ``dim``, rounded, in [1, min(dim, upper)]."""
    top = dim if upper is None else min(dim, upper)
    return max(1, min(top, round(dim * percent / 100)))


def _is_positive_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def positive_int_list(value: Any, length: int | None = None) -> bool:
    return (isinstance(value, list) and bool(value) and (length is None or len(value) == length)
            and all(_is_positive_int(v) for v in value))
