"""Phone runtime: a VGG-style conv stack in ExecuTorch (XNNPACK), dense vs CP-3 vs Tucker-2, at ~4× fewer MACs.

The stack is five 3×3 convolutions (padding 1) with ReLU, and 2×2 max pools, on a 64@32×32 feature map:
64→64 @32×32, pool, 64→128 and 128→128 @16×16, pool, 128→256 and 256→256 @8×8 (the 64-256-channel middle of a
VGG). Every conv of the factorized stacks gets the rank that brings its analytic MACs closest to a 4×
reduction without going under it (``bench_layers._largest``): Tucker-2 ranks (r, r), CP-3 rank R. The
``/16`` rows use the largest multiple of 16 under the same bound (the ``xnnpack-x86`` target's channel
multiple), so their MAC reduction is somewhat above 4×. Weights are N(0, 1/fan_in)
(``bench_layers.init_like_trained``; speed does not depend on their values).

Each stack is exported to a ``.pte`` (``tensorslim.export.export_pte``: torch.export, XNNPACK partitioner,
verified in ``executorch.runtime`` against PyTorch) at each batch size, and each factorized stack is timed IN
ALTERNATION with the dense one in one run on one thread (``tensorslim.export.benchmark(runtime="executorch")``).
``speedup`` is the median of the paired ratios ``t_dense / t_factorized`` with their min–max; ``efficiency`` =
speedup ÷ MAC reduction (the goal is ≥ 0.8 at batch 1). The table also gives the share of operators XNNPACK
runs (the rest would run in ExecuTorch's portable kernels), the ``.pte`` size and the session's memory: the RSS
growth of loading each program and of its first run, measured by ``benchmark`` in a fresh interpreter per file
(``session_memory``).

Timings on a shared machine are noisy: only ratios measured in alternation are reported, with min–max.

Run: ``.venv/bin/python benchmarks/bench_pte.py [--repeats 40] [--batch32-repeats 10] [--no-batch32]``;
JSON goes to ``benchmarks/results/pte.json`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from bench_layers import _largest, init_like_trained
from torch import nn

from tensorslim import cost
from tensorslim.export import benchmark, export_pte
from tensorslim.layers import CPConv2d, Tucker2Conv2d

INPUT = (64, 32, 32)
#: (in, out) channels of each conv; "pool" halves the map
STACK = [(64, 64), "pool", (64, 128), (128, 128), "pool", (128, 256), (256, 256)]
METHODS = ("cp3", "tucker2", "cp3/16", "tucker2/16")
ALIGN = 16


def _conv(method: str, cin: int, cout: int, hw: int) -> tuple[nn.Module, Any]:
    """The layer of ``method`` for a cin→cout 3×3 conv on hw×hw, and its rank (~4× fewer MACs; ``/16``: a
    multiple of 16)."""
    if method == "dense":
        return nn.Conv2d(cin, cout, 3, padding=1), None
    shape, dense_macs = (cin, hw, hw), cin * cout * 9 * hw * hw
    step = ALIGN if method.endswith("/16") else 1

    def make(r: int) -> nn.Module:  # r counts steps
        r *= step
        return (CPConv2d(cin, cout, 3, r, padding=1) if method.startswith("cp3")
                else Tucker2Conv2d(cin, cout, 3, (r, r), padding=1))

    hi = (9 if method.startswith("cp3") else 1) * min(cin, cout) // step
    r = _largest(make, shape, dense_macs, hi)
    return make(r), (r * step if method.startswith("cp3") else [r * step] * 2)


def stack(method: str, seed: int = 0) -> tuple[nn.Module, list[Any]]:
    layers: list[nn.Module] = []
    ranks = []
    hw = INPUT[1]
    for item in STACK:
        if item == "pool":
            layers.append(nn.MaxPool2d(2))
            hw //= 2
            continue
        layer, rank = _conv(method, *item, hw)
        layers += [layer, nn.ReLU()]
        ranks.append(rank)
    return init_like_trained(nn.Sequential(*layers), seed), ranks


#: Run in a fresh interpreter per file: the session's memory is then not hidden by memory that earlier steps of
#: this process freed and the allocator kept (see tensorslim.export.bench).
_MEMORY = ("import json, sys; from tensorslim.export import benchmark; "
           "m = benchmark(sys.argv[1], runtime='executorch', threads=1, warmup=0, repeats=1).to_dict()['models'][0]; "
           "print(json.dumps({k: m[k] for k in ('load_rss_bytes', 'peak_rss_bytes')}))")


def session_memory(path: Path) -> dict[str, int | None]:
    """RSS growth of loading the program (``load_rss_bytes``) and up to its first run (``peak_rss_bytes``)."""
    out = subprocess.run([sys.executable, "-c", _MEMORY, str(path)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(repeats: int, batch32_repeats: int | None, threads: int = 1) -> dict[str, Any]:
    models = {m: stack(m, seed=i) for i, m in enumerate(("dense", *METHODS))}
    macs = {m: cost.profile(model, INPUT).total.macs for m, (model, _) in models.items()}
    batches = [(1, repeats)] + ([(32, batch32_repeats)] if batch32_repeats else [])
    exports: dict[str, dict[str, Any]] = {}
    memory: dict[str, dict[str, Any]] = {m: {} for m in models}
    with tempfile.TemporaryDirectory() as tmp:
        for m, (model, _) in models.items():
            for b, _ in batches:
                path = Path(tmp) / f"{m.replace('/', '_')}-b{b}.pte"
                res = export_pte(model, path, INPUT, batch=b).to_dict()
                exports.setdefault(m, res)  # batch 1: delegation and file size
                memory[m][str(b)] = session_memory(path)
    rows = []
    for m in METHODS:
        row: dict[str, Any] = {"method": m, "ranks": models[m][1], "macs": macs[m], "dense_macs": macs["dense"],
                               "mac_reduction": macs["dense"] / macs[m],
                               "delegated_share": exports[m]["delegated_share"],
                               "other_ops": exports[m]["other_ops"], "file_bytes": exports[m]["file_bytes"],
                               "dense_file_bytes": exports["dense"]["file_bytes"], "batches": {}}
        for b, reps in batches:
            res = benchmark(models[m][0], against=models["dense"][0], input_shape=INPUT, batch_sizes=(b,),
                            runtime="executorch", threads=threads, repeats=reps, warmup=max(2, reps // 10),
                            labels=(m, "dense")).to_dict()
            cmp, ours, dense = res["comparison"][0], res["models"][0], res["models"][1]
            row["batches"][str(b)] = {
                "speedup": cmp["speedup"], "min": cmp["min"], "max": cmp["max"],
                "efficiency": cmp["speedup"] / row["mac_reduction"], "repeats": reps,
                "ms": ours["timings"][0]["median_ms"], "dense_ms": dense["timings"][0]["median_ms"],
                "session_memory": memory[m][str(b)], "dense_session_memory": memory["dense"][str(b)]}
            print(".", end="", file=sys.stderr, flush=True)
        rows.append(row)
    print(file=sys.stderr)
    return {"input_shape": list(INPUT), "stack": [s if s == "pool" else list(s) for s in STACK],
            "threads": threads, "dense_delegated_share": exports["dense"]["delegated_share"],
            "machine": res["machine"], "python": platform.python_version(), "torch": torch.__version__,
            "executorch": _version("executorch"), "rows": rows}


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def table(data: dict[str, Any]) -> str:
    """The ratio table (text; render.py makes the Markdown one from the same JSON)."""
    head = (f"{'method':<10} {'ranks':<28} {'MAC red.':>8} {'XNNPACK':>8} {'batch':>5} {'speedup':>8} "
            f"{'min-max':>11} {'efficiency':>10} {'ms':>8} {'dense ms':>8} {'.pte':>9}")
    lines = [f"ExecuTorch XNNPACK, {data['threads']} thread, input {'x'.join(map(str, data['input_shape']))}; "
             f"dense stack: {data['dense_delegated_share']:.0%} of ops in XNNPACK", head]
    for r in data["rows"]:
        for b, v in r["batches"].items():
            lines.append(f"{r['method']:<10} {str(r['ranks']):<28.28} {r['mac_reduction']:>7.2f}x "
                         f"{r['delegated_share']:>8.0%} {b:>5} {v['speedup']:>7.2f}x "
                         f"{v['min']:>5.2f}-{v['max']:<5.2f} {v['efficiency']:>10.2f} {v['ms']:>8.3f} "
                         f"{v['dense_ms']:>8.3f} {r['file_bytes'] / 1e6:>7.2f}MB")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=40, help="timed rounds at batch 1")
    ap.add_argument("--batch32-repeats", type=int, default=10, help="timed rounds at batch 32")
    ap.add_argument("--no-batch32", action="store_true", help="batch 1 only")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "pte.json")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    data = run(args.repeats, None if args.no_batch32 else args.batch32_repeats)
    data["command"] = " ".join([".venv/bin/python benchmarks/bench_pte.py",
                                *(argv if argv is not None else sys.argv[1:])])
    data["seconds"] = round(time.perf_counter() - t0, 1)
    print(table(data))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
