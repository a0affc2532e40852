"""``tensorslim export TARGET --out F.onnx``: ONNX export verified against PyTorch in ONNX Runtime."""

from __future__ import annotations

import click

from ..errors import TensorSlimError
from ..export import export_target
from ..resolve import parse_shape


@click.command("export")
@click.argument("target")
@click.option("--out", required=True, type=click.Path(), help="The .onnx file to write.")
@click.option("--opset", type=int, default=None, help="ONNX opset (default: the exporter's).")
@click.option("--batch", default="dynamic", show_default=True, help="'dynamic' or a fixed batch size.")
@click.option("--input-shape", default=None, help="C,H,W (default: the model's own).")
@click.option("--weights", type=click.Path(), default=None, help="Weights for a factory target.")
@click.option("--data", "dataset", default="auto", show_default=True,
              help="Also verify on real images of this dataset ('auto': the model's own; 'none' to skip).")
@click.option("--data-dir", type=click.Path())
@click.option("--rtol", type=float, default=1e-4, show_default=True, help="Largest accepted relative error.")
@click.option("--exporter", type=click.Choice(["auto", "torchscript", "dynamo"]), default="auto", show_default=True)
def export_cmd(target: str, out: str, opset: int | None, batch: str, input_shape: str | None, weights: str | None,
               dataset: str, data_dir: str | None, rtol: float, exporter: str) -> None:
    """Export TARGET (model directory or name) to ONNX and verify it against PyTorch in ONNX Runtime."""
    if batch != "dynamic":
        try:
            batch = int(batch)
        except ValueError:
            raise TensorSlimError(f"--batch {batch!r}: expected 'dynamic' or a positive integer") from None
    result = export_target(target, out, input_shape=parse_shape(input_shape), weights=weights,
                           dataset=None if dataset == "none" else dataset, data_dir=data_dir, opset=opset,
                           batch=batch, rtol=rtol, exporter=exporter)
    click.echo(result.summary())
    for note in result.notes:
        click.echo(f"note: {note}")
    if result.reconstructs_weights:
        click.echo("warning: the graph rebuilds a weight from factors at run time", err=True)
