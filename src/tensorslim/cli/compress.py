"""``tensorslim compress DIR (--plan F | --method M RANK-SPEC) (--out DIR | --dry-run)``."""

from __future__ import annotations

import click

from ..errors import TensorSlimError
from ..methods import targets
from ..workflows import compress_model
from ._common import build_plan, plan_options


@click.command("compress")
@click.argument("path", type=click.Path())
@plan_options
@click.option("--data-dir", type=click.Path())
@click.option("--evaluate/--no-evaluate", default=True, show_default=True,
              help="Measure test accuracy before fine-tuning when the model's dataset is here.")
@click.option("--warn-error", type=float, default=0.3, show_default=True,
              help="Warn for each layer whose relative output error on real data (256 training images of the "
                   "model's dataset, when here) is above this.")
@click.option("--target", type=click.Choice(targets.names()), default=None,
              help="The deployment target whose channel multiple the chosen ranks are rounded to (ort-x86 16, "
                   "xnnpack-arm 8, none: no rounding); recorded in model.json. Default: the plan file's target, "
                   "else this machine's (ort-x86 on x86, ort-arm on ARM64).")
@click.option("--dry-run", is_flag=True,
              help="Print the predicted params and MACs (analytic) and the per-layer output errors; write nothing.")
@click.option("--out", type=click.Path(), help="Model directory to write (required unless --dry-run).")
def compress_cmd(path: str, plan_file: str | None, method: str | None, rank: str | None, ratio: float | None,
                 macs_ratio: float | None, energy: float | None, vbmf: bool, weakened: bool, layers: str,
                 exclude: tuple[str, ...], algorithm: str | None, form: str | None, data_dir: str | None,
                 evaluate: bool, warn_error: float, target: str | None, dry_run: bool, out: str | None) -> None:
    """Factorize the layers of the model directory PATH and write the compressed model to OUT."""
    if out is None and not dry_run:
        raise TensorSlimError("compress needs --out DIR (or --dry-run)")
    plan = build_plan(plan_file, method, rank, ratio, macs_ratio, energy, vbmf, weakened, layers, exclude, algorithm,
                      form)
    if target is not None:
        plan = plan.with_target(target)
    compress_model(path, plan, out, evaluate_on="auto" if evaluate else None, data_dir=data_dir,
                   warn_error=warn_error, dry_run=dry_run, log=click.echo, warn=lambda msg: click.echo(msg, err=True))
