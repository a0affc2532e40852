"""Re-measure every committed model in benchmarks/models/ and compare it with the numbers in BENCHMARKS.md.

For each model directory under benchmarks/models/ (model.json + weights.safetensors + metrics.json) it measures:

* params and MACs (``tensorslim.profile``);
* the ONNX export, verified in ONNX Runtime against PyTorch on random and real test inputs
  (``tensorslim.export.export_onnx``; it raises when ORT differs beyond its rtol 1e-4);
* test accuracy on the official Fashion-MNIST test split (10,000 images), computed with that verified ONNX
  file in ONNX Runtime (``--pytorch-accuracy``: in PyTorch eager, 5× slower here); it is compared with the
  PyTorch accuracy that the model's own metrics.json records;
* for a compressed model, its ORT batch-1 speedup against its baseline (``tensorslim.export.benchmark``:
  both ONNX files timed in alternation, 1 intra-op thread).

And the int8 headline (``benchmarks/results/int8.json``, the int8 table of BENCHMARKS.md): the committed factorized
model quantized again exactly as recorded (same calibration samples and seed, the recorded number of leading
compute nodes left in float), its file bytes and the fp32 dense file's (exactly), its test accuracy in ONNX
Runtime (±0.05 pt) and its speedup against the fp32 factorized file at batch 1 and 32 (±25 %).

The numbers printed in BENCHMARKS.md are the tables ``committed``, ``target`` and ``provenance``, rendered by
benchmarks/render.py from benchmarks/results/verify.json. This script first checks that those tables are
exactly what render.py writes from that JSON, then compares each measured figure with the JSON: accuracy
within ±0.05 pt (also against the model's own metrics.json), params and MACs exactly, speedup within ±25 %.
It exits 1 naming every mismatch.

    make verify                                        # = .venv/bin/python benchmarks/verify.py
    .venv/bin/python benchmarks/verify.py --no-timing  # skip the speedup
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/verify.py --record   # measure and write verify.json
                                                       # (then: .venv/bin/python benchmarks/render.py)
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/verify.py --record --only NAME   # one new model's row
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
MODELS = BENCH / "models"
RESULTS = BENCH / "results"
TABLES = {"committed", "target", "provenance", "int8"}
ACC_TOL = 0.05  # points
SPEEDUP_TOL = 0.25  # relative
THREADS = 1
REPEATS = 1000
RECORD_COMMAND = "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/verify.py --record"
DATASET = "fashion-mnist"


def _render():
    sys.path.insert(0, str(BENCH))
    try:
        import render
    finally:
        sys.path.pop(0)
    return render


def model_dirs(models: Path) -> list[Path]:
    return sorted(p for p in models.iterdir() if (p / "model.json").is_file())


def dataset_available() -> bool:
    from tensorslim import data

    return any(s.name == DATASET and s.found for s in data.available())


def ort_accuracy(onnx_path: Path, test_set) -> dict:
    """Top-1 accuracy (%) of the exported model in ONNX Runtime: 5× quicker than PyTorch eager here, and the
    export check has already bounded ORT's logits against PyTorch's (max rel err <= 1e-4)."""
    from tensorslim.data import batches
    from tensorslim.export.onnx import ort_session

    sess = ort_session(onnx_path, pad_channels=False)
    name = sess.get_inputs()[0].name
    correct = seen = 0
    for x, y in batches(test_set, 1000):
        out = sess.run(None, {name: x.numpy()})[0]
        correct += int((out.argmax(1) == y.numpy()).sum())
        seen += len(y)
    return {"accuracy": 100.0 * correct / seen, "samples": seen}


def measure(path: Path, test_set, work: Path, *, baseline_onnx: Path | None = None, timing: bool = True,
            repeats: int = REPEATS, pytorch_accuracy: bool = False, log=print) -> tuple[dict, Path]:
    """The figures of one committed model; returns them and the path of its verified ONNX file."""
    import torch

    from tensorslim import modeldir, profile
    from tensorslim.export import benchmark, export_onnx
    from tensorslim.train import evaluate

    t0 = time.perf_counter()
    model = modeldir.load(path).eval()
    shape = tuple(modeldir.read_meta(path)["input_shape"])
    cost = profile(model, shape).total
    real = torch.stack([test_set[i][0] for i in range(256)])
    onnx_path = work / f"{path.name}.onnx"
    exported = export_onnx(model, onnx_path, shape, inputs=real)
    if pytorch_accuracy:
        with torch.inference_mode():
            acc = evaluate(model, test_set, batch_size=1000)
    else:
        acc = ort_accuracy(onnx_path, test_set)
    got = {"name": path.name, "test_accuracy": acc["accuracy"], "test_samples": acc["samples"],
           "params": cost.params, "macs": cost.macs, "onnx_max_rel_err": exported.max_rel_err,
           "onnx_checked": sum(c.samples for c in exported.checks)}
    if timing and baseline_onnx is not None:
        res = benchmark(str(onnx_path), against=str(baseline_onnx), batch_sizes=(1,), threads=THREADS,
                        warmup=50, repeats=repeats, labels=("compressed", "baseline"))
        got.update(ort_b1_speedup=res.comparison[0].speedup, ort_b1_ms=res.models[0].timings[0].median_ms,
                   baseline_b1_ms=res.models[1].timings[0].median_ms)
    log(f"  {path.name}: measured in {time.perf_counter() - t0:.1f} s")
    return got, onnx_path


def _order(dirs: list[Path]) -> list[Path]:
    """Baselines first, so that each compressed model can be timed against its baseline's ONNX file."""
    from tensorslim import modeldir

    return sorted(dirs, key=lambda p: (bool(modeldir.read_metrics(p).get("provenance", {}).get("baseline")),
                                       p.name))


def measure_all(models: Path, *, timing: bool, only: set[str] | None = None, repeats: int = REPEATS,
                pytorch_accuracy: bool = False, log=print) -> dict[str, dict]:
    import torch

    from tensorslim import data, modeldir

    torch.set_flush_denormal(True)
    test_set = data.load(DATASET, "test")
    out: dict[str, dict] = {}
    onnx: dict[str, Path] = {}
    dirs = _order(model_dirs(models))
    wanted = set(only or ())
    for p in dirs:  # a compressed model needs its baseline's ONNX file for timing
        base = modeldir.read_metrics(p).get("provenance", {}).get("baseline")
        if p.name in wanted and base and timing:
            wanted.add(base)
    with tempfile.TemporaryDirectory(prefix="tensorslim-verify-") as tmp:
        for p in dirs:
            if only is not None and p.name not in wanted:
                continue
            base = modeldir.read_metrics(p).get("provenance", {}).get("baseline")
            got, onnx[p.name] = measure(p, test_set, Path(tmp), baseline_onnx=onnx.get(base) if base else None,
                                        timing=timing, repeats=repeats, pytorch_accuracy=pytorch_accuracy,
                                        log=log)
            if base:
                got["baseline"] = base
            out[p.name] = got
    return out


def compare(measured: dict[str, dict], recorded: dict, models: Path, *, timing: bool,
            only: set[str] | None = None) -> tuple[list[str], list[list[str]]]:
    """Mismatches (one line each) and the rows of the printed comparison table."""
    from tensorslim import modeldir

    problems: list[str] = []
    rows: list[list[str]] = []
    by_name = {m["name"]: m for m in recorded["models"]}
    on_disk = {p.name for p in model_dirs(models)}
    for name in sorted(on_disk - set(by_name)):
        problems.append(f"{name}: committed in {models} but has no row in verify.json / BENCHMARKS.md")
    for name in sorted(set(by_name) - on_disk):
        problems.append(f"{name}: listed in BENCHMARKS.md (verify.json) but not committed in {models}")

    def row(name: str, what: str, printed, got, ok: bool, fmt: str) -> None:
        rows.append([name, what, format(printed, fmt) if printed is not None else "-",
                     format(got, fmt) if got is not None else "-", "ok" if ok else "MISMATCH"])
        if not ok:
            problems.append(f"{name}: {what}: BENCHMARKS.md says {format(printed, fmt) if printed is not None else '-'}"
                            f", measured {format(got, fmt) if got is not None else '-'}")

    for name, got in measured.items():
        rec = by_name.get(name)
        if rec is None or (only is not None and name not in only):
            continue
        metrics = modeldir.read_metrics(models / name)
        row(name, "test accuracy %", rec["test_accuracy"], got["test_accuracy"],
            abs(got["test_accuracy"] - rec["test_accuracy"]) <= ACC_TOL, ".2f")
        m_acc = metrics.get("accuracy", {}).get("test")
        row(name, "test accuracy % (its metrics.json)", m_acc, got["test_accuracy"],
            m_acc is not None and abs(got["test_accuracy"] - m_acc) <= ACC_TOL, ".2f")
        for key in ("params", "macs"):
            row(name, key, rec[key], got[key], got[key] == rec[key], ",")
            if key in metrics:
                row(name, f"{key} (its metrics.json)", metrics[key], got[key], got[key] == metrics[key], ",")
        row(name, "ONNX verified in ORT (max rel err <= 1e-4)", rec["onnx_max_rel_err"], got["onnx_max_rel_err"],
            got["onnx_max_rel_err"] <= 1e-4, ".1e")
        if rec.get("baseline") != got.get("baseline"):
            problems.append(f"{name}: baseline {got.get('baseline')!r} in metrics.json, {rec.get('baseline')!r} "
                            "in BENCHMARKS.md")
        if timing and rec.get("ort_b1_speedup") is not None:
            s = got.get("ort_b1_speedup")
            row(name, "ORT b1 speedup (±25 %)", rec["ort_b1_speedup"], s,
                s is not None and abs(s / rec["ort_b1_speedup"] - 1) <= SPEEDUP_TOL, ".2f")
    return problems, rows


def verify_int8(results: Path, models: Path, *, timing: bool, repeats: int = REPEATS, log=print
                ) -> tuple[list[str], list[list[str]]]:
    """Re-make the int8 headline file as int8.json records it and compare its figures (see the docstring)."""
    from tensorslim import data
    from tensorslim.export import benchmark, evaluate_onnx, export_int8, export_target

    doc = json.loads((results / "int8.json").read_text())
    meta, files = doc["meta"], doc["files"]
    chosen = meta["quantization"].get("float_selection", {}).get("chosen", len(meta["quantization"].get(
        "float_nodes", [])))
    problems: list[str] = []
    rows: list[list[str]] = []

    def row(what: str, printed, got, ok: bool, fmt: str) -> None:
        rows.append(["int8 headline", what, format(printed, fmt), format(got, fmt), "ok" if ok else "MISMATCH"])
        if not ok:
            problems.append(f"int8 headline: {what}: BENCHMARKS.md says {format(printed, fmt)}, measured "
                            f"{format(got, fmt)}")

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tensorslim-verify-int8-") as tmp:
        dense, fp32, int8 = Path(tmp) / "dense.onnx", Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        export_target(models / meta["dense"], dense)
        export_target(models / meta["factorized"], fp32)
        export_int8(models / meta["factorized"], int8, DATASET, samples=meta["samples"], evaluate=None,
                    record=False, keep_float=chosen,  # a record without weight_bits predates 7-bit weights
                    reduce_range=meta["quantization"].get("weight_bits", 8) == 7)
        for label, path in (("fp32 dense", dense), ("int8 factorized", int8)):
            row(f"{label} file bytes", files[label]["bytes"], path.stat().st_size,
                path.stat().st_size == files[label]["bytes"], ",")
        acc = evaluate_onnx(int8, data.load(DATASET, "test", augment=False))["accuracy"]
        row("int8 factorized test accuracy %", files["int8 factorized"]["accuracy"], acc,
            abs(acc - files["int8 factorized"]["accuracy"]) <= ACC_TOL, ".2f")
        if timing:
            res = benchmark(str(int8), against=str(fp32), batch_sizes=(1, 32), threads=THREADS,
                            repeats=max(1, repeats // 10), labels=("int8", "fp32"))
            recorded = doc["goal"]["speedup_vs_fp32_factorized"]
            for r in res.comparison:
                want = recorded[str(r.batch)]
                row(f"int8 vs fp32 factorized, b{r.batch} (±25 %)", want, r.speedup,
                    abs(r.speedup / want - 1) <= SPEEDUP_TOL, ".2f")
    log(f"  int8 headline: measured in {time.perf_counter() - t0:.1f} s")
    return problems, rows


def record(models: Path, results: Path, repeats: int, only: set[str] | None = None) -> int:
    """Measure the committed models and write verify.json. ``only``: measure just these (a newly committed
    model, say) and keep every other model's recorded row as it is."""
    import onnxruntime
    import torch

    from tensorslim import modeldir

    measured = measure_all(models, timing=True, repeats=repeats, only=only)
    if only is not None:
        measured = {n: m for n, m in measured.items() if n in only}  # a baseline timed along is not re-recorded
    rows = []
    for name, got in measured.items():
        prov = modeldir.read_metrics(models / name).get("provenance", {})
        rows.append({**got, "made_by": prov.get("command", "?"), "commit": prov.get("commit", "?"),
                     "working_tree": prov.get("working_tree", "-"), "budget": prov.get("budget", "-"),
                     "baseline": prov.get("baseline"), "budget_matched": prov.get("budget_matched")})
    if only is not None:
        kept = [m for m in json.loads((results / "verify.json").read_text())["models"] if m["name"] not in only]
        rows = sorted(kept + rows, key=lambda m: [p.name for p in _order(model_dirs(models))].index(m["name"]))
    out = {"command": RECORD_COMMAND, "measured": time.strftime("%Y-%m-%d %H:%M:%S"), "threads": THREADS,
           "repeats": repeats, "machine": {"cpu": _render()._module("bench_layers")._cpu(), "cores": os.cpu_count(),
                                           "torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
           "tolerance": {"accuracy_pt": ACC_TOL, "speedup_rel": SPEEDUP_TOL, "counts": "exact"},
           "models": rows}
    results.mkdir(parents=True, exist_ok=True)
    (results / "verify.json").write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {results / 'verify.json'}; now run .venv/bin/python benchmarks/render.py")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-timing", action="store_true", help="skip the ORT speedup")
    ap.add_argument("--record", action="store_true", help="measure and write results/verify.json")
    ap.add_argument("--only", nargs="+", help="verify only these committed models ('int8': the int8 headline)")
    ap.add_argument("--benchmarks-md", type=Path, default=ROOT / "BENCHMARKS.md")
    ap.add_argument("--results", type=Path, default=RESULTS, help="folder holding verify.json")
    ap.add_argument("--models", type=Path, default=MODELS, help="folder of committed model directories")
    ap.add_argument("--repeats", type=int, default=REPEATS, help="alternating timing rounds")
    ap.add_argument("--pytorch-accuracy", action="store_true",
                    help="measure test accuracy in PyTorch eager instead of ONNX Runtime (slower)")
    args = ap.parse_args(argv)
    if not dataset_available():
        print(f"error: {DATASET} is not installed (apt-get install dataset-fashion-mnist); cannot verify",
              file=sys.stderr)
        return 2
    if args.record:
        return record(args.models, args.results, args.repeats, only=set(args.only) if args.only else None)
    t0 = time.perf_counter()
    render = _render()
    problems: list[str] = []
    try:
        recorded = render.committed_models(args.results)
        diff = render.check(args.benchmarks_md, args.results, only=TABLES)
        missing = TABLES - set(render.tables(args.benchmarks_md.read_text()))
    except render.RenderError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for name in sorted(missing):
        problems.append(f"{args.benchmarks_md}: no <!-- table:{name} --> table")
    if diff:
        sys.stdout.writelines(diff)
        problems.append(f"{args.benchmarks_md}: the committed-model tables differ from what benchmarks/render.py "
                        f"writes from {args.results / 'verify.json'} (diff above)")
    only = set(args.only) if args.only else None
    timing = not args.no_timing
    print(f"measuring {'all committed models' if only is None else ', '.join(sorted(only))} "
          f"({'with' if timing else 'without'} ORT timing)")
    measured = measure_all(args.models, timing=timing, only=only, repeats=args.repeats,
                           pytorch_accuracy=args.pytorch_accuracy)
    more, rows = compare(measured, recorded, args.models, timing=timing, only=only)
    problems += more
    if only is None or "int8" in only:
        more, int8_rows = verify_int8(args.results, args.models, timing=timing, repeats=args.repeats)
        problems += more
        rows += int8_rows
    head = ["model", "figure", "BENCHMARKS.md", "measured", ""]
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
    seconds = time.perf_counter() - t0
    if problems:
        print(f"\nverify: FAILED ({len(problems)} mismatch{'es' if len(problems) > 1 else ''}, {seconds:.0f} s):",
              file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        return 1
    print(f"\nverify: OK, every figure matches BENCHMARKS.md ({len(rows)} checks, {seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
