"""Per-layer design points (method × rank × TT shape) with analytic costs, and pruning before any training.

A **design point** replaces one Conv2d/Linear layer by one factorized layer: a method, its rank value and its
options (CP form and algorithm, TT in/out shapes). Each point carries its analytic cost:

* ``params``: parameters of the replacement (``params()`` of the layer, built on the meta device);
* ``macs``: multiply-accumulates for one sample (``macs(input_shape)`` of the layer);
* ``memory``: bytes = ``4 · params`` (float32 weights) ``+ output_bytes`` (the layer's float32 output
  activation for one sample). This is exactly how :func:`tensorslim.cost.profile` counts a layer
  (``weight_bytes + output_bytes``), so the memory of a whole model is ``profile.total.weight_bytes +
  profile.total.output_bytes`` and a layer swap changes it by the difference of the two layers' memories.

Pruning (:func:`prune`), each stage counted per layer and per method:

(a) ``not-cheaper``: points whose MACs or memory are not strictly below the original layer's;
(b) ``dominated``: points dominated within their layer on (params, MACs, memory, error);
(c) ``error-bound``: points whose error exceeds ``max_error``.

Which error. Without calibration images the error is the relative Frobenius error of the layer's weight,
measured by actually decomposing the layer for the survivors of (a) only, and cached (JSON, keyed by the
layer's weights and the point). A weight error ranks methods unfairly: a TT or TCL layer with a large weight
error can still have a small error on the activations that really reach it. So with ``calibration`` (a batch
of real training images) the error is the layer's **relative output error on real activations**,
``||f̂(X) - f(X)|| / ||f(X)||`` with ``X`` the input the dense model gives that layer on those images (rung (b)
of the fidelity ladder, the same measure as :func:`tensorslim.surgery.output_errors`), and one stage comes
before (b): ``method-dominated`` removes the points dominated *within their own method* on (params, MACs,
memory, weight error), a comparison that is fair inside one method, so that only those survivors need the
costlier output error (thousands of TT shapes of a Linear layer otherwise). Stages (b) and (c) then compare
methods by their output errors only.

The report counts every stage's removals per layer and per method (:func:`pruning_report`): the share of
per-layer points removed is the headline; the share of the whole-model product space is a secondary figure
(any per-layer pruning makes it tiny). A method with no survivor anywhere is listed with the stage that removed
its last points.

The whole-model design space is the product over layers of (1 + number of points): "keep dense" is a choice.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import _atomic
from .. import methods as method_registry
from ..errors import DecompositionError, TensorSlimError
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


STAGES = ("not-cheaper", "method-dominated", "dominated", "error-bound")
STAGE_TEXT = {
    "not-cheaper": "(a) MACs and memory below the original layer's",
    "method-dominated": "(a') not dominated within its own method on params/MACs/memory/weight error",
    "dominated": "(b) not dominated within the layer on params/MACs/memory/error",
    "error-bound": "(c) error <= max_error",
}


# --- enumeration --------------------------------------------------------------------------------------------


def layer_points(ctx: LayerContext, methods: Sequence[str] = DEFAULT_METHODS, *, max_factors: int = 3,
                 tt_ranks: Sequence[int] = TT_RANKS) -> list[DesignPoint]:
    """Every design point of ``methods`` that applies to this layer, with its analytic costs: each method's own
    grid (:meth:`tensorslim.methods.Method.design_points`)."""
    out_bytes = FLOAT_BYTES * math.prod(ctx.output_shape)
    settings = {"max_factors": max_factors, "tt_ranks": tuple(tt_ranks)}
    unique: dict[str, DesignPoint] = {}
    for name in (m for m in method_registry.applicable(ctx) if m in methods):
        for c in method_registry.get(name).design_points(ctx, settings):
            p = DesignPoint(ctx.name, name, c.rank, dict(c.options), c.params, c.macs,
                            FLOAT_BYTES * c.params + out_bytes)
            unique.setdefault(p.key, p)
    return list(unique.values())


def enumerate_space(candidates: Sequence[LayerContext], methods: Sequence[str] = DEFAULT_METHODS, *,
                    max_factors: int = 3, tt_ranks: Sequence[int] = TT_RANKS) -> list[LayerSpace]:
    """The design points of every candidate layer (layers without any point are left out)."""
    bad = [m for m in methods if m not in ALL_METHODS]
    if bad:
        raise ExploreError(f"unknown method {bad[0]!r}; choose from {', '.join(ALL_METHODS)}")
    if not methods:
        raise ExploreError("no methods given")
    spaces = []
    for ctx in candidates:
        pts = layer_points(ctx, methods, max_factors=max_factors, tt_ranks=tt_ranks)
        if pts:
            spaces.append(LayerSpace(ctx, pts))
    return spaces


# --- reconstruction error -----------------------------------------------------------------------------------


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
    from .. import surgery

    return surgery.convert(ctx, point.method, point.rank, point.options)


def tt_linear_error(weight: torch.Tensor, in_shape: Sequence[int], out_shape: Sequence[int], rank: int) -> float:
    """Relative error of the TT-SVD that ``TTLinear.from_linear`` runs, without building the layer.

    Same reshape / permutation (``decompose.tt_matrix``) and the same left-to-right truncated SVDs with the
    ranks ``TTDesignPoint.ranks(rank)``. The cores it keeps are left-orthonormal, so the approximation is the
    orthogonal projection of the tensor and ``err² = 1 − ||last core||² / ||W||²``: no reconstruction needed.
    """

    return tt_linear_errors(weight, in_shape, out_shape, [rank])[0]


def tt_linear_errors(weight: torch.Tensor, in_shape: Sequence[int], out_shape: Sequence[int],
                     ranks: Sequence[int]) -> list[float]:
    """:func:`tt_linear_error` for several ranks of one shape, sharing the first SVD."""
    from ..layers import TTDesignPoint

    shape = TTDesignPoint(tuple(in_shape), tuple(out_shape))
    d = len(out_shape)
    w = weight.detach().to(torch.float64)
    order = [i for k in range(d) for i in (k, d + k)]
    modes = [m * n for m, n in zip(out_shape, in_shape)]
    start = w.reshape(*out_shape, *in_shape).permute(order).reshape(modes[0], -1)
    total = float((start * start).sum())
    if total == 0.0:
        return [0.0] * len(ranks)
    _, s0, vh0 = torch.linalg.svd(start, full_matrices=False)
    out = []
    for rank in ranks:
        rs = shape.ranks(rank)
        rest = s0[:rs[1], None] * vh0[:rs[1]]
        r_prev = rs[1]
        for k in range(1, d - 1):
            mat = rest.reshape(r_prev * modes[k], -1)
            _, s, vh = torch.linalg.svd(mat, full_matrices=False)
            r = rs[k + 1]
            rest = s[:r, None] * vh[:r]
            r_prev = r
        kept = float((rest * rest).sum())
        out.append(math.sqrt(max(0.0, 1.0 - kept / total)))
    return out


class ErrorCache:
    """Reconstruction errors by ``layer signature | point key``, kept in a JSON file (written atomically)."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else None
        self.values: dict[str, float] = {}
        if self.path and self.path.is_file():
            try:
                self.values = {k: float(v) for k, v in json.loads(self.path.read_text()).items()}
            except (ValueError, AttributeError, TypeError):
                self.values = {}  # a damaged cache is only a cache
        self.dirty = False
        self.computed = 0

    def fill_tt_linear(self, ctx: LayerContext, sig: str, points: Sequence[DesignPoint]) -> None:
        """Compute the missing errors of TT points of a Linear layer shape by shape (one shared SVD each)."""
        groups: dict[tuple, list[DesignPoint]] = {}
        for p in points:
            if p.method == "tt" and isinstance(ctx.module, nn.Linear) and f"{sig}|{p.key}" not in self.values:
                groups.setdefault((tuple(p.options["in_shape"]), tuple(p.options["out_shape"])), []).append(p)
        for (in_shape, out_shape), pts in groups.items():
            errs = tt_linear_errors(ctx.module.weight, in_shape, out_shape, [p.rank for p in pts])
            for p, e in zip(pts, errs):
                self.values[f"{sig}|{p.key}"] = e
            self.dirty = True
            self.computed += len(pts)

    def get(self, ctx: LayerContext, sig: str, point: DesignPoint) -> float:
        key = f"{sig}|{point.key}"
        if key not in self.values:
            try:
                if point.method == "tt" and isinstance(ctx.module, nn.Linear):
                    err = tt_linear_error(ctx.module.weight, point.options["in_shape"], point.options["out_shape"],
                                          point.rank)
                else:
                    layer = convert(ctx, point)
                    err = float(layer.rel_error) if layer.rel_error is not None else float("inf")
            except DecompositionError:
                err = float("inf")
            self._store(key, err)
        return self.values[key]

    def _store(self, key: str, err: float) -> None:
        self.values[key] = err if math.isfinite(err) else float("inf")
        self.dirty = True
        self.computed += 1

    def output(self, ctx: LayerContext, sig: str, point: DesignPoint, x: torch.Tensor, x_sig: str) -> float:
        """The point's relative output error on the layer input ``x`` (cached under the inputs' hash ``x_sig``)."""
        key = f"{sig}|{point.key}|out:{x_sig}"
        if key not in self.values:
            try:
                with torch.inference_mode():
                    layer = convert(ctx, point).eval()
                    err = relative_output_error(ctx.module, layer, x)
            except DecompositionError:
                err = float("inf")
            self._store(key, err)
        return self.values[key]

    def save(self) -> None:
        if self.path and self.dirty:
            finite = {k: (v if math.isfinite(v) else 1e300) for k, v in self.values.items()}
            _atomic.write_text(self.path, json.dumps(finite, sort_keys=True))
            self.dirty = False


def relative_output_error(dense: nn.Module, layer: nn.Module, x: torch.Tensor, chunk: int = 256) -> float:
    """``||layer(x) - dense(x)|| / ||dense(x)||`` over the whole batch, in float64 (0 when both are zero)."""
    diff = ref = 0.0
    was = dense.training
    dense.eval()
    with torch.inference_mode():
        for start in range(0, len(x), chunk):
            y = dense(x[start:start + chunk]).double()
            diff += float((layer(x[start:start + chunk]).double() - y).pow(2).sum())
            ref += float(y.pow(2).sum())
    dense.train(was)
    if ref == 0.0:
        return 0.0 if diff == 0.0 else float("inf")
    return math.sqrt(diff / ref)


def capture_inputs(model: nn.Module, names: Sequence[str], x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The input each named layer of ``model`` receives on the images ``x`` (one eval-mode forward pass)."""
    got: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    hooks = [model.get_submodule(n).register_forward_hook(
        lambda _m, args, _o, n=n: got[n].append(args[0].detach().clone())) for n in names]
    was = model.training
    try:
        model.eval()
        with torch.inference_mode():
            for start in range(0, len(x), 256):
                model(x[start:start + 256])
    finally:
        for h in hooks:
            h.remove()
        model.train(was)
    return {n: torch.cat(v) for n, v in got.items() if v}


def inputs_signature(x: torch.Tensor) -> str:
    return hashlib.sha256(x.detach().contiguous().numpy().tobytes()).hexdigest()[:16]


# --- pruning ------------------------------------------------------------------------------------------------


def _non_dominated(points: list[DesignPoint], error: Callable[[DesignPoint], float]) -> list[DesignPoint]:
    """The points no other dominates on (params, MACs, memory, error); of equal ones the first only."""
    if not points:
        return []
    table = np.array([[p.params, p.macs, p.memory, error(p)] for p in points], dtype=float)
    keep = ~dominated_mask(table)
    out, seen = [], set()
    for p, k, row in zip(points, keep, map(tuple, table)):
        if k and row not in seen:  # equal on every objective: no information in duplicates
            seen.add(row)
            out.append(p)
    return out


def dominated_mask(values: np.ndarray, chunk: int = 512) -> np.ndarray:
    """``mask[i]`` is true when some row j is <= row i in every column and < in at least one (minimisation)."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    mask = np.zeros(n, dtype=bool)
    for start in range(0, n, chunk):
        block = values[start:start + chunk]  # (b, k)
        le = (values[None, :, :] <= block[:, None, :]).all(axis=2)  # (b, n): j <= i everywhere
        lt = (values[None, :, :] < block[:, None, :]).any(axis=2)
        mask[start:start + chunk] = (le & lt).any(axis=1)
    return mask


def prune(spaces: Sequence[LayerSpace], *, max_error: float = 0.5, cache: ErrorCache | None = None,
          log: Callable[[str], None] | None = None,
          calibration: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
    """Run the pruning stages on every layer (in place: ``survivors``, ``removed``, ``point.error``).

    ``calibration``: each layer's input on real images (:func:`capture_inputs`); the points are then judged by
    their output error (see the module doc), else by their weight error. Returns :func:`pruning_report`.
    """
    cache = cache or ErrorCache()
    for space in spaces:
        ctx, dense = space.ctx, space.dense_cost()
        x = None if calibration is None else calibration.get(space.name)
        # (a) strictly cheaper than the original layer in MACs and in memory
        a = [p for p in space.points if p.macs < dense["macs"] and p.memory < dense["memory"]]
        sig = layer_signature(ctx)
        with single_thread():
            cache.fill_tt_linear(ctx, sig, a)
            for p in a:
                p.weight_error = cache.get(ctx, sig, p)
                p.error = p.weight_error
        stages: dict[str, list[DesignPoint]] = {"not-cheaper": a}
        if x is not None:
            # (a') within each method on the weight error, then the output error of what is left
            kept = [q for m in dict.fromkeys(p.method for p in a)
                    for q in _non_dominated([p for p in a if p.method == m], lambda p: p.weight_error)]
            kept_keys = {p.key for p in kept}
            a_prime = [p for p in a if p.key in kept_keys]  # enumeration order
            x_sig = inputs_signature(x)
            with single_thread():
                for p in a_prime:
                    p.error = cache.output(ctx, sig, p, x, x_sig)
            stages["method-dominated"] = a_prime
        # (b) dominance within the layer, then (c) the error bound
        b = _non_dominated(list(stages.values())[-1], lambda p: p.error)
        stages["dominated"] = b
        stages["error-bound"] = [p for p in b if p.error <= max_error]
        space.survivors = stages["error-bound"]
        before = space.points
        space.removed, space.removed_by_method = {}, {}
        for stage, after in stages.items():
            left = {p.key for p in after}
            gone = [p for p in before if p.key not in left]
            space.removed[stage] = len(gone)
            counts: dict[str, int] = {}
            for p in gone:
                counts[p.label] = counts.get(p.label, 0) + 1
            space.removed_by_method[stage] = counts
            before = after
        if log:
            log(f"{space.name}: {len(space.points)} points -> " + " -> ".join(
                f"{k} {len(v)}" for k, v in stages.items()))
    cache.save()
    return pruning_report(spaces, max_error, judged_by="output error" if calibration is not None else "weight error")


def pruning_report(spaces: Sequence[LayerSpace], max_error: float, judged_by: str = "weight error") -> dict[str, Any]:
    """What each pruning stage removed: per layer, per method and in total.

    ``points[stage]`` is the number of per-layer points left after that stage (``"all"`` before any);
    ``points_removed_share`` (the headline) the share of per-layer points removed by all stages; ``methods``
    per method (label): points, survivors, removals per stage, and for a method with points but no survivor
    anywhere, ``vanished``: the stage that removed its last points and why. ``space_size`` / ``space_log10``
    / ``removed_share`` give the whole-model product space (secondary: any per-layer pruning makes it tiny).
    """
    stages = [k for k in STAGES if any(k in s.removed for s in spaces)] or [k for k in STAGES
                                                                          if k != "method-dominated"]
    layers = []
    counts: dict[str, list[int]] = {"all": [], **{k: [] for k in stages}}
    methods: dict[str, dict[str, Any]] = {}
    for s in spaces:
        n = len(s.points)
        counts["all"].append(n)
        after = {}
        for k in stages:
            n -= s.removed.get(k, 0)
            counts[k].append(n)
            after[k] = n
        by_method: dict[str, list[int]] = {}
        for p in s.points:
            by_method.setdefault(p.label, [0, 0])[0] += 1
        for p in s.survivors:
            by_method.setdefault(p.label, [0, 0])[1] += 1
        for label, (pts, surv) in by_method.items():
            m = methods.setdefault(label, {"points": 0, "survivors": 0, "removed": dict.fromkeys(stages, 0)})
            m["points"] += pts
            m["survivors"] += surv
            for k in stages:
                m["removed"][k] += s.removed_by_method.get(k, {}).get(label, 0)
        layers.append({"layer": s.name, "dense": s.dense_cost(), "points": len(s.points),
                       "after_a": after.get("not-cheaper"), "after_b": after.get("dominated"),
                       "after_c": after.get("error-bound"), "after": after,
                       "removed_by_method": {k: dict(s.removed_by_method.get(k, {})) for k in stages},
                       "by_method": {k: {"points": v[0], "survivors": v[1]} for k, v in by_method.items()}})
    for label, m in methods.items():
        if m["points"] and not m["survivors"]:
            last = [k for k in stages if m["removed"][k]][-1]
            why = STAGE_TEXT[last] + (f" (max_error={max_error}, judged by {judged_by})" if last == "error-bound"
                                      else "")
            m["vanished"] = {"stage": last, "reason": f"no {label} point passes {why}"}

    def size(ns: list[int]) -> int:
        return math.prod(1 + n for n in ns)

    sizes = {k: size(v) for k, v in counts.items()}
    total = sizes["all"]
    return {
        "max_error": max_error,
        "judged_by": judged_by,
        "stages": stages,
        "layers": layers,
        "methods": methods,
        "points": {k: sum(v) for k, v in counts.items()},
        "points_removed_share": 1.0 - sum(counts[stages[-1]]) / max(1, sum(counts["all"])),
        "space_size": {k: str(v) for k, v in sizes.items()},
        "space_log10": {k: round(math.log10(v), 3) for k, v in sizes.items()},
        "removed_share": {k: 1.0 - _ratio(v, total) for k, v in sizes.items()},
    }


def _ratio(a: int, b: int) -> float:
    """a / b for huge integers, as a float."""
    if a == 0:
        return 0.0
    return math.exp(math.log(a) - math.log(b))


def check_not_empty(spaces: Sequence[LayerSpace], report: dict[str, Any]) -> None:
    """Raise naming the stage that removed the last design point, when nothing survived pruning."""
    if any(s.survivors for s in spaces):
        return
    if not spaces or report["points"]["all"] == 0:
        raise ExploreError("design space is empty: no layer of this model can take any of the chosen methods")
    for stage in report["stages"]:
        if report["points"][stage] == 0:
            extra = f" (max_error={report['max_error']})" if stage == "error-bound" else ""
            raise ExploreError(f"design space is empty after pruning: stage {STAGE_TEXT[stage]}{extra} "
                               f"removed the last of {report['points']['all']} points")
    raise ExploreError("design space is empty after pruning")  # pragma: no cover
