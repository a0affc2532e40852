"""Apply a compression plan to a model: pick each layer's rank, factorize it, swap the module in.

``compress(model, plan, input_shape)`` returns a NEW model (the original is untouched) whose attribute
``tensorslim_compression`` records the plan, every replaced layer (type + config, so that
:func:`rebuild` can recreate the structure when a model directory is loaded), its costs before and after,
and every skipped layer with its reason.

Rank targets given as a fraction of parameters or MACs are met by searching the rank against the
replacement layer's own analytic ``params()`` / ``macs()``: the layer is built on the meta device for that,
so no memory is spent. One mechanism then serves every method. The closed-form rules in
``tensorslim.decompose.ranks`` are checked against it in the tests.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from . import methods
from . import plan as plan_mod
from .errors import DecompositionError, ModelError, TensorSlimError
from .layers import LAYERS
from .methods import LayerContext, targets
from .methods.tt import balanced_tt_shapes  # noqa: F401 - part of this module's public names
from .records import COMPRESSION_ATTR, INPUT_SHAPE_ATTR


def factorized_types() -> dict[str, type[nn.Module]]:
    """Every factorized layer class by name: tensorslim's layers and those the registered methods build."""
    return {**LAYERS, **methods.layer_types()}


def trace_shapes(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, tuple[tuple, tuple]]:
    """Input and output shapes (without batch) of every module, from one batch-1 forward pass."""
    return _trace(model, input_shape)[0]


def _trace(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[dict[str, tuple[tuple, tuple]], set[str]]:
    """:func:`trace_shapes`, and the names of the modules whose output tensor is the model's output itself."""
    shapes: dict[str, tuple[tuple, tuple]] = {}
    outputs: dict[str, torch.Tensor] = {}
    hooks = []
    for name, module in model.named_modules():
        def hook(mod, args, out, name=name):
            if args and isinstance(args[0], torch.Tensor) and isinstance(out, torch.Tensor):
                shapes.setdefault(name, (tuple(args[0].shape[1:]), tuple(out.shape[1:])))
                outputs[name] = out
        hooks.append(module.register_forward_hook(hook))
    was_training = model.training
    try:
        with torch.inference_mode():
            result = model.eval()(torch.zeros(1, *input_shape))
    except Exception as err:  # noqa: BLE001
        msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelError(f"model cannot take input shape {','.join(map(str, input_shape))}: {msg}") from None
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return shapes, {name for name, out in outputs.items() if out is result}


def candidates(model: nn.Module, input_shape: tuple[int, ...]) -> list[LayerContext]:
    """The Conv2d and Linear layers that a plan can address, in forward order, outside factorized layers."""
    shapes, output_names = _trace(model, input_shape)
    known = factorized_types()
    factorized = [n for n, m in model.named_modules() if type(m).__name__ in known]
    flattens = [shapes[n][0] for n, m in model.named_modules() if isinstance(m, nn.Flatten) and n in shapes]
    out = []
    for name, module in model.named_modules():
        if not isinstance(module, (nn.Conv2d, nn.Linear)) or name not in shapes:
            continue
        if any(name.startswith(f + ".") for f in factorized):
            continue
        ctx = LayerContext(name, module, *shapes[name], is_output=name in output_names)
        if isinstance(module, nn.Linear):
            fed = [s for s in flattens if len(s) == 3 and math.prod(s) == module.in_features]
            ctx.flatten_from = fed[-1] if fed else None
        out.append(ctx)
    order = list(shapes)
    return sorted(out, key=lambda c: order.index(c.name))


# --- the methods, through their registry ---------------------------------------------------------------------


def applicable_methods(ctx: LayerContext) -> list[str]:
    """The methods that can factorize this layer (structurally; ranks are another question)."""
    return methods.applicable(ctx)


def choose_rank(ctx: LayerContext, rule: plan_mod.Rule, target: str | None = "none") -> Any:
    """The rank a rule asks for on this layer (validated against the layer, not yet applied), rounded to the
    channel multiple of ``target`` (:mod:`tensorslim.methods.targets`; None: the default target)."""
    return methods.get(rule.method).rank_for(ctx, rule.rank_kind, rule.rank_value, rule.options,
                                             multiple=targets.get(target).multiple)


def design_cost(ctx: LayerContext, method: str, rank: Any, options: dict[str, Any] | None = None) -> dict[str, int]:
    """Analytic params and MACs of ``method`` at ``rank`` on this layer, without decomposing anything.

    The replacement is built on the meta device, so the numbers are the layer's own ``params()``/``macs()``.
    Raises DecompositionError when the method does not apply or the rank does not fit the layer.
    """
    m = methods.get(method)
    reason = m.accepts(ctx)
    if reason:
        raise DecompositionError(ctx.name, reason)
    cost = m.cost(ctx, rank, options or {})
    return {"params": cost["params"], "macs": cost["macs"]}


def convert(ctx: LayerContext, method: str, rank: Any, options: dict[str, Any] | None = None) -> nn.Module:
    """Factorize this one layer with ``method`` at ``rank``, initialised from its weights.

    Every failure is a DecompositionError naming the layer (structural misfit, a rank that does not fit,
    NaN/inf weights, an error of the decomposition itself).
    """
    m = methods.get(method)
    reason = m.accepts(ctx)
    if reason:
        raise DecompositionError(ctx.name, reason)
    try:
        return m.fit(ctx, rank, options or {})
    except DecompositionError:
        raise
    except (ValueError, RuntimeError, TypeError) as err:
        raise DecompositionError(ctx.name, str(err).strip().splitlines()[0]) from None


def not_smaller(ctx: LayerContext, method: str, rank: Any, options: dict[str, Any] | None = None) -> str | None:
    """Why a factorization at ``rank`` is not worth making: it would have more parameters or more MACs than the
    dense layer (analytic, before any decomposition). None when it is smaller in both. Every rank rule, explicit
    or automatic, passes this check unless its rule says ``"force": true``."""
    try:
        cost = design_cost(ctx, method, rank, options)
    except (TensorSlimError, ValueError, RuntimeError):
        return None  # a rank that does not fit: the conversion reports it, naming the layer
    force = 'add "force": true to the rule to apply it anyway'
    if cost["macs"] > ctx.dense_macs:
        return (f"{method} rank {rank} would not get faster ({cost['macs']:,} MACs > dense {ctx.dense_macs:,}); "
                f"{force}")
    if cost["params"] > ctx.dense_params:
        return f"{method} rank {rank} would be larger ({cost['params']:,} params > dense {ctx.dense_params:,}); {force}"
    return None


def not_faster(ctx: LayerContext, replacement: nn.Module) -> str | None:
    """The skip rule, on analytic costs: a replacement that saves no MACs is not worth its extra layers."""
    new = replacement.macs(ctx.input_shape)
    if new >= ctx.dense_macs:
        return f"would not get faster ({new:,} MACs >= dense {ctx.dense_macs:,})"
    return None


# --- compress / rebuild -------------------------------------------------------------------------------------


@dataclasses.dataclass
class CompressionReport:
    layers: list[dict[str, Any]]
    skipped: list[dict[str, str]]

    def table(self) -> str:
        return compression_table(self.layers, self.skipped)


def compression_table(layers: list[dict[str, Any]], skipped: list[dict[str, str]] = ()) -> str:
    """Each compressed layer beside the original: params and MACs before → after, the ratios, the error."""
    head = (f"{'layer':<26} {'method':<8} {'rank':<13} {'params':>23} {'×':>6} {'MACs':>27} {'×':>6} "
            f"{'rel.err':>8}")
    rows = [head, "-" * len(head)]
    for e in layers:
        p0, p1, m0, m1 = e["params_before"], e["params_after"], e["macs_before"], e["macs_after"]
        rows.append(f"{e['name']:<26} {e['method']:<8} {str(e['rank']):<13} {p0:>11,}→{p1:<11,} "
                    f"{p0 / max(p1, 1):>6.2f} {m0:>13,}→{m1:<13,} {m0 / max(m1, 1):>6.2f} {e['rel_error']:>8.4f}")
    rows += [f"{s['name']:<26} skipped: {s['reason']}" for s in skipped]
    return "\n".join(rows)


def compress(model: nn.Module, plan: dict | plan_mod.Plan, input_shape: tuple[int, ...] | None = None,
             *, log: Callable[[str], None] | None = None, target: str | None = None) -> nn.Module:
    """A new model with the plan applied; see :func:`compress_with_report`."""
    return compress_with_report(model, plan, input_shape, log=log, target=target)[0]


def compress_with_report(model: nn.Module, plan: dict | plan_mod.Plan, input_shape: tuple[int, ...] | None = None,
                         *, log: Callable[[str], None] | None = None, target: str | None = None
                         ) -> tuple[nn.Module, CompressionReport]:
    """A new model with the plan applied, and the report of what was done.

    ``target``: the deployment target whose channel multiple the chosen ranks are rounded to
    (:mod:`tensorslim.methods.targets`); None: the plan's own ``target``, else the machine's default
    (``ort-x86`` on x86). The plan recorded in the result names the target used.
    """
    plan = plan_mod.parse(plan).with_target(target)
    new = copy.deepcopy(model).eval()

    def apply(ctx: LayerContext, rule: plan_mod.Rule, rank: Any, skip_slower: bool) -> dict[str, Any]:
        layer = convert(ctx, rule.method, rank, rule.options)
        slower = not_faster(ctx, layer) if skip_slower else None
        if slower:
            raise DecompositionError(ctx.name, slower)
        new.set_submodule(ctx.name, layer)
        entry = {
            "name": ctx.name, "type": type(layer).__name__, "config": layer.config(), "method": rule.method,
            "rank": rank, "rel_error": float(getattr(layer, "rel_error", float("nan"))),
            "params_before": ctx.dense_params, "params_after": layer.params(),
            "macs_before": ctx.dense_macs, "macs_after": layer.macs(ctx.input_shape),
        }
        if log:
            log(f"{ctx.name}: {rule.method} rank {rank}, params {entry['params_before']:,} → "
                f"{entry['params_after']:,}, rel. error {entry['rel_error']:.4f}")
        return entry

    done, skipped = _walk_plan(new, plan, input_shape, apply)
    previous = getattr(model, COMPRESSION_ATTR, None) or {"plans": [], "layers": [], "skipped": []}
    record = {
        "plans": [*previous.get("plans", []), plan.to_dict()],
        "layers": [*previous.get("layers", []), *done],
        "skipped": skipped,
    }
    setattr(new, COMPRESSION_ATTR, record)
    return new, CompressionReport(done, skipped)


def _walk_plan(model: nn.Module, plan: plan_mod.Plan, input_shape: tuple[int, ...] | None,
               step: Callable[[LayerContext, plan_mod.Rule, Any, bool], dict[str, Any]]
               ) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """The rules of ``plan`` over the candidate layers of ``model``: for each layer a rule addresses, the method
    must accept it, its rank is chosen and a rank that is not smaller is skipped; then ``step(ctx, rule, rank,
    skip_slower)`` makes the entry. A failure of a wildcard rule skips the layer with its reason, one of a rule
    naming the layer raises, and so does a rule naming a layer the model does not have."""
    input_shape = tuple(input_shape or getattr(model, INPUT_SHAPE_ATTR, None) or ())
    if not input_shape:
        raise ModelError("compress needs the model's input shape (C,H,W)")
    done, skipped = [], []
    matched_explicit = set()
    for ctx in candidates(model, input_shape):
        rule = plan.rule_for(ctx.name)
        if rule is None:
            continue
        if rule.explicit:
            matched_explicit.add(rule.layers)
        try:
            reason = methods.get(rule.method).accepts(ctx)
            if reason:
                raise DecompositionError(ctx.name, reason)
            rank = choose_rank(ctx, rule, plan.target or "none")
            larger = None if rule.force else not_smaller(ctx, rule.method, rank, rule.options)
            if larger:
                skipped.append({"name": ctx.name, "reason": larger})
                continue
            skip_slower = rule.skip_slower if rule.skip_slower is not None else not rule.explicit
            done.append(step(ctx, rule, rank, skip_slower))
        except (DecompositionError, ValueError, RuntimeError) as err:
            if not isinstance(err, DecompositionError):  # from rank selection
                err = DecompositionError(ctx.name, str(err).strip().splitlines()[0])
            if rule.explicit:
                raise err from None
            skipped.append({"name": ctx.name, "reason": err.reason})
    missing = [r.layers for r in plan.rules if r.explicit and r.layers not in matched_explicit]
    if missing:
        raise TensorSlimError(f"plan names layer {missing[0]!r}, which is not a Conv2d/Linear of this model")
    return done, skipped


def predict(model: nn.Module, plan: dict | plan_mod.Plan, input_shape: tuple[int, ...] | None = None,
            *, target: str | None = None) -> CompressionReport:
    """What :func:`compress_with_report` would do, from analytic costs only (no decomposition is performed).

    Each entry has ``name``, ``method``, ``rank`` and ``params_before/after``, ``macs_before/after`` (the
    replacement's own ``params()``/``macs()`` on the meta device, via :func:`design_cost`); ``rel_error`` is NaN
    (nothing was fitted). The same rules skip the same layers; an explicit rule that cannot apply raises.
    """

    def cost(ctx: LayerContext, rule: plan_mod.Rule, rank: Any, skip_slower: bool) -> dict[str, Any]:
        new = design_cost(ctx, rule.method, rank, rule.options)
        if skip_slower and new["macs"] >= ctx.dense_macs:  # not_faster, on the analytic MACs
            raise DecompositionError(ctx.name, f"would not get faster ({new['macs']:,} MACs >= dense "
                                               f"{ctx.dense_macs:,})")
        return {"name": ctx.name, "method": rule.method, "rank": rank, "rel_error": float("nan"),
                "params_before": ctx.dense_params, "params_after": new["params"],
                "macs_before": ctx.dense_macs, "macs_after": new["macs"]}

    return CompressionReport(*_walk_plan(model, plan_mod.parse(plan).with_target(target), input_shape, cost))


def output_errors(original: nn.Module, compressed: nn.Module, x: torch.Tensor, layers: list[str],
                  *, batch_size: int = 64) -> dict[str, float]:
    """Relative output error ``||y_c - y|| / ||y||`` of each named layer on the inputs ``x`` (N×C×H×W).

    ``y`` is the output of the layer of ``original`` and ``y_c`` that of its replacement in ``compressed``, both
    on the SAME input: the activation that reaches the layer in ``original`` (captured with a forward hook).
    So each number isolates that layer's own error, not the errors of the layers before it. Norms are summed
    over the whole of ``x`` (in chunks of ``batch_size``), in float64. A layer the forward pass does not reach
    is left out; a zero dense output gives 0 (outputs equal) or ``inf``.
    """
    dense = {name: original.get_submodule(name) for name in layers}
    small = {name: compressed.get_submodule(name) for name in layers}
    sq_diff = dict.fromkeys(layers, 0.0)
    sq_ref = dict.fromkeys(layers, 0.0)
    reached: set[str] = set()

    def hook(mod, args, out, name):
        if not (args and isinstance(args[0], torch.Tensor) and isinstance(out, torch.Tensor)):
            return
        y_c = out if small[name] is mod else small[name](args[0])  # the same module: no re-entry
        sq_diff[name] += float((y_c.double() - out.double()).pow(2).sum())
        sq_ref[name] += float(out.double().pow(2).sum())
        reached.add(name)

    hooks = [m.register_forward_hook(lambda mod, a, o, name=name: hook(mod, a, o, name)) for name, m in dense.items()]
    modes = original.training, compressed.training
    try:
        original.eval()
        compressed.eval()
        with torch.inference_mode():
            for start in range(0, len(x), batch_size):
                original(x[start:start + batch_size])
    finally:
        for h in hooks:
            h.remove()
        original.train(modes[0])
        compressed.train(modes[1])
    return {name: (math.sqrt(sq_diff[name] / sq_ref[name]) if sq_ref[name] > 0
                   else 0.0 if sq_diff[name] == 0 else math.inf) for name in layers if name in reached}


def output_disagreements(original: nn.Module, compressed: nn.Module, x: torch.Tensor, layers: list[str],
                         *, batch_size: int = 256) -> dict[str, float]:
    """Per named layer: the share of the inputs ``x`` whose top-1 class changes when that layer alone of
    ``original`` is replaced by its counterpart in ``compressed`` (every other layer dense).

    Rung (b) seen at the network's output: the layer's own error, weighted by what the layers after it pass on.
    The layers are swapped in place for the measurement and put back (also on error)."""
    def top1(model: nn.Module) -> torch.Tensor:
        return torch.cat([model(x[i:i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])

    modes = original.training, compressed.training
    out: dict[str, float] = {}
    try:
        original.eval()
        compressed.eval()
        with torch.inference_mode():
            ref = top1(original)
            for name in layers:
                dense = original.get_submodule(name)
                original.set_submodule(name, compressed.get_submodule(name))
                try:
                    out[name] = float((top1(original) != ref).double().mean())
                finally:
                    original.set_submodule(name, dense)
    finally:
        original.train(modes[0])
        compressed.train(modes[1])
    return out


def rebuild(model: nn.Module, compression: dict[str, Any], source: Any = "model.json") -> nn.Module:
    """Recreate the compressed structure recorded in ``compression`` (random weights; load them next).

    Each record is checked against the slot it replaces before its layer is built for real: the layer type is
    a tensorslim layer, the config holds exactly that layer's arguments, its sizes are the slot's (channels,
    features, kernel, stride, padding, dilation, bias), its ranks are valid (the layer's own checks, run on
    the meta device) and it has at most :data:`MAX_GROWTH` times the slot's parameters. So a record that does
    not fit the model is a one-line error, not an allocation."""
    known = factorized_types()
    for entry in compression.get("layers", []):
        name = entry.get("name")
        where = f"{source}: compressed layer {name!r}"
        cls = known.get(entry.get("type")) if isinstance(entry.get("type"), str) else None
        if cls is None:
            raise ModelError(f"{where}: unknown layer type {entry.get('type')!r} "
                             f"(known: {', '.join(sorted(known))})")
        config = entry.get("config")
        if not isinstance(name, str) or not isinstance(config, dict):
            raise ModelError(f"{where}: needs a 'name' string and a 'config' object")
        try:
            slot = model.get_submodule(name)
        except AttributeError:
            raise ModelError(f"{where}: the model has no such layer") from None
        _check_layer_config(cls, config, slot, where)
        try:
            with torch.device("meta"):
                probe = cls(**config)
            slot_params = sum(p.numel() for p in slot.parameters())
            if probe.params() > MAX_GROWTH * slot_params + 1024:
                raise ModelError(f"{where}: {probe.params():,} parameters for a layer of {slot_params:,}")
            layer = cls(**config)
        except TensorSlimError as err:
            raise ModelError(f"{where}: {_reason(err)}") from None
        except (TypeError, ValueError, RuntimeError, OverflowError) as err:
            raise ModelError(f"{where}: {_first_line(err)}") from None
        model.set_submodule(name, layer)
    setattr(model, COMPRESSION_ATTR, compression)
    return model


#: A recorded layer may have at most this many times the parameters of the layer it replaces ("force": true
#: rules can grow a layer; nothing legitimate grows it this much).
MAX_GROWTH = 16

# config key -> how the slot (the dense layer being replaced) gives the same size
_SLOT_SIZES: dict[str, Callable[[nn.Module], Any]] = {
    "in_features": lambda m: m.in_features if isinstance(m, nn.Linear) else None,
    "out_features": lambda m: m.out_features if isinstance(m, nn.Linear) else None,
    "in_channels": lambda m: m.in_channels if isinstance(m, nn.Conv2d) else None,
    "out_channels": lambda m: m.out_channels if isinstance(m, nn.Conv2d) else None,
    "kernel_size": lambda m: list(m.kernel_size) if isinstance(m, nn.Conv2d) else None,
    "stride": lambda m: list(m.stride) if isinstance(m, nn.Conv2d) else None,
    "padding": lambda m: (m.padding if isinstance(m.padding, str) else list(m.padding))
    if isinstance(m, nn.Conv2d) else None,
    "dilation": lambda m: list(m.dilation) if isinstance(m, nn.Conv2d) else None,
    "bias": lambda m: m.bias is not None if isinstance(m, (nn.Conv2d, nn.Linear)) else None,
}


def _check_layer_config(cls: type, config: dict[str, Any], slot: nn.Module, where: str) -> None:
    """``config`` must be ``cls``'s arguments and describe a layer with the sizes of ``slot``."""
    if not isinstance(slot, (nn.Conv2d, nn.Linear)):
        raise ModelError(f"{where}: replaces a {type(slot).__name__}, not a Conv2d or Linear")
    params = inspect.signature(cls).parameters
    allowed = {n for n, p in params.items() if p.kind is p.POSITIONAL_OR_KEYWORD}
    required = {n for n in allowed if params[n].default is params[n].empty}
    unknown, missing = set(config) - allowed, required - set(config)
    if unknown or missing:
        what = f"unknown key {sorted(unknown)[0]!r}" if unknown else f"missing {sorted(missing)[0]!r}"
        raise ModelError(f"{where}: config of {cls.__name__}: {what}")
    for key, size in _SLOT_SIZES.items():
        if key not in config:
            continue
        want = size(slot)
        got = config[key]
        if key in ("kernel_size", "stride", "dilation") and isinstance(got, int):
            got = [got, got]
        if key == "padding" and isinstance(got, int):
            got = [got, got]
        if want is None or got != want:
            raise ModelError(f"{where}: {key}={got!r} does not fit the model's layer ({key}={want!r})")
    n_in, n_out = ((slot.in_features, slot.out_features) if isinstance(slot, nn.Linear)
                   else (slot.in_channels, slot.out_channels))
    for key, want in (("in_shape", n_in), ("out_shape", n_out)):
        if key in config and (not _int_list(config[key]) or math.prod(config[key]) != want):
            raise ModelError(f"{where}: {key}={config[key]!r} does not multiply to the layer's {want}")
    if "input_shape" in config:
        if not isinstance(slot, nn.Linear) or not _int_list(config["input_shape"]) or \
                math.prod(config["input_shape"]) != slot.in_features:
            raise ModelError(f"{where}: input_shape={config['input_shape']!r} does not fit the layer's input")
    for key in ("rank", "ranks"):
        values = config.get(key)
        values = values if isinstance(values, list) else [values]
        if key in config and not all(v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 1)
                                     for v in values):
            raise ModelError(f"{where}: {key}={config[key]!r} must be positive integers")


def _int_list(value: Any) -> bool:
    return isinstance(value, list) and 0 < len(value) <= 16 and all(
        isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 2**31 for v in value)


def _reason(err: TensorSlimError) -> str:
    return err.reason if isinstance(err, DecompositionError) else str(err)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
