"""tensorslim against its anchor libraries on the same layers, in one run.

For each layer (a 3×3 conv or an FC layer, with the rank that cuts its MACs 4×, as in bench_layers.py):

1. **Layers** (PyTorch eager, inference mode, 1 thread, batch 1 and 32, every variant timed in alternation):
   our factorized layer, TensorLy-Torch's factorized layer at the same rank (``implementation="factorized"``
   and ``"reconstructed"``), and the dense layer. Median time, and memory: parameter count and bytes.
2. **Decompositions** of the layer's kernel (a trained-like synthetic kernel, bench_decompose.synthetic_kernel)
   at equal rank: ours (CP-ALS, CP power method, partial Tucker, TT-SVD) against TensorLy (parafac,
   partial_tucker, tensor_train): relative reconstruction error and wall time (fastest of up to 3 runs).

Optional packages that are missing (tensorly, tltorch) are reported, never installed. JSON goes to
benchmarks/results/anchors.json; benchmarks/render.py renders it into BENCHMARKS.md.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_anchors.py
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
import warnings
from functools import partial
from pathlib import Path

import torch

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))  # the repository root: tests._tensorly
RESULTS = BENCH / "results"
COMMAND = "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_anchors.py"
LAYERS = {"conv64": ("conv", 64, 32), "conv256": ("conv", 256, 8), "fc512": ("fc", 512, 512)}


def _module(name: str):
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _have(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def _param_bytes(m: torch.nn.Module) -> tuple[int, int]:
    n = sum(p.numel() for p in m.parameters())
    return n, sum(p.numel() * p.element_size() for p in m.parameters())


def layer_rows(cases, bl, repeats: int, warmup: int, use_tltorch: bool) -> list[dict]:
    """Eager timing and memory of ours / TensorLy-Torch / dense, per case and batch size."""
    rows = []
    for k, case in enumerate(cases):
        ours = bl.init_like_trained(case["make"](), k)
        dense = bl.init_like_trained(case["dense"](), 1000 + k)
        variants = {"ours": ours, "dense": dense}
        if use_tltorch:
            variants.update(bl.tl_models(case))
        for b in bl.BATCHES:
            x = torch.randn((b, *case["shape"]), generator=torch.Generator().manual_seed(b))
            if x.ndim == 4:  # torch's faster layout for convs, for every variant alike
                x = x.contiguous(memory_format=torch.channels_last)
                mods = {n: bl._channels_last_copy(m) for n, m in variants.items()}
            else:
                mods = variants
            calls = {n: (lambda m=m, x=x: m(x)) for n, m in mods.items()}
            with torch.inference_mode():
                times = bl.time_alternating(calls, repeats, warmup)
            med = {n: statistics.median(ts) / 1e6 for n, ts in times.items()}
            for n, m in variants.items():
                params, nbytes = _param_bytes(m)
                ratios = [a / d for a, d in zip(times[n], times["ours"])]
                rows.append({"layer": case["layer"], "method": case["method"], "rank": case["rank"], "batch": b,
                             "variant": n, "ms": med[n], "vs_ours": statistics.median(ratios), "params": params,
                             "param_bytes": nbytes})
        print(".", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return rows


def decomposition_rows(cases, bd, use_tensorly: bool) -> list[dict]:
    """Ours against TensorLy at equal rank on each conv case's (synthetic, trained-like) kernel."""
    from tests import _tensorly as tly

    from tensorslim.decompose import cp_als, cp_power, partial_tucker, tt_svd

    bd.warm_up(use_tensorly)
    rows = []
    for case in cases:
        if case["method"] == "svd":
            continue
        c = case["shape"][0]
        kernel = bd.synthetic_kernel(c, c, 3, seed=c).double()
        if case["method"] == "cp3":
            r = case["rank"]
            flat = kernel.reshape(c, c, 9)
            runs = {"ours CP-ALS": partial(cp_als, flat, r), "ours CP power": partial(cp_power, flat, r)}
            if use_tensorly:
                runs["TensorLy parafac"] = partial(tly.parafac, flat, r)
            what = f"CP-3 rank {r}"
        else:
            ranks = tuple(case["rank"])
            runs = {"ours partial_tucker": partial(partial_tucker, kernel, (0, 1), ranks),
                    "ours tt_svd": partial(tt_svd, kernel, ranks[0])}
            if use_tensorly:
                runs["TensorLy partial_tucker"] = partial(tly.partial_tucker, kernel, (0, 1), ranks)
                runs["TensorLy tensor_train"] = partial(tly.tensor_train, kernel, ranks[0])
            what = f"Tucker-2 ranks {ranks[0]}×{ranks[1]}, TT max rank {ranks[0]}"
        for name, fn in runs.items():
            res, seconds = bd.timed(fn)
            rows.append({"layer": case["layer"], "what": what, "method": name, "rel_error": float(res.rel_error),
                         "seconds": seconds})
            print(f"{case['layer']:<24} {what:<40} {name:<24} {res.rel_error:.5f} {seconds:8.3f} s", flush=True)
    return rows


def sections(layers: list[dict], decomps: list[dict]) -> list[dict]:
    out = []
    for b in sorted({r["batch"] for r in layers}):
        rows = [[r["layer"], f"{r['method']} {r['rank']}", r["variant"], f"{r['ms']:.3f}", f"{r['vs_ours']:.2f}",
                 f"{r['params']:,}", f"{r['param_bytes'] / 1024:.1f}"] for r in layers if r["batch"] == b]
        out.append({"title": f"Layers in PyTorch eager at batch {b}, 1 thread (median of alternating runs; "
                             "× ours = median paired t_variant / t_ours)",
                    "head": ["layer", "ours (rank)", "variant", "ms", "× ours", "params", "param KiB"],
                    "rows": rows})
    if decomps:
        out.append({"title": "Decompositions at equal rank (trained-like synthetic kernel; seconds: fastest of up "
                             "to 3 runs)",
                    "head": ["layer", "decomposition", "method", "rel error", "seconds"],
                    "rows": [[r["layer"], r["what"], r["method"], f"{r['rel_error']:.5f}", f"{r['seconds']:.3f}"]
                             for r in decomps]})
    return out


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore", module="tensorly")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", nargs="+", default=list(LAYERS), choices=list(LAYERS))
    ap.add_argument("--repeats", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--out", type=Path, default=RESULTS / "anchors.json")
    args = ap.parse_args(argv)
    torch.set_flush_denormal(True)
    torch.set_num_threads(1)
    bl, bd = _module("bench_layers"), _module("bench_decompose")
    missing = []
    use_tltorch, use_tensorly = _have("tltorch"), _have("tensorly")
    if not use_tltorch:
        missing.append("tltorch (TensorLy-Torch): no factorized-layer rows")
    if not use_tensorly:
        missing.append("tensorly: no TensorLy decomposition rows")
    cases = []
    for key in args.layers:
        kind, a, b = LAYERS[key]
        cases += bl.conv_cases(a, b) if kind == "conv" else bl.fc_cases(a, b)
    t0 = time.perf_counter()
    layers = layer_rows(cases, bl, args.repeats, args.warmup, use_tltorch)
    decomps = decomposition_rows(cases, bd, use_tensorly)
    versions = {"torch": torch.__version__}
    for pkg in ("tensorly", "tltorch"):
        if _have(pkg):
            versions[pkg] = getattr(__import__(pkg), "__version__", "?")
    command = COMMAND + "".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:]))
    out = {"command": command, "versions": versions, "threads": 1, "repeats": args.repeats,
           "seconds": round(time.perf_counter() - t0, 1), "missing": missing, "layers": layers,
           "decompositions": decomps, "sections": sections(layers, decomps)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    for s in out["sections"]:
        print(f"\n{s['title']}\n" + "\n".join("  ".join(r) for r in s["rows"]))
    print(f"\nJSON: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
