"""CP-ALS against TensorLy's ``parafac`` on planted-rank conv kernels and one large kernel, in one run.

Planted problems (issue 15 §6). For a case (T, S, R): factors A (T×R), B (S×R), C (9×R) with i.i.d. N(0, 1)
entries (k = 3, so the CP-3 view T×S×k² of a 3×3 kernel), ``X₀ = Σ_r a_r ∘ b_r ∘ c_r`` scaled to unit
Frobenius norm, Gaussian noise N scaled to ``||N|| = noise · ||X₀||`` (default 2 %), ``X = X₀ + N``. The seed
of every case is fixed (``--seed`` plus the case's sizes), so every run decomposes the same tensors.

* noise floor: ``floor = ||N|| / ||X||``, the relative error of the planted factors themselves. The best
  rank-R fit lies slightly below it (it also fits some noise: about ``sqrt(1 - dof/numel)`` of it); a run
  stuck in a swamp or a local minimum stays well above it (typically 2–6×).
* reached: ``rel_error <= 1.05 · floor``.

Both sides run with their defaults at rank R: ``tensorslim.decompose.cp_als(X, R)`` and TensorLy
``parafac(X, R)`` (SVD init, ``n_iter_max=100``, ``tol=1e-8``, no line search), both in float64 on the same
torch tensors (TensorLy on its PyTorch backend), one thread each by default (``--threads``). The two are run
in alternation (ours first on even cases, TensorLy first on odd ones), after a warm-up of both.

The large case is the trained-like synthetic 512×512×3×3 kernel of ``bench_decompose.synthetic_kernel`` in its
CP-3 view 512×512×9 at rank 256 (it is not planted: no floor; the table says whether ours is at most
TensorLy's error), and ours is run once more with ``precision="float64"`` (its default runs the two large
GEMMs of a sweep in float32 at this size) to show that the error does not depend on it. ``--big planted``
uses a planted rank-256 kernel of that size instead, ``--big none`` skips it.

Timings on a shared machine move with its load (the JSON records the load average before and after); the
ratio of the two sides, run back to back, moves much less.

Run: ``.venv/bin/python benchmarks/bench_cp.py`` (about 3 minutes on one core, most of it TensorLy on the
large case); writes ``benchmarks/results/cp-planted.json``.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: tests._tensorly

from bench_decompose import synthetic_kernel  # noqa: E402
from tests import _tensorly as tly  # noqa: E402

from tensorslim.decompose import cp_als, cp_to_tensor  # noqa: E402

CASES = [(64, 64, 16), (64, 64, 32), (128, 128, 32), (128, 128, 64), (256, 256, 32), (256, 256, 64),
         (128, 64, 48), (64, 128, 24)]
FLOOR_MARGIN = 1.05
RESULTS = Path(__file__).resolve().parent / "results" / "cp-planted.json"


def planted(T: int, S: int, R: int, *, k2: int = 9, noise: float = 0.02, seed: int = 0
            ) -> tuple[torch.Tensor, float]:
    """``(X, floor)`` for the planted case (see the module doc); deterministic in its arguments."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + T * 7919 + S * 104_729 + R * 13 + k2)
    factors = [torch.randn(n, R, generator=gen, dtype=torch.float64) for n in (T, S, k2)]
    clean = cp_to_tensor(None, factors)
    clean = clean / clean.norm()
    noise_t = torch.randn(T, S, k2, generator=gen, dtype=torch.float64)
    noise_t = noise_t * (noise / noise_t.norm())
    x = clean + noise_t
    return x, float(noise_t.norm() / x.norm())


def run(fn: Any, x: torch.Tensor, rank: int, repeats: int) -> tuple[float, float, int]:
    """``(rel_error, fastest wall seconds, sweeps)`` of ``fn(x, rank)`` over ``repeats`` runs."""
    best, res = math.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        res = fn(x, rank)
        best = min(best, time.perf_counter() - start)
    assert res is not None
    return float(res.rel_error), best, int(res.n_iter)


def compare(name: str, x: torch.Tensor, rank: int, floor: float | None, ours_first: bool, repeats: int,
            use_tl: bool) -> dict[str, Any]:
    sides = [("ours", cp_als), ("tensorly", tly.parafac)]
    if not ours_first:
        sides.reverse()
    out: dict[str, Any] = {"case": name, "shape": list(x.shape), "rank": rank, "floor": floor,
                           "order": [s for s, _ in sides]}
    for side, fn in sides:
        if side == "tensorly" and not use_tl:
            continue
        err, secs, sweeps = run(fn, x, rank, repeats)
        if side == "ours":
            out["ours_n_iter"] = sweeps
        out[side] = {"rel_error": err, "seconds": secs,
                     "reached": None if floor is None else err <= FLOOR_MARGIN * floor}
    if "tensorly" in out:
        out["time_ratio_tensorly_over_ours"] = out["tensorly"]["seconds"] / out["ours"]["seconds"]
    return out


def fmt_row(row: dict[str, Any]) -> str:
    ours, ref = row["ours"], row.get("tensorly")
    floor = row["floor"]

    def mark(side: dict[str, Any] | None) -> str:
        if side is None:
            return "-"
        if floor is None:  # not planted: ours against TensorLy's error
            return "-"
        return "yes" if side["reached"] else "NO"

    ref_err = f"{ref['rel_error']:.5f}" if ref else "-"
    ref_s = f"{ref['seconds']:.2f}" if ref else "-"
    ratio = f"{row['time_ratio_tensorly_over_ours']:.1f}x" if ref else "-"
    floor_s = f"{floor:.5f}" if floor is not None else "-"
    return (f"{row['case']:<22} {ours['rel_error']:>9.5f} {ref_err:>9} {floor_s:>8} {mark(ours):>5} "
            f"{mark(ref):>5} {row['ours_n_iter']:>5} {ours['seconds']:>8.2f} "
            f"{ref_s:>8} {ratio:>7}")


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore", module="tensorly")  # its SVD init clips n_eigenvecs to a mode's size
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--noise", type=float, default=0.02, help="noise level ||N||/||X0|| (default 0.02)")
    parser.add_argument("--seed", type=int, default=0, help="seed offset of the planted problems")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--repeats", type=int, default=1, help="runs per side and case; the fastest counts")
    parser.add_argument("--big", choices=["trained", "planted", "none"], default="trained",
                        help="the 512x512x3x3 rank-256 case (default: the trained-like synthetic kernel)")
    parser.add_argument("--cases", type=str, nargs="*", default=None,
                        help="planted cases as TxSxR (default: the 8 of issue 15)")
    parser.add_argument("--no-tensorly", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_flush_denormal(True)
    torch.set_num_threads(args.threads)
    use_tl = not args.no_tensorly and tly.available()
    cases = CASES if args.cases is None else [tuple(int(v) for v in c.lower().split("x")) for c in args.cases]

    warm = torch.randn(8, 7, 6, dtype=torch.float64)
    cp_als(warm, 3)
    if use_tl:
        tly.parafac(warm, 3)

    load_before = os.getloadavg()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), float64; noise {args.noise:g}; "
          f"reached = rel_error <= {FLOOR_MARGIN} x floor (floor = ||N||/||X||); ratio = tensorly s / ours s")
    header = (f"{'case':<22} {'ours err':>9} {'tl err':>9} {'floor':>8} {'ours':>5} {'tl':>5} {'it':>5} "
              f"{'ours s':>8} {'tl s':>8} {'ratio':>7}")
    print(header)
    print("-" * len(header))
    rows = []
    for i, (T, S, R) in enumerate(cases):
        x, floor = planted(T, S, R, noise=args.noise, seed=args.seed)
        row = compare(f"planted {T}x{S}x9 R{R}", x, R, floor, i % 2 == 0, args.repeats, use_tl)
        rows.append(row)
        print(fmt_row(row), flush=True)
    big = None
    if args.big != "none":
        if args.big == "trained":
            x = synthetic_kernel(512, 512).double().reshape(512, 512, 9)
            big = compare("trained 512x512x9 R256", x, 256, None, True, 1, use_tl)
        else:
            x, floor = planted(512, 512, 256, noise=args.noise, seed=args.seed)
            big = compare("planted 512x512x9 R256", x, 256, floor, True, 1, use_tl)
        print(fmt_row(big), flush=True)
        # the same run in float64 throughout (precision="auto" uses float32 GEMMs at this size)
        err, secs, sweeps = run(functools.partial(cp_als, precision="float64"), x, 256, 1)
        big["ours_float64"] = {"rel_error": err, "seconds": secs, "n_iter": sweeps}
        print(f"{'  ours precision=float64':<22} {err:>9.5f} {'':>9} {'':>8} {'':>5} {'':>5} {sweeps:>5} "
              f"{secs:>8.2f}", flush=True)

    def count(side: str) -> int:
        return sum(1 for r in rows if side in r and r[side]["reached"])

    summary: dict[str, Any] = {"cases": len(rows), "ours_reached": count("ours")}
    if use_tl:
        summary["tensorly_reached"] = count("tensorly")
        summary["ours_seconds_total"] = sum(r["ours"]["seconds"] for r in rows)
        summary["tensorly_seconds_total"] = sum(r["tensorly"]["seconds"] for r in rows)
    print(f"noise floor reached: ours {summary['ours_reached']}/{len(rows)}"
          + (f", tensorly {summary['tensorly_reached']}/{len(rows)}; planted total seconds: ours "
             f"{summary['ours_seconds_total']:.2f}, tensorly {summary['tensorly_seconds_total']:.2f}"
             if use_tl else ""))
    if big is not None and "tensorly" in big:
        print(f"large case: ours {big['ours']['rel_error']:.5f} in {big['ours']['seconds']:.1f} s, tensorly "
              f"{big['tensorly']['rel_error']:.5f} in {big['tensorly']['seconds']:.1f} s")

    report = {
        "benchmark": "bench_cp.py",
        "definition": {
            "problem": "X = X0/||X0|| + N, X0 = sum_r a_r o b_r o c_r with N(0,1) factors T x R, S x R, 9 x R",
            "noise": args.noise, "floor": "||N|| / ||X||", "reached": f"rel_error <= {FLOOR_MARGIN} * floor",
            "ours": "tensorslim.decompose.cp_als(X, R) defaults",
            "tensorly": "tensorly parafac(X, R) defaults (init svd, n_iter_max 100, tol 1e-8), pytorch backend",
            "big": args.big, "seed": args.seed,
        },
        "environment": {"torch": torch.__version__, "threads": torch.get_num_threads(),
                        "python": platform.python_version(), "cpus": os.cpu_count(),
                        "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
        "rows": rows, "big": big, "summary": summary,
    }
    if use_tl:
        import tensorly

        report["environment"]["tensorly"] = tensorly.__version__
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
