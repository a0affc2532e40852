"""``tensorslim models``: the built-in models with their default input shape, params and MACs."""

from __future__ import annotations

import json

import click

from .. import models


@click.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def models_cmd(as_json: bool) -> None:
    """List the built-in models with their default input shape, params and MACs."""
    rows = models.summary_rows()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'model':<12} {'input':<10} {'params':>12} {'MACs':>15}  description")
    for r in rows:
        shape = "x".join(str(d) for d in r["input_shape"])
        click.echo(f"{r['name']:<12} {shape:<10} {r['params']:>12,} {r['macs']:>15,}  {r['description']}")
