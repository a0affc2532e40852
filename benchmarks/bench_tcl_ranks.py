"""Automatic vs fixed TCL ranks, over several seeds (issue 14 §6; the TCL-NAS paper's claim that searched TCL
ranks beat hand-set ones).

For each seed and each rank mode, one NSGA-II search on Fashion-MNIST in the space
``benchmarks/spaces/fashion-mnist-110k.json`` (at most 110,000 params and 12 M MACs) with the same low fidelity
as ``bench_search_full.py`` (3 epochs of 60 batches, 4 x 500 validation images, multi-fidelity pruning) and the
same number of finished trials: ``auto`` searches the TCL ranks (fractions 0.25-1 of each head input mode) with
the backbone; ``fixed`` sets them to 0.5, 0.5, 0.5 by hand. Each study is judged by

* its hypervolume on (1 - val accuracy, params / 110,000, MACs / 12 M): the reference point is the space's own
  limits, the same for every study and independent of the trials;
* its best validation accuracy (low fidelity; every model of the space is within 110,000 params).

It prints mean ± standard deviation over the seeds per mode and the per-seed differences, and writes
``benchmarks/results/tcl-ranks.json``. Studies are journal files under ``--work`` (rerun to continue).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_tcl_ranks.py --seeds 0 1 2 --trials 20
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
SPACE = BENCH / "spaces" / "fashion-mnist-110k.json"
FIXED = (0.5, 0.5, 0.5)


def _plain(value):
    """numpy scalars (from the study's records) as Python numbers for JSON."""
    return value.item()


def _study_seconds(study) -> float | None:
    """Wall time of a study from its trials' own start and end times (a resumed or re-read study keeps it)."""
    starts = [t.datetime_start for t in study.get_trials(deepcopy=False) if t.datetime_start]
    ends = [t.datetime_complete for t in study.get_trials(deepcopy=False) if t.datetime_complete]
    return (max(ends) - min(starts)).total_seconds() if starts and ends else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "tcl-ranks")
    ap.add_argument("--out", type=Path, default=BENCH / "results" / "tcl-ranks.json")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT / "src"))
    import torch
    from optuna.trial import TrialState

    from tensorslim.search import Fidelity, run_study
    from tensorslim.search.final import study_hypervolume

    torch.set_flush_denormal(True)
    space = json.loads(SPACE.read_text())
    reference = {"params": space["max_params"], "macs": space["max_macs"], "latency": None}
    low = Fidelity(epochs=3, max_batches=60, val_batches=4)
    args.work.mkdir(parents=True, exist_ok=True)
    runs = []
    for seed in args.seeds:
        for mode in ("auto", "fixed"):
            t0 = time.perf_counter()
            st = run_study("fashion-mnist", space=str(SPACE), rank_mode=mode,
                           fixed_ranks=FIXED if mode == "fixed" else None, n_trials=args.trials,
                           storage=str(args.work / f"{mode}-seed{seed}.journal"), study=f"tcl-{mode}-seed{seed}",
                           strategy="nsga2", low_fidelity=low, seed=seed, log=None)
            hv, _ = study_hypervolume(st, reference)
            done = [t for t in st.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if "values" in t.user_attrs]
            best = max(done, key=lambda t: t.user_attrs["values"]["accuracy"], default=None)
            run = {"seed": seed, "mode": mode, "hypervolume": hv, "complete": len(done),
                   "pruned": sum(t.state == TrialState.PRUNED and not t.user_attrs.get("over_budget")
                                 for t in st.get_trials(deepcopy=False)),
                   "best_val_accuracy": best.user_attrs["values"]["accuracy"] if best else None,
                   "best_params": best.user_attrs["params"] if best else None,
                   "seconds": round(_study_seconds(st) or time.perf_counter() - t0, 1)}
            runs.append(run)
            print(f"seed {seed} {mode:<5}: hypervolume {hv:.4f}, best val acc {run['best_val_accuracy']:.2f} % "
                  f"({run['complete']} complete, {run['pruned']} pruned, {run['seconds'] / 60:.1f} min)", flush=True)

    def stats(mode: str, key: str) -> dict:
        xs = [r[key] for r in runs if r["mode"] == mode and r[key] is not None]
        return {"mean": statistics.mean(xs), "sd": statistics.stdev(xs) if len(xs) > 1 else 0.0, "n": len(xs)}

    diffs = {key: [next(r[key] for r in runs if r["seed"] == s and r["mode"] == "auto")
                   - next(r[key] for r in runs if r["seed"] == s and r["mode"] == "fixed") for s in args.seeds]
             for key in ("hypervolume", "best_val_accuracy")}
    summary = {mode: {k: stats(mode, k) for k in ("hypervolume", "best_val_accuracy")} for mode in ("auto", "fixed")}
    wins = sum(d > 0 for d in diffs["hypervolume"])
    doc = {"benchmark": "tcl-ranks",
           "command": "OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_tcl_ranks.py --seeds "
                      + " ".join(map(str, args.seeds)) + f" --trials {args.trials}",
           "space": str(SPACE.relative_to(ROOT)), "fixed_ranks": list(FIXED), "low_fidelity": vars(low),
           "trials": args.trials, "hypervolume_reference": reference, "runs": runs, "summary": summary,
           "auto_minus_fixed": diffs, "auto_wins_hypervolume": wins, "seeds": len(args.seeds)}
    args.out.write_text(json.dumps(doc, indent=1, default=_plain) + "\n")
    for mode in ("auto", "fixed"):
        h, a = summary[mode]["hypervolume"], summary[mode]["best_val_accuracy"]
        print(f"{mode:<5}: hypervolume {h['mean']:.4f} ± {h['sd']:.4f}, best val acc {a['mean']:.2f} ± {a['sd']:.2f} %")
    print(f"auto beats fixed on hypervolume in {wins} of {len(args.seeds)} seeds; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
