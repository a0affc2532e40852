"""Does ``tensorslim explore --budget params<=0.1,drop<=0.5`` deliver a deployable model that beats
``tensorslim finetune --budget``?

On the committed convnet-wide baseline (Fashion-MNIST), explore runs with the budget (its cost limits steer the
sampler), design points judged on calibration activations, a short fine-tune as low fidelity, and
``--finetune-batches`` of distilled fine-tuning (the ``finetune`` recipe: distillation α 0.5, T 4, SGD,
cosine) for each finalist. Pruning and promotion use the validation split only; the test split is measured
once per finalist for the report. The selected model is then compared with the committed finetune-budget
model (``benchmarks/models/convnet-wide-budget-p01``, 10 epochs distilled), on:

* params and MACs against the dense baseline (target ≥ 10× and ≥ 3×), test drop (≤ 0.5 pt);
* ONNX Runtime speed at batch 1 from the exported files, 1 thread, timed in alternation with the dense file
  (target ≥ 2×);
* wall time (target ≤ 1 hour on 2 cores).

Writes ``benchmarks/results/explore-budget.json`` (``--json``: elsewhere). ``--warm-start
benchmarks/models/convnet-wide-budget-p01`` starts explore from the finetune-budget model's own plan (its
sensitivity-allocated ranks join the space) and its one-layer neighbours.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_explore_budget.py --out runs/explore-budget
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from tensorslim import modeldir  # noqa: E402
from tensorslim.cli.explore import ort_layer_ms, ort_model_latency  # noqa: E402
from tensorslim.cost import profile  # noqa: E402
from tensorslim.explore import explore  # noqa: E402
from tensorslim.export import benchmark, export_onnx  # noqa: E402
from tensorslim.report import write_report  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
THREADS = os.environ.get("OMP_NUM_THREADS", "(unset)")  # as the command ran, for the recorded command
MODELS = ROOT / "benchmarks" / "models"
BASELINE = MODELS / "convnet-wide-fashion-mnist"
FINETUNE_BUDGET = MODELS / "convnet-wide-budget-p01"


def speedup(model_dir: Path, base_dir: Path, work: Path, repeats: int) -> dict:
    """ORT batch-1, 1-thread speedup of the exported model over the exported dense one (alternating)."""
    files = {}
    for name, d in (("model", model_dir), ("dense", base_dir)):
        m = modeldir.load(d)
        shape = tuple(modeldir.read_meta(d)["input_shape"])
        files[name] = work / f"{name}.onnx"
        export_onnx(m, files[name], shape)
    r = benchmark(str(files["model"]), against=str(files["dense"]), batch_sizes=(1,), threads=1, repeats=repeats)
    c = r.to_dict()["comparison"][0]
    return {"speedup_b1": c["speedup"], "files": {k: str(v) for k, v in files.items()}}


def figures(d: Path, base: dict) -> dict:
    m = modeldir.load(d)
    shape = tuple(modeldir.read_meta(d)["input_shape"])
    p = profile(m, shape).total
    acc = json.loads((d / "metrics.json").read_text())["accuracy"]["test"]
    return {"dir": str(d.relative_to(ROOT)) if d.is_relative_to(ROOT) else str(d), "params": p.params,
            "macs": p.macs, "params_reduction": base["params"] / p.params, "macs_reduction": base["macs"] / p.macs,
            "test_accuracy": acc, "drop": base["test_accuracy"] - acc}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "explore-budget")
    ap.add_argument("--budget", default="params<=0.1,drop<=0.5")
    ap.add_argument("--max-evals", type=int, default=200)
    ap.add_argument("--low-fidelity", default="20")
    ap.add_argument("--full-evals", type=int, default=4)
    ap.add_argument("--finetune-batches", type=int, default=4220, help="4220 = 10 epochs of 128 images")
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--time-budget", default="55m")
    ap.add_argument("--max-error", type=float, default=0.8, help="pruning's largest layer output error kept")
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--target", default=None, help="deployment target the design points' ranks are rounded to "
                    "(ort-x86: as finetune's default rounds its ranks; default: the grids' own ranks)")
    ap.add_argument("--objectives", default="macs,memory,accuracy",
                    help="explore's objectives; with latency, each surviving layer point is timed in ONNX Runtime "
                         "(batch 1, 1 thread) and pruning stage (d) removes those not faster than their dense layer")
    ap.add_argument("--screen", type=int, default=0,
                    help="explore's rung (b) screen: combinations judged by summed layer errors (0: off)")
    ap.add_argument("--warm-start", action="append", default=[],
                    help="explore's warm start: a plan file or model directory (e.g. the finetune-budget model "
                         "benchmarks/models/convnet-wide-budget-p01), tried first with its neighbours")
    ap.add_argument("--json", type=Path, default=RESULTS / "explore-budget.json", help="where the results go")
    ap.add_argument("--rows-only", action="store_true",
                    help="skip explore: re-measure the rows of the run in --out (its pareto.json)")
    args = ap.parse_args(argv)
    torch.set_flush_denormal(True)
    base_model = modeldir.load(BASELINE)
    shape = tuple(modeldir.read_meta(BASELINE)["input_shape"])
    bp = profile(base_model, shape).total
    base = {"params": bp.params, "macs": bp.macs,
            "test_accuracy": json.loads((BASELINE / "metrics.json").read_text())["accuracy"]["test"]}
    low = args.low_fidelity if args.low_fidelity == "zeroshot" else int(args.low_fidelity)
    out_json = args.json
    earlier = json.loads(out_json.read_text()) if args.rows_only else {}
    if args.rows_only:  # re-measure the rows of an explore run already done (its pareto.json and the JSON)
        error, minutes = earlier["explore_error"], earlier["minutes"]
    else:
        # the budget is given to explore itself (it steers the sampler); a missed budget still writes the front
        t0, error = time.perf_counter(), None
        try:
            explore(BASELINE, "fashion-mnist", out=args.out, budget=args.budget, max_evals=args.max_evals,
                    low_fidelity=low, full_evals=args.full_evals, finetune_batches=args.finetune_batches,
                    lr=args.lr, batch_size=args.batch_size, time_budget=args.time_budget, report=write_report,
                    max_error=args.max_error, target=args.target, objectives=args.objectives.split(","),
                    screen=args.screen, warm_start=args.warm_start, latency_timer=ort_layer_ms,
                    model_latency=ort_model_latency,
                    log=lambda m: print(m, flush=True))
        except Exception as err:  # noqa: BLE001 - an unmet budget: read the front it wrote anyway
            error = str(err).splitlines()[0]
            print(f"explore: {error}", flush=True)
        minutes = (time.perf_counter() - t0) / 60
    if not (args.out / "pareto.json").is_file():  # explore stopped before it had a front (bad input, no data)
        print(f"error: explore wrote no {args.out / 'pareto.json'}: {error}", file=sys.stderr)
        return 2
    pareto = json.loads((args.out / "pareto.json").read_text())
    work = args.out / "bench"
    work.mkdir(parents=True, exist_ok=True)
    limits = dict(term.split("<=") for term in args.budget.split(","))
    chosen = pareto.get("selected")
    if chosen is None and pareto["points"]:  # explore's "closest": least drop among points meeting the costs
        ok = [p for p in pareto["points"] if all(p["relative"][k] <= float(v) for k, v in limits.items()
                                                 if k != "drop")] or pareto["points"]
        chosen = min(ok, key=lambda p: p["relative"]["drop"])["id"]
    rows = {}
    for p in pareto["points"]:
        rows[f"explore {p['id']}"] = {**figures(args.out / p["path"], base), "methods": p["methods"], "id": p["id"],
                                      **speedup(args.out / p["path"], BASELINE, work, args.repeats)}
    rows["finetune-budget"] = {**figures(FINETUNE_BUDGET, base), **speedup(FINETUNE_BUDGET, BASELINE, work,
                                                                           args.repeats)}
    goal = {"params_reduction": 10.0, "macs_reduction": 3.0, "drop": 0.5, "speedup_b1": 2.0, "minutes": 60.0}
    e = rows[f"explore {chosen}"]
    met = {"params_reduction": e["params_reduction"] >= 10, "macs_reduction": e["macs_reduction"] >= 3,
           "drop": e["drop"] <= 0.5, "speedup_b1": e["speedup_b1"] >= 2, "minutes": minutes <= 60}
    front = [{k: p[k] for k in ("id", "params", "macs", "accuracy", "val_accuracy", "methods")}
             for p in pareto["points"]]
    beats = [p["id"] for p in pareto["points"] if p["accuracy"] >= rows["finetune-budget"]["test_accuracy"] - 0.05
             and (p["params"] < rows["finetune-budget"]["params"] or p["macs"] < rows["finetune-budget"]["macs"])]
    this = f"OMP_NUM_THREADS={THREADS} .venv/bin/python benchmarks/bench_explore_budget.py " + " ".join(
        argv or sys.argv[1:])
    doc = {"benchmark": "explore-budget", "baseline": str(BASELINE.relative_to(ROOT)), "budget": args.budget,
           "command": earlier["command"] if args.rows_only else this,
           "rows_command": this if args.rows_only else None,
           "settings": earlier["settings"] if args.rows_only else
           {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
           "explore_error": error, "minutes": round(minutes, 1), "search": pareto["search"],
           "pruning": {k: pareto["pruning"][k] for k in ("points", "points_removed_share", "methods", "judged_by")},
           "rows": rows, "judged": f"explore {chosen}", "goal": goal, "met": met, "front": front,
           "front_points_beating_finetune_budget": beats,
           "recipe": earlier["recipe"] if args.rows_only else {
               "finetune-budget": "finetune --budget params=0.1 --distill --epochs 10 --lr 0.02",
               "explore": f"explore full fidelity: {args.finetune_batches} batches of {args.batch_size} "
                          f"({args.finetune_batches * args.batch_size / 54000:.1f} epochs), distilled, "
                          f"lr {args.lr}, cosine"}}
    out_json.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"{'model':<16} {'params':>8} {'x':>6} {'MACs':>10} {'x':>5} {'test %':>7} {'drop':>6} {'ORT b1':>7}")
    for name, r in rows.items():
        print(f"{name:<16} {r['params']:>8,} {r['params_reduction']:>6.2f} {r['macs']:>10,} "
              f"{r['macs_reduction']:>5.2f} {r['test_accuracy']:>7.2f} {r['drop']:>6.2f} {r['speedup_b1']:>6.2f}x")
    print(f"explore took {minutes:.1f} min; goals met: {met}; front points beating finetune --budget: {beats}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
