"""int8 on top of factorization, on the committed convnet-wide models (issue 15 §4).

Three files, each measured as a file in ONNX Runtime:

1. **fp32 dense**: ``benchmarks/models/convnet-wide-fashion-mnist`` exported as ``tensorslim export`` does.
2. **fp32 factorized**: ``benchmarks/models/convnet-wide-budget-p007`` exported the same way (``--factorized NAME``:
   another committed model).
3. **int8 factorized**: the same model through ``export_int8`` (ONNX Runtime static quantization, QDQ, int8
   per-channel weights in 7 bits (``reduce_range``, the default), uint8 activations), calibrated on a random
   sample of the Fashion-MNIST *training* split, with ``keep_float="auto"``: the files keeping the first 0-4
   compute nodes in float are timed against the fp32 file and the fastest is kept (the choice and its timings
   are recorded). Two more files are timed
   against it: the same quantization with int8 activations (to check the default) and with every node in
   int8 (what the choice gains). A fourth, with 8-bit (full-range) weights, is measured for accuracy: on an x86
   CPU without VNNI its u8 x s8 products saturate in ONNX Runtime (``quantize.REDUCE_RANGE``), so its accuracy
   depends on the CPU; ``meta.isa`` records which this run had.

The phone runtime, as ``.pte`` files in ``executorch.runtime`` (XNNPACK): the dense and the factorized model as
fp32 programs (``export_pte_target``) and the factorized one as int8 (``export_pte_int8``: PT2E with XNNPACK's
quantizer, per-channel int8 weights, the same calibration images), each at batch 1 and 32 (a program has a fixed
batch); file bytes, test accuracy of each batch-1 file run itself (``evaluate_pte``), and 1-thread XNNPACK
latency, int8 timed in alternation with fp32 factorized and fp32 factorized with fp32 dense
(``runtime="executorch"``).

For each: file bytes and top-1 accuracy on the Fashion-MNIST *test* split (``evaluate_onnx``, every file run
itself). Latency: 1-thread ORT at batch 1 and 32, each pair timed in alternation (``tensorslim.export.benchmark``
with ``against``), reported as paired ratios. The goal (≥ 40× smaller than the fp32 dense file, ≤ 1.0 pt test
drop against it, faster than the fp32 factorized file) is checked and printed. JSON goes to
``benchmarks/results/int8.json``; ``benchmarks/render.py`` renders it into BENCHMARKS.md.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_int8.py
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_int8.py --pte-only   # re-measure the .pte part alone

``--pte-only`` replaces the ``pte`` entry of the existing JSON and keeps the ONNX measurements; the entry records
its own command and the machine's load average when it started.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
MODELS = BENCH / "models"
DENSE = "convnet-wide-fashion-mnist"
#: the committed factorized model quantized by default: ``finetune --budget params<=0.07`` (14.5x fewer params);
#: ``--factorized convnet-wide-budget-p01`` measures the params<=0.1 headline model instead
FACTORIZED = "convnet-wide-budget-p007"
COMMAND = "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_int8.py"
PTE_BATCHES = (1, 32)
GOAL = {"size_ratio": 40.0, "drop_pt": 1.0, "speedup": 1.0}


def _pair(target: str, against: str, labels: tuple[str, str], repeats: int) -> dict:
    from tensorslim.export import benchmark

    res = benchmark(target, against=against, batch_sizes=(1, 32), threads=1, repeats=repeats, labels=labels)
    medians = {m.label: {str(t.batch): t.median_ms for t in m.timings} for m in res.models}
    return {"target": labels[0], "against": labels[1], "median_ms": medians,
            "speedup": {str(r.batch): {"median": r.speedup, "min": r.min, "max": r.max} for r in res.comparison}}


def run(samples: int, repeats: int, work: Path, factorized: str = FACTORIZED) -> dict:
    import onnxruntime
    import torch

    from tensorslim import data
    from tensorslim.export import evaluate_onnx, export_int8, export_target
    from tensorslim.export.hardware import nchwc_block

    test = data.load("fashion-mnist", "test", augment=False)
    paths = {"fp32 dense": work / "dense.onnx", "fp32 factorized": work / "factorized.onnx",
             "int8 factorized": work / "factorized.int8.onnx", "int8 factorized (s8 act.)": work / "s8.int8.onnx",
             "int8 factorized (every node)": work / "all.int8.onnx",
             "int8 factorized (8-bit weights)": work / "full.int8.onnx"}
    export_target(MODELS / DENSE, paths["fp32 dense"])
    export_target(MODELS / factorized, paths["fp32 factorized"])
    int8 = export_int8(MODELS / factorized, paths["int8 factorized"], "fashion-mnist", samples=samples, record=False,
                       keep_float="auto", log=lambda msg: print(msg, flush=True))
    chosen = int8.quantized.selection["chosen"]
    export_int8(MODELS / factorized, paths["int8 factorized (s8 act.)"], "fashion-mnist", samples=samples,
                activations="int8", evaluate=None, record=False, keep_float=chosen)
    export_int8(MODELS / factorized, paths["int8 factorized (every node)"], "fashion-mnist", samples=samples,
                evaluate=None, record=False, keep_float=0)
    export_int8(MODELS / factorized, paths["int8 factorized (8-bit weights)"], "fashion-mnist", samples=samples,
                evaluate=None, record=False, keep_float=chosen, reduce_range=False)
    files = {}
    for name, path in paths.items():
        files[name] = {"bytes": path.stat().st_size, "accuracy": evaluate_onnx(path, test)["accuracy"]}
        print(f"{name:28s} {files[name]['bytes']:>10,} bytes  test {files[name]['accuracy']:.2f} %", flush=True)
    pairs = [
        _pair(str(paths["int8 factorized"]), str(paths["fp32 factorized"]), ("int8 factorized", "fp32 factorized"),
              repeats),
        _pair(str(paths["int8 factorized"]), str(paths["fp32 dense"]), ("int8 factorized", "fp32 dense"), repeats),
        _pair(str(paths["int8 factorized"]), str(paths["int8 factorized (s8 act.)"]),
              ("int8 factorized", "int8 factorized (s8 act.)"), repeats),
        _pair(str(paths["int8 factorized"]), str(paths["int8 factorized (every node)"]),
              ("int8 factorized", "int8 factorized (every node)"), repeats),
    ]
    dense, small = files["fp32 dense"], files["int8 factorized"]
    size_ratio = dense["bytes"] / small["bytes"]
    drop = dense["accuracy"] - small["accuracy"]
    speedup = {b: pairs[0]["speedup"][b]["median"] for b in ("1", "32")}
    goal = {"size_ratio": size_ratio, "size_met": size_ratio >= GOAL["size_ratio"],
            "drop_pt": drop, "drop_met": drop <= GOAL["drop_pt"],
            "speedup_vs_fp32_factorized": speedup, "speedup_met": all(s > GOAL["speedup"] for s in speedup.values()),
            "int8_weight_bytes_floor": _int8_weights(paths["int8 factorized"])}
    command = COMMAND + (f" --factorized {factorized}" if factorized != FACTORIZED else "")
    meta = {"command": command, "factorized": factorized, "dense": DENSE, "samples": int8.quantized.samples,
            "repeats": repeats,
            "quantization": int8.quantized.quantization(), "calibration_split": "train", "test_split": "test",
            "torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "nchwc_block": nchwc_block(),
            "cpu": _cpu(), "isa": _isa(), "goal": GOAL}
    return {"meta": meta, "files": files, "pairs": pairs, "goal": goal,
            "pte": run_pte(samples, repeats, work, test, factorized=factorized)}


def run_pte(samples: int, repeats: int, work: Path, test, only: bool = False, factorized: str = FACTORIZED) -> dict:
    """The dense and factorized models as fp32 ``.pte`` files and the factorized one as int8: bytes, test accuracy
    (of the batch-1 programs) and XNNPACK latency at batch 1 and 32 (one program per batch size; int8 timed in
    alternation with fp32 factorized, fp32 factorized with fp32 dense)."""
    import os
    from importlib.metadata import version

    from tensorslim.export import benchmark, evaluate_pte, export_pte_int8, export_pte_target

    load = os.getloadavg()[0]
    names = ("fp32 dense .pte", "fp32 factorized .pte", "int8 factorized .pte")
    paths = {(name, b): work / f"{name.replace(' ', '-')}.b{b}.pte" for name in names for b in PTE_BATCHES}
    int8 = None
    for b in PTE_BATCHES:
        export_pte_target(MODELS / DENSE, paths["fp32 dense .pte", b], batch=b)
        export_pte_target(MODELS / factorized, paths["fp32 factorized .pte", b], batch=b)
        # the same seeded calibration sample at every batch size: the programs differ in their memory plan only
        res = export_pte_int8(MODELS / factorized, paths["int8 factorized .pte", b], "fashion-mnist",
                              samples=samples, record=False, batch=b, evaluate=None)
        int8 = int8 or res
    files = {}
    for name in names:
        path = paths[name, PTE_BATCHES[0]]
        files[name] = {"bytes": path.stat().st_size, "accuracy": evaluate_pte(path, test)["accuracy"]}
        print(f"{name:28s} {files[name]['bytes']:>10,} bytes  test {files[name]['accuracy']:.2f} %", flush=True)
    pairs = []
    for target, against in (("int8 factorized .pte", "fp32 factorized .pte"),
                            ("fp32 factorized .pte", "fp32 dense .pte")):
        pair = {"target": target, "against": against, "median_ms": {target: {}, against: {}}, "speedup": {}}
        for b in PTE_BATCHES:
            rounds = repeats if b == 1 else max(10, repeats // 4)
            res = benchmark(str(paths[target, b]), against=str(paths[against, b]), runtime="executorch",
                            batch_sizes=(b,), threads=1, repeats=rounds, labels=(target, against))
            for m in res.models:
                pair["median_ms"][m.label].update({str(t.batch): t.median_ms for t in m.timings})
            pair["speedup"].update({str(r.batch): {"median": r.speedup, "min": r.min, "max": r.max, "rounds": rounds}
                                    for r in res.comparison})
        pairs.append(pair)
        print(f"{target} vs {against}: " + ", ".join(f"b{b} {v['median']:.2f}x" for b, v in pair["speedup"].items()),
              flush=True)
    command = COMMAND + (f" --factorized {factorized}" if factorized != FACTORIZED else "")
    return {"command": command + " --pte-only" if only else command, "factorized": factorized, "dense": DENSE,
            "load_average": round(load, 2), "repeats": repeats, "batches": list(PTE_BATCHES), "files": files,
            "pairs": pairs, "quantization": int8.quantization(), "samples": int8.samples,
            "delegated_share": int8.program.delegated_share, "verify_max_rel_err": int8.program.max_rel_err,
            "executorch": version("executorch")}


def _int8_weights(path: Path) -> int:
    """Bytes of the int8 weight tensors alone: what no amount of graph trimming removes."""
    import onnx
    from onnx import TensorProto

    proto = onnx.load(str(path))
    return sum(len(t.raw_data) for t in proto.graph.initializer if t.data_type == TensorProto.INT8)


def _cpu() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name"))
    except (OSError, StopIteration):
        return "unknown"


def _isa() -> list[str]:
    """The CPU's vector extensions that decide ORT's int8 kernels (AVX2, AVX-512, VNNI)."""
    try:
        flags = next(line.split(":", 1)[1].split() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("flags"))
    except (OSError, StopIteration):
        return []
    return sorted(f for f in set(flags) if f in {"avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8"})


def format_table(result: dict) -> str:
    files, pairs, goal = result["files"], result["pairs"], result["goal"]
    dense = files["fp32 dense"]
    vs = {p["against"]: p for p in pairs}
    lines = [f"{'file':28s} {'bytes':>10s} {'smaller':>8s} {'test %':>7s} {'drop pt':>8s} "
             f"{'int8 faster b1':>15s} {'b32':>6s}"]
    for name, f in files.items():
        pair = vs.get(name)
        speed = (f"{pair['speedup']['1']['median']:>14.2f}x {pair['speedup']['32']['median']:>5.2f}x"
                 if pair else f"{'':>15s} {'':>6s}")
        lines.append(f"{name:28s} {f['bytes']:>10,} {dense['bytes'] / f['bytes']:>7.2f}x {f['accuracy']:>7.2f} "
                     f"{dense['accuracy'] - f['accuracy']:>+8.2f} {speed}")
    lines.append(
        f"goal: >= {GOAL['size_ratio']:.0f}x smaller: {goal['size_ratio']:.2f}x "
        f"({'met' if goal['size_met'] else 'not met'}); drop <= {GOAL['drop_pt']:.1f} pt: {goal['drop_pt']:+.2f} pt "
        f"({'met' if goal['drop_met'] else 'not met'}); faster than fp32 factorized: "
        f"{goal['speedup_vs_fp32_factorized']['1']:.2f}x b1, {goal['speedup_vs_fp32_factorized']['32']:.2f}x b32 "
        f"({'met' if goal['speedup_met'] else 'not met'})")
    if "pte" in result:
        pte = result["pte"]
        fp32 = pte["files"]["fp32 dense .pte"]  # the size/accuracy base
        by_target = {p["target"]: p for p in pte["pairs"]}
        for name, f in pte["files"].items():
            pair = by_target.get(name)
            speed = "" if pair is None else " " + ", ".join(
                f"{v['median']:.2f}x b{b}" for b, v in pair["speedup"].items()) + f" vs {pair['against']} (XNNPACK)"
            lines.append(f"{name:28s} {f['bytes']:>10,} {fp32['bytes'] / f['bytes']:>7.2f}x {f['accuracy']:>7.2f} "
                         f"{fp32['accuracy'] - f['accuracy']:>+8.2f}{speed}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=512, help="calibration images (training split)")
    parser.add_argument("--repeats", type=int, default=100, help="alternating timed rounds per batch size")
    parser.add_argument("--out", type=Path, default=RESULTS / "int8.json")
    parser.add_argument("--pte-only", action="store_true", help="re-measure the .pte part into the existing JSON")
    parser.add_argument("--factorized", default=FACTORIZED, help="the committed factorized model (benchmarks/models)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT / "src"))
    with tempfile.TemporaryDirectory(prefix="bench-int8-") as tmp:
        if args.pte_only:
            from tensorslim import data

            result = json.loads(args.out.read_text())
            result["pte"] = run_pte(args.samples, args.repeats, Path(tmp),
                                    data.load("fashion-mnist", "test", augment=False), only=True,
                                    factorized=args.factorized)
        else:
            result = run(args.samples, args.repeats, Path(tmp), args.factorized)
    print(format_table(result))
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
