"""``tensorslim explore PATH --data NAME --out DIR``: the click front end of :func:`tensorslim.explore.explore`.

The command gives the exploration the services of the stages above it: :func:`ort_layer_ms` (the latency
objective's timer), :func:`ort_model_latency` (a whole model against the dense one, for latency budgets) and
:func:`tensorslim.report.write_report` (the HTML report over the Pareto set). ``finetune`` uses the two timers too.
"""

from __future__ import annotations

import click
import torch
from torch import nn

from .. import methods as method_registry
from ..errors import TensorSlimError
from ..explore import explore
from ..export import benchmark
from ..report import write_report
from ._common import int_option, words


def ort_layer_ms(module: nn.Module, input_shape: tuple[int, ...], *, threads: int = 1, repeats: int = 30,
                 warmup: int = 5) -> float:
    """Median ONNX Runtime latency (ms) of ``module`` alone at batch 1 (exported to ONNX, timed by
    :func:`tensorslim.export.benchmark`)."""
    wrapped = nn.Sequential(module).eval()
    with torch.no_grad():
        result = benchmark(wrapped, batch_sizes=1, threads=threads, runtime="ort", warmup=warmup, repeats=repeats,
                           input_shape=tuple(input_shape))
    return float(result.models[0].timings[0].median_ms)


def ort_model_latency(model: nn.Module, dense: nn.Module, input_shape: tuple[int, ...], *, threads: int = 1,
                      repeats: int = 50, warmup: int = 5) -> dict[str, float]:
    """``model``'s ONNX Runtime latency against ``dense``'s at batch 1: both exported (with the target's passes)
    and timed in alternation by :func:`tensorslim.export.benchmark`; ``ratio`` is the median paired
    ``t_model / t_dense``, ``ms`` and ``dense_ms`` the medians."""
    with torch.no_grad():
        result = benchmark(model.eval(), against=dense.eval(), batch_sizes=1, threads=threads, runtime="ort",
                           warmup=warmup, repeats=repeats, input_shape=tuple(input_shape))
    return {"ratio": 1.0 / float(result.comparison[0].speedup), "ms": float(result.models[0].timings[0].median_ms),
            "dense_ms": float(result.models[1].timings[0].median_ms)}


def _csv(text: str | None) -> list[str] | None:
    if text is None:
        return None
    items = words(text)
    if not items:
        raise TensorSlimError(f"expected a comma-separated list, got {text!r}")
    return items


def _low_fidelity(text: str) -> str | int:
    if text == "zeroshot":
        return text
    return int_option(text, "--low-fidelity", "expected 'zeroshot' or a number of batches", 1,
                      "the number of batches must be >= 1")


@click.command("explore")
@click.argument("path", type=click.Path())
@click.option("--data", "dataset", required=True, help="dataset name (fashion-mnist, digits, synthetic...)")
@click.option("--data-dir", type=click.Path(), default=None)
@click.option("--methods", default=",".join(method_registry.explored()), show_default=True,
              help=f"Comma-separated methods, of {', '.join(method_registry.names())}.")
@click.option("--objectives", default="macs,memory,accuracy", show_default=True,
              help="comma-separated: macs, memory, params, latency (measured, ONNX Runtime), accuracy")
@click.option("--max-evals", default=100, show_default=True, type=click.IntRange(1),
              help="low-fidelity trials in the study (a rerun runs only the missing ones)")
@click.option("--full-evals", default=20, show_default=True, type=click.IntRange(1),
              help="at most this many full-fidelity (fine-tuned) evaluations")
@click.option("--finetune-batches", default=200, show_default=True, type=click.IntRange(0),
              help="full-fidelity fine-tune of each finalist, in batches (more than an epoch: several epochs)")
@click.option("--distill/--no-distill", default=True, show_default=True,
              help="full-fidelity fine-tunes distil from the original model (as finetune --distill)")
@click.option("--low-fidelity", default="zeroshot", show_default=True,
              help="'zeroshot' (accuracy right after decomposition) or a number of fine-tune batches")
@click.option("--val-samples", default=2000, show_default=True, type=click.IntRange(1))
@click.option("--max-factors", default=3, show_default=True, type=click.IntRange(2, 6),
              help="most cores of a TT shape")
@click.option("--max-error", default=0.5, show_default=True, type=float,
              help="pruning stage (c): largest layer error kept (output error on the calibration images)")
@click.option("--calibration", default=256, show_default=True, type=click.IntRange(0),
              help="training images whose activations judge each design point (0: judge by weight error)")
@click.option("--screen", default=0, show_default=True, type=click.IntRange(0),
              help="rung (b) over whole models: judge this many combinations by their summed layer errors (no "
                   "model built) and make the best max-evals/2 the first low-fidelity trials (0: off)")
@click.option("--warm-start", multiple=True, type=click.Path(),
              help="a plan file, or a model directory recording one plan (e.g. finetune --budget's output): its "
                   "layer choices join the space, never pruned, and it and its neighbours are the first trials "
                   "(repeatable)")
@click.option("--time-budget", default=None,
              help="stop searching after this long (e.g. 30m, 2h, 90s) and write the front found so far")
@click.option("--target", type=click.Choice(method_registry.targets.names()), default=None,
              help="deployment target whose channel multiple every point's ranks are rounded to (ort-x86 16, "
                   "xnnpack-arm 8, none); recorded in the saved models for export (default: the grids' ranks)")
@click.option("--sampler", type=click.Choice(["nsga2", "tpe"]), default="nsga2", show_default=True)
@click.option("--budget", default=None, help="e.g. macs<=0.25,params<=0.1,drop<=0.5: pick one Pareto point")
@click.option("--storage", default=None, help="Optuna storage URL (default sqlite:///OUT/study.db)")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--out", required=True, type=click.Path(), help="output directory")
def explore_cmd(path, dataset, data_dir, methods, objectives, max_evals, full_evals, finetune_batches,
                distill, low_fidelity, val_samples, max_factors, max_error, calibration, screen, warm_start,
                time_budget, target, sampler, budget, storage, seed, out) -> None:
    """Explore methods × ranks × TT shapes of a model directory; save its Pareto set."""
    result = explore(path, dataset, out=out, methods=_csv(methods), objectives=_csv(objectives),
                     max_evals=max_evals, budget=budget, storage=storage, sampler=sampler, seed=seed,
                     max_factors=max_factors, max_error=max_error, calibration=calibration, time_budget=time_budget,
                     target=target, screen=screen, warm_start=list(warm_start),
                     low_fidelity=_low_fidelity(low_fidelity),
                     val_samples=val_samples, full_evals=full_evals, finetune_batches=finetune_batches, distill=distill,
                     data_dir=data_dir, latency_timer=ort_layer_ms, model_latency=ort_model_latency,
                     report=write_report,
                     log=lambda msg: click.echo(msg, err=True))
    p = result.pareto
    click.echo(f"{'id':<5} {'methods':<22} {'MACs':>11} {'memory':>11} {'params':>9} {'acc %':>7} {'val %':>7}")
    for pt in p["points"]:
        mark = " *" if pt["id"] == p["selected"] else ""
        click.echo(f"{pt['id']:<5} {'+'.join(pt['methods']) or 'dense':<22} {pt['macs']:>11,} {pt['memory']:>11,} "
                   f"{pt['params']:>9,} {pt['accuracy']:>7.2f} {pt['val_accuracy']:>7.2f}{mark}")
    click.echo(f"wrote {result.out / 'pareto.json'}")
