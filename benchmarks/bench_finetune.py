"""Fashion-MNIST: compression methods and fine-tuning schedules on the convnet baseline.

Two tables:

1. one row per method (SVD for FC, CP-power, CP-ALS, Tucker-2 with VBMF ranks, TT for FC, TCL head, mixed
   = sensitivity-based allocation for a global budget): params, MACs, test accuracy before fine-tuning
   (all chosen layers decomposed, no training), after, and ONNX Runtime latency at batch 1 (1 thread, timed in
   alternation with the dense baseline; speedup = median of paired ratios).
2. the schedules compared at EQUAL total epochs on the mixed plan (one-shot, iterative, hybrid-conv-iterative,
   hybrid-factors-first; order forward).

Every run goes through :func:`tensorslim.finetune.finetune` into ``--work/NAME`` (resumable: rerunning the
same command skips finished runs). ``--part`` runs a subset so that two processes can share the work
(``methods`` / ``schedules``); each part writes ``benchmarks/results/finetune-<part>.json`` and ``--part merge``
combines them into ``benchmarks/results/finetune.json`` and prints both tables.

    nice -n 10 .venv/bin/python benchmarks/bench_finetune.py --part methods --baseline DIR &
    nice -n 10 .venv/bin/python benchmarks/bench_finetune.py --part schedules --baseline DIR &
    .venv/bin/python benchmarks/bench_finetune.py --part merge

``--part headline`` runs the budget row (or a ``--plan``) alone, with its own ``--headline-epochs`` / ``--lr`` /
``--seed`` / ``--label``, into ``finetune-headline-<row name>.json``; merge picks up every ``finetune-headline*.json``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_BASELINE = ROOT / "runs" / "baselines" / "convnet-fashion-mnist"
CONVS = "features.conv[2-5]"

METHOD_PLANS = {
    "svd-fc": {"rules": [{"layers": "classifier.fc1", "method": "svd", "ratio": 0.1}]},
    "cp-power": {"rules": [{"layers": CONVS, "method": "cp", "ratio": 0.25, "options": {"algorithm": "power"}}]},
    "cp-als": {"rules": [{"layers": CONVS, "method": "cp", "ratio": 0.25, "options": {"algorithm": "als"}}]},
    "tucker2-vbmf": {"rules": [{"layers": CONVS, "method": "tucker2", "vbmf": True}]},
    "tt-fc": {"rules": [{"layers": "classifier.fc1", "method": "tt", "macs_ratio": 0.5}]},
    "tcl-head": {"rules": [{"layers": "classifier.fc1", "method": "tcl", "ratio": 0.1}]},
}
SCHEDULES = ("one-shot", "iterative", "hybrid-conv-iterative", "hybrid-factors-first")


def latency(model, dense, threads: int, repeats: int) -> dict:
    """ORT batch-1 latency of ``model`` and of the dense baseline, timed in alternation (tensorslim.export)."""
    try:
        from tensorslim.export import benchmark
    except ImportError as err:  # export not there yet
        return {"error": f"tensorslim.export unavailable: {err}"}
    try:
        res = benchmark(model, against=dense, batch_sizes=(1,), threads=threads, runtime="ort", warmup=20,
                        repeats=repeats, labels=("compressed", "dense"))
    except Exception as err:  # noqa: BLE001 - report, do not lose the row
        return {"error": str(err).splitlines()[0]}
    return {"ms": res.models[0].timings[0].median_ms, "dense_ms": res.models[1].timings[0].median_ms,
            "speedup": res.comparison[0].speedup, "speedup_min": res.comparison[0].min,
            "speedup_max": res.comparison[0].max}


def run(name: str, baseline: Path, work: Path, args, *, plan=None, budget=None, schedule="one-shot",
        epochs: float = 1.0, distill: bool = False, order: str = "forward", dense=None, log=print) -> dict:
    from tensorslim.finetune import finetune

    t0 = time.time()
    log(f"=== {name}: schedule {schedule}, {epochs} epochs{', distill' if distill else ''}")
    res = finetune(baseline, "fashion-mnist", plan=plan, budget=budget, schedule=schedule, epochs=epochs,
                   distill=distill, order=order, out=work / re.sub(r"[^A-Za-z0-9_.-]+", "_", name), log=log,
                   max_batches=args.max_batches, lr=args.lr, seed=args.seed,
                   sensitivity_methods=args.sens_methods.split(","), sensitivity_samples=args.sens_samples)
    r = res.record
    row = {
        "name": name, "schedule": schedule, "epochs": epochs, "distill": distill, "order": order, "lr": args.lr,
        "seed": args.seed,
        "plan": r["plan"], "skipped": r.get("skipped", []),
        "params": r["compressed"]["params"], "macs": r["compressed"]["macs"],
        "params_reduction": r["compressed"]["params_reduction"], "macs_reduction": r["compressed"]["macs_reduction"],
        "acc_original": r["test"]["original"], "acc_before": r["test"]["before"], "acc_after": r["test"]["after"],
        "drop": r["test"]["original"] - r["test"]["after"], "optimizer_steps": r["optimizer_steps"],
        "total_steps": r["total_steps"], "seconds": round(time.time() - t0, 1),
        "steps": [{"layers": s["layers"], "val_before": s["val_before"], "val_after": s["val_after"]}
                  for s in r["steps"]],
    }
    if not args.skip_latency and dense is not None:
        row["ort_b1"] = latency(res.model, dense, args.threads, args.repeats)
    log(json.dumps({k: v for k, v in row.items() if k not in ("plan", "steps", "skipped")}))
    return row


def save_part(part: str, payload: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    from tensorslim import _atomic

    _atomic.write_text(RESULTS / f"finetune-{part}.json", json.dumps(payload, indent=1) + "\n")


def fmt_latency(row: dict) -> str:
    lat = row.get("ort_b1")
    if not lat:
        return f"{'-':>9} {'-':>7}"
    if "error" in lat:
        return f"{'error':>9} {'-':>7}"
    note = "" if row.get("ort_threads", 1) == 1 else f" ({row['ort_threads']} threads)"
    return f"{lat['ms']:>7.3f}ms {lat['speedup']:>6.2f}×{note}"


def table(rows: list[dict], title: str, baseline: dict | None) -> str:
    head = (f"{'row':<44} {'schedule':<22} {'ep':>4} {'params':>8} {'×':>6} {'MACs':>10} {'×':>6} "
            f"{'before':>7} {'after':>7} {'drop':>6} {'ORT b1':>9} {'speedup':>7}")
    lines = [title, head, "-" * len(head)]
    if baseline:
        lines.append(f"{'dense baseline':<44} {'-':<22} {'-':>4} {baseline['params']:>8,} {1:>6.2f} "
                     f"{baseline['macs']:>10,} {1:>6.2f} {baseline['acc']:>7.2f} {baseline['acc']:>7.2f} "
                     f"{0:>6.2f} {baseline.get('ort_ms', float('nan')):>7.3f}ms {1:>6.2f}×")
    for r in rows:
        lines.append(f"{r['name']:<44} {r['schedule'] + (' +KD' if r['distill'] else ''):<22} {r['epochs']:>4g} "
                     f"{r['params']:>8,} {r['params_reduction']:>6.2f} {r['macs']:>10,} {r['macs_reduction']:>6.2f} "
                     f"{r['acc_before']:>7.2f} {r['acc_after']:>7.2f} {r['drop']:>6.2f} {fmt_latency(r)}")
    return "\n".join(lines)


def merge() -> int:
    parts = {}
    for p in ("methods", "schedules"):
        f = RESULTS / f"finetune-{p}.json"
        if f.is_file():
            parts[p] = json.loads(f.read_text())
    extra = []  # every finetune-headline*.json (runs of --part headline, one file per --label)
    baselines = {}  # baseline directory name -> its row (the headline runs may use other baselines)
    for f in sorted(RESULTS.glob("finetune-headline*.json")):
        got = json.loads(f.read_text())
        threads = got["meta"].get("torch_threads", 1)
        base_name = Path(got["meta"]["baseline"]).name
        baselines.setdefault(base_name, got["meta"]["baseline_row"])
        for r in got["rows"]:
            r["ort_threads"] = threads
            r["baseline"] = base_name
            extra.append(r)
    if not parts:
        print("no part results yet", file=sys.stderr)
        return 1
    meta = next(iter(parts.values()))["meta"]
    method_rows = (parts.get("methods", {}).get("rows", []) + parts.get("schedules", {}).get("headline", [])
                   + extra)
    sched_rows = parts.get("schedules", {}).get("rows", [])
    baseline = meta.get("baseline_row")
    main_base = Path(meta["baseline"]).name
    for r in method_rows + parts.get("schedules", {}).get("rows", []):
        r.setdefault("baseline", main_base)
    others = [(name, row) for name, row in baselines.items() if name != main_base]
    t1 = table([r for r in method_rows if r["baseline"] == main_base],
               f"Table 1: methods on {main_base} (Fashion-MNIST test accuracy %, ORT batch 1, 1 thread)", baseline)
    for name, row in others:
        t1 += "\n\n" + table([r for r in method_rows if r["baseline"] == name], f"Table 1b: on {name}", row)
    t2 = table(sched_rows, "Table 2: schedules at equal total epochs on the mixed plan", baseline)
    target = [r for r in method_rows + sched_rows if r["params_reduction"] >= 10 and r["macs_reduction"] >= 3
              and r["drop"] <= 0.5]
    summary = {
        "target": "≥10× fewer params, ≥3× fewer MACs, ≤0.5 pt drop, ORT batch-1 speedup ≥2×",
        "meeting_size_and_accuracy": [r["name"] for r in target],
        "meeting_all": [r["name"] for r in target if r.get("ort_b1", {}).get("speedup", 0) >= 2],
    }
    from tensorslim import _atomic

    _atomic.write_text(RESULTS / "finetune.json", json.dumps(
        {"meta": meta, "methods": method_rows, "schedules": sched_rows, "summary": summary,
         "tables": [t1, t2]}, indent=1) + "\n")
    print(t1)
    print()
    print(t2)
    print()
    print(json.dumps(summary, indent=1, ensure_ascii=False))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=["methods", "schedules", "headline", "merge"], default="merge")
    ap.add_argument("--baseline", type=Path, default=DEFAULT_BASELINE)
    ap.add_argument("--work", type=Path, default=Path("/tmp/tensorslim-bench-finetune"))
    ap.add_argument("--method-epochs", type=float, default=1.0)
    ap.add_argument("--schedule-epochs", type=float, default=2.0)
    ap.add_argument("--headline-epochs", type=float, default=3.0)
    ap.add_argument("--budget", default="params=0.1,macs=0.3")
    ap.add_argument("--sens-methods", default="svd,tucker2,cp,tt,tcl")
    ap.add_argument("--sens-samples", type=int, default=1000)
    ap.add_argument("--max-batches", type=int, default=None)
    ap.add_argument("--lr", type=float, default=None, help="fine-tuning learning rate (default 0.01, SGD)")
    ap.add_argument("--seed", type=int, default=0, help="fine-tuning seed (batch order, dropout)")
    ap.add_argument("--threads", type=int, default=1, help="torch and ORT threads")
    ap.add_argument("--repeats", type=int, default=300)
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--label", default="", help="suffix of the row name (--part headline; names the file too)")
    ap.add_argument("--plan", type=Path, default=None, help="--part headline: a JSON plan instead of --budget")
    ap.add_argument("--no-distill", action="store_true", help="--part headline: fine-tune without distillation")
    args = ap.parse_args()
    if args.part == "merge":
        return merge()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    from tensorslim import modeldir
    from tensorslim.cost import profile

    dense = modeldir.load(args.baseline)
    prof = profile(dense, tuple(modeldir.read_meta(args.baseline)["input_shape"])).total
    acc = modeldir.read_metrics(args.baseline).get("accuracy", {}).get("test")
    meta = {"baseline": str(args.baseline), "baseline_row": {"params": prof.params, "macs": prof.macs, "acc": acc},
            "args": {k: str(v) for k, v in vars(args).items()}, "torch_threads": args.threads,
            "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    if not args.skip_latency and args.part in ("methods", "headline"):
        lat = latency(dense, dense, args.threads, 100)
        meta["baseline_row"]["ort_ms"] = lat.get("ms")
    payload: dict = {"meta": meta, "rows": []}
    work = args.work
    if args.part == "methods":
        for name, plan in METHOD_PLANS.items():
            payload["rows"].append(run(name, args.baseline, work, args, plan=plan, epochs=args.method_epochs,
                                       dense=dense))
            save_part("methods", payload)
    elif args.part == "headline":  # the budget row (or --plan) alone; --label names the row and the file
        if args.plan is not None:
            plan = json.loads(args.plan.read_text())
            name, kw = f"plan {args.plan.stem}{args.label}", {"plan": plan}
        else:
            name, kw = f"mixed (budget {args.budget}){args.label}", {"budget": args.budget}
        payload["rows"].append(run(name, args.baseline, work, args, epochs=args.headline_epochs,
                                   distill=not args.no_distill, dense=dense, **kw))
        save_part("headline-" + re.sub(r"[^A-Za-z0-9_.]+", "-", name).strip("-"), payload)
    else:
        payload["headline"] = []
        b = args.budget
        payload["headline"].append(run("mixed (budget " + b + ")", args.baseline, work, args, budget=b,
                                       epochs=args.headline_epochs, distill=True, dense=dense))
        save_part("schedules", payload)
        plan = payload["headline"][0]["plan"]  # the allocated plan, resolved to explicit ranks
        for sched in SCHEDULES:
            payload["rows"].append(run(f"mixed/{sched}", args.baseline, work, args, plan=plan, schedule=sched,
                                       epochs=args.schedule_epochs, dense=dense))
            save_part("schedules", payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
