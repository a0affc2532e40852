"""``tensorslim demo``: the default job (baseline, budget, compression, fine-tuning, ONNX, latency, report)."""

from __future__ import annotations

from pathlib import Path

import click

from ..workflows import demo
from ._common import default_dataset


@click.command("demo")
@click.option("--data", "dataset", default=None, help="Dataset (default: fashion-mnist if installed, else digits).")
@click.option("--data-dir", type=click.Path())
@click.option("--model", default="convnet", show_default=True, help="Built-in model to train and compress.")
@click.option("--epochs", default=4, show_default=True, type=click.IntRange(1), help="Baseline epochs.")
@click.option("--budget", default="macs<=0.3", show_default=True,
              help="Global budget: params<=F, macs<=F (fractions kept) or drop<=PT.")
@click.option("--finetune-epochs", default=1.0, show_default=True, type=float)
@click.option("--out", default="runs/demo", show_default=True, type=click.Path())
def demo_cmd(dataset: str | None, data_dir: str | None, model: str, epochs: int, budget: str, finetune_epochs: float,
             out: str) -> None:
    """The default job: baseline, rank allocation for a budget, compression, fine-tuning, ONNX, latency, report."""
    demo(dataset or default_dataset(data_dir), Path(out), data_dir=data_dir, model=model, epochs=epochs,
         budget=budget, finetune_epochs=finetune_epochs)
