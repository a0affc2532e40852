"""``tensorslim inspect TARGET``: per-layer cost table of a model directory, built-in name or factory."""

from __future__ import annotations

import json

import click

from ..workflows import inspect_model


@click.command("inspect")
@click.argument("target")
@click.option("--input-shape", default=None, help="C,H,W (default: the model's own).")
@click.option("--weights", type=click.Path(), default=None, help="Weights for a factory target (.safetensors/.pt).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def inspect_cmd(target: str, input_shape: str | None, weights: str | None, as_json: bool) -> None:
    """Per-layer params, MACs, weight and activation bytes of a model directory, built-in name or factory."""
    report = inspect_model(target, input_shape=input_shape, weights=weights)
    click.echo(json.dumps(report["json"], indent=2) if as_json else report["text"])
