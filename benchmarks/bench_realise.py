"""How much of the MAC reduction the EXPORTED FILE realises: CP-3 and Tucker-2 on 3×3 convs, plain 1-thread ORT.

Layers: 3×3 convolutions C→C (padding 1) at 64@32×32, 128@16×16, 256@8×8, each at a MAC reduction of 2, 4 and 8.
Ranks come from tensorslim's own rule for the default target (``compress`` with ``macs_ratio`` 1/2, 1/4, 1/8 and
``target="ort-x86"``: ranks rounded to multiples of 16 within the budget). Each factorized layer is exported with
``tensorslim.export.export_onnx`` as a user gets it: (a) ``cp3`` / ``tucker2`` with the default passes
(``pad_channels`` for ort-x86, applied to the file) and (b) for CP-3 also ``realise="fastest"`` (the exact
realisation the exporter's micro-benchmark picks on this CPU, written into the file). The files and the dense
layer's file are timed in ALTERNATION in plain 1-thread ONNX Runtime sessions on the files as written
(``tensorslim.export.benchmark`` on the .onnx paths) at batch 1 and 32.

Columns: MAC reduction (dense MACs / the file's MACs, counted from the graph), realised speedup (median of the
paired ratios t_dense / t_file), efficiency = speedup / MAC reduction (goal >= 0.8), the file's achieved GFLOP/s
and its share of the measured 1-thread GEMM peak of this CPU (``tensorslim.export.roofline``), and the dense
layer's share for comparison.

With ``--runtime executorch`` the same layers go to the phone runtime instead: ranks from the same rule for the
``xnnpack-x86`` target (multiples of 16), each layer exported with ``tensorslim.export.export_pte`` (XNNPACK
partitioner, verified in ``executorch.runtime``; one program per batch size) and timed in alternation with the
dense layer's program (``benchmark(runtime="executorch")``); MACs are counted from the module
(``tensorslim.cost``), and the GEMM peak is the same measured 1-thread peak of this CPU.

Run: ``.venv/bin/python benchmarks/bench_realise.py [--repeats 30] [--quick] [--runtime executorch]``; JSON goes
to ``benchmarks/results/realise.json`` (``realise-pte.json`` for ExecuTorch).
Timings on a shared machine are noisy: ratios only, never absolute ms across runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

import tensorslim
from tensorslim.export import benchmark, export_onnx, export_pte
from tensorslim.export.hardware import machine
from tensorslim.export.realise import file_metadata
from tensorslim.export.roofline import gemm_peak_gflops, gflops, onnx_macs

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_layers import init_like_trained  # noqa: E402 - the same trained-like weights as the layer benchmark

CONVS = [(64, 32), (128, 16), (256, 8)]
REDUCTIONS = (2, 4, 8)
BATCHES = (1, 32)
TARGET = "ort-x86"
PTE_TARGET = "xnnpack-x86"


def cases(convs: list[tuple[int, int]], reductions: tuple[int, ...], target: str = TARGET) -> list[dict[str, Any]]:
    out = []
    for c, hw in convs:
        dense = init_like_trained(nn.Sequential(nn.Conv2d(c, c, 3, padding=1)), c)
        for red in reductions:
            for method in ("cp", "tucker2"):
                rule = {"layers": "0", "method": method, "macs_ratio": 1 / red, "options": {"form": "cp3"}
                        if method == "cp" else {}}
                model, report = tensorslim.surgery.compress_with_report(dense, {"rules": [rule]}, (c, hw, hw),
                                                                        target=target)
                if not report.layers:
                    continue
                model = init_like_trained(model, 7 * c + red)
                out.append({"layer": f"conv3x3 {c}->{c} @{hw}x{hw}", "c": c, "hw": hw, "target_reduction": red,
                            "method": "cp3" if method == "cp" else "tucker2", "rank": report.layers[0]["rank"],
                            "model": model, "dense": dense})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="one size, 4x only, 8 repeats: a smoke run")
    parser.add_argument("--runtime", choices=("ort", "executorch"), default="ort")
    parser.add_argument("--out", type=Path, default=None,
                        help="default: benchmarks/results/realise.json (realise-pte.json for executorch)")
    args = parser.parse_args(argv)
    if args.out is None:
        name = "realise.json" if args.runtime == "ort" else "realise-pte.json"
        args.out = Path(__file__).parent / "results" / name
    convs, reductions, repeats = CONVS, REDUCTIONS, args.repeats
    if args.quick:
        convs, reductions, repeats = CONVS[1:2], (4,), min(repeats, 8)
    torch.set_flush_denormal(True)
    peak = gemm_peak_gflops(1)
    if args.runtime == "executorch":
        return main_pte(args, convs, reductions, repeats, peak)
    meta = {**machine(), "threads": 1, "repeats": repeats, "warmup": args.warmup, "batches": list(BATCHES),
            "target": TARGET, "gemm_peak_gflops": peak, "quick": args.quick}
    print(f"# bench_realise: {meta['cpu']}, onnxruntime {meta['onnxruntime']}; 1 thread, {repeats} alternating "
          f"rounds; target {TARGET}; measured GEMM peak {peak:.1f} GFLOP/s")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-realise-") as tmp:
        dense_files: dict[int, Path] = {}
        for k, case in enumerate(cases(convs, reductions)):
            c, hw = case["c"], case["hw"]
            shape = (c, hw, hw)
            if c not in dense_files:
                dense_files[c] = Path(tmp) / f"dense{c}.onnx"
                export_onnx(case["dense"], dense_files[c], shape, target=TARGET)
            variants = [("default", "as_exported")] + ([("fastest", "fastest")] if case["method"] == "cp3" else [])
            for label, realise in variants:
                file = Path(tmp) / f"{k}-{label}.onnx"
                export_onnx(case["model"], file, shape, target=TARGET, realise=realise)
                macs, dense_macs = onnx_macs(file), onnx_macs(dense_files[c])
                form = next(iter(file_metadata(file).get("tensorslim.realisations", {}).values()),
                            {}).get("form", "as_exported")
                res = benchmark(file, against=dense_files[c], batch_sizes=BATCHES, threads=1, repeats=repeats,
                                warmup=args.warmup, labels=(case["method"], "dense"))
                per = _per_batch(res, macs, dense_macs, peak)
                rows.append({"layer": case["layer"], "method": case["method"], "rank": case["rank"],
                             "realise": label, "form": form, "target_reduction": case["target_reduction"],
                             "macs": macs, "dense_macs": dense_macs, "mac_reduction": dense_macs / macs,
                             "batches": per})
                print(".", end="", file=sys.stderr, flush=True)
    return _finish(args.out, meta, rows)


def main_pte(args: argparse.Namespace, convs: list[tuple[int, int]], reductions: tuple[int, ...], repeats: int,
             peak: float) -> int:
    """The per-layer table in ExecuTorch (XNNPACK): each factorized layer against the dense one, in alternation."""
    from importlib.metadata import version

    from tensorslim import cost

    meta = {**machine(), "executorch": version("executorch"), "threads": 1, "repeats": repeats,
            "warmup": args.warmup, "batches": list(BATCHES), "target": PTE_TARGET, "gemm_peak_gflops": peak,
            "quick": args.quick, "runtime": "executorch"}
    print(f"# bench_realise --runtime executorch: {meta['cpu']}, executorch {meta['executorch']}; 1 thread, "
          f"{repeats} alternating rounds; target {PTE_TARGET}; measured GEMM peak {peak:.1f} GFLOP/s")
    rows = []
    for case in cases(convs, reductions, PTE_TARGET):
        shape = (case["c"], case["hw"], case["hw"])
        macs = int(cost.profile(case["model"], shape).total.macs)
        dense_macs = int(cost.profile(case["dense"], shape).total.macs)
        res = benchmark(case["model"], against=case["dense"], runtime="executorch", batch_sizes=BATCHES, threads=1,
                        repeats=repeats, warmup=args.warmup, input_shape=shape, labels=(case["method"], "dense"))
        with tempfile.TemporaryDirectory(prefix="bench-realise-pte-") as tmp:  # batch 1: the delegated share
            delegated = export_pte(case["model"], Path(tmp) / "layer.pte", shape).delegated_share
        rows.append({"layer": case["layer"], "method": case["method"], "rank": case["rank"], "realise": "default",
                     "form": "as_exported", "target_reduction": case["target_reduction"], "macs": macs,
                     "dense_macs": dense_macs, "mac_reduction": dense_macs / macs,
                     "batches": _per_batch(res, macs, dense_macs, peak), "delegated_share": delegated})
        print(".", end="", file=sys.stderr, flush=True)
    return _finish(args.out, meta, rows)


def _finish(out: Path, meta: dict[str, Any], rows: list[dict[str, Any]]) -> int:
    """Print the table and write the JSON."""
    print(file=sys.stderr)
    print(table(rows))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    print(f"\nJSON: {out}")
    return 0


def _per_batch(res: Any, macs: int, dense_macs: int, peak: float) -> dict[str, Any]:
    """Per batch size: paired speedup (min–max), efficiency, both medians, GFLOP/s and share of the peak."""
    per = {}
    for i, cmp in enumerate(res.comparison or []):
        ms, dms = res.models[0].timings[i].median_ms, res.models[1].timings[i].median_ms
        rate, drate = gflops(macs, cmp.batch, ms), gflops(dense_macs, cmp.batch, dms)
        per[str(cmp.batch)] = {"speedup": cmp.speedup, "min": cmp.min, "max": cmp.max,
                               "efficiency": cmp.speedup / (dense_macs / macs), "ms": ms, "dense_ms": dms,
                               "gflops": rate, "peak_share": rate / peak, "dense_gflops": drate,
                               "dense_peak_share": drate / peak}
    return per


def table(rows: list[dict[str, Any]]) -> str:
    head = (f"{'layer':<22} {'method':<8} {'rank':>7} {'realised as':<12} {'MACred':>6}  "
            f"{'speedup b1':>10} {'eff b1':>6} {'GF/s b1':>7} {'peak':>5}  "
            f"{'speedup b32':>11} {'eff b32':>7} {'GF/s b32':>8} {'peak':>5}  {'dense peak b1, b32':>18}")
    lines = [head, "-" * len(head)]
    for r in rows:
        rank = "x".join(map(str, r["rank"])) if isinstance(r["rank"], list) else str(r["rank"])
        b1, b32 = r["batches"]["1"], r["batches"]["32"]
        how = r["form"] if r["realise"] == "fastest" else "default"
        mark = "" if min(b1["efficiency"], b32["efficiency"]) >= 0.8 else "  <0.8"
        lines.append(f"{r['layer']:<22} {r['method']:<8} {rank:>7} {how:<12} {r['mac_reduction']:>6.2f}  "
                     f"{b1['speedup']:>9.2f}x {b1['efficiency']:>6.2f} {b1['gflops']:>7.1f} {b1['peak_share']:>5.0%}  "
                     f"{b32['speedup']:>10.2f}x {b32['efficiency']:>7.2f} {b32['gflops']:>8.1f} "
                     f"{b32['peak_share']:>5.0%}  {b1['dense_peak_share']:>9.0%}, {b32['dense_peak_share']:.0%}{mark}")
    lines.append("MACred: dense MACs / the file's MACs (counted from the graph, padding included); eff = speedup / "
                 "MACred (goal >= 0.8); GF/s and peak: the file's achieved GFLOP/s and its share of the measured "
                 "1-thread GEMM peak; <0.8 marks a row under the goal")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
