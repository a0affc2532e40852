"""Whole compressed models against their originals in ONNX Runtime: measured speedup beside MAC reduction.

For each model (a trained model directory, or a built-in name with random weights: latency does not depend
on the weights) and each compression plan, the script compresses, exports both models to ONNX, checks the
export in ONNX Runtime against PyTorch, and times the pair in alternation at batch 1 and 32. The result is a
ratio table; JSON is written to benchmarks/results/models.json (benchmarks/render.py renders it into
BENCHMARKS.md).

*ORT rel err* is what :func:`tensorslim.export.export_onnx` checks: ``max |ORT - PyTorch| / max |PyTorch|``
over the logits, on random N(0, 1) inputs at batch 1 and 3 (``onnx_max_rel_err`` in the JSON). It is a
relative error, not an absolute difference.

EVBMF ranks come from the weights, so a VBMF plan on random weights measures nothing (EVBMF gives rank 0 on
random matrices); such rows are skipped with that reason.

    .venv/bin/python benchmarks/bench_models.py --convnet runs/baselines/convnet-fashion-mnist --threads 1
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from tensorslim import modeldir
from tensorslim.cost import profile
from tensorslim.export import benchmark, export_onnx
from tensorslim.surgery import compress_with_report

PLANS = {
    "svd fc (params 0.25)": {"rules": [{"layers": "classifier.*", "method": "svd", "ratio": 0.25}]},
    "cp3 power (MACs 0.25)": {"rules": [{"layers": "*", "method": "cp", "macs_ratio": 0.25,
                                          "options": {"algorithm": "power", "form": "cp3"}}]},
    "cp3 als (MACs 0.25)": {"rules": [{"layers": "*", "method": "cp", "macs_ratio": 0.25,
                                        "options": {"algorithm": "als", "form": "cp3"}}]},
    "cp4 als (MACs 0.25)": {"rules": [{"layers": "*", "method": "cp", "macs_ratio": 0.25,
                                        "options": {"algorithm": "als", "form": "cp4"}}]},
    "tucker2 (MACs 0.25)": {"rules": [{"layers": "*", "method": "tucker2", "macs_ratio": 0.25}]},
    "tucker2 vbmf": {"rules": [{"layers": "*", "method": "tucker2", "vbmf": True}]},
    "tt fc (params 0.25)": {"rules": [{"layers": "classifier.*", "method": "tt", "ratio": 0.25}]},
    "tcl head (params 0.25)": {"rules": [{"layers": "classifier.*", "method": "tcl", "ratio": 0.25}]},
    "mixed: tucker2 convs + svd fc": {"rules": [{"layers": "features.*", "method": "tucker2", "macs_ratio": 0.25},
                                                {"layers": "classifier.*", "method": "svd", "ratio": 0.25}]},
}


def load_target(target: str) -> tuple[torch.nn.Module, tuple[int, ...], str]:
    if modeldir.is_model_dir(target):
        meta = modeldir.read_meta(target)
        return modeldir.load(target), tuple(meta["input_shape"]), f"{meta['spec']['builder']} (trained)"
    torch.manual_seed(0)
    from tensorslim.models import default_input_shape

    shape = default_input_shape(target)
    return modeldir.build({"builder": target, "kwargs": {}}, shape).eval(), shape, f"{target} (random weights)"


RANDOM_VBMF_REASON = ("EVBMF ranks need trained weights: on random weights EVBMF gives rank 0 "
                      "(formerly clamped to rank 1, a meaningless 76x row)")


def header(threads: int, repeats: int) -> list[str]:
    """The two header lines of the printed table (also used by benchmarks/render.py)."""
    return [f"ORT, {threads} thread(s), {repeats} alternating rounds; speedup = t_dense / t_compressed; "
            "ORT rel err = max|ORT - PyTorch| / max|PyTorch|, random inputs at batch 1 and 3",
            f"{'model':<26} {'plan':<32} {'lay':>3} {'params×':>7} {'MACs×':>7} {'b1 ×':>7} {'b32 ×':>7} "
            f"{'ORT rel err':>11}"]


def format_row(row: dict) -> str:
    """One printed line of a result row (also used by benchmarks/render.py)."""
    if "error" in row:
        return f"{row['model']:<26} {row['plan']:<32} FAILED: {row['error']}"
    if "skipped" in row:
        why = "; ".join(row["skipped"])
        return f"{row['model']:<26} {row['plan']:<32} skipped: {why}"
    return (f"{row['model']:<26} {row['plan']:<32} {row['layers']:>3} {row['params_x']:>7.2f} {row['macs_x']:>7.2f} "
            f"{row['speedup_b1']:>7.2f} {row['speedup_b32']:>7.2f} {row['onnx_max_rel_err']:>11.1e}")


def run(targets: list[str], plans: list[str], threads: int, repeats: int, work: Path) -> list[dict]:
    rows = []
    for target in targets:
        model, shape, label = load_target(target)
        dense = profile(model, shape).total
        base_onnx = work / f"{Path(target).name}-dense.onnx"
        export_onnx(model, base_onnx, shape)
        for name in plans:
            if "random weights" in label and any(r.get("vbmf") for r in PLANS[name]["rules"]):
                rows.append({"model": label, "plan": name, "skipped": [RANDOM_VBMF_REASON]})
                print(format_row(rows[-1]), flush=True)
                continue
            t0 = time.perf_counter()
            try:
                small, report = compress_with_report(model, PLANS[name], shape)
            except Exception as err:  # noqa: BLE001 - a failing plan is a row of the table, not the end of the run
                rows.append({"model": label, "plan": name,
                             "error": f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"})
                print(format_row(rows[-1]), flush=True)
                continue
            if not report.layers:
                rows.append({"model": label, "plan": name, "skipped": [s["reason"] for s in report.skipped][:2]})
                print(format_row(rows[-1]), flush=True)
                continue
            seconds = time.perf_counter() - t0
            cost = profile(small, shape).total
            path = work / f"{Path(target).name}-{len(rows)}.onnx"
            exported = export_onnx(small, path, shape)
            bench = benchmark(str(path), against=str(base_onnx), batch_sizes=(1, 32), threads=threads,
                              repeats=repeats, labels=("compressed", "dense"))
            speed = {r.batch: r.speedup for r in bench.comparison}
            row = {"model": label, "plan": name, "layers": len(report.layers), "decompose_s": round(seconds, 2),
                   "params_x": dense.params / cost.params, "macs_x": dense.macs / cost.macs,
                   "speedup_b1": speed[1], "speedup_b32": speed[32], "onnx_max_rel_err": exported.max_rel_err,
                   "ops": dict(exported.ops)}
            rows.append(row)
            if report.skipped:
                row["skipped_layers"] = [f"{s['name']}: {s['reason']}" for s in report.skipped]
            print(format_row(row), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--convnet", default="convnet", help="convnet model directory (default: random weights)")
    parser.add_argument("--resnet", default="resnet20", help="resnet20 model directory (default: random weights)")
    parser.add_argument("--plans", nargs="*", default=list(PLANS), choices=list(PLANS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/models.json"))
    args = parser.parse_args(argv)
    torch.set_flush_denormal(True)
    torch.set_num_threads(args.threads)
    print("\n".join(header(args.threads, args.repeats)))
    with tempfile.TemporaryDirectory() as work:
        rows = run([args.convnet, args.resnet], args.plans, args.threads, args.repeats, Path(work))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    command = "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_models.py " + " ".join(argv or sys.argv[1:])
    args.out.write_text(json.dumps({"threads": args.threads, "repeats": args.repeats, "command": command.strip(),
                                    "rows": rows}, indent=2) + "\n")
    print(f"JSON: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
