"""Design-space exploration benchmark: pruning share, search budget, hypervolume, mixed vs single-method fronts.

    nice -n 10 .venv/bin/python benchmarks/bench_explore.py [--models lenet5,convnet] [--work /tmp/bench-explore]

For each model (a trained Fashion-MNIST model directory; the lead's ``runs/baselines/<model>-fashion-mnist``
by default, ``--lenet5 DIR`` / ``--convnet DIR`` to override):

1. ``tensorslim.explore.explore`` with the default methods: per-layer design points, pruning before any
   training (share of the whole-model space removed), NSGA-II at low fidelity (zero-shot accuracy on
   ``--val-samples`` validation images), at most 20 full-fidelity evaluations (fine-tune ``--finetune-batches``
   batches, whole validation split), Pareto set saved.
2. Reference front at low fidelity: exhaustive enumeration of the pruned space when it has at most
   ``--exhaustive-limit`` models, otherwise a ``--reference-factor`` × larger NSGA-II run. Hypervolume of the
   search's low-fidelity front / hypervolume of the reference front, on (MACs/original, memory/original,
   1 − accuracy), reference point (1.1, 1.1, 1.0).
3. Single-method fronts: every model of the pruned space that uses one method family only (exhaustive per
   family, low fidelity), against the mixed-method front (the search's trials): does the mixed front hold a
   point no single-method model weakly dominates?

Writes ``benchmarks/results/explore.json`` and ``benchmarks/results/explore.png``; prints the tables.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import shutil
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
REF_POINT = (1.1, 1.1, 1.0)


def normalised(p: dict, base: dict, acc_key: str) -> tuple[float, float, float]:
    return (p["macs"] / base["macs"], p["memory"] / base["memory"], 1.0 - p[acc_key] / 100.0)


def lowfi_eval(ev, choice, val_set, val_samples):
    from tensorslim.explore.core import lowfi_accuracy

    model = ev.build(choice)
    acc = lowfi_accuracy(model, val_set, val_samples)
    return {"choices": choice, "lowfi_accuracy": acc, **ev.costs(model)}


def rebuild_space(model_dir: Path, out: Path, max_error: float, max_factors: int):
    """The same pruned space explore() used (errors come from its cache)."""
    from tensorslim import modeldir, surgery
    from tensorslim.explore import ErrorCache, enumerate_space, prune
    from tensorslim.explore.core import _Evaluator

    model = modeldir.load(model_dir)
    shape = tuple(modeldir.read_meta(model_dir)["input_shape"])
    spaces = enumerate_space(surgery.candidates(model, shape), max_factors=max_factors)
    prune(spaces, max_error=max_error, cache=ErrorCache(out / "cache" / "errors.json"))
    return model, spaces, _Evaluator(model, spaces, shape)


def run_model(name: str, model_dir: Path, args, work: Path) -> dict:
    from tensorslim import data
    from tensorslim.explore import ExploreError, explore, hypervolume, pareto_indices, parse_budget, pick
    from tensorslim.explore.plots import mixed_dominates

    out = work / name / "mixed"
    common = dict(max_factors=args.max_factors, max_error=args.max_error, val_samples=args.val_samples,
                  finetune_batches=args.finetune_batches, full_evals=20, seed=0, log=print)
    t0 = time.perf_counter()
    res = explore(model_dir, "fashion-mnist", out=out, max_evals=args.max_evals, **common)
    t_search = time.perf_counter() - t0
    pareto = res.pareto
    base = pareto["original"]
    trials = json.loads((out / "trials.json").read_text())

    # reference front at low fidelity -----------------------------------------------------------------------
    t0 = time.perf_counter()
    model, spaces, ev = rebuild_space(model_dir, out, args.max_error, args.max_factors)
    live = [s for s in spaces if s.survivors]
    size = math.prod(1 + len(s.survivors) for s in live)
    val_set = data.load("fashion-mnist", "val")
    batches = args.val_samples
    if size <= args.exhaustive_limit:
        ref_kind = f"exhaustive ({size} models)"
        ref_points = [lowfi_eval(ev, dict(zip([s.name for s in live], picks)), val_set, batches)
                      for picks in itertools.product(*[["dense", *[p.key for p in s.survivors]] for s in live])]
    else:
        ref_out = work / name / "reference"
        (ref_out / "cache").mkdir(parents=True, exist_ok=True)
        shutil.copy(out / "cache" / "errors.json", ref_out / "cache" / "errors.json")
        n_ref = args.max_evals * args.reference_factor
        ref_kind = f"NSGA-II, {n_ref} trials (space of {size:.3g} models)"
        explore(model_dir, "fashion-mnist", out=ref_out, max_evals=n_ref, plots=False,
                **{**common, "seed": 1, "full_evals": 1, "finetune_batches": 0, "log": None})
        ref_points = json.loads((ref_out / "trials.json").read_text()) + trials  # best known
    t_ref = time.perf_counter() - t0
    lowfi = [normalised(t, base, "lowfi_accuracy") for t in trials]
    reference = [normalised(t, base, "lowfi_accuracy") for t in ref_points]
    front = [lowfi[i] for i in pareto_indices(lowfi)]
    ref_front = [reference[i] for i in pareto_indices(reference)]
    hv, hv_ref = hypervolume(front, REF_POINT), hypervolume(ref_front, REF_POINT)

    # single-method fronts (exhaustive per family) ------------------------------------------------------------
    families = sorted({p.method for s in live for p in s.survivors})
    single = {}
    for fam in families:
        options = [["dense", *[p.key for p in s.survivors if p.method == fam]] for s in live]
        n = math.prod(len(o) for o in options)
        if n > args.exhaustive_limit:
            pts = [t for t in ref_points if set(_fams(t["choices"])) <= {fam}]
            how = f"{len(pts)} of the reference runs' models"
        else:
            pts = [lowfi_eval(ev, dict(zip([s.name for s in live], picks)), val_set, batches)
                   for picks in itertools.product(*options)]
            how = f"exhaustive, {n} models"
        norm = [normalised(t, base, "lowfi_accuracy") for t in pts]
        fr = [norm[i] for i in pareto_indices(norm)]
        single[fam] = {"how": how, "models": len(pts), "front": fr, "hypervolume": hypervolume(fr, REF_POINT),
                       "mixed_dominates_somewhere": mixed_dominates(front, fr)}

    budget = "macs<=0.25,params<=0.1,drop<=0.5"
    try:
        chosen = pick(pareto["points"], parse_budget(budget))
        budget_result = f"{chosen['id']}: macs x{chosen['relative']['macs']:.3f}, params " \
                        f"x{chosen['relative']['params']:.3f}, drop {chosen['relative']['drop']:.2f}"
    except ExploreError as err:
        budget_result = f"error: {err}"
    return {
        "model": name, "model_dir": str(model_dir), "original": base, "pruning": pareto["pruning"],
        "search": pareto["search"], "search_seconds": round(t_search, 1), "reference_seconds": round(t_ref, 1),
        "reference": ref_kind, "hypervolume_lowfi": hv, "hypervolume_reference": hv_ref,
        "hypervolume_ratio": hv / hv_ref if hv_ref else float("nan"),
        "lowfi_front": front, "reference_front": ref_front, "single": single,
        "pareto": pareto["points"], "budget": budget, "budget_result": budget_result,
        "plots": str(out / "plots"),
    }


def _fams(choices: dict) -> list[str]:
    return sorted({k.split(":")[0] for k in choices.values() if k != "dense"})


def print_tables(r: dict) -> None:
    p = r["pruning"]
    print(f"\n=== {r['model']} ({r['model_dir']}): original MACs {r['original']['macs']:,}, memory "
          f"{r['original']['memory']:,} B, params {r['original']['params']:,}, "
          f"test acc {r['original']['accuracy']:.2f} %")
    print(f"{'layer':<22} {'points':>7} {'(a)':>6} {'(b)':>6} {'(c)':>6}  survivors by method")
    for lay in p["layers"]:
        by = ", ".join(f"{k} {v['survivors']}/{v['points']}" for k, v in lay["by_method"].items())
        print(f"{lay['layer']:<22} {lay['points']:>7} {lay['after_a']:>6} {lay['after_b']:>6} "
              f"{lay['after_c']:>6}  {by}")
    print(f"{'total':<22} {p['points']['all']:>7} {p['points']['not-cheaper']:>6} {p['points']['dominated']:>6} "
          f"{p['points']['error-bound']:>6}")
    print("whole-model space (product of 1 + points per layer): " + "  ".join(
        f"{k} 10^{v}" for k, v in p["space_log10"].items()))
    print("share of the whole-model space removed before training: " + "  ".join(
        f"{k} {100 * v:.6f} %" for k, v in p["removed_share"].items() if k != "all"))
    s = r["search"]
    print(f"search: {s['trials']} low-fidelity trials ({r['search_seconds']} s), low-fi front {s['lowfi_front']}, "
          f"{s['full_evaluations']} full-fidelity evaluations ({s['finetune_batches']} fine-tune batches each)")
    print(f"reference: {r['reference']} ({r['reference_seconds']} s); hypervolume low-fi front "
          f"{r['hypervolume_lowfi']:.4f} / reference {r['hypervolume_reference']:.4f} = {r['hypervolume_ratio']:.3f}")
    print(f"{'front':<8} {'how':<34} {'models':>7} {'HV':>7}  mixed front dominates it somewhere")
    print(f"{'mixed':<8} {'NSGA-II trials':<34} {s['trials']:>7} {r['hypervolume_lowfi']:>7.4f}")
    for fam, v in r["single"].items():
        print(f"{fam:<8} {v['how']:<34} {v['models']:>7} {v['hypervolume']:>7.4f}  {v['mixed_dominates_somewhere']}")
    print(f"{'id':<5} {'methods':<24} {'MACs x':>7} {'mem x':>7} {'params x':>8} {'test %':>7} {'drop':>6} "
          f"{'val %':>7}")
    for q in r["pareto"]:
        rel = q["relative"]
        print(f"{q['id']:<5} {'+'.join(q['methods']) or 'dense':<24} {rel['macs']:>7.3f} {rel['memory']:>7.3f} "
              f"{rel['params']:>8.3f} {q['accuracy']:>7.2f} {rel['drop']:>6.2f} {q['val_accuracy']:>7.2f}")
    print(f"budget {r['budget']}: {r['budget_result']}")


def plot(results: list[dict], dest: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6.5 * len(results), 4.6), squeeze=False)
    for ax, r in zip(axes[0], results):
        def step(points, ax=ax, **kw):
            pts = sorted((m, 100 * (1 - e)) for m, _, e in points)
            best, out = -1.0, []
            for m, a in pts:  # 2-D (MACs, accuracy) front of the 3-D front
                if a > best:
                    out.append((m, a))
                    best = a
            if out:
                xs, ys = zip(*out)
                ax.step(xs, ys, where="post", **kw)
        step(r["reference_front"], color="0.6", lw=3, label="reference (low fidelity)")
        step(r["lowfi_front"], color="k", lw=1.6, label="mixed methods, search (low fidelity)")
        for fam, v in r["single"].items():
            step(v["front"], lw=1, ls="--", label=f"{fam} only")
        ax.plot([q["relative"]["macs"] for q in r["pareto"]], [q["val_accuracy"] for q in r["pareto"]], "r*",
                ms=9, label="Pareto set, fine-tuned (val)")
        ax.set_xscale("log")
        ax.set_xlabel("MACs / original")
        ax.set_ylabel("validation accuracy (%)")
        ax.set_title(f"{r['model']} / Fashion-MNIST")
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    from tensorslim import _atomic

    with _atomic.atomic_path(dest) as tmp:
        fig.savefig(tmp, format="png", dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="lenet5,convnet")
    ap.add_argument("--lenet5", default=str(ROOT / "runs/baselines/lenet5-fashion-mnist"))
    ap.add_argument("--convnet", default=str(ROOT / "runs/baselines/convnet-fashion-mnist"))
    ap.add_argument("--work", default="/tmp/bench-explore")
    ap.add_argument("--max-evals", type=int, default=120)
    ap.add_argument("--reference-factor", type=int, default=4)
    ap.add_argument("--exhaustive-limit", type=int, default=1500)
    ap.add_argument("--val-samples", type=int, default=1000)
    ap.add_argument("--finetune-batches", type=int, default=150)
    ap.add_argument("--max-factors", type=int, default=3)
    ap.add_argument("--max-error", type=float, default=0.5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    work = Path(args.work)
    results = []
    for name in args.models.split(","):
        model_dir = Path(getattr(args, name))
        if not (model_dir / "model.json").is_file():
            sys.exit(f"error: {model_dir}: no trained {name} model directory (train one, or pass --{name})")
        r = run_model(name, model_dir, args, work)
        print_tables(r)
        results.append(r)
    from tensorslim import _atomic

    RESULTS.mkdir(parents=True, exist_ok=True)
    merged = {}  # models run by an earlier invocation (with their own arguments) are kept
    if (RESULTS / "explore.json").is_file():
        try:
            merged = {r["model"]: r for r in json.loads((RESULTS / "explore.json").read_text())["results"]}
        except (ValueError, KeyError, TypeError):
            merged = {}
    for r in results:
        r["args"] = vars(args)
        merged[r["model"]] = r
    ordered = [merged[m] for m in sorted(merged, key=lambda m: ["lenet5", "convnet"].index(m)
                                         if m in ("lenet5", "convnet") else 9)]
    _atomic.write_text(RESULTS / "explore.json", json.dumps({"results": ordered}, indent=1))
    plot(ordered, RESULTS / "explore.png")
    print(f"\nwrote {RESULTS / 'explore.json'} and {RESULTS / 'explore.png'}")


if __name__ == "__main__":
    main()
