"""``tensorslim bench TARGET [--against X]``: latency, memory and size; ratios timed in alternation."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .. import _atomic, modeldir
from ..export import benchmark, format_table
from ..resolve import open_model, parse_shape
from ._common import int_list


@click.command("bench")
@click.argument("target")
@click.option("--batch", "batches", default="1,32", show_default=True, help="Batch sizes, comma-separated.")
@click.option("--threads", type=click.IntRange(1), default=1, show_default=True,
              help="Intra-op threads. 1 is the setting of one small edge core and the one whose ratios follow the "
                   "MAC reduction; with several threads, small layers are bound by thread start-up, not arithmetic, "
                   "so speedups shrink (try --threads 2 to see it).")
@click.option("--runtime", type=click.Choice(["ort", "torch", "executorch"]), default="ort", show_default=True,
              help="executorch: ExecuTorch with XNNPACK (pip install 'tensorslim[edge]'); takes .pte files.")
@click.option("--against", default=None, help="A second model (directory, .onnx or .pte), timed in alternation.")
@click.option("--repeats", type=int, default=30, show_default=True)
@click.option("--warmup", type=int, default=5, show_default=True)
@click.option("--input-shape", default=None, help="C,H,W for a built-in name (default: its own).")
@click.option("--save", "save_dir", type=click.Path(), default=None,
              help="Model directory to store bench.json in (read by `tensorslim report`).")
@click.option("--json", "as_json", is_flag=True)
def bench_cmd(target: str, batches: str, threads: int, runtime: str, against: str | None, repeats: int,
              warmup: int, input_shape: str | None, save_dir: str | None, as_json: bool) -> None:
    """Latency of TARGET (model directory, name or .onnx): median with min–max, memory, size; ratios with --against."""

    def resolve(t: str | None):
        if t is None or t.endswith((".onnx", ".pte")) or modeldir.is_model_dir(t):
            return t
        return open_model(t, input_shape=parse_shape(input_shape))[0]

    result = benchmark(resolve(target), batch_sizes=int_list(batches, "--batch"), threads=threads, runtime=runtime,
                       against=resolve(against), warmup=warmup, repeats=repeats, input_shape=parse_shape(input_shape))
    click.echo(json.dumps(result.to_dict(), indent=2) if as_json else format_table(result))
    if save_dir:
        _atomic.write_text(Path(save_dir) / "bench.json", json.dumps(result.to_dict(), indent=2) + "\n")
