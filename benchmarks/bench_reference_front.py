"""How close does the explore sampler get to the true front of a real design space, with few evaluations?

On a committed baseline (default: the convnet on Fashion-MNIST), the per-layer design space of every explored
method is pruned on real activations (:func:`tensorslim.explore.pruning.prune` with calibration inputs: each
point judged by its layer's relative output error, rung (b) of the fidelity ladder). From each layer's
survivors ``--per-layer`` points are kept (spread over their parameter counts); with "keep dense" that gives
a grid of ``prod(1 + k)`` whole-model combinations. Every combination is evaluated at rung (b) — params and
MACs exactly (the dense totals minus each replaced layer's saving) and the summed per-layer output error —
so the **reference front** is the exact non-dominated set of the whole grid (minimising params, MACs,
error), independent of any search.

The search is the sampler ``tensorslim explore`` uses (Optuna NSGA-II, one categorical choice per layer),
given ``--share`` of the grid as evaluations, over ``--seeds`` seeds; random sampling at the same budget is the
comparison. A third row merges the per-layer fronts exactly (rung (b) is a sum over layers, so the grid's front
is the front of front-so-far ⊕ next layer, one layer at a time): it needs no model evaluation and, as a
cross-check of the grid arithmetic, must give a share of 1. Hypervolumes are in normalised units
(params / dense, MACs / dense, error / the grid's largest error) with the fixed reference point
(1.1, 1.1, 1.1). The goal: ≥ 0.95 of the reference front's hypervolume with ≤ 10 % of the evaluations.

Then ``--finetune`` points spread along the reference front are fine-tuned (``--epochs``, distillation from
the dense model, SGD lr 0.01, cosine) and tested on the test split, to show what rung (b) values mean in
accuracy. Writes ``benchmarks/results/reference-front.json``.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_reference_front.py
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import torch
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from tensorslim import data, modeldir, surgery  # noqa: E402
from tensorslim.cost import profile  # noqa: E402
from tensorslim.explore.layer_errors import capture_inputs  # noqa: E402
from tensorslim.explore.pruning import dominated_mask, prune  # noqa: E402
from tensorslim.explore.space import enumerate_space  # noqa: E402
from tensorslim.study.pareto import hypervolume  # noqa: E402
from tensorslim.train import TrainConfig, evaluate, train  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
THREADS = os.environ.get("OMP_NUM_THREADS", "(unset)")  # as the command ran, for the recorded command
BASELINE = ROOT / "benchmarks" / "models" / "convnet-fashion-mnist"
REFERENCE = (1.1, 1.1, 1.1)


def spread(points: list, k: int) -> list:
    """``k`` points evenly spaced over the list sorted by params (all of them when there are fewer)."""
    pts = sorted(points, key=lambda p: (p.params, p.error))
    if len(pts) <= k:
        return pts
    return [pts[round(i * (len(pts) - 1) / (k - 1))] for i in range(k)] if k > 1 else [pts[len(pts) // 2]]


def grid_values(layers, dense_params: int, dense_macs: int) -> tuple[np.ndarray, np.ndarray]:
    """Every combination as (indices per layer, (params, MACs, error) rows); index 0 = keep dense."""
    options = []
    for s, pts in layers:
        d = s.dense_cost()
        options.append([(0, 0, 0.0)] + [(d["params"] - p.params, d["macs"] - p.macs, p.error) for p in pts])
    sizes = [len(o) for o in options]
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in sizes], indexing="ij"), -1).reshape(-1, len(sizes))
    values = np.zeros((len(idx), 3))
    for j, o in enumerate(options):
        table = np.array(o, dtype=float)
        values[:, 0] -= table[idx[:, j], 0]
        values[:, 1] -= table[idx[:, j], 1]
        values[:, 2] += table[idx[:, j], 2]
    values[:, 0] += dense_params
    values[:, 1] += dense_macs
    return idx, values


def normalise(values: np.ndarray, dense_params: int, dense_macs: int, max_error: float) -> np.ndarray:
    return values / np.array([dense_params, dense_macs, max_error])


def front_hv(norm: np.ndarray) -> float:
    keep = ~dominated_mask(norm)
    return hypervolume(norm[keep].tolist(), REFERENCE)


def exact_merge(layers, norm_scale: np.ndarray, dense_params: int, dense_macs: int) -> tuple[np.ndarray, int]:
    """The rung-(b) front built layer by layer: rung (b) is additive over layers, so the front of the whole
    grid is the non-dominated part of (front so far) ⊕ (next layer's options), merged one layer at a time.
    Returns the front (normalised) and the number of partial combinations it formed (no model is run)."""
    front = np.array([[dense_params, dense_macs, 0.0]])
    formed = 0
    for s, pts in layers:
        d = s.dense_cost()
        opts = np.array([[0, 0, 0.0]] + [[p.params - d["params"], p.macs - d["macs"], p.error] for p in pts])
        combined = (front[:, None, :] + opts[None, :, :]).reshape(-1, 3)
        formed += len(combined)
        front = combined[~dominated_mask(combined)]
        front = np.unique(front, axis=0)
    return front / norm_scale, formed


def run_search(sizes: list[int], lookup, n_trials: int, seed: int, sampler: str) -> np.ndarray:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    s = optuna.samplers.NSGAIISampler(seed=seed) if sampler == "nsga2" else optuna.samplers.RandomSampler(seed=seed)
    study = optuna.create_study(directions=["minimize"] * 3, sampler=s)
    seen = []

    def objective(trial):
        pick = tuple(trial.suggest_categorical(f"l{j}", list(range(n))) for j, n in enumerate(sizes))
        v = lookup(pick)
        seen.append(v)
        return tuple(v)

    study.optimize(objective, n_trials=n_trials)
    return np.array(seen)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", type=Path, default=BASELINE)
    ap.add_argument("--per-layer", type=int, default=3)
    ap.add_argument("--max-error", type=float, default=1.0)
    ap.add_argument("--calibration", type=int, default=256)
    ap.add_argument("--share", type=float, default=0.1, help="evaluations as a share of the grid")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--finetune", type=int, default=6, help="reference-front points to fine-tune and test")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--max-batches", type=int, default=None, help="per epoch (smoke runs)")
    ap.add_argument("--out", type=Path, default=RESULTS / "reference-front.json")
    args = ap.parse_args(argv)
    torch.set_flush_denormal(True)
    t0 = time.perf_counter()
    base = modeldir.load(args.baseline).eval()
    dataset = modeldir.read_meta(args.baseline)["dataset"]
    train_set, test_set = data.load(dataset, "train"), data.load(dataset, "test")
    x = torch.stack([train_set[i][0] for i in range(args.calibration)])
    shape = tuple(x.shape[1:])
    spaces = enumerate_space(surgery.candidates(base, shape))
    report = prune(spaces, max_error=args.max_error, calibration=capture_inputs(base, [s.name for s in spaces], x))
    layers = [(s, spread(s.survivors, args.per_layer)) for s in spaces if s.survivors]
    dense_params = sum(p.numel() for p in base.parameters())
    dense_macs = profile(base, shape).total.macs
    idx, values = grid_values(layers, dense_params, dense_macs)
    max_err = float(values[:, 2].max())
    norm = normalise(values, dense_params, dense_macs, max_err)
    ref_keep = ~dominated_mask(norm)
    hv_ref = hypervolume(norm[ref_keep].tolist(), REFERENCE)
    sizes = [1 + len(p) for _, p in layers]
    print(f"grid: {len(idx):,} combinations of {len(layers)} layers ({' x '.join(map(str, sizes))}); reference "
          f"front {int(ref_keep.sum())} points, hypervolume {hv_ref:.4f}; pruning kept "
          f"{1 - report['points_removed_share']:.3%} of {report['points']['all']:,} layer points", flush=True)
    position = {tuple(row): i for i, row in enumerate(idx.tolist())}

    def lookup(pick):
        return norm[position[pick]]

    n_trials = max(1, int(args.share * len(idx)))
    runs = {}
    for sampler in ("nsga2", "random"):
        shares = []
        for seed in range(args.seeds):
            found = run_search(sizes, lookup, n_trials, seed, sampler)
            shares.append(front_hv(found) / hv_ref)
            print(f"{sampler} seed {seed}: {n_trials} evaluations, hypervolume share {shares[-1]:.4f}", flush=True)
        runs[sampler] = {"evaluations": n_trials, "shares": [round(s, 4) for s in shares],
                         "mean": round(float(np.mean(shares)), 4), "spread": round(float(np.std(shares)), 4)}

    merged, formed = exact_merge(layers, np.array([dense_params, dense_macs, max_err]), dense_params, dense_macs)
    runs["exact-merge"] = {"evaluations": 0, "partial_combinations": formed, "front": len(merged),
                           "mean": round(front_hv(merged) / hv_ref, 4), "spread": 0.0}
    print(f"exact merge of the per-layer fronts (rung (b) is additive): {len(merged)} points, "
          f"hypervolume share {runs['exact-merge']['mean']:.4f}, no model evaluated", flush=True)

    # fine-tune a sample of the reference front
    front = np.flatnonzero(ref_keep)
    front = front[np.argsort(values[front, 2])]
    sample = front[np.linspace(0, len(front) - 1, min(args.finetune, len(front))).round().astype(int)]
    tuned = []
    for k, i in enumerate(sample):
        rules = [pts[j - 1].rule() for (s, pts), j in zip(layers, idx[i]) if j > 0]
        small = surgery.compress(base, {"rules": rules}, shape) if rules else modeldir.load(args.baseline)
        cfg = TrainConfig(epochs=args.epochs, batch_size=128, lr=0.01, distill_alpha=0.5, max_batches=args.max_batches)
        train(small, train_set, None, cfg, teacher=base, log=None)
        acc = evaluate(small, test_set)["accuracy"]
        tuned.append({"params": int(values[i, 0]), "macs": int(values[i, 1]), "output_error": float(values[i, 2]),
                      "test_accuracy": acc, "rules": rules})
        print(f"front point {k + 1}/{len(sample)}: params {int(values[i, 0]):,} MACs {int(values[i, 1]):,} "
              f"rung (b) {values[i, 2]:.3f} -> test {acc:.2f} %", flush=True)
    rho = spearmanr([-t["output_error"] for t in tuned], [t["test_accuracy"] for t in tuned]).statistic \
        if len(tuned) >= 3 else None
    base_acc = evaluate(base, test_set)["accuracy"]
    doc = {"benchmark": "reference-front", "baseline": str(args.baseline.relative_to(ROOT)), "dataset": dataset,
           "command": f"OMP_NUM_THREADS={THREADS} .venv/bin/python benchmarks/bench_reference_front.py "
                      + " ".join(argv or sys.argv[1:]),
           "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
           "grid": {"combinations": len(idx), "layers": [s.name for s, _ in layers], "choices": sizes,
                    "reference_front": int(ref_keep.sum()), "hypervolume": round(hv_ref, 5),
                    "reference_point": list(REFERENCE), "normalisation": {"params": dense_params, "macs": dense_macs,
                                                                          "error": max_err}},
           "pruning": {"points": report["points"], "points_removed_share": report["points_removed_share"],
                       "methods": report["methods"]},
           "search": runs, "goal": {"share": 0.95, "evaluations": args.share},
           "finetuned_front": tuned, "baseline_test_accuracy": base_acc,
           "spearman_rung_b_vs_test": None if rho is None or math.isnan(rho) else round(float(rho), 3),
           "minutes": round((time.perf_counter() - t0) / 60, 1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"{'sampler':<8} {'evals':>6} {'HV share (mean ± spread over seeds)':>36}")
    for name, r in runs.items():
        print(f"{name:<8} {r['evaluations']:>6} {r['mean']:>28.4f} ± {r['spread']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
