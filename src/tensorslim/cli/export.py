"""``tensorslim export TARGET --out F.onnx``: ONNX export verified against PyTorch in ONNX Runtime; ``--format pte``:
an ExecuTorch program lowered to XNNPACK, verified in executorch.runtime."""

from __future__ import annotations

import click

from ..errors import TensorSlimError
from ..export import export_target
from ..export.realise import REALISE_CHOICES
from ..methods import targets
from ..resolve import parse_shape


@click.command("export")
@click.argument("target")
@click.option("--out", required=True, type=click.Path(), help="The .onnx (or .pte) file to write.")
@click.option("--format", "fmt", type=click.Choice(["onnx", "pte"]), default="onnx", show_default=True,
              help="pte: an ExecuTorch program lowered to XNNPACK, for phones (fixed batch, 1 unless --batch N; "
                   "needs pip install 'tensorslim[edge]').")
@click.option("--opset", type=int, default=None, help="ONNX opset (default: the exporter's).")
@click.option("--batch", default="dynamic", show_default=True, help="'dynamic' or a fixed batch size.")
@click.option("--input-shape", default=None, help="C,H,W (default: the model's own).")
@click.option("--weights", type=click.Path(), default=None, help="Weights for a factory target.")
@click.option("--data", "dataset", default="auto", show_default=True,
              help="Also verify on real images of this dataset ('auto': the model's own; 'none' to skip).")
@click.option("--data-dir", type=click.Path())
@click.option("--rtol", type=float, default=None,
              help="Largest accepted relative error against PyTorch (default 1e-4; int8 .pte: 0.1, against the "
                   "fake-quantized PyTorch module, see tensorslim.export.quantize.PTE_RTOL).")
@click.option("--exporter", type=click.Choice(["auto", "torchscript", "dynamo"]), default="auto", show_default=True)
@click.option("--target", "deploy", type=click.Choice(targets.names()), default=None,
              help="ONNX: the deployment target whose graph passes the file gets (ort-x86: channel padding to 16); "
                   "default: the target the model was compressed for, else this machine's (ort-x86 on x86).")
@click.option("--realise", type=click.Choice(REALISE_CHOICES), default="as_exported", show_default=True,
              help="ONNX: the form of each CP layer in the file; fastest: every exact form timed on this CPU "
                   "(ONNX Runtime, 1 thread), the fastest kept.")
@click.option("--int8", is_flag=True, help="Quantize to int8 with --calibrate: ONNX Runtime static (QDQ, "
              "per-channel weights) for onnx, PT2E with XNNPACKQuantizer (per-channel weights) for pte.")
@click.option("--calibrate", default=None, help="--int8: calibrate on training images of this dataset; the int8 "
              "file's test accuracy on it is measured (in ONNX Runtime or executorch.runtime) and recorded in a "
              "model directory's metrics.json.")
@click.option("--calibrate-samples", type=int, default=512, show_default=True, help="--int8: calibration images.")
@click.option("--keep-float", default="0", show_default=True,
              help="--int8 onnx: the first N compute nodes (Conv/Gemm/MatMul) stay in float, or comma-separated "
                   "node names, or 'auto': 0-4 leading nodes, each file timed against fp32 on this CPU (ONNX "
                   "Runtime, 1 thread, batch 1 and 32) and the fastest kept; the choice is recorded.")
@click.option("--full-range", is_flag=True,
              help="--int8 onnx: 8-bit weights instead of 7. Only for CPUs with VNNI (or Arm): x86 CPUs without "
                   "VNNI saturate on full-range u8 x s8 products and lose accuracy (see "
                   "tensorslim.export.quantize.REDUCE_RANGE).")
def export_cmd(target: str, out: str, fmt: str, opset: int | None, batch: str, input_shape: str | None,
               weights: str | None, dataset: str, data_dir: str | None, rtol: float | None, exporter: str,
               deploy: str | None, realise: str, int8: bool, calibrate: str | None, calibrate_samples: int,
               keep_float: str, full_range: bool) -> None:
    """Export TARGET (model directory or name) to ONNX and verify it against PyTorch in ONNX Runtime (or, with
    --format pte, to an ExecuTorch program verified in executorch.runtime)."""
    if batch != "dynamic":
        try:
            batch = int(batch)
        except ValueError:
            raise TensorSlimError(f"--batch {batch!r}: expected 'dynamic' or a positive integer") from None
    fp32_rtol = 1e-4 if rtol is None else rtol
    if int8 != bool(calibrate):
        raise TensorSlimError("--int8 and --calibrate DATASET go together (int8 is calibrated on real images)")
    keep = _keep_float(keep_float)
    if keep != 0 and (not int8 or fmt != "onnx"):
        raise TensorSlimError("--keep-float is for --int8 with --format onnx")
    if full_range and (not int8 or fmt != "onnx"):
        raise TensorSlimError("--full-range is for --int8 with --format onnx")
    if fmt == "pte":
        if deploy is not None or realise != "as_exported":
            raise TensorSlimError("--target and --realise are for --format onnx (they rewrite the ONNX file)")
        if int8:
            from ..export.quantize import PTE_RTOL, export_pte_int8

            done = export_pte_int8(target, out, calibrate, samples=calibrate_samples, data_dir=data_dir,
                                   evaluate={"auto": "auto", "none": None}.get(dataset, dataset),
                                   input_shape=parse_shape(input_shape), weights=weights,
                                   batch=1 if batch == "dynamic" else batch,
                                   rtol=PTE_RTOL if rtol is None else rtol)
            click.echo(done.summary())
            return
        from ..export.pte import export_pte_target

        result = export_pte_target(target, out, input_shape=parse_shape(input_shape), weights=weights,
                                   dataset=None if dataset == "none" else dataset, data_dir=data_dir,
                                   batch=1 if batch == "dynamic" else batch, rtol=fp32_rtol)
        click.echo(result.summary())
        for note in result.notes:
            click.echo(f"note: {note}")
        return
    if int8:
        from ..export.quantize import export_int8

        done = export_int8(target, out, calibrate, samples=calibrate_samples, data_dir=data_dir,
                           evaluate={"auto": "auto", "none": None}.get(dataset, dataset),
                           input_shape=parse_shape(input_shape), weights=weights, opset=opset, batch=batch,
                           rtol=fp32_rtol, exporter=exporter, target=deploy, realise=realise, keep_float=keep,
                           reduce_range=not full_range, log=click.echo if keep == "auto" else None)
        click.echo(done.summary())
        return
    result = export_target(target, out, input_shape=parse_shape(input_shape), weights=weights,
                           dataset=None if dataset == "none" else dataset, data_dir=data_dir, opset=opset,
                           batch=batch, rtol=fp32_rtol, exporter=exporter, target=deploy, realise=realise)
    click.echo(result.summary())
    for note in result.notes:
        click.echo(f"note: {note}")
    if result.reconstructs_weights:
        click.echo("warning: the graph rebuilds a weight from factors at run time", err=True)


def _keep_float(text: str) -> int | str | list[str]:
    """--keep-float: 'auto', a count, or comma-separated node names."""
    text = text.strip()
    if text == "auto":
        return text
    if text.isdigit():
        return int(text)
    names = [n.strip() for n in text.split(",")]
    if not all(names):
        raise TensorSlimError(f"--keep-float {text!r}: expected 'auto', a count or comma-separated node names")
    return names
