"""``tensorslim search``: the click front end of :func:`tensorslim.search.search`.

:func:`main` runs it on its own with the same error convention as the main CLI (one line ``error: ...`` on
stderr, exit status 2), e.g. ``python -m tensorslim.cli.search --data digits --trials 4``.
"""

from __future__ import annotations

import json

import click
import torch

from .._interrupt import run_command
from ..errors import TensorSlimError
from ..report import write_report
from ..search.run import Fidelity, Pruner, search
from ._common import int_option, words


def _floats(text: str | None, what: str) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise TensorSlimError(f"{what} {text!r}: expected numbers separated by commas") from None


def _batches(text: str, what: str) -> int | None:
    if text.lower() in ("none", "all", "0"):
        return None
    return int_option(text, what, "expected a positive integer or 'all'", 0)


@click.command("search")
@click.option("--data", "dataset", required=True,
              help="Dataset name (fashion-mnist, cifar10, cifar100, imagenette...).")
@click.option("--data-dir", default=None, help="Where the dataset files are.")
@click.option("--image-size", type=int, default=None, help="Imagenette image size (64-160).")
@click.option("--space", "space_file", default=None, help="Search space JSON (keys of SearchSpace; default: sized "
              "for the input).")
@click.option("--rank-mode", type=click.Choice(["auto", "fixed"]), default="auto", show_default=True,
              help="auto: TCL ranks are searched; fixed: --fixed-ranks.")
@click.option("--fixed-ranks", default=None, help="Rank fractions of the head input's C,H,W modes, e.g. 0.5,0.5,0.5.")
@click.option("--objectives", default="accuracy,params,macs", show_default=True,
              help="Comma-separated among accuracy, params, macs, latency.")
@click.option("--trials", "n_trials", type=int, default=30, show_default=True,
              help="Finished trials the study should hold (over all workers).")
@click.option("--storage", default=None, help="postgresql://... | mysql://... | sqlite:///FILE | journal:///FILE | "
              "FILE (default: OUT/study.journal).")
@click.option("--study", default=None, help="Study name shared by the workers (default: tensorslim-DATA-MODE).")
@click.option("--strategy", default="nsga2", show_default=True, help="nsga2, tpe, random or package.module:factory.")
@click.option("--population", type=int, default=None, help="NSGA-II population size.")
@click.option("--out", default=None, metavar="DIR",
              help="Output directory (Pareto model directories, pareto.json, report).  [required unless --worker-only]")
@click.option("--epochs", type=int, default=2, show_default=True, help="Low-fidelity epochs per trial.")
@click.option("--max-batches", default="50", show_default=True, help="Low-fidelity batches per epoch ('all').")
@click.option("--val-batches", default="4", show_default=True, help="Validation batches of 500 per trial ('all').")
@click.option("--batch-size", type=int, default=128, show_default=True)
@click.option("--final-epochs", type=int, default=10, show_default=True, help="Full-fidelity epochs of the finalists.")
@click.option("--final-max-batches", default="all", show_default=True, help="Batches per final epoch ('all').")
@click.option("--augment/--no-augment", "augment", default=None,
              help="Augment the training images of the trials (default: the dataset's standard choice).")
@click.option("--final-augment/--no-final-augment", "final_augment", default=None,
              help="Augment the training images of the finalists and baselines (default: the dataset's standard "
                   "choice; Fashion-MNIST: none).")
@click.option("--final-top", type=int, default=4, show_default=True, help="At most this many Pareto models retrained.")
@click.option("--baselines", default="mobilenetv2,resnet20", show_default=True,
              help="Reference models trained on the same final budget ('' for none).")
@click.option("--worker-only", is_flag=True, help="Only run trials (extra machines); no retraining or report.")
@click.option("--no-prune", is_flag=True, help="Never prune a trial early.")
@click.option("--prune-warmup", type=click.IntRange(min=0), default=1, show_default=True,
              help="Epochs before a trial may be pruned as dominated (near-chance trials are pruned from epoch 1).")
@click.option("--no-report", is_flag=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--heartbeat", type=int, default=30, show_default=True, help="Seconds between heartbeats.")
@click.option("--grace", type=int, default=None, help="Seconds without heartbeat before a trial is retried "
              "(default 2x heartbeat).")
@click.option("--threads", type=int, default=None, help="torch threads for this worker.")
@click.option("--time-budget", default=None,
              help="Start no new trial after this long (e.g. 30m, 2h); the front is made of the trials done.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def search_cmd(dataset: str, data_dir: str | None, image_size: int | None, space_file: str | None, rank_mode: str,
               fixed_ranks: str | None, objectives: str, n_trials: int, storage: str | None, study: str | None,
               strategy: str, population: int | None, out: str | None, epochs: int, max_batches: str,
               val_batches: str, batch_size: int, final_epochs: int, final_max_batches: str, augment: bool | None,
               final_augment: bool | None, final_top: int, baselines: str, worker_only: bool, no_prune: bool,
               prune_warmup: int, no_report: bool, seed: int, heartbeat: int,
               grace: int | None, threads: int | None, time_budget: str | None, as_json: bool) -> None:
    """Multi-objective architecture search with TCL heads; several workers may share one --storage/--study."""
    if threads:
        torch.set_num_threads(threads)
    if not worker_only and out is None:
        raise TensorSlimError("give --out DIR (or --worker-only with --storage for an extra worker)")
    options = {"population_size": population} if population and strategy == "nsga2" else {}
    log = (lambda m: click.echo(m, err=True)) if as_json else click.echo
    low = Fidelity(epochs=epochs, max_batches=_batches(max_batches, "--max-batches"),
                   val_batches=_batches(val_batches, "--val-batches"), batch_size=batch_size, augment=augment)
    final = Fidelity(epochs=final_epochs, max_batches=_batches(final_max_batches, "--final-max-batches"),
                     val_batches=None, batch_size=batch_size, augment=final_augment)
    result = search(dataset, space=space_file, rank_mode=rank_mode, fixed_ranks=_floats(fixed_ranks, "--fixed-ranks"),
                    objectives=words(objectives), n_trials=n_trials, storage=storage, study=study, strategy=strategy,
                    strategy_options=options, out=out, data_dir=data_dir, image_size=image_size,
                    low_fidelity=low, final=final, final_top=final_top, baselines=words(baselines),
                    pruner=None if no_prune else Pruner(warmup_epochs=prune_warmup), retrain=not worker_only,
                    report=None if no_report else write_report, seed=seed,
                    heartbeat_interval=heartbeat, grace_period=grace, time_budget=time_budget, log=log)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    click.echo(f"study {result.study}: {result.counts}; hypervolume {result.hypervolume:.4f}")
    for p in result.pareto:
        acc = p["test_accuracy"] if "test_accuracy" in p else p["low_fidelity"]["accuracy"]
        shown = "diverged" if acc is None else f"{acc:6.2f}%"
        click.echo(f"  trial {p['trial']:4d}  acc {shown}  {p['params']:>9,} params  "
                   f"{p['macs'] / 1e6:8.2f} M MACs  {p['summary']}")
    for b in result.baselines:
        if b["test_accuracy"] is None:
            click.echo(f"  {b['model']:>10}  training diverged: {b['diverged']}")
            continue
        click.echo(f"  {b['model']:>10}  acc {b['test_accuracy']:6.2f}%  {b['params']:>9,} params  "
                   f"{b['macs'] / 1e6:8.2f} M MACs")


def main(argv: list[str] | None = None) -> None:
    """Run :func:`search_cmd` standalone with the CLI's conventions (errors and Ctrl-C as ``tensorslim``)."""
    run_command(search_cmd, argv, "python -m tensorslim.cli.search")


if __name__ == "__main__":  # pragma: no cover
    main()
