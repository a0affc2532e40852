"""``tensorslim train MODEL --data NAME --out DIR``: train a model, checkpointing every epoch (resumable)."""

from __future__ import annotations

import click

from ..workflows import train_model
from ._common import default_dataset, json_option


@click.command("train")
@click.argument("model")
@click.option("--data", "dataset", default=None, help="Dataset (default: fashion-mnist if installed, else digits).")
@click.option("--data-dir", type=click.Path(), help="Root folder searched first for dataset files.")
@click.option("--epochs", default=10, show_default=True, type=click.IntRange(0))
@click.option("--batch-size", default=128, show_default=True, type=click.IntRange(1))
@click.option("--optimizer", type=click.Choice(["sgd", "adamw"]), default="sgd", show_default=True)
@click.option("--lr", type=float, default=None, help="Peak learning rate (default 0.05 SGD, 2e-3 AdamW).")
@click.option("--weight-decay", type=float, default=None)
@click.option("--label-smoothing", type=float, default=0.0, show_default=True)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--augment/--no-augment", default=None,
              help="Force random crop/flip on or off (default: the dataset's standard augmentation).")
@click.option("--model-kwargs", default=None, help="JSON object of extra arguments for the model factory.")
@click.option("--out", required=True, type=click.Path(), help="Model directory to write (resumes if it exists).")
def train_cmd(model: str, dataset: str | None, data_dir: str | None, epochs: int, batch_size: int, optimizer: str,
              lr: float | None, weight_decay: float | None, label_smoothing: float, seed: int, augment: bool | None,
              model_kwargs: str | None, out: str) -> None:
    """Train MODEL (built-in name or package.module:factory) on a dataset, checkpointing every epoch."""
    train_model(model, dataset or default_dataset(data_dir), out, data_dir=data_dir, epochs=epochs,
                batch_size=batch_size, optimizer=optimizer, lr=lr, weight_decay=weight_decay,
                label_smoothing=label_smoothing, seed=seed, augment=augment,
                model_kwargs=json_option(model_kwargs, "--model-kwargs"))
