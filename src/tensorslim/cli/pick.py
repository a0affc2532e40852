"""``tensorslim pick DIR --budget ...``: the best model of an explore output under a budget."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..errors import TensorSlimError
from ..explore import parse_budget, pick
from ..records import read_json_object


@click.command("pick")
@click.argument("path", type=click.Path())
@click.option("--budget", required=True,
              help="e.g. 'macs<=0.3,drop<=0.5' or 'latency<=0.25,params<=0.1' (fractions of the original; drop in pt).")
@click.option("--json", "as_json", is_flag=True)
def pick_cmd(path: str, budget: str, as_json: bool) -> None:
    """The best model of an explore output directory PATH under a budget: the most accurate Pareto point that
    meets it (ties: fewest MACs); none: one line naming the closest compressed point."""
    doc = read_json_object(Path(path) / "pareto.json", "pareto.json (an explore output)")
    if doc.get("format") != "tensorslim-explore" or not isinstance(doc.get("points"), list):
        raise TensorSlimError(f"{path}/pareto.json: not an explore result (pick reads `tensorslim explore` output)")
    point = pick(doc["points"], parse_budget(budget))
    where = Path(path) / point["path"]
    if as_json:
        click.echo(json.dumps({**point, "dir": str(where)}, indent=2))
        return
    rel = point["relative"]
    figures = ", ".join(f"{k} {rel[k]:.3g}" for k in ("params", "macs", "memory", "latency", "drop") if k in rel)
    click.echo(f"{where}  ({point['id']}: test acc {point['accuracy']:.2f} %, {figures})")
