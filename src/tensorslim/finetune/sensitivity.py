"""Per-layer sensitivity to decomposition, and global rank allocation from it.

:func:`sensitivity` measures, for every candidate layer (Conv2d / Linear), every method that applies to it and
every point of a rank grid, the validation accuracy drop when ONLY that layer is decomposed (no fine-tuning),
on the first ``max_samples`` validation images. The grid is method-agnostic: each value is a fraction of the
layer's parameters to keep (a plan ``ratio`` rule), turned into the method's explicit rank by
:mod:`tensorslim.surgery`; duplicate ranks are measured once. A point whose replacement would not save MACs
(the "not faster" rule of :mod:`tensorslim.surgery`) is never recorded, so an allocation can never choose it.
The table can be cached in a JSON file keyed by a fingerprint of the weights, methods, grid and sample count; it
is written after every layer, so an interrupted run resumes.

:func:`allocate` turns a global budget into a plan (the ordinary plan JSON; one explicit rule per layer):

* ``{"params": 0.1}`` / ``{"macs": 0.3}`` (both may be given): fractions of the ORIGINAL model's total params /
  MACs to keep (whole model: layers that are not decomposed, BatchNorm and biases count too).
* ``{"max_drop": 0.5}``: the summed predicted accuracy drop (points) may not exceed this.

Rule (greedy, sensitivity-proportional in the sense of the CP-TPM paper: a layer's rank is lowered in
proportion to how little accuracy that costs): every layer starts dense. Each layer's measured points are first
reduced to their Pareto set over (params, MACs, drop) (:func:`tensorslim.study.pareto.pareto_indices`): a
point that another beats or equals on all three is never a better move. A *move* switches one layer from its
current option to any cheaper measured point (any method, any rank). Its score is::

    max(0, drop(new) - drop(current)) / saving,   saving = sum over the objectives of (cost_cur - cost_new) / total

where the objectives are the budget's violated constraints (params and/or MACs), or params and MACs together for
``max_drop``. The move with the smallest score (ties: the larger saving) is applied, and the loop repeats
until every constraint holds (params/MACs budget) or until no move keeps the summed drop within ``max_drop``.
Drops are assumed additive across layers (they are measured one layer at a time); the plan's ``comment``
states the predicted totals.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from .. import _atomic
from ..errors import DecompositionError, TensorSlimError
from ..study.pareto import pareto_indices

DEFAULT_GRID = (0.03, 0.06, 0.1, 0.15, 0.25, 0.4, 0.6)
DEFAULT_METHODS = ("svd", "tucker2")
BUDGET_KEYS = ("params", "macs", "max_drop")


class BudgetError(TensorSlimError):
    """A budget that is malformed or cannot be met."""


def _method_options(methods: Sequence[str] | Mapping[str, dict] | None) -> dict[str, dict]:
    from ..plan import METHODS

    if methods is None:
        methods = DEFAULT_METHODS
    if isinstance(methods, str):
        methods = [methods]
    out = dict(methods) if isinstance(methods, Mapping) else {m: {} for m in methods}
    for m, opts in out.items():
        if m not in METHODS:
            raise TensorSlimError(f"sensitivity: unknown method {m!r}; known: {', '.join(METHODS)}")
        if not isinstance(opts, dict):
            raise TensorSlimError(f"sensitivity: options of {m} must be an object")
    return out


def _fingerprint(model: nn.Module, methods: dict, grid: Sequence[float], max_samples: int) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    h.update(json.dumps([methods, list(grid), max_samples], sort_keys=True).encode())
    return h.hexdigest()[:32]


def _eval_subset(model: nn.Module, val_set, max_samples: int) -> float:
    from ..train import evaluate

    batch = min(250, max_samples)
    return evaluate(model, val_set, batch_size=batch, max_batches=math.ceil(max_samples / batch))["accuracy"]


def single_layer_rule(name: str, method: str, rank: Any, options: dict | None = None) -> dict[str, Any]:
    rule: dict[str, Any] = {"layers": name, "method": method, "rank": _jsonable(rank)}
    if options:
        rule["options"] = dict(options)
    return rule


def _jsonable(rank: Any) -> Any:
    if isinstance(rank, (list, tuple)):
        return [int(r) for r in rank]
    return int(rank)


def sensitivity(
    model: nn.Module,
    val_set,
    methods: Sequence[str] | Mapping[str, dict] | None = None,
    rank_grid: Sequence[float] = DEFAULT_GRID,
    *,
    input_shape: tuple[int, ...] | None = None,
    layers: Sequence[str] | None = None,
    max_samples: int = 1000,
    cache: str | Path | None = None,
    log: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Accuracy drop (points) per layer, method and rank when only that layer is decomposed; see the module doc.

    Returns ``{"fingerprint", "baseline_accuracy", "samples", "grid", "methods", "layers": {name: {"kind",
    "dense_params", "dense_macs", "points": [{"method", "rank", "options", "ratio", "params", "macs",
    "accuracy", "drop", "rel_error"}]}}}``.
    """
    from ..modeldir import INPUT_SHAPE_ATTR
    from ..surgery import candidates, compress_with_report

    log = log or (lambda _m: None)
    opts = _method_options(methods)
    grid = sorted({float(g) for g in rank_grid})
    if not grid or any(not 0 < g < 1 for g in grid):
        raise TensorSlimError(f"sensitivity: rank_grid values must lie in (0, 1), got {list(rank_grid)}")
    input_shape = tuple(input_shape or getattr(model, INPUT_SHAPE_ATTR, None) or ())
    if not input_shape:
        raise TensorSlimError("sensitivity needs the model's input shape")
    max_samples = max(1, min(int(max_samples), len(val_set)))
    fp = _fingerprint(model, opts, grid, max_samples)
    table: dict[str, Any] | None = None
    if cache is not None and Path(cache).is_file():
        try:
            table = json.loads(Path(cache).read_text())
        except (OSError, json.JSONDecodeError):
            table = None
        if not isinstance(table, dict) or table.get("fingerprint") != fp:
            table = None
        else:
            log(f"sensitivity: reusing {cache}")
    if table is None:
        table = {"fingerprint": fp, "baseline_accuracy": _eval_subset(model, val_set, max_samples),
                 "samples": max_samples, "grid": grid, "methods": opts, "layers": {}}
    base = table["baseline_accuracy"]
    for ctx in candidates(model, input_shape):
        if layers is not None and ctx.name not in layers:
            continue
        if ctx.name in table["layers"]:
            continue
        kind = "linear" if isinstance(ctx.module, nn.Linear) else "conv"
        entry = {"kind": kind, "dense_params": ctx.dense_params, "dense_macs": ctx.dense_macs, "points": []}
        for method, mopts in opts.items():
            seen: set[str] = set()
            for g in grid:
                rule = {"layers": ctx.name, "method": method, "ratio": g, "skip_slower": True}
                if mopts:
                    rule["options"] = mopts
                try:
                    compressed, report = compress_with_report(model, {"rules": [rule]}, input_shape)
                except DecompositionError:
                    continue  # method does not apply, rank too small, or not faster
                except TensorSlimError:
                    continue
                if not report.layers:  # skipped: the factorized layer would not be smaller or faster
                    continue
                done = report.layers[0]
                key = json.dumps(_jsonable(done["rank"]))
                if key in seen:
                    continue
                seen.add(key)
                acc = _eval_subset(compressed, val_set, max_samples)
                entry["points"].append({
                    "method": method, "rank": _jsonable(done["rank"]), "options": mopts, "ratio": g,
                    "params": done["params_after"], "macs": done["macs_after"], "accuracy": acc,
                    "drop": base - acc, "rel_error": done["rel_error"],
                })
        table["layers"][ctx.name] = entry
        best = min((p["drop"] for p in entry["points"]), default=float("nan"))
        log(f"sensitivity {ctx.name}: {len(entry['points'])} points, smallest drop {best:.2f} pt")
        if cache is not None:
            _atomic.write_text(cache, json.dumps(table, indent=1) + "\n")
    return table


def layer_drops(model: nn.Module, rules: Sequence[dict], val_set, *, input_shape: tuple[int, ...],
                max_samples: int = 1000) -> dict[str, float]:
    """The drop (points) of each explicit single-layer rule applied alone: the order 'least sensitive first'."""
    from ..surgery import compress

    max_samples = max(1, min(int(max_samples), len(val_set)))
    base = _eval_subset(model, val_set, max_samples)
    return {r["layers"]: base - _eval_subset(compress(model, {"rules": [r]}, input_shape), val_set, max_samples)
            for r in rules}


def parse_budget(budget: str | Mapping[str, float]) -> dict[str, float]:
    """``"params<=0.1"``, ``"macs<=0.3,params<=0.1"``, ``"drop<=0.5"`` (the budget syntax of every command; the
    old ``params=0.1`` / ``max-drop=0.5`` still reads), or a dict → ``{"params", "macs"}`` or ``{"max_drop"}``."""
    from ..study.budget import BudgetError as StudyBudgetError
    from ..study.budget import parse_budget as parse_study_budget

    if isinstance(budget, Mapping):
        budget = {("drop" if str(k).replace("-", "_") == "max_drop" else str(k)): v for k, v in budget.items()}
    try:
        parsed = parse_study_budget(budget, ("params", "macs", "drop"))
    except StudyBudgetError as err:
        raise BudgetError(str(err)) from None
    out = {("max_drop" if k == "drop" else k): v for k, v in parsed.limits}
    for key, value in out.items():
        if key in ("params", "macs") and not 0 < value < 1:
            raise BudgetError(f"budget: {key} is the fraction kept and must lie in (0, 1), not {value:g}")
    if "max_drop" in out and len(out) > 1:
        raise BudgetError("budget: give drop alone, or params and/or macs")
    return out


def allocate(model: nn.Module, budget: str | Mapping[str, float], sens: Mapping[str, Any], *,
             input_shape: tuple[int, ...] | None = None) -> dict[str, Any]:
    """A plan (JSON dict) meeting ``budget`` with the least predicted accuracy drop; see the module doc."""
    from ..cost import profile
    from ..modeldir import INPUT_SHAPE_ATTR

    budget = parse_budget(budget)
    input_shape = tuple(input_shape or getattr(model, INPUT_SHAPE_ATTR, None) or ())
    total = profile(model, input_shape).total
    totals = {"params": float(total.params), "macs": float(total.macs)}
    layers = sens["layers"]
    # per layer: option list; option 0 = dense
    options: dict[str, list[dict[str, Any]]] = {}
    for name, e in layers.items():
        dense = {"method": None, "params": e["dense_params"], "macs": e["dense_macs"], "drop": 0.0}
        points = e["points"]
        front = pareto_indices([(p["params"], p["macs"], max(0.0, float(p["drop"]))) for p in points])
        options[name] = [dense, *[points[i] for i in front]]
    current = {name: 0 for name in options}
    used = {k: totals[k] for k in totals}  # running totals of the whole model

    def violated() -> list[str]:
        return [k for k in ("params", "macs") if k in budget and used[k] > budget[k] * totals[k] + 1e-9]

    def drop_of(opt: dict) -> float:
        return max(0.0, float(opt["drop"]))

    def best_move(objectives: list[str], drop_left: float | None):
        best = None
        for name, opts in options.items():
            cur = opts[current[name]]
            for j, opt in enumerate(opts):
                if opt["params"] > cur["params"] or opt["macs"] > cur["macs"]:
                    continue  # only moves that cost nothing more on either measure
                saving = sum((cur[k] - opt[k]) / totals[k] for k in objectives)
                if saving <= 0:
                    continue
                extra = drop_of(opt) - drop_of(cur)
                if drop_left is not None and extra > drop_left + 1e-9:
                    continue
                score = max(0.0, extra) / saving
                key = (score, -saving)
                if best is None or key < best[0]:
                    best = (key, name, j)
        return best

    if "max_drop" in budget:
        while True:
            spent = sum(drop_of(options[n][current[n]]) for n in options)
            move = best_move(["params", "macs"], budget["max_drop"] - spent)
            if move is None:
                break
            _apply(move, options, current, used)
    else:
        while violated():
            move = best_move(violated(), None)
            if move is None:
                frac = ", ".join(f"{k} {used[k] / totals[k]:.3f}" for k in ("params", "macs"))
                raise BudgetError(f"budget {_budget_text(budget)} cannot be met with the measured ranks (best "
                                  f"reached: {frac}); add smaller grid values or more methods")
            _apply(move, options, current, used)
    rules = []
    for name in options:  # forward order (the table keeps candidates' order)
        opt = options[name][current[name]]
        if opt["method"] is None:
            continue
        rules.append(single_layer_rule(name, opt["method"], opt["rank"], opt.get("options")))
    if not rules:
        raise BudgetError(f"budget {_budget_text(budget)}: no layer can be decomposed within it")
    predicted = sum(drop_of(options[n][current[n]]) for n in options)
    comment = (f"allocated for budget {_budget_text(budget)}: params {used['params'] / totals['params']:.4f}, "
               f"MACs {used['macs'] / totals['macs']:.4f} of the original, predicted drop {predicted:.2f} pt "
               f"(sum of single-layer drops on {sens.get('samples', '?')} val images)")
    return {"comment": comment, "rules": rules}


def _apply(move, options, current, used) -> None:
    _, name, j = move
    cur, new = options[name][current[name]], options[name][j]
    for k in ("params", "macs"):
        used[k] += new[k] - cur[k]
    current[name] = j


def _budget_text(budget: Mapping[str, float]) -> str:
    return ",".join(f"{k.replace('_', '-')}={v:g}" for k, v in budget.items())


def predicted_cost(model: nn.Module, plan: Mapping[str, Any], input_shape: tuple[int, ...]) -> dict[str, int]:
    """Whole-model params and MACs after ``plan`` (analytic, decomposes on the meta device only)."""
    from ..cost import profile
    from ..surgery import candidates, design_cost

    total = profile(model, input_shape).total
    params, macs = total.params, total.macs
    rules = {r["layers"]: r for r in plan["rules"]}
    for ctx in candidates(model, input_shape):
        r = rules.get(ctx.name)
        if r is None or "rank" not in r:
            continue
        cost = design_cost(ctx, r["method"], r["rank"], r.get("options"))
        params += cost["params"] - ctx.dense_params
        macs += cost["macs"] - ctx.dense_macs
    return {"params": int(params), "macs": int(macs)}


__all__ = ["DEFAULT_GRID", "DEFAULT_METHODS", "BudgetError", "allocate", "layer_drops", "parse_budget",
           "predicted_cost", "sensitivity", "single_layer_rule"]
