"""Do the cheap rungs of the fidelity ladder rank design points like their fine-tuned test accuracy does?

On a committed baseline (default: the convnet on Fashion-MNIST), ``--points`` whole-model design points are
drawn from the per-layer design space (:func:`tensorslim.explore.space.enumerate_space`, every method, no
pruning): for each method family, points that compress only with that family (each layer it applies to
compressed with probability 0.7), and as many mixed points (each layer: dense or a random applicable
method). Every point is judged by

* ``weight_error``: the mean relative Frobenius error of the compressed layers' weights (what explore's
  pruning used to threshold);
* ``output_error`` — rung (b): the sum over compressed layers of each layer's relative output error on real
  activations (``--calibration`` training images, :func:`tensorslim.surgery.output_errors`);
* ``output_disagreement`` — rung (b) seen at the network's output: the sum over compressed layers of the share
  of the same images whose top-1 class changes when that layer alone is replaced
  (:func:`tensorslim.surgery.output_disagreements`);
* ``logit_error``: the relative error of the whole network's logits on the same images;
* ``zero_shot``: validation accuracy with no training (``--val-samples`` images);
* ``short_ft`` — rung (c): validation accuracy after ``--short-batches`` batches of fine-tuning;
* ``final`` — the target, rung (d): **test** accuracy after ``--final-epochs`` epochs of fine-tuning with
  the ``finetune`` recipe (distillation from the dense model, α 0.5, T 4; SGD, cosine schedule, lr 0.01).

It prints, for each proxy, the Spearman rank correlation with ``final`` over all points and within each
family, and writes ``benchmarks/results/proxy.json``.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_proxy.py --points 36
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from tensorslim import data, modeldir, surgery  # noqa: E402
from tensorslim.explore.space import enumerate_space  # noqa: E402
from tensorslim.train import TrainConfig, evaluate, train  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
THREADS = os.environ.get("OMP_NUM_THREADS", "(unset)")  # as the command ran, for the recorded command
BASELINE = ROOT / "benchmarks" / "models" / "convnet-fashion-mnist"
PROXIES = ("weight_error", "output_error", "output_disagreement", "logit_error", "zero_shot", "short_ft")
LOWER_IS_BETTER = {"weight_error", "output_error", "output_disagreement", "logit_error"}


def draw_points(spaces, n: int, seed: int) -> list[dict]:
    """``n`` whole-model points: per family (the methods of the space) and mixed, alternating."""
    rng = random.Random(seed)
    families = sorted({p.method for s in spaces for p in s.points})
    points: list[dict] = []
    attempts = 0
    while len(points) < n and attempts < 50 * n:
        attempts += 1
        family = families[len(points) % (2 * len(families)) // 2] if len(points) % 2 == 0 else "mixed"
        choice = {}
        for s in spaces:
            if family == "mixed":  # a method first (TT's many shapes must not crowd out the others), then a point
                methods = sorted({p.method for p in s.points})
                method = rng.choice(methods) if rng.random() < 0.6 else None
                pool = [p for p in s.points if p.method == method]
            else:
                pool = [p for p in s.points if p.method == family] if rng.random() < 0.7 else []
            if pool:
                choice[s.name] = rng.choice(pool)
        if not choice:
            continue
        key = tuple(sorted((k, p.key) for k, p in choice.items()))
        if any(q["key"] == key for q in points):
            continue
        points.append({"family": family, "key": key, "choice": choice})
    return points


def relative_logit_error(a: torch.nn.Module, b: torch.nn.Module, x: torch.Tensor) -> float:
    with torch.inference_mode():
        ya, yb = a.eval()(x).double(), b.eval()(x).double()
    return float((yb - ya).norm() / ya.norm())


def judge(base, point, sets, calib, args) -> dict:
    train_set, val_set, test_set = sets
    rules = [p.rule() for p in point["choice"].values()]
    t0 = time.perf_counter()
    small, report = surgery.compress_with_report(base, {"rules": rules}, tuple(calib.shape[1:]))
    names = [e["name"] for e in report.layers]
    if not names:
        return {}
    errs = [float(getattr(small.get_submodule(n), "rel_error", None) or np.nan) for n in names]
    out = surgery.output_errors(base, small, calib, names)
    flips = surgery.output_disagreements(base, small, calib, names)
    row = {
        "family": point["family"], "rules": rules, "layers": names,
        "methods": sorted({p.method for p in point["choice"].values()}),
        "params": sum(p.numel() for p in small.parameters()),
        "weight_error": float(np.nanmean(errs)) if not all(np.isnan(errs)) else None,
        "output_error": float(sum(out.values())),
        "output_disagreement": float(sum(flips.values())),
        "layer_output_errors": out, "layer_disagreements": flips,
        "logit_error": relative_logit_error(base, small, calib),
        "zero_shot": evaluate(small, val_set, batch_size=500, max_batches=args.val_samples // 500)["accuracy"],
    }
    short = copy.deepcopy(small)
    train(short, train_set, None, TrainConfig(epochs=1, batch_size=128, lr=0.01, max_batches=args.short_batches,
                                              seed=args.seed, distill_alpha=0.5), teacher=base, log=None)
    row["short_ft"] = evaluate(short, val_set, batch_size=500, max_batches=args.val_samples // 500)["accuracy"]
    cfg = TrainConfig(epochs=args.final_epochs, batch_size=128, lr=0.01, seed=args.seed, distill_alpha=0.5,
                      max_batches=args.final_batches)
    train(small, train_set, None, cfg, teacher=base, log=None)
    row["final"] = evaluate(small, test_set)["accuracy"]
    row["seconds"] = time.perf_counter() - t0
    return row


def signed_pairs(rows: list[dict], proxy: str) -> tuple[np.ndarray, np.ndarray]:
    """The (proxy, final) values of the rows that have the proxy, the proxy negated where lower is better (so
    that a good proxy correlates positively)."""
    pairs = [(r[proxy], r["final"]) for r in rows if r.get(proxy) is not None]
    sign = -1.0 if proxy in LOWER_IS_BETTER else 1.0
    return sign * np.array([p[0] for p in pairs], float), np.array([p[1] for p in pairs], float)


def correlations(rows: list[dict]) -> dict:
    out = {}
    groups = {"all": rows, **{f: [r for r in rows if r["family"] == f] for f in sorted({r["family"] for r in rows})}}
    for name, group in groups.items():
        out[name] = {"n": len(group)}
        for proxy in PROXIES:
            x, y = signed_pairs(group, proxy)
            if len(x) < 4:
                out[name][proxy] = None
                continue
            rho = spearmanr(x, y).statistic
            out[name][proxy] = None if np.isnan(rho) else round(float(rho), 3)
    return out


def bootstrap_interval(rows: list[dict], proxy: str, draws: int = 2000, seed: int = 0) -> list[float] | None:
    """95 % percentile-bootstrap interval of the Spearman correlation of ``proxy`` with ``final`` over ``rows``
    (points resampled with replacement): how far n points pin the correlation down."""
    x, y = signed_pairs(rows, proxy)
    if len(x) < 8:
        return None
    rng = np.random.default_rng(seed)
    rhos = []
    for _ in range(draws):
        idx = rng.integers(0, len(x), len(x))
        rho = spearmanr(x[idx], y[idx]).statistic
        if not np.isnan(rho):
            rhos.append(rho)
    lo, hi = np.percentile(rhos, [2.5, 97.5])
    return [round(float(lo), 3), round(float(hi), 3)]


def family_bias(rows: list[dict]) -> dict:
    """Per proxy and method: the mean of rank(final) - rank(proxy) over the points using that method, as a
    share of the number of points. Positive: the proxy ranks that method's points worse than they end up."""
    out = {}
    n = len(rows)
    if n < 4:
        return out
    final_rank = np.argsort(np.argsort([r["final"] for r in rows]))
    for proxy in PROXIES:
        values = [r.get(proxy) for r in rows]
        if any(v is None for v in values):
            continue
        sign = -1.0 if proxy in LOWER_IS_BETTER else 1.0
        proxy_rank = np.argsort(np.argsort(np.multiply(sign, values), kind="stable"), kind="stable")
        out[proxy] = {}
        for m in sorted({m for r in rows for m in r["methods"]}):
            idx = [i for i, r in enumerate(rows) if m in r["methods"]]
            out[proxy][m] = round(float(np.mean(final_rank[idx] - proxy_rank[idx])) / n, 3)
    return out


def table(corr: dict) -> str:
    head = f"{'points':<10} {'n':>3} " + " ".join(f"{p:>12}" for p in PROXIES)
    lines = [head, "-" * len(head)]
    for name, c in corr.items():
        cells = " ".join(f"{'-' if c[p] is None else format(c[p], '.2f'):>12}" for p in PROXIES)
        lines.append(f"{name:<10} {c['n']:>3} {cells}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", type=Path, default=BASELINE)
    ap.add_argument("--points", type=int, default=40)
    ap.add_argument("--calibration", type=int, default=256)
    ap.add_argument("--val-samples", type=int, default=2000)
    ap.add_argument("--short-batches", type=int, default=50)
    ap.add_argument("--final-epochs", type=int, default=1)
    ap.add_argument("--final-batches", type=int, default=None, help="cap per epoch (smoke runs)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RESULTS / "proxy.json")
    ap.add_argument("--rescore", type=Path, help="recompute the statistics of a finished run's JSON from its "
                    "points (nothing measured) and rewrite it")
    args = ap.parse_args(argv)
    if args.rescore:
        doc = json.loads(args.rescore.read_text())
        doc.update(correlations=correlations(doc["points"]), family_bias=family_bias(doc["points"]),
                   interval95={p: bootstrap_interval(doc["points"], p) for p in PROXIES})
        args.rescore.write_text(json.dumps(doc, indent=1) + "\n")
        print(table(doc["correlations"]))
        return 0
    torch.set_flush_denormal(True)
    torch.manual_seed(args.seed)
    base = modeldir.load(args.baseline).eval()
    dataset = modeldir.read_meta(args.baseline)["dataset"]
    sets = tuple(data.load(dataset, split) for split in ("train", "val", "test"))
    calib = torch.stack([sets[0][i][0] for i in range(args.calibration)])
    shape = tuple(calib.shape[1:])
    spaces = enumerate_space(surgery.candidates(base, shape), methods=("svd", "cp", "tucker2", "tt", "tcl"))
    points = draw_points(spaces, args.points, args.seed)
    print(f"{len(points)} design points on {args.baseline.name} ({dataset}); per-layer space: "
          + ", ".join(f"{s.name} {len(s.points)}" for s in spaces), flush=True)
    rows, start = [], time.perf_counter()
    for i, point in enumerate(points):
        row = judge(base, point, sets, calib, args)
        if not row:
            continue
        rows.append(row)
        done = time.perf_counter() - start
        print(f"[{i + 1}/{len(points)}] {row['family']:<8} {'+'.join(row['methods']):<22} out-err "
              f"{row['output_error']:.3f} zero-shot {row['zero_shot']:5.1f} short {row['short_ft']:5.1f} "
              f"final {row['final']:5.2f}  ETA {done / (i + 1) * (len(points) - i - 1) / 60:.1f} min", flush=True)
    corr = correlations(rows)
    bias = family_bias(rows)
    interval = {p: bootstrap_interval(rows, p) for p in PROXIES}
    print(table(corr))
    print("95 % bootstrap intervals over all points: "
          + ", ".join(f"{p} {v[0]:.2f}..{v[1]:.2f}" for p, v in interval.items() if v))
    if "output_error" in bias:
        print("rank bias of rung (b) per method (mean rank(final) - rank(proxy), share of points; + = under-rated): "
              + ", ".join(f"{m} {v:+.2f}" for m, v in bias["output_error"].items()))
    doc = {"benchmark": "proxy", "baseline": str(args.baseline.relative_to(ROOT)) if args.baseline.is_relative_to(
        ROOT) else str(args.baseline), "dataset": dataset, "settings": {k: (str(v) if isinstance(v, Path) else v)
                                                                       for k, v in vars(args).items()},
           "target": "test accuracy after the final fine-tuning (distillation, cosine, lr 0.01)",
           "command": f"OMP_NUM_THREADS={THREADS} .venv/bin/python benchmarks/bench_proxy.py "
                      + " ".join(argv or sys.argv[1:]),
           "correlations": corr, "interval95": interval, "family_bias": bias, "points": rows,
           "minutes": round((time.perf_counter() - start) / 60, 1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
