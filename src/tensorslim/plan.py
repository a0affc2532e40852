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

Methods: ``svd`` (Linear), ``cp`` (Conv2d; options ``algorithm`` power|als, ``form`` cp3|cp4), ``tucker2``
(Conv2d), ``tt`` (Linear and Conv2d; options ``in_shape``/``out_shape``, else the most balanced
factorization with ``max_factors``), ``tcl`` (a Linear fed by a flattened C×H×W activation; option ``bn``).

A rule whose glob was written for one layer (no wildcard) must apply: if that layer cannot take the method
the plan fails with the layer and the reason. Layers reached through a wildcard are skipped instead, each
with its reason in the compression report; so are layers that would not get faster (``skip_slower``, on
by default for wildcards: the "not faster" rules of REFERENCE.md).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import os
from pathlib import Path
from typing import Any

from .errors import TensorSlimError

METHODS = ("svd", "cp", "tucker2", "tt", "tcl")
RANK_KEYS = ("rank", "ratio", "macs_ratio", "energy", "vbmf")
OPTION_KEYS = {
    "svd": set(),
    "cp": {"algorithm", "form"},  # + the chosen algorithm's own options (see _check_options)
    "tucker2": {"k", "min_rank"},
    "tt": {"in_shape", "out_shape", "max_factors"},
    "tcl": {"bn"},
}


RANK_LENGTH = {"tucker2": 2, "tcl": 3}  # explicit ranks given as lists (TT takes an int or a list)
RANK_FORM = {"tucker2": "[r_in, r_out]", "tcl": "[R_C, R_H, R_W]"}


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

    def rule_for(self, name: str) -> Rule | None:
        return next((r for r in self.rules if r.matches(name)), None)

    def to_dict(self) -> dict[str, Any]:
        return {"rules": [r.to_dict() for r in self.rules]}


def parse(plan: dict[str, Any] | Plan, source: str = "plan") -> Plan:
    """Validate a plan dict; every problem is one line naming the rule and the field."""
    if isinstance(plan, Plan):
        return plan
    if not isinstance(plan, dict) or not isinstance(plan.get("rules"), list) or not plan["rules"]:
        raise PlanError(f"{source}: expected an object with a non-empty 'rules' list")
    unknown = set(plan) - {"rules", "version", "comment"}
    if unknown:
        raise PlanError(f"{source}: unknown key {sorted(unknown)[0]!r}")
    return Plan(tuple(_parse_rule(r, f"{source}: rule {i + 1}") for i, r in enumerate(plan["rules"])))


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
    """Options are checked per (method, algorithm): CP's decomposition options come from the real signature of
    the algorithm's function (``tensorslim.layers.cp.cp_option_names``), so a plan cannot name an option that
    the chosen algorithm does not take."""
    if method != "cp":
        bad = set(options) - OPTION_KEYS[method]
        if bad:
            raise PlanError(f"{where}: option {sorted(bad)[0]!r} does not apply to {method}")
        return
    from .layers.cp import FORMS, check_cp_options

    algorithm = options.get("algorithm", "power")
    if algorithm not in ("power", "als"):
        raise PlanError(f"{where}: cp option 'algorithm' must be \"power\" or \"als\", not {algorithm!r}")
    if options.get("form", "cp3") not in FORMS:
        raise PlanError(f"{where}: cp option 'form' must be one of {', '.join(FORMS)}, not {options['form']!r}")
    try:
        check_cp_options(algorithm, {k: v for k, v in options.items() if k not in ("algorithm", "form")})
    except ValueError as err:
        raise PlanError(f"{where}: {err}") from None


def _check_rank_value(kind: str, value: Any, method: str, where: str) -> None:
    if kind in ("ratio", "macs_ratio", "energy"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
            raise PlanError(f"{where}: {kind} must be a number in (0, 1], not {value!r}")
    elif kind == "vbmf":
        if value not in (True, "weakened"):
            raise PlanError(f"{where}: vbmf must be true or \"weakened\", not {value!r}")
        if method not in ("svd", "tucker2"):
            raise PlanError(f"{where}: vbmf ranks apply to svd and tucker2, not {method}")
    else:  # explicit rank
        values = value if isinstance(value, list) else [value]
        if not values or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise PlanError(f"{where}: rank must be an integer or a list of integers, not {value!r}")
        if any(v < 1 for v in values):
            raise PlanError(f"{where}: rank must be >= 1, not {value!r}")
        length = RANK_LENGTH.get(method)
        if length is not None and (not isinstance(value, list) or len(value) != length):
            raise PlanError(f"{where}: a {method} rank is {RANK_FORM[method]}, not {value!r}")
        if method in ("svd", "cp") and isinstance(value, list):
            raise PlanError(f"{where}: a {method} rank is one integer, not {value!r}")


def read(path: str | os.PathLike) -> Plan:
    """Read and validate a plan file."""
    from .errors import ModelError
    from .records import read_json_object

    path = Path(path)
    try:
        raw = read_json_object(path, "plan file")
    except ModelError as err:
        raise PlanError(str(err)) from None
    return parse(raw, str(path))


def single(method: str, *, layers: str = "*", rank: Any = None, ratio: float | None = None,
           macs_ratio: float | None = None, energy: float | None = None, vbmf: bool | str | None = None,
           options: dict[str, Any] | None = None, exclude: list[str] | None = None) -> Plan:
    """A one-rule plan, as the CLI's --method/--rank/--ratio/--energy/--vbmf options describe it."""
    raw: dict[str, Any] = {"layers": layers, "method": method}
    given = {"rank": rank, "ratio": ratio, "macs_ratio": macs_ratio, "energy": energy, "vbmf": vbmf}
    raw.update({k: v for k, v in given.items() if v is not None and v is not False})
    if options:
        raw["options"] = options
    if exclude:
        raw["exclude"] = exclude
    return parse({"rules": [raw]}, "command line")
