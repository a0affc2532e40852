"""Global rank allocation from the sensitivity table of :func:`.sensitivity.sensitivity`.

:func:`allocate` turns a global budget into a plan (the ordinary plan JSON; one explicit rule per layer):

* ``{"params": 0.1}`` / ``{"macs": 0.3}`` (both may be given): fractions of the ORIGINAL model's total params /
  MACs to keep (whole model: layers that are not decomposed, BatchNorm and biases count too).
* ``{"latency": 0.25}``: the fraction of the original model's measured latency to keep, estimated from the
  per-layer latency table (:mod:`tensorslim.study.latency`; :func:`.sensitivity.measure_latency` adds it to the
  sensitivity table): dense model ms + Σ (replacement ms − dense layer ms), times ``latency_scale`` (the
  correction measured on the whole exported model, :func:`allocate_for_latency`).
* ``{"max_drop": 0.5}``: the summed predicted accuracy drop (points) may not exceed this. Alone, the allocation
  saves as much params and MACs as it can within it; with cost limits, it is a cap that they must be met under.

Rule (greedy, sensitivity-proportional in the sense of the CP-TPM paper: a layer's rank is lowered in
proportion to how little accuracy that costs): every layer starts dense. Each layer's measured points are first
reduced to their Pareto set over (params, MACs, drop) (:func:`tensorslim.study.pareto.pareto_indices`): a
point that another beats or equals on all three is never a better move. A *move* switches one layer from its
current option to any cheaper measured point (any method, any rank). Its score is::

    max(0, drop(new) - drop(current)) / saving,   saving = sum over the objectives of (cost_cur - cost_new) / total

where the objectives are the budget's violated constraints (params, MACs and/or latency), or params and MACs
together for ``max_drop`` alone. The move with the smallest score (ties: the larger saving) is applied, and the
loop repeats until every constraint holds (a cost budget; a move that would take the summed drop over a
``max_drop`` cap is never made) or until no move keeps the summed drop within ``max_drop`` (drop alone).
With a latency limit, the Pareto cut and the "costs nothing more" rule use the budget's own cost keys and
latency (a point that is faster but larger is a move), so accuracy is traded against the measured latency.

Then, for a cost budget, an exchange pass optimises accuracy and cost jointly beyond the greedy order: the
change of one layer's option, or of two layers' options together (one compressed further, the other less),
that lowers the summed drop most while every limit still holds is applied, until none lowers it.
Drops are assumed additive across layers (they are measured one layer at a time); the plan's ``comment``
states the predicted totals.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import nn

from ..cost import profile
from ..errors import TensorSlimError
from ..modeldir import INPUT_SHAPE_ATTR
from ..study.budget import BudgetError as StudyBudgetError
from ..study.budget import parse_budget as parse_study_budget
from ..study.latency import estimate_ms
from ..study.pareto import pareto_indices
from ..surgery import candidates, compress, design_cost

BUDGET_KEYS = ("params", "macs", "latency", "max_drop")
COST_KEYS = ("params", "macs", "latency")


class BudgetError(TensorSlimError):
    """A budget that is malformed or cannot be met."""


def single_layer_rule(name: str, method: str, rank: Any, options: dict | None = None) -> dict[str, Any]:
    rule: dict[str, Any] = {"layers": name, "method": method, "rank": _jsonable(rank)}
    if options:
        rule["options"] = dict(options)
    return rule


def _jsonable(rank: Any) -> Any:
    if isinstance(rank, (list, tuple)):
        return [int(r) for r in rank]
    return int(rank)


def parse_budget(budget: str | Mapping[str, float]) -> dict[str, float]:
    """``"params<=0.1"``, ``"macs<=0.3,params<=0.1"``, ``"latency<=0.25,drop<=0.5"``, ``"drop<=0.5"`` (the budget
    syntax of every command; the old ``params=0.1`` / ``max-drop=0.5`` still reads), or a dict →
    ``{"params", "macs", "latency", "max_drop"}`` (the keys given)."""
    if isinstance(budget, Mapping):
        budget = {("drop" if str(k).replace("-", "_") == "max_drop" else str(k)): v for k, v in budget.items()}
    try:
        parsed = parse_study_budget(budget, ("params", "macs", "latency", "drop"))
    except StudyBudgetError as err:
        raise BudgetError(str(err)) from None
    out = {("max_drop" if k == "drop" else k): v for k, v in parsed.limits}
    for key, value in out.items():
        if key in COST_KEYS and not 0 < value < 1:
            raise BudgetError(f"budget: {key} is the fraction kept and must lie in (0, 1), not {value:g}")
    return out


def allocate(model: nn.Module, budget: str | Mapping[str, float], sens: Mapping[str, Any], *,
             input_shape: tuple[int, ...] | None = None, latency_scale: float = 1.0) -> dict[str, Any]:
    """A plan (JSON dict) meeting ``budget`` with the least predicted accuracy drop; see the module doc.

    A ``latency`` budget needs the table's latencies (:func:`measure_latency`); ``latency_scale`` multiplies the
    table's model estimate (the measured / estimated ratio of an earlier round, :func:`allocate_for_latency`)."""
    budget = parse_budget(budget)
    input_shape = tuple(input_shape or getattr(model, INPUT_SHAPE_ATTR, None) or ())
    total = profile(model, input_shape).total
    totals = {"params": float(total.params), "macs": float(total.macs)}
    limited = [k for k in COST_KEYS if k in budget]
    with_latency = "latency" in budget
    if with_latency:
        _check_latency_table(sens)
        totals["latency"] = float(sens["latency"]["model_ms"])
    keys = limited if with_latency else ["params", "macs"]  # the Pareto cut and the "costs nothing more" rule
    layers = sens["layers"]
    # per layer: option list; option 0 = dense
    options: dict[str, list[dict[str, Any]]] = {}
    for name, e in layers.items():
        dense = {"method": None, "params": e["dense_params"], "macs": e["dense_macs"], "drop": 0.0}
        points = [dict(p) for p in e["points"]]
        if with_latency:
            dense["latency"] = float(e["dense_latency_ms"])
            for p in points:
                p["latency"] = float(p["latency_ms"])
        front = pareto_indices([(*(p[k] for k in keys), max(0.0, float(p["drop"]))) for p in points])
        options[name] = [dense, *[points[i] for i in front]]
    current = {name: 0 for name in options}
    used = dict(totals)  # running totals of the whole model (latency: the table's estimate, unscaled)
    limit = {k: budget[k] * totals[k] / (latency_scale if k == "latency" else 1.0) for k in limited}
    cap = budget.get("max_drop")

    def violated() -> list[str]:
        return [k for k in limited if used[k] > limit[k] + 1e-9]

    def spent() -> float:
        return sum(_drop(options[n][current[n]]) for n in options)

    def best_move(objectives: list[str], drop_left: float | None):
        best = None
        for name, opts in options.items():
            cur = opts[current[name]]
            for j, opt in enumerate(opts):
                if any(opt[k] > cur[k] for k in keys):
                    continue  # only moves that cost nothing more on any measure
                saving = sum((cur[k] - opt[k]) / totals[k] for k in objectives)
                if saving <= 0:
                    continue
                extra = _drop(opt) - _drop(cur)
                if drop_left is not None and extra > drop_left + 1e-9:
                    continue
                score = max(0.0, extra) / saving
                key = (score, -saving)
                if best is None or key < best[0]:
                    best = (key, name, j)
        return best

    if limited:
        while violated():
            move = best_move(violated(), None if cap is None else cap - spent())
            if move is None:
                frac = ", ".join(f"{k} {used[k] * (latency_scale if k == 'latency' else 1.0) / totals[k]:.3f}"
                                 for k in limited)
                within = f" within drop<={cap:g}" if cap is not None else ""
                raise BudgetError(f"budget {_budget_text(budget)} cannot be met{within} with the measured ranks "
                                  f"(best reached: {frac}); add smaller grid values or more methods")
            _apply(move, options, current, used)
        _exchange(options, current, used, limit, limited)
    else:
        while True:
            move = best_move(["params", "macs"], cap - spent())
            if move is None:
                break
            _apply(move, options, current, used)
    rules = []
    for name in options:  # forward order (the table keeps candidates' order)
        opt = options[name][current[name]]
        if opt["method"] is None:
            continue
        rules.append(single_layer_rule(name, opt["method"], opt["rank"], opt.get("options")))
    if not rules:
        raise BudgetError(f"budget {_budget_text(budget)}: no layer can be decomposed within it")
    latency = ""
    if with_latency:
        corr = f", × {latency_scale:.3f} measured correction" if latency_scale != 1.0 else ""
        latency = f", latency {used['latency'] * latency_scale / totals['latency']:.4f} (latency table{corr})"
    comment = (f"allocated for budget {_budget_text(budget)}: params {used['params'] / totals['params']:.4f}, "
               f"MACs {used['macs'] / totals['macs']:.4f} of the original{latency}, predicted drop {spent():.2f} pt "
               f"(sum of single-layer drops on {sens.get('samples', '?')} val images)")
    return {"comment": comment, "rules": rules}


def _drop(opt: Mapping[str, Any]) -> float:
    return max(0.0, float(opt["drop"]))


def _check_latency_table(sens: Mapping[str, Any]) -> None:
    lat = sens.get("latency")
    if not isinstance(lat, Mapping) or "model_ms" not in lat or any(
            "dense_latency_ms" not in e or any("latency_ms" not in p for p in e["points"])
            for e in sens["layers"].values()):
        raise BudgetError("a latency budget needs the measured latency table: measure_latency(model, table, "
                          "LatencyCache(path, timer)) adds it to the sensitivity table")


def _apply(move, options, current, used) -> None:
    _, name, j = move
    cur, new = options[name][current[name]], options[name][j]
    for k in used:
        used[k] += new[k] - cur[k]
    current[name] = j


def _exchange(options, current, used, limit, limited) -> None:
    """Lower the summed drop by changing one layer's option, or two layers' options together, while every
    limit holds; the change that lowers it most first, until none does."""
    names = list(options)

    def fits(*deltas: dict[str, float]) -> bool:
        return all(used[k] + sum(d[k] for d in deltas) <= limit[k] + 1e-9 for k in limited)

    while True:
        best = None
        moves = []  # per layer: (gain, delta, j) of every other option
        for name in names:
            cur = options[name][current[name]]
            moves.append([(_drop(cur) - _drop(o), {k: o[k] - cur[k] for k in limited}, j)
                          for j, o in enumerate(options[name]) if j != current[name]])
        for a, ma in enumerate(moves):
            for gain, delta, j in ma:
                if gain > 1e-12 and fits(delta) and (best is None or gain > best[0] + 1e-12):
                    best = (gain, [(names[a], j)])
            for b in range(a + 1, len(moves)):
                for ga, da, ja in ma:
                    for gb, db, jb in moves[b]:
                        gain = ga + gb
                        if gain > 1e-12 and (best is None or gain > best[0] + 1e-12) and fits(da, db):
                            best = (gain, [(names[a], ja), (names[b], jb)])
        if best is None:
            return
        for name, j in best[1]:
            _apply((None, name, j), options, current, used)


def _rule_points(sens: Mapping[str, Any], rules: Sequence[Mapping[str, Any]]):
    """(table entry, measured point) of each explicit single-layer rule of an allocated plan."""
    for r in rules:
        entry = sens["layers"][r["layers"]]
        yield entry, next(p for p in entry["points"] if p["method"] == r["method"] and p["rank"] == r["rank"])


def estimate_latency(sens: Mapping[str, Any], rules: Sequence[Mapping[str, Any]]) -> float:
    """The table's latency estimate of a plan, as a fraction of the dense model's: (model ms + Σ (replacement ms
    − dense layer ms)) / model ms (:func:`tensorslim.study.latency.estimate_ms`)."""
    _check_latency_table(sens)
    model_ms = float(sens["latency"]["model_ms"])
    swaps = [(e["dense_latency_ms"], p["latency_ms"]) for e, p in _rule_points(sens, rules)]
    return estimate_ms(model_ms, swaps) / model_ms


def allocate_for_latency(model: nn.Module, budget: str | Mapping[str, float], sens: Mapping[str, Any], *,
                         model_latency=None, input_shape: tuple[int, ...] | None = None, rounds: int = 3,
                         tolerance: float = 0.1, log: Callable[[str], None] | None = None
                         ) -> tuple[dict[str, Any], dict[str, Any]]:
    """:func:`allocate` for a budget with ``latency``, checked against the whole model's measured latency.

    Each round allocates, then (with ``model_latency``, a :data:`tensorslim.study.latency.ModelLatency`: the
    commands time the exported files in ONNX Runtime, batch 1, in alternation with the dense one) measures the
    compressed model's latency as a fraction of the dense model's. A measurement above ``latency ×
    (1 + tolerance)`` starts another round in which the table's estimate is scaled by measured / estimated of
    the last round; at most ``rounds`` rounds. The plan returned is the round with the least predicted drop
    among those within the tolerance (else the fastest measured). Returns (plan, record: ``{"budget",
    "tolerance", "rounds": [{"round", "scale", "estimate", "corrected_estimate", "predicted_drop", "measured",
    "ms", "dense_ms"}], "chosen_round", "estimate", "measured", "met", "table"}``)."""
    log = log or (lambda _m: None)
    budget = parse_budget(budget)
    if "latency" not in budget:
        raise BudgetError(f"budget {_budget_text(budget)} has no latency limit")
    input_shape = tuple(input_shape or getattr(model, INPUT_SHAPE_ATTR, None) or ())
    target, scale = budget["latency"], 1.0
    history: list[dict[str, Any]] = []
    plans: list[dict[str, Any]] = []
    for k in range(max(1, int(rounds))):
        try:
            plan = allocate(model, budget, sens, input_shape=input_shape, latency_scale=scale)
        except BudgetError as err:
            if not history:
                raise
            log(f"latency round {k + 1}: {err}; keeping the earlier rounds")
            break
        est = estimate_latency(sens, plan["rules"])
        rec: dict[str, Any] = {"round": k + 1, "scale": scale, "estimate": est, "corrected_estimate": est * scale,
                               "predicted_drop": sum(_drop(p) for _, p in _rule_points(sens, plan["rules"])),
                               "measured": None}
        plans.append(plan)
        history.append(rec)
        if model_latency is None:
            break
        measured = dict(model_latency(compress(model, plan, input_shape), model, input_shape))
        rec.update(measured=float(measured["ratio"]), ms=measured.get("ms"), dense_ms=measured.get("dense_ms"))
        log(f"latency round {k + 1}: table estimate {est:.3f} of the dense model's (corrected {est * scale:.3f}), "
            f"measured {rec['measured']:.3f} (budget {target:g}, tolerance {tolerance:.0%})")
        if rec["measured"] <= target * (1 + tolerance):
            break
        scale = rec["measured"] / est
    value = [r["measured"] if r["measured"] is not None else r["corrected_estimate"] for r in history]
    within = [i for i, v in enumerate(value) if v <= target * (1 + tolerance) + 1e-12]
    chosen = (min(within, key=lambda i: (history[i]["predicted_drop"], i)) if within
              else min(range(len(history)), key=lambda i: value[i]))
    record = {"budget": target, "tolerance": tolerance, "rounds": history, "chosen_round": chosen + 1,
              "estimate": history[chosen]["estimate"], "measured": history[chosen]["measured"],
              "met": chosen in within, "table": dict(sens["latency"])}
    if chosen not in within:
        log(f"note: latency {value[chosen]:.3f} of the dense model's misses the budget {target:g} by more than "
            f"{tolerance:.0%} after {len(history)} rounds")
    return plans[chosen], record


def _budget_text(budget: Mapping[str, float]) -> str:
    return ",".join(f"{k.replace('_', '-')}={v:g}" for k, v in budget.items())


def predicted_cost(model: nn.Module, plan: Mapping[str, Any], input_shape: tuple[int, ...]) -> dict[str, int]:
    """Whole-model params and MACs after ``plan`` (analytic, decomposes on the meta device only)."""
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

__all__ = ["BudgetError", "allocate", "allocate_for_latency", "estimate_latency", "parse_budget", "predicted_cost",
           "single_layer_rule"]
