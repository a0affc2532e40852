"""Compression plans: which layer gets which method, and how its rank is chosen.

A plan is JSON (a file, or a dict in Python)::

    {"rules": [
        {"layers": "classifier.*", "method": "svd", "energy": 0.95},
        {"layers": "features.*", "method": "cp", "ratio": 0.25, "options": {"algorithm": "power", "form": "cp3"}},
        {"layers": "*", "method": "tucker2", "vbmf": true}
    ]}

Each layer (by qualified module name) takes the FIRST rule whose ``layers`` glob matches it and whose
``exclude`` globs do not. A rule names one method and exactly one rank spec:

==============  ===============================================================================
``rank``        explicit: an int (SVD, CP, TT-rank), ``[r_in, r_out]`` (Tucker-2), ``[R_C, R_H, R_W]`` (TCL)
``ratio``       keep this fraction of the layer's parameters (0 < ratio < 1; 0.25 = 4x fewer)
``macs_ratio``  keep this fraction of the layer's MACs
``energy``      keep this fraction of the spectral energy (sum of squared singular values)
``vbmf``        ``true`` (EVBMF ranks), or ``"weakened"`` (MUSCO: R - k(R - R_vbmf), option ``k``)
==============  ===============================================================================

Methods are those of :mod:`tensorslim.methods`, each validating its own rank specs and options: ``svd``
(Linear), ``cp`` (Conv2d; options ``algorithm`` power|als, ``form`` cp3|cp4, and the algorithm's own),
``tucker2`` (Conv2d), ``tt`` (Linear and Conv2d; options ``in_shape``/``out_shape``, else the most balanced
factorization with ``max_factors``), ``tcl`` (a Linear fed by a flattened C×H×W activation; option ``bn``).
``energy`` and ``vbmf`` apply to the methods whose rank is a matrix rank (svd, tucker2). ``"force": true``
applies a rule even where the factorized layer would have more parameters or MACs than the dense one.

A rule whose glob was written for one layer (no wildcard) must apply: if that layer cannot take the method
the plan fails with the layer and the reason. Layers reached through a wildcard are skipped instead, each
with its reason in the compression report; so are layers that would not get faster (``skip_slower``, on
by default for wildcards: a replacement that saves no MACs is not worth its extra layers).

``"target"`` (optional, top level): the deployment target (:mod:`tensorslim.methods.targets`: ``ort-x86``,
``ort-arm``, ``xnnpack-x86``, ``xnnpack-arm``, ``none``) whose channel multiple the ranks that a rule chooses
(every spec but an explicit ``rank``) are rounded to; ``compress(..., target=...)`` overrides it, and without
either the machine's default target applies. The plan recorded in ``model.json`` names the target used.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import os
from pathlib import Path
from typing import Any

from . import methods
from .errors import ModelError, TensorSlimError
from .methods import targets
from .records import read_json_object

METHODS = methods.names()  # what a rule may name: the registry's methods
RANK_KEYS = ("rank", "ratio", "macs_ratio", "energy", "vbmf")


class PlanError(TensorSlimError):
    """A plan that is not well formed."""


@dataclasses.dataclass(frozen=True)
class Rule:
    layers: str
    method: str
    rank_kind: str
    rank_value: Any
    options: dict[str, Any]
    exclude: tuple[str, ...] = ()
    skip_slower: bool | None = None  # None: on for wildcard rules, off for rules naming one layer
    force: bool = False  # apply even where the factorized layer would be larger than the dense one

    @property
    def explicit(self) -> bool:
        """True when the rule names one layer exactly (no wildcard): then it must apply."""
        return not any(ch in self.layers for ch in "*?[")

    def matches(self, name: str) -> bool:
        return fnmatch.fnmatchcase(name, self.layers) and not any(
            fnmatch.fnmatchcase(name, pattern) for pattern in self.exclude)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"layers": self.layers, "method": self.method, self.rank_kind: self.rank_value}
        if self.options:
            out["options"] = dict(self.options)
        if self.exclude:
            out["exclude"] = list(self.exclude)
        if self.skip_slower is not None:
            out["skip_slower"] = self.skip_slower
        if self.force:
            out["force"] = True
        return out


@dataclasses.dataclass(frozen=True)
class Plan:
    rules: tuple[Rule, ...]
    target: str | None = None  # a deployment target (methods.targets); None: the caller's or the default

    def rule_for(self, name: str) -> Rule | None:
        return next((r for r in self.rules if r.matches(name)), None)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rules": [r.to_dict() for r in self.rules]}
        if self.target is not None:
            out["target"] = self.target
        return out

    def with_target(self, target: str | None) -> Plan:
        """This plan for ``target`` (its own target, else the default target, when ``target`` is None)."""
        return dataclasses.replace(self, target=targets.get(target or self.target).name)


def parse(plan: dict[str, Any] | Plan, source: str = "plan") -> Plan:
    """Validate a plan dict; every problem is one line naming the rule and the field."""
    if isinstance(plan, Plan):
        return plan
    if not isinstance(plan, dict) or not isinstance(plan.get("rules"), list) or not plan["rules"]:
        raise PlanError(f"{source}: expected an object with a non-empty 'rules' list")
    unknown = set(plan) - {"rules", "version", "comment", "target"}
    if unknown:
        raise PlanError(f"{source}: unknown key {sorted(unknown)[0]!r}")
    target = plan.get("target")
    if target is not None and target not in targets.TARGETS:
        raise PlanError(f"{source}: target must be one of {', '.join(targets.TARGETS)}, not {target!r}")
    return Plan(tuple(_parse_rule(r, f"{source}: rule {i + 1}") for i, r in enumerate(plan["rules"])), target)


def _parse_rule(raw: Any, where: str) -> Rule:
    if not isinstance(raw, dict):
        raise PlanError(f"{where}: expected an object")
    allowed = {"layers", "method", "options", "exclude", "skip_slower", "force", *RANK_KEYS}
    unknown = set(raw) - allowed
    if unknown:
        raise PlanError(f"{where}: unknown key {sorted(unknown)[0]!r}")
    method = raw.get("method")
    if method not in METHODS:
        raise PlanError(f"{where}: method must be one of {', '.join(METHODS)}, not {method!r}")
    kinds = [k for k in RANK_KEYS if k in raw]
    if len(kinds) != 1:
        raise PlanError(f"{where}: give exactly one of {', '.join(RANK_KEYS)} (got {kinds or 'none'})")
    kind, value = kinds[0], raw[kinds[0]]
    _check_rank_value(kind, value, method, where)
    options = raw.get("options", {}) or {}
    if not isinstance(options, dict):
        raise PlanError(f"{where}: options must be an object")
    _check_options(method, options, where)
    exclude = raw.get("exclude", [])
    if isinstance(exclude, str):
        exclude = [exclude]
    if not isinstance(exclude, list) or not all(isinstance(e, str) for e in exclude):
        raise PlanError(f"{where}: 'exclude' must be a glob string or a list of them")
    layers = raw.get("layers", "*")
    if not isinstance(layers, str) or not layers:
        raise PlanError(f"{where}: 'layers' must be a non-empty glob string")
    skip = raw.get("skip_slower")
    if skip is not None and not isinstance(skip, bool):
        raise PlanError(f"{where}: skip_slower must be true or false")
    force = raw.get("force", False)
    if not isinstance(force, bool):
        raise PlanError(f"{where}: force must be true or false")
    return Rule(layers, method, kind, value, dict(options), tuple(exclude), skip, force)


def _check_options(method: str, options: dict[str, Any], where: str) -> None:
    """Each method validates its own options (CP's from the real signature of the chosen algorithm)."""
    try:
        methods.get(method).check_options(options)
    except ValueError as err:
        raise PlanError(f"{where}: {err}") from None


def _check_rank_value(kind: str, value: Any, method: str, where: str) -> None:
    m = methods.get(method)
    if kind not in m.rank_kinds:
        takers = [name for name in METHODS if kind in methods.get(name).rank_kinds]
        listed = " and ".join([", ".join(takers[:-1]), takers[-1]]) if len(takers) > 1 else "".join(takers)
        raise PlanError(f"{where}: {kind} ranks apply to {listed}, not {method}")
    if kind in ("ratio", "macs_ratio", "energy"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
            raise PlanError(f"{where}: {kind} must be a number in (0, 1], not {value!r}")
    elif kind == "vbmf":
        if value not in (True, "weakened"):
            raise PlanError(f"{where}: vbmf must be true or \"weakened\", not {value!r}")
    else:  # explicit rank
        values = value if isinstance(value, list) else [value]
        if not values or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise PlanError(f"{where}: rank must be an integer or a list of integers, not {value!r}")
        if any(v < 1 for v in values):
            raise PlanError(f"{where}: rank must be >= 1, not {value!r}")
        try:
            m.check_rank(value)
        except ValueError as err:
            raise PlanError(f"{where}: {err}") from None


def read(path: str | os.PathLike) -> Plan:
    """Read and validate a plan file."""
    path = Path(path)
    try:
        raw = read_json_object(path, "plan file")
    except ModelError as err:
        raise PlanError(str(err)) from None
    return parse(raw, str(path))


def single(method: str, *, layers: str = "*", rank: Any = None, ratio: float | None = None,
           macs_ratio: float | None = None, energy: float | None = None, vbmf: bool | str | None = None,
           options: dict[str, Any] | None = None, exclude: list[str] | None = None,
           target: str | None = None) -> Plan:
    """A one-rule plan, as the CLI's --method/--rank/--ratio/--energy/--vbmf/--target options describe it."""
    raw: dict[str, Any] = {"layers": layers, "method": method}
    given = {"rank": rank, "ratio": ratio, "macs_ratio": macs_ratio, "energy": energy, "vbmf": vbmf}
    raw.update({k: v for k, v in given.items() if v is not None and v is not False})
    if options:
        raw["options"] = options
    if exclude:
        raw["exclude"] = exclude
    return parse({"rules": [raw], **({"target": target} if target is not None else {})}, "command line")
