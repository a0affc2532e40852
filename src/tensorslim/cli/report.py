"""``tensorslim report DIR... --out OUT``: report.json, PNG plots and a self-contained index.html."""

from __future__ import annotations

from pathlib import Path

import click

from ..report import write_report


@click.command("report")
@click.argument("dirs", nargs=-1, required=True, type=click.Path())
@click.option("--out", required=True, type=click.Path(), help="Report directory (index.html, report.json, PNGs).")
@click.option("--title", default="tensorslim report", show_default=True)
@click.option("--latency", is_flag=True,
              help="Time each model without a recorded latency in ONNX Runtime (batch 1, 1 thread) for the plots.")
def report_cmd(dirs: tuple[str, ...], out: str, title: str, latency: bool) -> None:
    """An HTML report (plots of accuracy vs params, MACs, latency; per-layer costs) over model directories."""
    write_report(list(dirs), out, title=title, measure_latency=latency)
    click.echo(f"report: {Path(out) / 'index.html'}")
