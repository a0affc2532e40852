"""``tensorslim finetune``: compress a model directory by a plan or a budget and fine-tune it with a schedule.

``torchrun -m tensorslim.cli finetune ...`` and ``torchrun -m tensorslim.cli.ddp_main ...`` run the same command
data-parallel.
"""

from __future__ import annotations

import json

import click

from .. import distributed, modeldir
from ..finetune.schedules import ORDERS, SCHEDULES, finetune
from ..finetune.sensitivity import parse_budget
from ..methods import targets
from ..study.budget import BudgetError
from ..study.budget import parse_budget as read_budget
from ._common import build_plan, plan_options


@click.command("finetune")
@click.argument("path", type=click.Path())
@click.option("--data", "dataset", default=None, help="Dataset (default: the one the model was trained on).")
@click.option("--data-dir", type=click.Path())
@click.option("--schedule", type=click.Choice(SCHEDULES), default="one-shot", show_default=True)
@click.option("--epochs", type=click.FloatRange(0), default=1.0, show_default=True,
              help="TOTAL fine-tuning budget in epochs, split evenly over the schedule's steps.")
@click.option("--distill", is_flag=True, help="Distil from the uncompressed model (alpha 0.5, T 4).")
@click.option("--order", type=click.Choice(ORDERS), default="forward", show_default=True,
              help="Layer order of multi-step schedules (sensitivity = least sensitive first).")
@plan_options
@click.option("--budget", default=None,
              help="Global budget instead of a plan: params<=0.1, macs<=0.3, latency<=0.25 (fractions kept; latency "
                   "measured in ONNX Runtime at batch 1, 1 thread) and/or drop<=0.5 (points), comma-separated; the "
                   "budget syntax of every command.")
@click.option("--latency-cache", type=click.Path(), default=None,
              help="With a latency budget: the per-machine layer latency table (default "
                   "$TENSORSLIM_CACHE_DIR/latency.json, ~/.cache/tensorslim).")
@click.option("--methods", default="svd,tucker2", show_default=True,
              help="With --budget: methods the sensitivity scan tries (comma-separated).")
@click.option("--target", type=click.Choice(targets.names()), default=None,
              help="The deployment target whose channel multiple the ranks are rounded to (ort-x86 16, "
                   "xnnpack-arm 8, none: no rounding): the budget's sensitivity grid or the plan's rules; recorded "
                   "in model.json, so that export applies its passes. Default: the plan file's target, else this "
                   "machine's.")
@click.option("--sensitivity-samples", type=click.IntRange(1), default=1000, show_default=True)
@click.option("--factor-fraction", type=click.FloatRange(0, 1, max_open=True), default=0.25, show_default=True,
              help="hybrid-factors-first: share of each step spent on the new factors alone.")
@click.option("--batch-size", type=click.IntRange(1), default=128, show_default=True,
              help="Global batch (divided among processes under torchrun).")
@click.option("--optimizer", type=click.Choice(["sgd", "adamw"]), default="sgd", show_default=True)
@click.option("--lr", type=float, default=None, help="Peak learning rate (default 0.01 SGD, 5e-4 AdamW).")
@click.option("--weight-decay", type=float, default=None)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--max-batches", type=click.IntRange(1), default=None, help="Cap on batches per epoch.")
@click.option("--out", required=True, type=click.Path(), help="Output directory (resumes if interrupted).")
@click.option("--json", "as_json", is_flag=True, help="Print the run record as JSON.")
def finetune_cmd(path, dataset, data_dir, schedule, epochs, distill, order, plan_file, method, rank, ratio,
                 macs_ratio, energy, vbmf, weakened, layers, exclude, algorithm, form, budget, methods,
                 latency_cache, target, sensitivity_samples, factor_fraction, batch_size, optimizer, lr,
                 weight_decay, seed, max_batches, out, as_json) -> None:
    """Compress the model directory PATH (by a plan or a budget) and fine-tune it with a schedule into OUT."""
    plan = build_plan(plan_file, method, rank, ratio, macs_ratio, energy, vbmf, weakened, layers, exclude,
                      algorithm, form, budget)
    modeldir.read_meta(path)  # one-line error for a bad PATH before anything else
    started = not distributed.current().active
    info = distributed.init_from_env()  # under torchrun (also `torchrun -m tensorslim.cli finetune ...`)
    try:
        _run(path, dataset, plan, budget, schedule, epochs, distill, order, out, data_dir, factor_fraction,
             sensitivity_samples, methods, batch_size, optimizer, lr, weight_decay, seed, max_batches, as_json,
             latency_cache, target)
    finally:
        if started and info.active:
            distributed.shutdown()


def _run(path, dataset, plan, budget, schedule, epochs, distill, order, out, data_dir, factor_fraction,
         sensitivity_samples, methods, batch_size, optimizer, lr, weight_decay, seed, max_batches, as_json,
         latency_cache=None, target=None) -> None:
    parsed = parse_budget(budget) if budget else None
    timers = {}
    if parsed and "latency" in parsed:  # ONNX Runtime timers from the stage above finetune
        from .explore import ort_layer_ms, ort_model_latency

        timers = {"latency_timer": ort_layer_ms, "model_latency": ort_model_latency, "latency_cache": latency_cache}
    if budget:
        try:
            notes = read_budget(budget, ("params", "macs", "latency", "drop")).notes
        except BudgetError:
            notes = ()  # parse_budget below says what is wrong
        for note in notes:
            click.echo(note, err=True)
    result = finetune(
        path, dataset, plan=plan, budget=parsed, schedule=schedule,
        epochs=epochs, distill=distill, order=order, out=out, data_dir=data_dir, factor_fraction=factor_fraction,
        sensitivity_samples=sensitivity_samples,
        sensitivity_methods=[m.strip() for m in methods.split(",") if m.strip()],
        batch_size=batch_size, optimizer=optimizer, lr=lr, weight_decay=weight_decay, seed=seed,
        max_batches=max_batches, log=None if as_json else click.echo, target=target, **timers)
    if as_json and distributed.is_main():
        click.echo(json.dumps(result.record, indent=1))
