"""Layer-level speed of tensorslim's factorized layers: ONNX Runtime vs the dense layer, PyTorch vs TensorLy-Torch.

Layers are VGG-style: 3×3 convolutions C→C (padding 1) at 64@32×32, 128@16×16, 256@8×8, 512@4×4 and fully
connected layers 512→512, 4096→4096. Every method gets the rank that brings its analytic MACs (the layers'
own ``macs()``, equal to ``FlopCounterMode``/2) closest to a 4× reduction without going under it:

* Tucker-2 ranks (r, r), CP-3 rank R, SVD rank r.

Part A (ONNX Runtime): each factorized layer is exported (``tensorslim.export``; the export pads the ranks in the
file to the target's channel block, exactly) and timed IN ALTERNATION with the dense layer in one run
(``tensorslim.export.benchmark``): the speedup is the median of the paired ratios ``t_dense / t_factorized``
over the rounds, with their min–max. ``ratio`` = speedup ÷ MAC reduction (goal ≥ 0.8).

Part B (PyTorch eager, ``torch.inference_mode``): ours vs TensorLy-Torch's factorized layers at EQUAL rank
(``tltorch.FactorizedConv`` / ``FactorizedLinear``, factorization ``cp`` / ``tucker``, implementation
``factorized`` and ``reconstructed``), all timed in alternation in one loop. Ours runs in NCHW and in
channels_last and the faster of the two is reported (named in the table); TensorLy-Torch gets NCHW (its
kernels reshape to NCHW anyway). ``ours/tl`` is the median over rounds of ``t_ours / t_tltorch`` (goal ≤ 0.5).
TensorLy-Torch's CP conv is the 4-way (CP-4 shaped) CP; our CP-3 and CP-4 are both listed.

Timings on a shared machine are noisy: ratios are measured in alternation, many repeats, medians with min–max,
``torch.set_flush_denormal(True)``; never compare absolute milliseconds across runs.

Run: ``.venv/bin/python benchmarks/bench_layers.py [--threads 1 2] [--repeats 40] [--quick]``; JSON goes to
``benchmarks/results/layers.json`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tensorslim.export import benchmark
from tensorslim.export.onnx import nchwc_block
from tensorslim.layers import CPConv2d, SVDLinear, Tucker2Conv2d

CONVS = [(64, 32), (128, 16), (256, 8), (512, 4)]
FCS = [(512, 512), (4096, 4096)]
TARGET = 4.0
#: Rank granularity of ``--ranks aligned`` (ONNX Runtime's NCHWc block with AVX-512).
ALIGN = 16
BATCHES = (1, 32)


# ----------------------------------------------------------------------------------------------------------
# layers and ranks


def _largest(make: Callable[[int], nn.Module], shape: tuple[int, ...], dense_macs: int, hi: int) -> int:
    """The largest rank whose layer has at most dense_macs / TARGET MACs (MACs grow with the rank)."""
    lo, best = 1, 1
    while lo <= hi:
        mid = (lo + hi) // 2
        if make(mid).macs(shape) * TARGET <= dense_macs:
            best, lo = mid, mid + 1
        else:
            hi = mid - 1
    return best


def conv_cases(c: int, hw: int, aligned: bool = False) -> list[dict[str, Any]]:
    shape = (c, hw, hw)
    dense_macs = c * c * 9 * hw * hw

    def tucker(r: int) -> Tucker2Conv2d:
        return Tucker2Conv2d(c, c, 3, (r, r), padding=1)

    def cp(r: int, form: str = "cp3") -> CPConv2d:
        return CPConv2d(c, c, 3, r, form=form, padding=1)

    if aligned:
        b = ALIGN
        rt_in, rt_out = min(((i, o) for i in range(b, c + 1, b) for o in range(b, c + 1, b) if abs(i - o) <= b),
                            key=lambda p: (_off(Tucker2Conv2d(c, c, 3, p, padding=1).macs(shape), dense_macs),
                                           -p[1]))
        rc = min(range(b, 9 * c + 1, b), key=lambda r: _off(cp(r).macs(shape), dense_macs))
    else:
        rt_in = rt_out = _largest(tucker, shape, dense_macs, c)
        rc = _largest(cp, shape, dense_macs, 9 * c)
    name = f"conv3x3 {c}->{c} @{hw}x{hw}"
    return [
        {"layer": name, "method": "tucker2", "rank": [rt_in, rt_out],
         "make": lambda: Tucker2Conv2d(c, c, 3, (rt_in, rt_out), padding=1),
         "dense": lambda: nn.Conv2d(c, c, 3, padding=1), "shape": shape, "dense_macs": dense_macs},
        {"layer": name, "method": "cp3", "rank": rc, "make": lambda: cp(rc),
         "dense": lambda: nn.Conv2d(c, c, 3, padding=1), "shape": shape, "dense_macs": dense_macs},
    ]


def _off(macs: int, dense_macs: int) -> float:
    """How far a MAC reduction is from the target, on a log scale."""
    return abs(math.log(dense_macs / macs / TARGET))


def padded_macs(case: dict[str, Any], block: int) -> int:
    """MACs of the layer with its ranks rounded up to the NCHWc block: what ONNX Runtime runs (conv layers)."""
    if case["method"] == "svd" or block <= 1:
        return case["make"]().macs(case["shape"])
    c = case["shape"][0]
    up = [-(-r // block) * block for r in (case["rank"] if isinstance(case["rank"], list) else [case["rank"]])]
    layer = (Tucker2Conv2d(c, c, 3, tuple(up), padding=1) if case["method"] == "tucker2"
             else CPConv2d(c, c, 3, up[0], padding=1))
    return layer.macs(case["shape"])


def fc_cases(i: int, o: int, aligned: bool = False) -> list[dict[str, Any]]:
    if aligned:
        r = min(range(ALIGN, min(i, o) + 1, ALIGN), key=lambda r: _off(SVDLinear(i, o, r).macs((i,)), i * o))
    else:
        r = _largest(lambda r: SVDLinear(i, o, r), (i,), i * o, min(i, o))
    return [{"layer": f"fc {i}->{o}", "method": "svd", "rank": r, "make": lambda: SVDLinear(i, o, r),
             "dense": lambda: nn.Linear(i, o), "shape": (i,), "dense_macs": i * o}]


def init_like_trained(module: nn.Module, seed: int) -> nn.Module:
    """Weights of a realistic scale (no denormals, no zeros): N(0, 1/fan_in) for every weight, zero bias."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("bias"):
                p.zero_()
            else:
                fan_in = p[0].numel() if p.ndim > 1 else p.numel()
                p.copy_(torch.randn(p.shape, generator=gen) / fan_in ** 0.5)
    return module.eval()


# ----------------------------------------------------------------------------------------------------------
# part A: ONNX Runtime, factorized vs dense in alternation


def part_a(cases: list[dict[str, Any]], threads: list[int], repeats: int, warmup: int) -> list[dict[str, Any]]:
    rows = []
    for k, case in enumerate(cases):
        layer = init_like_trained(case["make"](), k)
        dense = init_like_trained(case["dense"](), 1000 + k)
        macs = layer.macs(case["shape"])
        run_macs = padded_macs(case, nchwc_block())
        row = {"layer": case["layer"], "method": case["method"], "rank": case["rank"],
               "dense_macs": case["dense_macs"], "macs": macs, "mac_reduction": case["dense_macs"] / macs,
               "padded_macs": run_macs, "padded_mac_reduction": case["dense_macs"] / run_macs,
               "params": layer.params(), "dense_params": sum(p.numel() for p in dense.parameters()),
               "threads": {}}
        for t in threads:
            res = benchmark(layer, against=dense, input_shape=case["shape"], batch_sizes=BATCHES, threads=t,
                            repeats=repeats, warmup=warmup, labels=(case["method"], "dense"))
            per: dict[str, Any] = {}
            for i, cmp in enumerate(res.comparison or []):
                per[str(cmp.batch)] = {
                    "speedup": cmp.speedup, "min": cmp.min, "max": cmp.max,
                    "ratio": cmp.speedup / row["mac_reduction"],
                    "ms": res.models[0].timings[i].median_ms, "dense_ms": res.models[1].timings[i].median_ms,
                    "speedup_of_minima": res.models[1].timings[i].min_ms / res.models[0].timings[i].min_ms}
            floor = ort_floor_ms(case["shape"], t, repeats)
            for b, ms in floor.items():
                per[b]["floor_ms"] = ms
                per[b]["ceiling"] = per[b]["dense_ms"] / ms if ms > 0 else math.inf
            row["threads"][str(t)] = per
        rows.append(row)
        print(".", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return rows


def ort_floor_ms(shape: tuple[int, ...], threads: int, repeats: int) -> dict[str, float]:
    """Median time of ``session.run`` on a one-node Identity model: the fixed cost of any ORT call from Python.

    ``t_dense / floor`` bounds the speedup any replacement of a single layer can show in this benchmark.
    """
    import tempfile

    import numpy as np
    import onnx
    from onnx import TensorProto, helper

    from tensorslim.export.onnx import ort_session

    dims: list[Any] = ["batch", *shape]
    graph = helper.make_graph([helper.make_node("Identity", ["input"], ["output"])], "floor",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, dims)],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, dims)])
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "identity.onnx"
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
        sess = ort_session(path, threads=threads)
        for b in BATCHES:
            x = np.random.default_rng(b).standard_normal((b, *shape), dtype=np.float32)
            feed = {"input": x}
            times = time_alternating({"identity": lambda feed=feed: sess.run(None, feed)}, repeats, 5)
            out[str(b)] = statistics.median(times["identity"]) / 1e6
    return out


def table_a(rows: list[dict[str, Any]], threads: list[int]) -> str:
    head = (f"{'layer':<24} {'method':<8} {'rank':>9} {'MACred':>6} {'padded':>6} {'thr':>3}  "
            f"{'ORT speedup b1 (min-max)':>25}  {'ORT speedup b32 (min-max)':>25}  {'ratio b1':>8} {'ratio b32':>9}"
            f"  {'ceil b1':>7}  {'min-based ratio b1, b32':>23}")
    lines = [head, "-" * len(head)]
    for r in rows:
        rank = "x".join(map(str, r["rank"])) if isinstance(r["rank"], list) else str(r["rank"])
        for t in threads:
            p = r["threads"][str(t)]
            b1, b32 = p["1"], p["32"]
            s1 = f"{b1['speedup']:.2f}x ({b1['min']:.2f}-{b1['max']:.2f})"
            s32 = f"{b32['speedup']:.2f}x ({b32['min']:.2f}-{b32['max']:.2f})"
            mark = "" if min(b1["ratio"], b32["ratio"]) >= 0.8 else "  <0.8"
            lines.append(f"{r['layer']:<24} {r['method']:<8} {rank:>9} {r['mac_reduction']:>6.2f} "
                         f"{r['padded_mac_reduction']:>6.2f} {t:>3}  {s1:>25}  {s32:>25}  {b1['ratio']:>8.2f} "
                         f"{b32['ratio']:>9.2f}  {b1['ceiling']:>6.1f}x  "
                         f"{b1['speedup_of_minima'] / r['mac_reduction']:>11.2f}, "
                         f"{b32['speedup_of_minima'] / r['mac_reduction']:.2f}{mark}")
    lines.append("MACred: dense MACs / the layer's macs(); padded: the same with the ranks rounded up to ORT's NCHWc "
                 "block (what the session runs); ceil b1: t_dense / t_(Identity model) at batch 1, the most any "
                 "single-layer replacement can show against ORT's per-call cost;\n"
                 "min-based ratio: (fastest dense run / fastest factorized run) / MACred, the least disturbed "
                 "estimate on a loaded machine; <0.8 marks a median ratio under the goal")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------
# part B: PyTorch eager, ours vs TensorLy-Torch at equal rank


def tl_models(case: dict[str, Any]) -> dict[str, nn.Module]:
    """TensorLy-Torch layers of the same size and rank as ``case`` (both implementations)."""
    import tltorch

    out = {}
    for impl in ("factorized", "reconstructed"):
        if case["method"] == "svd":
            i, = case["shape"]
            o = case["dense"]().out_features
            m = tltorch.FactorizedLinear((i,), (o,), bias=True, factorization="cp", rank=case["rank"],
                                         implementation=impl)
            out[f"tl cp {impl}"] = m
        else:
            c = case["shape"][0]
            fac, rank = (("tucker", (*case["rank"], 3, 3)) if case["method"] == "tucker2"
                         else ("cp", case["rank"]))
            m = tltorch.FactorizedConv(c, c, 3, order=2, padding=1, bias=True, factorization=fac, rank=rank,
                                       implementation=impl)
            out[f"tl {fac} {impl}"] = m
    for m in out.values():
        with torch.no_grad():
            m.weight.normal_(0, 0.05)
            if m.bias is not None:
                m.bias.zero_()
        m.eval()
    return out


def time_alternating(models: dict[str, Callable[[], object]], repeats: int, warmup: int) -> dict[str, list[int]]:
    for _ in range(warmup):
        for f in models.values():
            f()
    times: dict[str, list[int]] = {k: [] for k in models}
    for _ in range(repeats):
        for k, f in models.items():
            t0 = time.perf_counter_ns()
            f()
            times[k].append(time.perf_counter_ns() - t0)
    return times


def part_b(cases: list[dict[str, Any]], threads: list[int], repeats: int, warmup: int) -> list[dict[str, Any]]:
    rows = []
    previous = torch.get_num_threads()
    torch.set_flush_denormal(True)
    try:
        for k, case in enumerate(cases):
            ours = {case["method"]: init_like_trained(case["make"](), k)}
            if case["method"] == "cp3":  # CP-4 has TensorLy-Torch's CP structure
                c = case["shape"][0]
                ours["cp4"] = init_like_trained(CPConv2d(c, c, 3, case["rank"], form="cp4", padding=1), k)
            theirs = tl_models(case)
            dense = init_like_trained(case["dense"](), 1000 + k)
            row = {"layer": case["layer"], "method": case["method"], "rank": case["rank"], "threads": {}}
            for t in threads:
                torch.set_num_threads(t)
                per: dict[str, Any] = {}
                for b in BATCHES:
                    x = torch.randn((b, *case["shape"]), generator=torch.Generator().manual_seed(b))
                    xl = x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x
                    calls: dict[str, Callable[[], object]] = {}
                    for name, m in ours.items():
                        calls[f"{name} nchw"] = (lambda m=m, x=x: m(x))
                        if x.ndim == 4:
                            ml = _channels_last_copy(m)
                            calls[f"{name} channels_last"] = (lambda m=ml, xl=xl: m(xl))
                    for name, m in theirs.items():
                        calls[name] = (lambda m=m, x=x: m(x))
                    if x.ndim == 4:  # the dense layer for reference, in torch's faster layout for convs
                        dl = _channels_last_copy(dense)
                        calls["dense"] = (lambda m=dl, xl=xl: m(xl))
                    else:
                        calls["dense"] = (lambda m=dense, x=x: m(x))
                    with torch.inference_mode():
                        times = time_alternating(calls, repeats, warmup)
                    med = {n: statistics.median(ts) / 1e6 for n, ts in times.items()}
                    entry: dict[str, Any] = {"median_ms": med, "ours": {}}
                    for name in ours:
                        best = min((n for n in med if n.startswith(f"{name} ")), key=med.__getitem__)
                        vs = {}
                        for tl_name in theirs:
                            ratios = [a / bb for a, bb in zip(times[best], times[tl_name])]
                            vs[tl_name] = {"ratio": statistics.median(ratios), "min": min(ratios),
                                           "max": max(ratios)}
                        dense_ratios = [a / bb for a, bb in zip(times[best], times["dense"])]
                        entry["ours"][name] = {"variant": best, "ms": med[best], "vs": vs,
                                               "vs_dense": statistics.median(dense_ratios)}
                    per[str(b)] = entry
                row["threads"][str(t)] = per
            rows.append(row)
            print(".", end="", file=sys.stderr, flush=True)
    finally:
        torch.set_num_threads(previous)
        torch.set_flush_denormal(False)
    print(file=sys.stderr)
    return rows


def _channels_last_copy(m: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(m).to(memory_format=torch.channels_last)


def table_b(rows: list[dict[str, Any]], threads: list[int]) -> str:
    head = (f"{'layer':<24} {'ours':<5} {'thr':>3} {'b':>3}  {'ours ms':>8} {'(format)':<14}  "
            f"{'tl factorized: ms, ours/tl (min-max)':<38}  {'tl reconstructed: ms, ours/tl (min-max)':<40}  "
            f"{'ours/dense':>10}")
    lines = [head, "-" * len(head)]
    for r in rows:
        for t in threads:
            for b in map(str, BATCHES):
                e = r["threads"][str(t)][b]
                for name, o in e["ours"].items():
                    cells = []
                    for impl in ("factorized", "reconstructed"):
                        tl = next(n for n in o["vs"] if n.endswith(impl))
                        v = o["vs"][tl]
                        mark = "" if v["ratio"] <= 0.5 else " >0.5"
                        cells.append(f"{e['median_ms'][tl]:.3f} {v['ratio']:.2f} "
                                     f"({v['min']:.2f}-{v['max']:.2f}){mark}")
                    fmt = o["variant"].split(" ", 1)[1]
                    lines.append(f"{r['layer']:<24} {name:<5} {t:>3} {b:>3}  {o['ms']:>8.3f} {fmt:<14}  "
                                 f"{cells[0]:<38}  {cells[1]:<40}  {o['vs_dense']:>10.2f}")
    lines.append("ours/dense: median t_ours / t_dense (nn.Conv2d channels_last / nn.Linear) in the same alternation; "
                 "> 0.5 marks ours/tl above the goal")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts (default 1 2)")
    parser.add_argument("--repeats", type=int, default=40, help="timed rounds per batch size (default 40)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed rounds per batch size (default 5)")
    parser.add_argument("--quick", action="store_true",
                        help="two conv sizes and one FC, 10 repeats: a smoke run, not for the record")
    parser.add_argument("--ranks", choices=["exact", "aligned"], default="exact",
                        help="exact: the largest ranks with MAC reduction >= 4 (default); aligned: multiples of "
                             f"{ALIGN} (Tucker ranks at most one block apart) with the reduction closest to 4")
    parser.add_argument("--skip-ort", action="store_true", help="skip part A")
    parser.add_argument("--skip-tltorch", action="store_true", help="skip part B")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "layers.json")
    args = parser.parse_args(argv)

    convs, fcs, repeats = CONVS, FCS, args.repeats
    if args.quick:
        convs, fcs, repeats = [CONVS[0], CONVS[2]], FCS[:1], min(repeats, 10)
    aligned = args.ranks == "aligned"
    cases = ([c for ch, hw in convs for c in conv_cases(ch, hw, aligned)]
             + [c for i, o in fcs for c in fc_cases(i, o, aligned)])
    torch.set_flush_denormal(True)
    import onnxruntime
    import tltorch

    meta = {"cpu": _cpu(), "cpu_count": __import__("os").cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "tltorch": tltorch.__version__,
            "nchwc_block": nchwc_block(), "threads": args.threads, "repeats": repeats, "warmup": args.warmup,
            "batches": list(BATCHES), "target_mac_reduction": TARGET, "quick": args.quick, "ranks": args.ranks}
    print(f"# bench_layers: {meta['cpu']}, {meta['cpu_count']} logical CPUs; torch {meta['torch']}, "
          f"onnxruntime {meta['onnxruntime']}, tltorch {meta['tltorch']}; threads {args.threads}, "
          f"{repeats} alternating rounds, warm-up {args.warmup}; ranks {args.ranks}, NCHWc block {nchwc_block()}")
    result: dict[str, Any] = {"meta": meta}
    if not args.skip_ort:
        rows = part_a(cases, args.threads, repeats, args.warmup)
        result["ort"] = rows
        print("\n## A. ONNX Runtime: factorized vs dense, timed in alternation "
              "(speedup = median t_dense/t_fact; ratio = speedup / MAC reduction, goal >= 0.8)")
        print(table_a(rows, args.threads))
    if not args.skip_tltorch:
        rows_b = part_b(cases, args.threads, repeats, args.warmup)
        result["tltorch"] = rows_b
        print("\n## B. PyTorch eager (inference_mode): ours vs TensorLy-Torch at equal rank, timed in "
              "alternation (ours/tl = median t_ours/t_tl; goal <= 0.5)")
        print(table_b(rows_b, args.threads))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nJSON: {args.out}")
    return 0


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    raise SystemExit(main())
