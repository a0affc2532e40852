"""Per-layer cost of a model: parameters, MACs, weight bytes and activation bytes (``profile``).

One forward pass at batch 1, in eval mode and without gradients, with forward hooks on every module. The
*units* that get a row are:

* ``nn.Conv1d/2d/3d``, ``nn.ConvTranspose1d/2d/3d``, ``nn.Linear`` and ``nn.Bilinear``: MACs from their
  shapes (groups, stride, dilation and non-square kernels included; bias adds are not counted, as in torch's
  flop counter);
* any module with a ``macs(input_shape)`` method (every factorized layer of ``tensorslim.layers``): one unit,
  MACs from that method with the module input's shape without the batch dimension; its children get no rows;
* every other leaf module (BatchNorm, ReLU, pooling, dropout, ... count 0 MACs);
* a container module that owns parameters directly, or computes something in its own ``forward``.

Compute outside the analytic units is *measured*: the pass runs under ``torch.utils.flop_counter``'s
``FlopCounterMode`` and the FLOPs executed by a module itself (not by its hooked children), halved, are its
MACs, and its row is marked ``measured``. So a custom module calling ``torch.matmul`` never counts 0, and for
models made of standard layers the total equals FlopCounterMode's FLOPs / 2 exactly. A module that owns a
weight matrix yet shows no MACs either way (e.g. ``nn.MultiheadAttention``'s fused inference path, which the
flop counter does not see) triggers a warning rather than passing silently as 0. Shapes are given and
reported without the batch dimension. A model on the ``meta`` device profiles too (shapes only, no memory).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .errors import ModelError

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_T = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)

#: Leaf kinds whose 0 MACs is expected (torch's flop counter counts none of them either).
_NO_MACS = (
    nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.modules.pooling._MaxPoolNd,
    nn.modules.pooling._AvgPoolNd, nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd,
    nn.modules.dropout._DropoutNd, nn.Flatten, nn.Unflatten, nn.Identity, nn.Embedding, nn.Upsample, nn.PReLU,
)


@dataclass(frozen=True)
class LayerCost:
    """Cost of one layer (or the total). Shapes exclude the batch dimension.

    ``params`` and ``weight_bytes`` (parameters + buffers at their dtype's size) count each tensor once, in its
    first owner's row. ``macs`` sums over every call of the module in the forward pass; ``output_bytes`` and
    ``output_shape`` describe the first call's output (for a tuple output: all its tensors' bytes, the first
    tensor's shape). ``measured`` is true when the MACs come from FlopCounterMode rather than a formula.
    """

    name: str
    kind: str
    params: int
    macs: int
    weight_bytes: int
    output_bytes: int
    output_shape: tuple[int, ...] | None
    measured: bool = False
    calls: int = 1

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["output_shape"] = list(self.output_shape) if self.output_shape is not None else None
        return d


@dataclass(frozen=True)
class Profile:
    """Per-layer costs in execution order, and their total.

    ``total.params`` / ``total.weight_bytes`` are the model's (each tensor once), ``total.macs`` the sum of the
    rows, ``total.output_bytes`` the sum of the layers' outputs that are new tensors (in-place results and
    views such as ReLU(inplace=True) or Flatten are not counted again): roughly what a training step keeps.
    ``total.output_shape`` is the model's output shape.
    """

    input_shape: tuple[int, ...]
    layers: list[LayerCost]
    total: LayerCost

    def layer(self, name: str) -> LayerCost:
        """The row of the module called ``name`` (as in ``model.named_modules()``)."""
        for row in self.layers:
            if row.name == name:
                return row
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form: ``{"input_shape", "layers": [...], "total": {...}}``."""
        return {"input_shape": list(self.input_shape), "layers": [row.to_dict() for row in self.layers],
                "total": self.total.to_dict()}

    def table(self) -> str:
        """Aligned text table with thousands separators; measured MACs are marked with ``*``."""
        header = ("layer", "kind", "output", "params", "MACs", "weight B", "output B")
        rows = [_row_cells(row) for row in self.layers]
        rows.append(_row_cells(dataclasses.replace(self.total, name="total")))
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        lines = [_format_line(header, widths)]
        lines.append("-" * len(lines[0]))
        lines += [_format_line(r, widths) for r in rows[:-1]]
        lines.append("-" * len(lines[0]))
        lines.append(_format_line(rows[-1], widths))
        if any(row.measured for row in self.layers):
            lines.append("* MACs measured with torch.utils.flop_counter (no analytic formula for this layer)")
        return "\n".join(lines)


def _row_cells(row: LayerCost) -> tuple[str, ...]:
    shape = "x".join(map(str, row.output_shape)) if row.output_shape is not None else "-"
    macs = f"{row.macs:,}" + ("*" if row.measured else "")
    return (row.name or "(root)", row.kind, shape, f"{row.params:,}", macs, f"{row.weight_bytes:,}",
            f"{row.output_bytes:,}")


def _format_line(cells: Sequence[str], widths: Sequence[int]) -> str:
    left = 3  # name, kind and shape are left-aligned, numbers right-aligned
    parts = [c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))]
    return "  ".join(parts).rstrip()


# ---------------------------------------------------------------------------------------------- analysis

@dataclass
class _Record:
    """What the hooks learn about one unit or container during the forward pass."""

    name: str
    module: nn.Module
    analytic: bool
    row_if_idle: bool  # units always get a row; containers only with own tensors or own compute
    calls: int = 0
    order: int = -1
    measured_flops: int = 0  # FLOPs executed by the module itself, children excluded
    macs: int = 0
    input_shapes: list[tuple[int, ...] | None] = field(default_factory=list)
    output_numels: list[int] = field(default_factory=list)
    output_bytes: int = 0
    output_shape: tuple[int, ...] | None = None
    aliases_input: bool = False  # first output is a view / in-place result of the input (ReLU, Flatten)


def has_macs_method(module: nn.Module) -> bool:
    """True for modules that report their own MACs (``macs(input_shape)``), e.g. tensorslim's factorized layers."""
    method = getattr(module, "macs", None)
    return callable(method) and not isinstance(method, nn.Module)


def _is_analytic(module: nn.Module) -> bool:
    return has_macs_method(module) or isinstance(module, (*_CONV, *_CONV_T, nn.Linear, nn.Bilinear))


def _walk(model: nn.Module) -> Iterator[tuple[str, nn.Module, bool]]:
    """Yield ``(name, module, is_unit)`` for every module that gets hooks; units are not descended into."""
    seen: set[int] = set()
    stack: list[tuple[str, nn.Module]] = [("", model)]
    while stack:
        name, module = stack.pop()
        if id(module) in seen:
            continue
        seen.add(id(module))
        children = list(module.named_children())
        is_unit = _is_analytic(module) or not children
        yield name, module, is_unit
        if not is_unit:
            stack += [(f"{name}.{n}" if name else n, c) for n, c in reversed(children)]


def _analytic_macs(module: nn.Module, input_shape: tuple[int, ...] | None, output_numel: int) -> int:
    """MACs of one call of an analytic unit at batch 1."""
    if has_macs_method(module):
        if input_shape is None:
            raise TypeError(f"{type(module).__name__}.macs() needs a tensor input")
        return int(module.macs(input_shape))
    if isinstance(module, nn.Linear):
        return module.in_features * output_numel
    if isinstance(module, nn.Bilinear):  # x1ᵀ A_k x2 for each of the out_features k
        return module.in1_features * module.in2_features * output_numel
    kernel = math.prod(module.kernel_size)
    if isinstance(module, _CONV_T):  # each input pixel scatters a kernel into out_channels/groups maps
        in_pixels = math.prod(input_shape or ()) // module.in_channels
        return module.in_channels * in_pixels * (module.out_channels // module.groups) * kernel
    return output_numel * (module.in_channels // module.groups) * kernel


def _first_tensor(value: Any) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)):
        for item in value:
            found = _first_tensor(item)
            if found is not None:
                return found
    if isinstance(value, dict):
        return _first_tensor(list(value.values()))
    return None


def _same_storage(a: Any, b: Any) -> bool:
    """True when two tensors share memory (an in-place op or a view)."""
    if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
        return False
    if a is b:
        return True
    ptr = a.untyped_storage().data_ptr()  # 0 on the meta device, where only identity tells
    return ptr != 0 and ptr == b.untyped_storage().data_ptr()


def _tensor_bytes(value: Any) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, (tuple, list)):
        return sum(_tensor_bytes(v) for v in value)
    if isinstance(value, dict):
        return sum(_tensor_bytes(v) for v in value.values())
    return 0


def _check_shape(input_shape: Sequence[int]) -> tuple[int, ...]:
    try:
        shape = tuple(input_shape)
    except TypeError:
        shape = ()
    if not shape or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
        raise ModelError(f"input shape {input_shape!r}: expected positive integers like (3, 32, 32)")
    return shape


def _probe_tensor(model: nn.Module) -> tuple[torch.dtype, torch.device]:
    for t in (*model.parameters(), *model.buffers()):
        if t.is_floating_point():
            return t.dtype, t.device
    return torch.get_default_dtype(), torch.device("cpu")


class _Tracer:
    """Forward hooks that attribute FLOPs to the innermost running module and note input / output shapes."""

    def __init__(self, model: nn.Module, counter: FlopCounterMode):
        self.counter = counter
        self.records: list[_Record] = []
        self.stack: list[tuple[_Record, int, list[int]]] = []  # record, FLOPs at entry, children's FLOPs
        self.handles: list[Any] = []
        self.next_order = 0
        for name, module, is_unit in _walk(model):
            record = _Record(name, module, analytic=is_unit and _is_analytic(module), row_if_idle=is_unit)
            self.records.append(record)
            self.handles.append(module.register_forward_pre_hook(self._pre(record)))
            self.handles.append(module.register_forward_hook(self._post(record)))

    def _flops(self) -> int:
        return int(self.counter.get_total_flops())

    def _pre(self, record: _Record):
        def hook(module: nn.Module, args: tuple) -> None:
            if record.order < 0:
                record.order, self.next_order = self.next_order, self.next_order + 1
            x = args[0] if args else None
            record.input_shapes.append(tuple(x.shape[1:]) if isinstance(x, torch.Tensor) else None)
            self.stack.append((record, self._flops(), [0]))
        return hook

    def _post(self, record: _Record):
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            _, start, children = self.stack.pop()
            inclusive = self._flops() - start
            record.measured_flops += inclusive - children[0]
            if self.stack:
                self.stack[-1][2][0] += inclusive
            record.calls += 1
            first = _first_tensor(output)
            if record.calls == 1:
                record.output_shape = tuple(first.shape[1:]) if first is not None else None
                record.output_bytes = _tensor_bytes(output)
                record.aliases_input = _same_storage(first, args[0] if args else None)
            record.output_numels.append(first.numel() if first is not None else 0)
        return hook

    def failing_module(self) -> _Record | None:
        """The innermost module whose forward had started but not finished (after an exception)."""
        return self.stack[-1][0] if self.stack else None

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def profile(model: nn.Module, input_shape: Sequence[int]) -> Profile:
    """Profile ``model`` on one input of ``input_shape`` (without batch dimension, e.g. ``(3, 32, 32)``).

    Raises :class:`ModelError` (one line, naming the shape and the failing layer) if the model cannot run on
    that shape. The model's train/eval flags are restored afterwards.
    """
    shape = _check_shape(input_shape)
    dtype, device = _probe_tensor(model)
    x = torch.randn((1, *shape), generator=torch.Generator().manual_seed(0), dtype=dtype).to(device)
    modes = [(m, m.training) for m in model.modules()]
    counter = FlopCounterMode(display=False)
    tracer = _Tracer(model, counter)
    try:
        model.eval()
        with torch.no_grad(), counter:
            output = model(x)
    except Exception as err:
        raise _shape_error(shape, tracer.failing_module(), err) from err
    finally:
        tracer.remove()
        for module, training in modes:
            module.train(training)
    rows = _rows(tracer.records)
    fresh = {r.name for r in tracer.records if r.calls and not r.aliases_input}
    out = _first_tensor(output)
    total = LayerCost(
        name="total", kind=type(model).__name__,
        params=sum(p.numel() for p in model.parameters()),
        macs=sum(r.macs for r in rows),
        weight_bytes=sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers())),
        output_bytes=sum(r.output_bytes for r in rows if r.name in fresh),
        output_shape=tuple(out.shape[1:]) if out is not None else None,
        measured=any(r.measured for r in rows),
    )
    return Profile(shape, rows, total)


def _shape_error(shape: tuple[int, ...], record: _Record | None, err: Exception) -> ModelError:
    text = str(err).strip().splitlines()
    reason = f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")
    where = f"layer {record.name or '(root)'!r} ({type(record.module).__name__})" if record else "the model"
    return ModelError(f"input shape {'x'.join(map(str, shape))} does not fit the model: {where} failed "
                      f"with {reason}")


def _rows(records: list[_Record]) -> list[LayerCost]:
    """Turn hook records into rows: execution order first, modules never called after them."""
    seen_tensors: set[int] = set()
    rows: list[tuple[int, LayerCost]] = []
    for rank, rec in enumerate(records):  # module order, so a shared tensor goes to its first owner
        tensors = [*rec.module.parameters(recurse=rec.row_if_idle), *rec.module.buffers(recurse=rec.row_if_idle)]
        own = [t for t in tensors if id(t) not in seen_tensors]
        seen_tensors.update(id(t) for t in own)
        macs, measured = _record_macs(rec)
        if not (rec.row_if_idle or own or macs):
            continue
        params = sum(t.numel() for t in own if isinstance(t, nn.Parameter))
        row = LayerCost(rec.name, type(rec.module).__name__, params, macs,
                        sum(t.numel() * t.element_size() for t in own), rec.output_bytes, rec.output_shape,
                        measured, rec.calls)
        rows.append((rec.order if rec.order >= 0 else len(records) + rank, row))
    return [row for _, row in sorted(rows, key=lambda item: item[0])]


def _record_macs(rec: _Record) -> tuple[int, bool]:
    """MACs of a record: its formula for analytic units, else the FLOPs it executed itself / 2."""
    if rec.analytic:
        return sum(_analytic_macs(rec.module, s, n) for s, n in zip(rec.input_shapes, rec.output_numels)), False
    macs = rec.measured_flops // 2
    if macs == 0 and _holds_weights(rec):
        warnings.warn(f"layer {rec.name!r} ({type(rec.module).__name__}) holds weight matrices but no MAC formula "
                      "or measured FLOPs; counted as 0", stacklevel=3)
    return macs, macs > 0


def _holds_weights(rec: _Record) -> bool:
    """A module that ran and owns a matrix / kernel (2+ dims) of an unknown kind: 0 MACs there is suspicious."""
    if not rec.calls or isinstance(rec.module, _NO_MACS):
        return False
    return any(p.dim() >= 2 for p in rec.module.parameters(recurse=rec.row_if_idle))
