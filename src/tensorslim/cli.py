"""The ``tensorslim`` command: a thin front end over the Python API.

Every command turns a user-input problem into one line on stderr (``error: ...``) and exit status 2, never a
traceback; output files and directories are written atomically, so a failed command leaves nothing behind.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from ._cli_plan import build_plan, plan_options
from .errors import TensorSlimError


def _json_option(text: str | None, what: str) -> dict:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise TensorSlimError(f"{what}: not valid JSON ({err.msg})") from None
    if not isinstance(value, dict):
        raise TensorSlimError(f"{what}: expected a JSON object")
    return value


def _default_dataset(data_dir: str | None) -> str:
    """Fashion-MNIST where it is installed, else scikit-learn's digits (always there)."""
    from . import data

    found = {s.name for s in data.available(data_dir) if s.found}
    return "fashion-mnist" if "fashion-mnist" in found else "digits"


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="tensorslim")
def cli() -> None:
    """Compress CNNs with tensor methods (SVD, CP, Tucker-2, Tensor-Train, TCL/TRL) for edge devices.

    Files never run code: a model.json, plan or study may only name a built-in model unless the command is
    given --trust-code."""
    from .trust import set_trusted

    set_trusted(False)  # each invocation starts untrusted; the command's own --trust-code sets it




@cli.command("data")
@click.option("--data-dir", type=click.Path(), help="Root folder searched first for dataset files.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def data_cmd(data_dir: str | None, as_json: bool) -> None:
    """List every dataset with where it was found, or why not."""
    from . import data

    rows = data.available(data_dir)
    if as_json:
        click.echo(json.dumps([r.__dict__ if hasattr(r, "__dict__") else r._asdict() for r in rows], indent=2))
        return
    for r in rows:
        where = r.location if r.found else f"not found: {r.detail}"
        click.echo(f"{r.name:<14} {'yes' if r.found else 'no ':<4} {where}")


@cli.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def models_cmd(as_json: bool) -> None:
    """List the built-in models with their default input shape, params and MACs."""
    from . import models

    rows = models.summary_rows()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'model':<12} {'input':<10} {'params':>12} {'MACs':>15}  description")
    for r in rows:
        shape = "x".join(str(d) for d in r["input_shape"])
        click.echo(f"{r['name']:<12} {shape:<10} {r['params']:>12,} {r['macs']:>15,}  {r['description']}")


@cli.command("train")
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
    from .workflows import train_model

    train_model(model, dataset or _default_dataset(data_dir), out, data_dir=data_dir, epochs=epochs,
                batch_size=batch_size, optimizer=optimizer, lr=lr, weight_decay=weight_decay,
                label_smoothing=label_smoothing, seed=seed, augment=augment,
                model_kwargs=_json_option(model_kwargs, "--model-kwargs"))


@cli.command("evaluate")
@click.argument("path", type=click.Path())
@click.option("--data", "dataset", default=None, help="Dataset (default: the one the model was trained on).")
@click.option("--data-dir", type=click.Path())
@click.option("--split", type=click.Choice(["train", "val", "test"]), default="test", show_default=True)
@click.option("--record/--no-record", default=True, show_default=True, help="Store the accuracy in metrics.json.")
@click.option("--force", is_flag=True,
              help="Evaluate on a dataset whose input shape or number of classes differ from the model's.")
def evaluate_cmd(path: str, dataset: str | None, data_dir: str | None, split: str, record: bool, force: bool) -> None:
    """Evaluate a model directory on a dataset split (recorded per dataset in metrics.json)."""
    from .workflows import evaluate_model

    result = evaluate_model(path, dataset, split=split, data_dir=data_dir, record=record, force=force)
    click.echo(f"{result['dataset']} {split}: accuracy {result['accuracy']:.2f}%  loss {result['loss']:.4f}  "
               f"({result['samples']} images)")


@cli.command("inspect")
@click.argument("target")
@click.option("--input-shape", default=None, help="C,H,W (default: the model's own).")
@click.option("--weights", type=click.Path(), default=None, help="Weights for a factory target (.safetensors/.pt).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def inspect_cmd(target: str, input_shape: str | None, weights: str | None, as_json: bool) -> None:
    """Per-layer params, MACs, weight and activation bytes of a model directory, built-in name or factory."""
    from .workflows import inspect_model

    report = inspect_model(target, input_shape=input_shape, weights=weights)
    click.echo(json.dumps(report["json"], indent=2) if as_json else report["text"])


@cli.command("compress")
@click.argument("path", type=click.Path())
@plan_options
@click.option("--data-dir", type=click.Path())
@click.option("--evaluate/--no-evaluate", default=True, show_default=True,
              help="Measure test accuracy before fine-tuning when the model's dataset is here.")
@click.option("--warn-error", type=float, default=0.3, show_default=True,
              help="Warn for each layer whose relative output error on real data (256 training images of the "
                   "model's dataset, when here) is above this.")
@click.option("--dry-run", is_flag=True,
              help="Print the predicted params and MACs (analytic) and the per-layer output errors; write nothing.")
@click.option("--out", type=click.Path(), help="Model directory to write (required unless --dry-run).")
def compress_cmd(path: str, plan_file: str | None, method: str | None, rank: str | None, ratio: float | None,
                 macs_ratio: float | None, energy: float | None, vbmf: bool, weakened: bool, layers: str,
                 exclude: tuple[str, ...], algorithm: str | None, form: str | None, data_dir: str | None,
                 evaluate: bool, warn_error: float, dry_run: bool, out: str | None) -> None:
    """Factorize the layers of the model directory PATH and write the compressed model to OUT."""
    from .workflows import compress_model

    if out is None and not dry_run:
        raise TensorSlimError("compress needs --out DIR (or --dry-run)")
    plan = build_plan(plan_file, method, rank, ratio, macs_ratio, energy, vbmf, weakened, layers, exclude, algorithm,
                      form)
    compress_model(path, plan, out, evaluate_on="auto" if evaluate else None, data_dir=data_dir,
                   warn_error=warn_error, dry_run=dry_run, log=click.echo, warn=lambda msg: click.echo(msg, err=True))


@cli.command("export")
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
    from .export import export_target
    from .resolve import parse_shape

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


def _int_list(text: str, what: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise TensorSlimError(f"{what} {text!r}: expected integers separated by commas") from None
    return values


@cli.command("bench")
@click.argument("target")
@click.option("--batch", "batches", default="1,32", show_default=True, help="Batch sizes, comma-separated.")
@click.option("--threads", type=click.IntRange(1), default=1, show_default=True,
              help="Intra-op threads. 1 is the setting of one small edge core and the one whose ratios follow the "
                   "MAC reduction; with several threads, small layers are bound by thread start-up, not arithmetic, "
                   "so speedups shrink (try --threads 2 to see it).")
@click.option("--runtime", type=click.Choice(["ort", "torch"]), default="ort", show_default=True)
@click.option("--against", default=None, help="A second model (directory or .onnx), timed in alternation.")
@click.option("--repeats", type=int, default=30, show_default=True)
@click.option("--warmup", type=int, default=5, show_default=True)
@click.option("--input-shape", default=None, help="C,H,W for a built-in name (default: its own).")
@click.option("--save", "save_dir", type=click.Path(), default=None,
              help="Model directory to store bench.json in (read by `tensorslim report`).")
@click.option("--json", "as_json", is_flag=True)
def bench_cmd(target: str, batches: str, threads: int, runtime: str, against: str | None, repeats: int,
              warmup: int, input_shape: str | None, save_dir: str | None, as_json: bool) -> None:
    """Latency of TARGET (model directory, name or .onnx): median with min–max, memory, size; ratios with --against."""
    from . import _atomic, modeldir
    from .export import benchmark, format_table
    from .resolve import open_model, parse_shape

    def resolve(t: str | None):
        if t is None or t.endswith(".onnx") or modeldir.is_model_dir(t):
            return t
        return open_model(t, input_shape=parse_shape(input_shape))[0]

    result = benchmark(resolve(target), batch_sizes=_int_list(batches, "--batch"), threads=threads, runtime=runtime,
                       against=resolve(against), warmup=warmup, repeats=repeats, input_shape=parse_shape(input_shape))
    click.echo(json.dumps(result.to_dict(), indent=2) if as_json else format_table(result))
    if save_dir:
        _atomic.write_text(Path(save_dir) / "bench.json", json.dumps(result.to_dict(), indent=2) + "\n")


@cli.command("report")
@click.argument("dirs", nargs=-1, required=True, type=click.Path())
@click.option("--out", required=True, type=click.Path(), help="Report directory (index.html, report.json, PNGs).")
@click.option("--title", default="tensorslim report", show_default=True)
@click.option("--latency", is_flag=True,
              help="Time each model without a recorded latency in ONNX Runtime (batch 1, 1 thread) for the plots.")
def report_cmd(dirs: tuple[str, ...], out: str, title: str, latency: bool) -> None:
    """An HTML report (plots of accuracy vs params, MACs, latency; per-layer costs) over model directories."""
    from .report import write_report

    write_report(list(dirs), out, title=title, measure_latency=latency)
    click.echo(f"report: {Path(out) / 'index.html'}")


@cli.command("pick")
@click.argument("path", type=click.Path())
@click.option("--budget", required=True,
              help="e.g. 'macs<=0.3,drop<=0.5' or 'latency<=0.25,params<=0.1' (fractions of the original; drop in pt).")
@click.option("--json", "as_json", is_flag=True)
def pick_cmd(path: str, budget: str, as_json: bool) -> None:
    """The best model of an explore output directory PATH under a budget: the most accurate Pareto point that
    meets it (ties: fewest MACs); none: one line naming the closest compressed point."""
    from .explore import parse_budget, pick
    from .records import read_json_object

    doc = read_json_object(Path(path) / "pareto.json", "pareto.json (an explore output)")
    if doc.get("format") != "tensorslim-explore" or not isinstance(doc.get("points"), list):
        raise TensorSlimError(f"{path}/pareto.json: not an explore result (pick reads `tensorslim explore` output)")
    point = pick(doc["points"], parse_budget(budget))
    where = Path(path) / point["path"]
    if as_json:
        click.echo(json.dumps({**point, "dir": str(where)}, indent=2))
        return
    rel = point["relative"]
    figures = ", ".join(f"{k} {rel[k]:.3g}" for k in ("params", "macs", "memory", "latency", "drop") if k in rel)
    click.echo(f"{where}  ({point['id']}: test acc {point['accuracy']:.2f} %, {figures})")


@cli.command("demo")
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
    from .workflows import demo

    demo(dataset or _default_dataset(data_dir), Path(out), data_dir=data_dir, model=model, epochs=epochs,
         budget=budget, finetune_epochs=finetune_epochs)


def _register_stage_commands() -> None:
    """Commands whose code lives with their stage (finetune/, explore/, search/)."""
    from .explore.command import explore_cmd
    from .finetune.command import finetune_cmd
    from .search.command import search_cmd

    cli.add_command(finetune_cmd)
    cli.add_command(explore_cmd)
    cli.add_command(search_cmd)


_register_stage_commands()


def _trust_code(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    from .trust import set_trusted

    if value:
        set_trusted(True)


def _add_trust_option() -> None:
    """``--trust-code`` on every command: builders named in files (model.json, plans, studies) may then run
    user code; without it only built-in models are built (see ``tensorslim.trust``)."""
    for command in cli.commands.values():
        command.params.append(click.Option(
            ["--trust-code"], is_flag=True, expose_value=False, is_eager=True, callback=_trust_code,
            help="Allow model.json / plans / studies to name a user factory (module:function or file.py:function); "
                 "that code then runs. Off by default: only built-in models are built from files."))


_add_trust_option()


def main(argv: list[str] | None = None) -> None:
    from ._interrupt import run_command

    run_command(cli, argv, "tensorslim")  # errors: one line, exit 2; Ctrl-C: one line, exit 130, a rerun resumes


if __name__ == "__main__":
    main()
