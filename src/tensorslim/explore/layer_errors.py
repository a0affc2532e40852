"""How far a design point's layer is from the dense one: the relative weight error of its decomposition (TT
Linear points without building the layer) and its relative output error on real activations, cached per
layer and point in a JSON file."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from .. import _atomic
from ..errors import DecompositionError
from ..layers import TTDesignPoint
from ..methods import LayerContext
from .space import DesignPoint, convert


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
