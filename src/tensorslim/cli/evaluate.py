"""``tensorslim evaluate DIR``: accuracy on a dataset split, recorded in metrics.json."""

from __future__ import annotations

import click

from ..workflows import evaluate_model


@click.command("evaluate")
@click.argument("path", type=click.Path())
@click.option("--data", "dataset", default=None, help="Dataset (default: the one the model was trained on).")
@click.option("--data-dir", type=click.Path())
@click.option("--split", type=click.Choice(["train", "val", "test"]), default="test", show_default=True)
@click.option("--record/--no-record", default=True, show_default=True, help="Store the accuracy in metrics.json.")
@click.option("--force", is_flag=True,
              help="Evaluate on a dataset whose input shape or number of classes differ from the model's.")
def evaluate_cmd(path: str, dataset: str | None, data_dir: str | None, split: str, record: bool, force: bool) -> None:
    """Evaluate a model directory on a dataset split (recorded per dataset in metrics.json)."""
    result = evaluate_model(path, dataset, split=split, data_dir=data_dir, record=record, force=force)
    click.echo(f"{result['dataset']} {split}: accuracy {result['accuracy']:.2f}%  loss {result['loss']:.4f}  "
               f"({result['samples']} images)")
