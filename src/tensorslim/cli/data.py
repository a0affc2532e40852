"""``tensorslim data``: every dataset, and where it was found or why not."""

from __future__ import annotations

import json

import click

from .. import data


@click.command("data")
@click.option("--data-dir", type=click.Path(), help="Root folder searched first for dataset files.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def data_cmd(data_dir: str | None, as_json: bool) -> None:
    """List every dataset with where it was found, or why not."""
    rows = data.available(data_dir)
    if as_json:
        click.echo(json.dumps([r.__dict__ if hasattr(r, "__dict__") else r._asdict() for r in rows], indent=2))
        return
    for r in rows:
        where = r.location if r.found else f"not found: {r.detail}"
        click.echo(f"{r.name:<14} {'yes' if r.found else 'no ':<4} {where}")
