"""Option helpers shared by the command modules: JSON and list options, the default dataset, and the options
that describe a compression plan (``compress`` and ``finetune``)."""

from __future__ import annotations

import json
from collections.abc import Callable

import click

from .. import data, methods
from .. import plan as plan_mod
from ..errors import TensorSlimError


def json_option(text: str | None, what: str) -> dict:
    """The JSON object ``text`` (``{}`` for none); one line of error for anything else."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise TensorSlimError(f"{what}: not valid JSON ({err.msg})") from None
    if not isinstance(value, dict):
        raise TensorSlimError(f"{what}: expected a JSON object")
    return value


def default_dataset(data_dir: str | None) -> str:
    """Fashion-MNIST where it is installed, else scikit-learn's digits (always there)."""
    found = {s.name for s in data.available(data_dir) if s.found}
    return "fashion-mnist" if "fashion-mnist" in found else "digits"


def int_list(text: str, what: str) -> tuple[int, ...]:
    """``"1,32"`` → (1, 32); one line of error for anything else."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise TensorSlimError(f"{what} {text!r}: expected integers separated by commas") from None
    return values


def int_option(text: str, what: str, expected: str, minimum: int, too_small: str | None = None) -> int:
    """``text`` as an integer >= ``minimum``; else one line ``WHAT 'TEXT': EXPECTED`` (``TOO_SMALL`` when given and
    the number is below ``minimum``)."""
    try:
        value = int(text)
    except ValueError:
        raise TensorSlimError(f"{what} {text!r}: {expected}") from None
    if value < minimum:
        raise TensorSlimError(f"{what} {text!r}: {too_small or expected}")
    return value


def words(text: str) -> list[str]:
    """The non-empty comma-separated items of ``text``."""
    return [w.strip() for w in text.split(",") if w.strip()]


def rank_value(text: str | None):
    """``"16"`` → 16, ``"8,16"`` → [8, 16]; one line of error for anything else."""
    if text is None:
        return None
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise TensorSlimError(f"--rank {text!r}: expected an integer or integers separated by commas") from None
    return values[0] if len(values) == 1 else values


_PLAN_OPTIONS = [
    click.option("--plan", "plan_file", type=click.Path(), help="A JSON compression plan."),
    click.option("--method", type=click.Choice(list(methods.names()))),
    click.option("--rank", default=None, help="Explicit rank: R, or R_in,R_out (tucker2), or R_C,R_H,R_W (tcl)."),
    click.option("--ratio", type=float, default=None, help="Keep this fraction of each layer's parameters."),
    click.option("--macs-ratio", type=float, default=None, help="Keep this fraction of each layer's MACs."),
    click.option("--energy", type=float, default=None, help="Keep this fraction of the spectral energy."),
    click.option("--vbmf", is_flag=True, help="EVBMF ranks (svd, tucker2)."),
    click.option("--weakened", is_flag=True, help="With --vbmf: MUSCO's weakened EVBMF."),
    click.option("--layers", default="*", show_default=True, help="Glob of layer names to compress."),
    click.option("--exclude", multiple=True, help="Glob of layer names to leave alone (repeatable)."),
    click.option("--algorithm", type=click.Choice(["power", "als"]), default=None, help="CP algorithm."),
    click.option("--form", type=click.Choice(["cp3", "cp4"]), default=None, help="CP layer form."),
]


def plan_options(command: Callable) -> Callable:
    """Add the plan options (``--plan`` or ``--method`` with one rank spec, layer globs, CP options)."""
    for option in reversed(_PLAN_OPTIONS):
        command = option(command)
    return command


def build_plan(plan_file, method, rank, ratio, macs_ratio, energy, vbmf, weakened, layers, exclude, algorithm, form,
               budget=None):
    """The plan the options describe (a Plan), or None when a budget is given; one line for any contradiction."""
    rank_given = [n for n, v in (("--rank", rank), ("--ratio", ratio), ("--macs-ratio", macs_ratio),
                                 ("--energy", energy), ("--vbmf", vbmf or None)) if v is not None]
    sources = [n for n, v in (("--plan", plan_file), ("--method", method), ("--budget", budget)) if v]
    if len(sources) != 1:
        wanted = "--plan FILE, --method M with a rank spec" + (", or --budget" if budget is not None else "")
        raise TensorSlimError(f"give exactly one of {wanted} (got {', '.join(sources) or 'none'})")
    if rank_given and not method:
        raise TensorSlimError(f"{rank_given[0]} needs --method")
    if plan_file:
        return plan_mod.read(plan_file)
    if method:
        if len(rank_given) != 1:
            raise TensorSlimError("--method needs exactly one of --rank, --ratio, --macs-ratio, --energy, --vbmf")
        options = {k: v for k, v in (("algorithm", algorithm), ("form", form)) if v}
        return plan_mod.single(method, layers=layers, rank=rank_value(rank), ratio=ratio, macs_ratio=macs_ratio,
                               energy=energy, vbmf=("weakened" if weakened else True) if vbmf else None,
                               options=options, exclude=list(exclude))
    return None
