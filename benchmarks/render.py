"""Write the tables of BENCHMARKS.md from benchmarks/results/*.json: one source for every number.

BENCHMARKS.md holds hand-written prose and generated tables. Each generated table sits between two markers,

    <!-- table:NAME -->
    ...generated, do not edit...
    <!-- /table:NAME -->

and this script rewrites what lies between them from the JSON that the benchmark scripts wrote (``RENDERERS``
maps each NAME to the function that renders it). Every table starts with the command that printed (or
measured) its numbers and the JSON it was rendered from.

    .venv/bin/python benchmarks/render.py           # rewrite BENCHMARKS.md
    .venv/bin/python benchmarks/render.py --check   # exit 1 and print the diff when BENCHMARKS.md differs
"""

from __future__ import annotations

import argparse
import difflib
import importlib.util
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"

MARKER = re.compile(r"<!-- table:(?P<name>[a-z0-9-]+) -->\n(?P<body>.*?)<!-- /table:(?P=name) -->", re.S)


class RenderError(Exception):
    """A table cannot be rendered (missing JSON, unknown marker)."""


def load(name: str, results: Path | None = None) -> dict:
    path = (results or RESULTS) / name
    if not path.is_file():
        raise RenderError(f"{path}: missing (the table's JSON)")
    return json.loads(path.read_text())


def _module(name: str):
    """Import benchmarks/NAME.py (the script whose printer a table reuses)."""
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def source_line(command: str, *json_files: str, note: str = "", also: str = "") -> str:
    """The first line of every table: the command that printed its numbers (``also``: more of it, in prose)."""
    files = ", ".join(f"`benchmarks/results/{f}`" for f in json_files)
    return f"Command: `{command}`{also}  \nRendered from {files} by `benchmarks/render.py`{note}."


def pct(x: float) -> str:
    return f"{x:.2f} %"


def md_table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------
# the committed models (benchmarks/models/, re-measured by benchmarks/verify.py)


def committed_models(results: Path | None = None) -> dict:
    return load("verify.json", results)


def render_committed(results: Path | None = None) -> str:
    data = committed_models(results)
    rows = []
    for m in data["models"]:
        speed = "-" if m.get("ort_b1_speedup") is None else (
            f"{m['ort_b1_speedup']:.2f}× vs {m['baseline']} ({m['ort_b1_ms']:.3f} vs {m['baseline_b1_ms']:.3f} ms)")
        rows.append([f"`{m['name']}`", f"{m['params']:,}", f"{m['macs']:,}", pct(m["test_accuracy"]),
                     f"{m['onnx_max_rel_err']:.1e}", speed])
    head = ["model (`benchmarks/models/…`)", "params", "MACs", "test acc (official 10,000)",
            "ORT vs PyTorch: max rel err", f"ORT batch-1 speedup ({data['threads']} thread, {data['repeats']} "
            "alternating runs)"]
    return source_line(data["command"], "verify.json") + "\n\n" + md_table(head, rows)


def render_provenance(results: Path | None = None) -> str:
    data = committed_models(results)
    rows = [[f"`{m['name']}`", f"`{m['made_by']}`", f"`{m['commit'][:12]}`", m.get("working_tree", "-"),
             m.get("budget", "-")] for m in data["models"]]
    return ("How each committed model was made (also in its `metrics.json`, key `provenance`).\n\n"
            + md_table(["model", "command", "commit", "working tree when it started", "training budget"], rows))


TARGET = {"params_x": 10.0, "macs_x": 3.0, "drop": 0.5, "speedup": 2.0}


def render_target(results: Path | None = None) -> str:
    data = committed_models(results)
    by_name = {m["name"]: m for m in data["models"]}
    rows = []
    for m in data["models"]:
        if not m.get("baseline"):
            continue
        # its own baseline, then (if committed) a dense model of the same architecture trained on the compressed
        # model's whole budget; its latency is the baseline's (same architecture), so the speedup is shared
        for ref in [m["baseline"], *([m["budget_matched"]] if m.get("budget_matched") in by_name else [])]:
            b = by_name[ref]
            px, mx = b["params"] / m["params"], b["macs"] / m["macs"]
            drop = b["test_accuracy"] - m["test_accuracy"]
            meets = (px >= TARGET["params_x"] and mx >= TARGET["macs_x"] and drop <= TARGET["drop"]
                     and m["ort_b1_speedup"] >= TARGET["speedup"])
            rows.append([f"`{m['name']}`", f"`{b['name']}` ({pct(b['test_accuracy'])}, {b.get('budget', '-')})",
                         f"{m['params']:,} ({px:.2f}×)", f"{m['macs']:,} ({mx:.2f}×)",
                         f"{pct(m['test_accuracy'])} ({m.get('budget', '-')})", f"{drop:.2f} pt",
                         f"{m['ort_b1_speedup']:.2f}×", "yes" if meets else "no"])
    head = ["compressed model", "its baseline (test acc, budget)", "params", "MACs", "test acc (budget)", "drop",
            "ORT b1 speedup", "meets all four"]
    if not rows:
        return (source_line(data["command"], "verify.json") + "\n\n**No compressed model is committed yet**, so "
                "no compression-target figure is claimed here (see the earlier-session tables below).")
    return source_line(data["command"], "verify.json") + "\n\n" + md_table(head, rows)


# ----------------------------------------------------------------------------------------------------------
# fine-tuning tables (bench_finetune.py; earlier baselines, not kept)


def _finetune_tables(results: Path | None = None) -> dict[str, str]:
    res = results or RESULTS
    data = load("finetune.json", res)
    bf = _module("bench_finetune")
    baseline = data["meta"]["baseline_row"]
    main = Path(data["meta"]["baseline"]).name
    others: dict[str, dict] = {}
    for f in sorted(res.glob("finetune-headline*.json")):
        got = json.loads(f.read_text())
        others.setdefault(Path(got["meta"]["baseline"]).name, got["meta"]["baseline_row"])
    methods = data["methods"]
    out = {"finetune-methods": bf.table([r for r in methods if r["baseline"] == main],
                                        f"Table 1: methods on {main} (Fashion-MNIST test accuracy %, ORT batch 1, "
                                        "1 thread)", baseline)}
    wide = [(n, row) for n, row in others.items() if n != main]
    out["finetune-wide"] = "\n\n".join(bf.table([r for r in methods if r["baseline"] == n], f"Table 1b: on {n}", row)
                                       for n, row in wide)
    out["finetune-schedules"] = bf.table(data["schedules"], "Table 2: schedules at equal total epochs on the mixed "
                                         "plan", baseline)
    return out


FINETUNE_COMMANDS = {
    "finetune-methods": "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_finetune.py --part methods "
                        "--baseline $B --work runs/ft-bench",
    "finetune-wide": "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_finetune.py --part headline --baseline $W "
                     "--budget params=0.1 --headline-epochs 10 --lr 0.02 --label \" wide 10ep\" --work runs/ft-bench",
    "finetune-schedules": "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_finetune.py --part schedules "
                          "--baseline $B --schedule-epochs 4 --work runs/ft-bench",
}


def _finetune_renderer(name: str) -> Callable[[Path | None], str]:
    def render(results: Path | None = None) -> str:
        files = ["finetune.json"] + (["finetune-headline*.json"] if name == "finetune-wide" else [])
        also = (" (the same with `--plan benchmarks/plans/tucker-svd-wide.json` instead of `--budget`, and each with "
                "`--seed 1` and its label)" if name == "finetune-wide" else "")
        return (source_line(FINETUNE_COMMANDS[name], *files,
                            also=also + ", then `.venv/bin/python benchmarks/bench_finetune.py --part merge`")
                + "\n\n```\n" + _finetune_tables(results)[name] + "\n```")
    return render


# ----------------------------------------------------------------------------------------------------------
# whole models in ORT (bench_models.py)


def render_models(results: Path | None = None) -> str:
    data = load("models.json", results)
    bm = _module("bench_models")
    command = data.get("command", "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_models.py "
                                  "--convnet runs/baselines/convnet-fashion-mnist --threads 1")
    rows = []
    for r in data["rows"]:  # rows measured before bench_models skipped VBMF on random weights: withdrawn
        vbmf = any(rule.get("vbmf") for rule in bm.PLANS.get(r["plan"], {}).get("rules", []))
        if "random weights" in r["model"] and vbmf and "skipped" not in r:
            r = {"model": r["model"], "plan": r["plan"], "skipped": [bm.RANDOM_VBMF_REASON + "; row withdrawn"]}
        rows.append(r)
    lines = bm.header(data["threads"], data["repeats"]) + [bm.format_row(r) for r in rows]
    notes = sorted({f"{r['model']} / {r['plan']}: {s}" for r in data["rows"] for s in r.get("skipped_layers", [])
                    if " applies to " not in s})  # a layer of the wrong type for the method says nothing
    text = source_line(command, "models.json") + "\n\n```\n" + "\n".join(lines) + "\n```"
    if notes:
        text += ("\n\nLayers left dense, with the reason (layers of a type the method does not take are not "
                 "listed):\n" + "\n".join(f"- {n}" for n in notes))
    return text


# ----------------------------------------------------------------------------------------------------------
# decompositions against TensorLy (bench_decompose.py, earlier session)


def render_decompose(results: Path | None = None) -> str:
    data = load("decompose_lenet5.json", results)
    rows = [[r["layer"], r["shape"], r["form"], f"{r['ratio']:.2f}", r["rank"], r["method"], f"{r['rel_error']:.5f}",
             f"{r['seconds']:.2f}"] for r in data["rows"]]
    head = ["layer", "shape", "form", "ratio", "rank", "method", "rel error", "seconds"]
    return (source_line(data["command"], "decompose_lenet5.json",
                        note=" (parsed from the printed `decompose_lenet5.txt` by "
                             "`benchmarks/decompose_txt_to_json.py`)")
            + "\n\n" + "  \n".join(data["header"]) + "\n\n" + md_table(head, rows))


def render_cp_planted(results: Path | None = None) -> str:
    """benchmarks/results/cp-planted.json, written by benchmarks/bench_cp.py."""
    data = load("cp-planted.json", results)
    d, env = data["definition"], data["environment"]

    def side(r: dict, who: str) -> list[str]:
        x = r[who]
        reached = {True: "yes", False: "no", None: "-"}[x["reached"]]
        return [f"{x['rel_error']:.4f}", reached, f"{x['seconds']:.3f}"]

    rows = [[r["case"], "-" if r["floor"] is None else f"{r['floor']:.4f}", *side(r, "ours"), *side(r, "tensorly"),
             f"{r['time_ratio_tensorly_over_ours']:.1f}"] for r in [*data["rows"], data["big"]]]
    head = ["case", "noise floor", "ours rel err", "reached", "s", "TensorLy rel err", "reached", "s",
            "TensorLy s ÷ ours"]
    sm = data["summary"]
    summary = (f"Planted cases reaching the noise floor (rel err ≤ 1.05 × floor): ours {sm['ours_reached']} of "
               f"{sm['cases']}, TensorLy {sm['tensorly_reached']} of {sm['cases']}; total time ours "
               f"{sm['ours_seconds_total']:.2f} s, TensorLy {sm['tensorly_seconds_total']:.2f} s.")
    return (source_line(f".venv/bin/python benchmarks/{data['benchmark']}", "cp-planted.json")
            + f"\n\nProblem: {d['problem']}, noise {d['noise']}; ours: {d['ours']}; TensorLy: {d['tensorly']}. "
              f"The last row is a trained-like kernel (no planted rank, no floor). torch {env['torch']}, tensorly "
              f"{env['tensorly']}, {env['threads']} thread.\n\n" + md_table(head, rows) + "\n\n" + summary)


# ----------------------------------------------------------------------------------------------------------
# single layers (bench_layers.py, earlier session)

LAYER_ORDER = ["conv3x3 64->64 @32x32", "conv3x3 128->128 @16x16", "conv3x3 256->256 @8x8", "conv3x3 512->512 @4x4",
               "fc 512->512", "fc 4096->4096"]


def _ort_ratios(rows: list[dict], layer: str, batch: str) -> list[float]:
    return [t[batch]["ratio"] for r in rows if r["layer"] == layer for t in r["threads"].values()]


def _tl_ratios(rows: list[dict], layer: str | None, which: str) -> list[float]:
    out = []
    for r in rows:
        if layer is not None and r["layer"] != layer:
            continue
        for per_batch in r["threads"].values():
            for cell in per_batch.values():
                for ours in cell["ours"].values():
                    for name, v in ours["vs"].items():
                        if name.endswith(which):
                            out.append(v["ratio"])
    return out


def _span(xs: list[float], goal: float | None = None, above: bool = True) -> str:
    if not xs:
        return "-"
    s = f"{min(xs):.2f}–{max(xs):.2f}"
    if goal is not None:
        ok = sum(1 for x in xs if (x >= goal if above else x <= goal))
        s += f" ({ok}/{len(xs)})"
    return s


def render_layers(results: Path | None = None) -> str:
    exact = load("layers.json", results)
    aligned = load("layers-aligned.json", results)
    rows = []
    for layer in LAYER_ORDER:
        rows.append([layer, _span(_ort_ratios(exact["ort"], layer, "1"), 0.8),
                     _span(_ort_ratios(exact["ort"], layer, "32"), 0.8),
                     _span(_ort_ratios(aligned["ort"], layer, "1"), 0.8),
                     _span(_ort_ratios(aligned["ort"], layer, "32"), 0.8),
                     _span(_tl_ratios(exact["tltorch"], layer, "factorized"), 0.5, above=False),
                     _span(_tl_ratios(exact["tltorch"], layer, "reconstructed"), 0.5, above=False)])
    all_b1 = [x for layer in LAYER_ORDER for x in _ort_ratios(exact["ort"], layer, "1")]
    tl = _tl_ratios(exact["tltorch"], None, "factorized")
    head = ["layer", "ORT ratio b1, exact ranks", "b32", "ORT ratio b1, ranks aligned to 16", "b32",
            "eager ours/TL-Torch factorized", "ours/TL-Torch reconstructed"]
    m = exact["meta"]
    summary = (f"Over every row: speedup ÷ MAC reduction at batch 1 (exact ranks) spans {_span(all_b1, 0.8)} rows "
               f"≥ 0.8; our eager time ÷ TensorLy-Torch's factorized layer at equal rank spans {_span(tl, 0.5, False)}"
               " rows ≤ 0.5.")
    command = (f".venv/bin/python benchmarks/bench_layers.py --threads {' '.join(map(str, m['threads']))} "
               f"--repeats {m['repeats']}")
    return (source_line(command, "layers.json", "layers-aligned.json",
                        also=" (with `--ranks aligned --skip-tltorch --out "
                        "benchmarks/results/layers-aligned.json` for the aligned columns)",
                        note="; min–max over methods (Tucker-2, CP-3; CP-4 in eager) and "
                        "1 and 2 threads, in brackets how many rows meet the goal")
            + f"\n\nMachine: {m['cpu']}, {m['cpu_count']} logical CPUs; torch {m['torch']}, onnxruntime "
              f"{m['onnxruntime']}, tltorch {m['tltorch']}; {m['repeats']} alternating rounds.\n\n"
            + md_table(head, rows) + "\n\n" + summary)


def _realise_rows(data: dict[str, Any], how: str) -> tuple[list[list[str]], int, int]:
    """Rows of a per-layer realisation table, and how many (row, batch) cells of how many reach 0.8."""
    rows, met, total = [], 0, 0
    for r in data["rows"]:
        rank = "x".join(map(str, r["rank"])) if isinstance(r["rank"], list) else str(r["rank"])
        cells = [r["layer"], r["method"], rank, r["form"] if r["realise"] == "fastest" else how,
                 f"{r['mac_reduction']:.2f}"]
        for b in ("1", "32"):
            e = r["batches"][b]
            total += 1
            met += e["efficiency"] >= 0.8
            cells += [f"{e['speedup']:.2f}× ({e['min']:.2f}–{e['max']:.2f})",
                      f"**{e['efficiency']:.2f}**" if e["efficiency"] >= 0.8 else f"{e['efficiency']:.2f}",
                      f"{e['gflops']:.0f} ({e['peak_share']:.0%} / dense {e['dense_peak_share']:.0%})"]
        rows.append(cells)
    return rows, met, total


_REALISE_HEAD = ["layer", "method", "rank", "realised as", "MAC red.", "speedup b1 (min–max)", "eff. b1",
                 "GFLOP/s b1 (of peak / dense)", "speedup b32", "eff. b32", "GFLOP/s b32 (of peak / dense)"]


def render_realise(results: Path | None = None) -> str:
    data = load("realise.json", results)
    m = data["meta"]
    rows, met, total = _realise_rows(data, "default (file)")
    command = f".venv/bin/python benchmarks/bench_realise.py --repeats {m['repeats']}"
    return (source_line(command, "realise.json", note="; eff. = speedup ÷ MAC reduction, bold where ≥ 0.8")
            + f"\n\nMachine: {m['cpu']}, {m['cpu_count']} logical CPUs (shared); onnxruntime {m['onnxruntime']}; "
              f"target {m['target']}; 1 thread; {m['repeats']} alternating rounds; measured 1-thread GEMM peak "
              f"{m['gemm_peak_gflops']:.0f} GFLOP/s.\n\n"
            + md_table(_REALISE_HEAD, rows) + f"\n\n{met} of {total} (row, batch) cells reach efficiency 0.8.")


def render_realise_pte(results: Path | None = None) -> str:
    data = load("realise-pte.json", results)
    m = data["meta"]
    rows, met, total = _realise_rows(data, "default (program)")
    shares = sorted({r["delegated_share"] for r in data["rows"]})
    command = f".venv/bin/python benchmarks/bench_realise.py --runtime executorch --repeats {m['repeats']}"
    return (source_line(command, "realise-pte.json",
                        note="; eff. = speedup ÷ MAC reduction, bold where ≥ 0.8; MACs counted from the module; "
                             "GFLOP/s against the same measured 1-thread GEMM peak (ONNX Runtime's) as the ORT table")
            + f"\n\nMachine: {m['cpu']}, {m['cpu_count']} logical CPUs (shared); executorch {m['executorch']} "
              f"(XNNPACK); target {m['target']}; 1 thread; {m['repeats']} alternating rounds; operators in XNNPACK: "
              f"{', '.join(f'{s:.0%}' for s in shares)}; measured 1-thread GEMM peak "
              f"{m['gemm_peak_gflops']:.0f} GFLOP/s.\n\n"
            + md_table(_REALISE_HEAD, rows) + f"\n\n{met} of {total} (row, batch) cells reach efficiency 0.8.")


def render_int8(results: Path | None = None) -> str:
    data = load("int8.json", results)
    m, files, goal = data["meta"], data["files"], data["goal"]
    dense = files["fp32 dense"]
    vs = {p["against"]: p for p in data["pairs"]}
    rows = []
    for name, f in files.items():
        pair = vs.get(name)
        speed = [f"{pair['speedup'][b]['median']:.2f}× ({pair['speedup'][b]['min']:.2f}–"
                 f"{pair['speedup'][b]['max']:.2f})" for b in ("1", "32")] if pair else ["—", "—"]
        rows.append([name, f"{f['bytes']:,}", f"{dense['bytes'] / f['bytes']:.2f}×", pct(f["accuracy"]),
                     f"{f['accuracy'] - dense['accuracy']:+.2f}", *speed])
    head = ["file", "bytes", "smaller than fp32 dense", "test accuracy", "pt vs dense",
            "int8 factorized faster, b1 (min–max)", "b32 (min–max)"]
    g = m["goal"]
    verdict = (f"Goal: ≥ {g['size_ratio']:.0f}× smaller than the fp32 dense file: **{goal['size_ratio']:.2f}×, "
               f"{'met' if goal['size_met'] else 'not met'}** (the int8 weights alone are "
               f"{goal['int8_weight_bytes_floor']:,} bytes, {dense['bytes'] / goal['int8_weight_bytes_floor']:.1f}× "
               f"below the dense file); ≤ {g['drop_pt']:.1f} pt drop: **{goal['drop_pt']:.2f} pt, "
               f"{'met' if goal['drop_met'] else 'not met'}**; faster than the fp32 factorized file: "
               f"**{goal['speedup_vs_fp32_factorized']['1']:.2f}× at batch 1, "
               f"{goal['speedup_vs_fp32_factorized']['32']:.2f}× at batch 32, "
               f"{'met' if goal['speedup_met'] else 'not met'}**.")
    q = m["quantization"]
    return (source_line(m["command"], "int8.json",
                        note="; accuracy of each file run in ONNX Runtime on the test split; speedups are "
                             "paired ratios of 1-thread ORT medians, timed in alternation with the int8 file")
            + (f"\n\nModels: dense `benchmarks/models/{m['dense']}`, factorized `benchmarks/models/{m['factorized']}`."
               if "factorized" in m else "")
            + f"\n\nMachine: {m['cpu']} (shared); onnxruntime {m['onnxruntime']}; {m['repeats']} alternating rounds. "
              f"{_isa(m)}int8: {q['tool']}, {q['format']}, {q['weights']} weights "
              f"({q.get('weight_bits', 8)} bits) per channel: {q['per_channel']}, "
              f"{q['activations']} activations, {q['method']} calibration on {m['samples']} images of the "
              f"{m['calibration_split']} split.{_float_choice(q)}\n\n"
            + md_table(head, rows) + "\n\n" + verdict + _int8_isa_note(files, results)
            + render_int8_pte(data.get("pte")))


def _int8_isa_note(files: dict, results: Path | None) -> str:
    """Why the 8-bit-weight row differs, and the same benchmark on an earlier CPU (``int8-earlier-cpu.json``)."""
    full, cut = files.get("int8 factorized (8-bit weights)"), files.get("int8 factorized")
    if full is None:
        return ""
    note = (f"\n\nThe headline file has 7-bit weights (`reduce_range`, the default; `--full-range` for 8 bits): "
            f"ONNX Runtime's u8 × s8 kernels on x86 CPUs without VNNI (VPMADDUBSW) add two products into int16 "
            f"and saturate with 8-bit weights, so the 8-bit file's accuracy depends on the CPU that runs it: "
            f"{pct(full['accuracy'])} here against {pct(cut['accuracy'])} for 7 bits.")
    path = (results or RESULTS) / "int8-earlier-cpu.json"
    if path.is_file():
        old = json.loads(path.read_text())
        speed, pte = old["goal"]["speedup_vs_fp32_factorized"], old.get("pte", {}).get("pairs", [{}])[0]
        note += (f" The same benchmark on an earlier machine ({old['meta']['cpu']}, onnxruntime "
                 f"{old['meta']['onnxruntime']}, 8-bit weights; `benchmarks/results/int8-earlier-cpu.json`): the "
                 f"8-bit file reached {pct(old['files']['int8 factorized']['accuracy'])} there (no saturation), "
                 f"{speed['1']:.2f}× / {speed['32']:.2f}× the fp32 factorized file's speed at batch 1 / 32"
                 + (f", and the int8 .pte {pte['speedup']['1']['median']:.2f}× / {pte['speedup']['32']['median']:.2f}×"
                    if pte else "")
                 + ": int8's gain in speed depends on the CPU's integer instructions as well.")
    return note


def _isa(m: dict) -> str:
    """The CPU's int8-relevant extensions (bench_int8 ``meta.isa``): ORT's u8 x s8 kernels saturate without VNNI."""
    if "isa" not in m:
        return ""
    vnni = any("vnni" in f for f in m["isa"])
    return f"CPU extensions: {', '.join(m['isa']) or 'none read'} ({'with' if vnni else '**no**'} VNNI). "


def _float_choice(q: dict) -> str:
    """What ``keep_float="auto"`` timed and kept, from the int8 file's quantization record."""
    sel = q.get("float_selection")
    if not sel:
        return ""
    timed = "; ".join(f"{k} in float: {v['1']:.2f}× / {v['32']:.2f}×" for k, v in sel["speedup_vs_fp32"].items())
    names = ", ".join(f"`{n}`" for n in q["float_nodes"]) or "none"
    return (f" The first {sel['chosen']} compute node(s) stay in float ({names}): `keep_float=\"auto\"` timed "
            f"the files keeping the first 0–{len(sel['speedup_vs_fp32']) - 1} compute nodes in float against the "
            f"fp32 factorized file ({sel['threads']} thread, {sel['repeats']} rounds, speed at batch "
            f"{' / '.join(str(b) for b in sel['batches'])}: {timed}) and kept the fastest (a longer prefix must "
            f"win by {100 * (sel['margin'] - 1):.0f} %). Why: ORT's QLinearConv on the 1-channel image is several "
            "times slower than the float kernel, and the float/int8 boundary must follow a Conv, since ORT moves "
            "a QuantizeLinear up through ReLU and MaxPool into a slow uint8 NCHW MaxPool.")


def render_int8_pte(pte: dict | None) -> str:
    """The .pte rows of the int8 table: dense and factorized fp32 programs and the int8 one, in executorch.runtime,
    with each speedup against the file it was timed with."""
    if not pte:
        return ""
    q = pte["quantization"]
    base_name = "fp32 dense .pte"
    base = pte["files"][base_name]
    pairs = {p["target"]: p for p in pte["pairs"]}
    batches = [str(b) for b in pte["batches"]]

    def speed(name: str, b: str) -> str:
        pair = pairs.get(name)
        if pair is None or b not in pair["speedup"]:
            return "—"
        v = pair["speedup"][b]
        return f"{v['median']:.2f}× vs {pair['against'].removesuffix(' .pte')} ({v['min']:.2f}–{v['max']:.2f})"

    rows = [[name, f"{f['bytes']:,}", f"{base['bytes'] / f['bytes']:.2f}×", pct(f["accuracy"]),
             f"{f['accuracy'] - base['accuracy']:+.2f}", *(speed(name, b) for b in batches)]
            for name, f in pte["files"].items()]
    short = base_name.removesuffix(" .pte")
    head = ["file (executorch.runtime, XNNPACK)", "bytes", f"smaller than {short}", "test accuracy",
            f"pt vs {short}", *(f"faster, b{b} (min–max)" for b in batches)]
    rounds = {v["rounds"] for p in pairs.values() for v in p["speedup"].values()}
    return (f"\n\nThe phone runtime: the models as `.pte` programs (ExecuTorch {pte['executorch']}, XNNPACK, 1 thread, "
            f"batch {' and '.join(batches)}, one program per batch size, "
            f"{'/'.join(str(r) for r in sorted(rounds, reverse=True))} alternating rounds; `{pte['command']}`, "
            f"started at a load average of {pte['load_average']:.1f} on the shared machine). int8: {q['tool']} with "
            f"{q['quantizer']}, {q['weights']} weights per channel: {q['per_channel']}, {q['activations']} "
            f"activations, calibrated on {pte['samples']} training images; "
            f"{100 * pte['delegated_share']:.0f} % of the int8 program's operators delegated to XNNPACK; accuracy of "
            "each batch-1 file run in executorch.runtime on the test split.\n\n"
            + md_table(head, rows))


def render_pte(results: Path | None = None) -> str:
    data = load("pte.json", results)
    m = data["machine"]
    rows, met, total = [], 0, 0
    for r in data["rows"]:
        ranks = ", ".join("x".join(map(str, k)) if isinstance(k, list) else str(k) for k in r["ranks"])
        cells = [r["method"], ranks, f"{r['mac_reduction']:.2f}", f"{r['delegated_share']:.0%}",
                 f"{r['file_bytes'] / 1e6:.2f} MB ({r['dense_file_bytes'] / 1e6:.2f})"]
        for b in ("1", "32"):
            e = r["batches"].get(b)
            if e is None:
                cells += ["—", "—"]
                continue
            total += 1
            met += e["efficiency"] >= 0.8
            cells += [f"{e['speedup']:.2f}× ({e['min']:.2f}–{e['max']:.2f})",
                      f"**{e['efficiency']:.2f}**" if e["efficiency"] >= 0.8 else f"{e['efficiency']:.2f}"]
        for b in ("1", "32"):
            e = r["batches"].get(b)
            cells.append("—" if e is None else f"+{e['session_memory']['peak_rss_bytes'] / 1e6:.1f} MB "
                         f"(+{e['dense_session_memory']['peak_rss_bytes'] / 1e6:.1f})")
        rows.append(cells)
    head = ["method", "ranks (per conv)", "MAC red.", "ops in XNNPACK", ".pte (dense)", "speedup b1 (min–max)",
            "eff. b1", "speedup b32 (min–max)", "eff. b32", "session peak RSS b1 (dense)", "b32 (dense)"]
    reps = "/".join(str(e["repeats"]) for e in data["rows"][0]["batches"].values())
    return (source_line(data["command"], "pte.json",
                        note="; eff. = speedup ÷ MAC reduction, bold where ≥ 0.8; session peak RSS: growth of the "
                             "process's RSS from loading the program to the end of its first run, in a fresh "
                             "interpreter")
            + f"\n\nMachine: {m['cpu']}, {m['cpu_count']} logical CPUs (shared); torch {data['torch']}, executorch "
              f"{data['executorch']}; {data['threads']} thread; {reps} alternating rounds (b1/b32); input "
              f"{'x'.join(map(str, data['input_shape']))}; the dense stack runs "
              f"{data['dense_delegated_share']:.0%} of its ops in XNNPACK.\n\n"
            + md_table(head, rows) + f"\n\n{met} of {total} (row, batch) cells reach efficiency 0.8.")


# ----------------------------------------------------------------------------------------------------------
# exploration and search (earlier session; low fidelity)


def _budget(result: str) -> str:
    if result.startswith("error: no Pareto point"):
        return "not met" + (f" (closest: {result.split('closest is ', 1)[1]})" if "closest is " in result else "")
    return result


def render_explore(results: Path | None = None) -> str:
    data = load("explore.json", results)
    rows = []
    for r in data["results"]:
        p, s = r["pruning"], r["search"]
        kept = 1.0 - p["removed_share"]["error-bound"]
        rows.append([r["model"], pct(r["original"]["accuracy"]),
                     f"{p['points']['error-bound']:,} of {p['points']['all']:,} ({1 - p['points_removed_share']:.2%})",
                     f"10^{p['space_log10']['all']:.1f}", f"{int(p['space_size']['error-bound']):,}", f"{kept:.2e}",
                     f"{s['trials']} trials, {s['val_samples']} val images, {s['finetune_batches']} fine-tune "
                     "batches per front model",
                     f"{r['hypervolume_ratio']:.3f} ({r['reference']})", _budget(r["budget_result"])])
    head = ["model", "its baseline (test acc)", "per-layer points kept by pruning (headline)",
            "whole-model space", "left after pruning", "product-space share kept (secondary)", "low-fidelity search",
            "hypervolume ÷ reference front", "budget macs≤0.25, params≤0.1, "
            "drop≤0.5"]
    commands = []
    for r in data["results"]:
        a = r["args"]
        opts = [f"--models {r['model']}", f"--{r['model']} {a[r['model']]}"] + [
            f"--{k.replace('_', '-')} {a[k]}" for k in ("max_evals", "reference_factor", "exhaustive_limit",
                                                         "val_samples", "finetune_batches", "max_factors",
                                                         "max_error", "threads")]
        commands.append(f"- {r['model']}: `.venv/bin/python benchmarks/bench_explore.py {' '.join(opts)}`")
    return (source_line("OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_explore.py", "explore.json",
                        also=", one run per model, with the arguments recorded in the JSON:")
            + "\n" + "\n".join(commands) + "\n\n" + md_table(head, rows))


def render_search(results: Path | None = None) -> str:
    data = load("search.json", results)
    lo, fin = data["low_fidelity"], data["final"]
    rows = []
    for mode in ("auto", "fixed"):
        s = data[f"search_{mode}"]
        rows.append([f"TCL ranks {mode}" + (f" {data['fixed_ranks']}" if mode == "fixed" else ""),
                     f"{s['counts'].get('complete', 0)}/{data['trials']}", f"{s['hypervolume']:.3f}",
                     f"{s['best_accuracy']:.2f} %", f"{s['smallest_params']:,}"])
    search = md_table(["search", "trials complete", "hypervolume", "best val acc (low fidelity)", "smallest params"],
                      rows)
    mb = data["baselines"]["mobilenetv2"]
    found = [[str(f["trial"]), f"{f['params']:,}", f"{f['macs']:,}", pct(f["test_accuracy"]),
              f"{f['x_smaller_than_mobilenetv2']:.0f}×", f"{-f['gap_to_mobilenetv2']:+.2f} pt"]
             for f in data["found"]]
    found_t = md_table(["trial", "params", "MACs", "test acc", "× fewer params than MobileNetV2 (weak baseline)",
                        "acc − MobileNetV2's"], found)
    w = data["workers"]
    workers = (f"Two worker processes, one Optuna **journal-file** study, on **digits** (1 epoch of 4 batches): "
               f"{w['finished']}/{w['requested']} trials finished, split "
               f"{'/'.join(map(str, w['per_worker'].values()))} "
               f"between the workers, exit codes {w['exit_codes']}. The script's duplicate count "
               f"({w['duplicate_numbers']}) compares Optuna trial numbers, which Optuna assigns uniquely, so it "
               "cannot fail; it is no evidence against duplicated work.")
    fid = (f"Fidelity recorded in the JSON: search trials train {lo['epochs']} epochs of {lo['max_batches']} batches; "
           f"the final models and the baselines {fin['epochs']} epoch of {fin['max_batches']} batches of "
           f"{fin['batch_size']} (≈ {fin['max_batches'] * fin['batch_size']:,} images). On that budget MobileNetV2 "
           f"({mb['params']:,} params) reached only {pct(mb['test_accuracy'])} test accuracy, so the × columns "
           "compare with a weak baseline.")
    return (source_line("OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_search.py", "search.json",
                        also=f" (with `--trials {data['trials']} --final-max-batches {fin['max_batches']}`, "
                             "as recorded)")
            + "\n\n" + fid + "\n\n" + search + "\n\n" + found_t + "\n\n" + workers)


def render_search_full(results: Path | None = None) -> str:
    """The full-fidelity NAS run: final front models and baselines on one recipe, the goal checked."""
    d = load("search-full.json", results)
    g, mb, tp, c = d["goal"], d["mobilenetv2"], d["throughput"], d["counts"]
    conv = d["baselines"].get("convnet")
    rows = []
    for f in sorted(d["finals"], key=lambda f: f["params"]):
        rows.append([f"trial {f['trial']}: {f['summary'].replace(' | ', ' · ')}", f"{f['params']:,}", f"{f['macs']:,}",
                     pct(f["low_fidelity_accuracy"]), pct(f["test_accuracy"]),
                     f"{f['x_fewer_params_than_convnet']:.2f}×" if conv else "—",
                     f"{f['pt_vs_convnet']:+.2f}" if conv else "—", f"{f['x_fewer_params_than_mobilenetv2']:.0f}×",
                     f"{f['train_seconds'] / 60:.1f} min"])
    for name, b in d["baselines"].items():
        rows.append([f"baseline {name}", f"{b['params']:,}", f"{b['macs']:,}", "—", pct(b["test_accuracy"]),
                     "", "", f"{mb['params'] / b['params']:.1f}×", f"{b['train_seconds'] / 60:.1f} min"])
    rows.append(["baseline mobilenetv2 (not trained here)", f"{mb['params']:,}", f"{mb['macs']:,}", "—",
                 f"not trained: ~{mb['epoch_minutes_here']:.1f} min per epoch here, ~{mb['recipe_hours_here']:.1f} h "
                 "for the recipe", "", "", "1×", "—"])
    head = ["model", "params", "MACs", "val acc, low fidelity", "test acc (recipe)", "× fewer params than convnet",
            "pt vs convnet", "× fewer params than MobileNetV2", "final training"]
    best = g["best_at_max_params"]
    verdict = (f"Goal: a TCL-head front model with ≥ {g['min_test_accuracy']:.1f} % test accuracy at ≤ "
               f"{g['max_params']:,} params: **" + (f"met by trial(s) {', '.join(map(str, g['met_by']))}" if
                                                    g["accuracy_met"] else
                                                    f"not met: the best at ≤ {g['max_params']:,} params is trial "
                                                    f"{best['trial']}, {pct(best['test_accuracy'])}, "
                                                    f"{best['short_by_pt']:.2f} pt short") + "**. "
               f"Search and final training together: **{g['search_plus_final_hours']:.2f} h** (goal ≤ "
               f"{g['max_hours']:.0f} h: {'met' if g['time_met'] else 'not met'}; search "
               f"{d['search_seconds'] / 60:.0f} min, final training {d['final_seconds'] / 60:.0f} min; the baselines' "
               "training is not counted).")
    counts = (f"Trials: {c.get('complete', 0)} complete, {c.get('pruned', 0)} pruned during training (multi-fidelity), "
              f"{c.get('over_budget', 0)} over the space's params / MACs limits (no training); "
              f"{tp['trials_per_hour']:.0f} trials per hour; "
              f"hypervolume {d['hypervolume']:.3f}, {d['pareto_size']} models on the low-fidelity front, "
              f"{len(d['finals'])} retrained.")
    return (source_line(d["script"], "search-full.json", also=f" (which runs `{d['command']}`)")
            + f"\n\nRecipe of the final models and of the baselines: {d['recipe']}; test split. MobileNetV2's "
              f"params ({mb['params']:,}) are counted on 1×28×28; its training batch was timed here at "
              f"{mb['batch_seconds']:.2f} s ({mb['threads']} threads).\n\n"
            + md_table(head, rows) + "\n\n" + verdict + "\n\n" + counts + _search_full_runs(d, results))


def _pruning_line(d: dict) -> str:
    """How often the dominance rule, applied to a run's completed trials, would have pruned the wrong one."""
    parts = [f"after epoch {r['epoch']}: {r['wrong']} of {r['pairs']}"
             + (f" ({100 * r['wrong_share']:.0f} %)" if r["pairs"] else "") for r in d["pruning_check"]["by_epoch"]]
    return "; ".join(parts)


def _search_full_runs(d: dict, results: Path | None) -> str:
    """This run beside the first one (no pruning warm-up, no augmentation), when that one's JSON is there."""
    if "pruning_check" not in d:
        return ""
    out = (f"\n\nDominance pruning waits {d['prune_warmup']} epoch(s) (`--prune-warmup`). Checked on this run's "
           "completed trials (ordered pairs that the rule separates at 0.5 pt, with the one ahead at no more params "
           "and MACs; how often the other one ends at least as accurate): " + _pruning_line(d) + ".")
    try:
        runs = [load("search-full-warmup0.json", results), d]
    except RenderError:
        return out
    rows = []
    for r in runs:
        best, sz, c = r["goal"]["best_at_max_params"], r["pruning_check"]["sizes"], r["counts"]
        aug = "2-px translation" if "translation" in r["recipe"] else "none"
        rows.append([str(r["prune_warmup"]), aug, f"{c.get('complete', 0)} / {c.get('pruned', 0)}",
                     f"{sz['complete']['median_params']:,} / {sz['pruned_in_training']['median_params']:,}",
                     f"{sz['complete']['at_least_50k_params']} / {sz['pruned_in_training']['at_least_50k_params']}",
                     f"{r['throughput']['trials_per_hour']:.0f}", f"{r['hypervolume']:.3f}",
                     f"trial {best['trial']}: {pct(best['test_accuracy'])} at {best['params']:,} params",
                     f"{r['goal']['search_plus_final_hours']:.2f} h", _pruning_line(r)])
    head = ["prune warm-up (epochs)", "final augmentation", "complete / pruned in training",
            "median params, complete / pruned", "≥ 50k params, complete / pruned", "trials per hour", "hypervolume",
            "best front model at ≤ 110k params (test)", "search + final", "dominance rule wrong (completed trials)"]
    return (out + "\n\nThe first run (`search-full-warmup0.json`: `--prune-warmup 0`, no augmentation, otherwise the "
            "same command) beside this one:\n\n" + md_table(head, rows))


def render_hand_tcl(results: Path | None = None) -> str:
    """Hand-designed TCL-head convnets and the hand convnet on the NAS final recipe, with and without augmentation."""
    d = load("hand-tcl.json", results)
    conv = {r["augment"]: r for r in d["rows"] if r["model"] == "convnet"}
    rows, best = [], {}
    for r in d["rows"]:
        c = conv.get(r["augment"])
        vs = "" if r["model"] == "convnet" or c is None else f"{r['test_accuracy'] - c['test_accuracy']:+.2f}"
        if r["model"] != "convnet" and r["params"] <= d["goal_params"]:
            best[r["augment"]] = max(best.get(r["augment"], 0.0), r["test_accuracy"])
        a = r["arch"]
        arch = "hand convnet (FC head)" if a is None else " · ".join(
            [f"stem{a['stem']['width']}"] + [f"conv×{st['depth']} {st['width']} s{st['stride']}" for st in a["stages"]]
            + [f"tcl{a['head']['rank']}"])
        rows.append([f"{r['model']}: {arch}", f"{r['params']:,}", f"{r['macs']:,}",
                     "2-px random translation" if r["augment"] else "none", pct(r["test_accuracy"]), vs])
    goal = d["goal_accuracy"]
    verdict = "; ".join(f"{'with' if aug else 'without'} augmentation the best TCL-head net at ≤ {d['goal_params']:,} "
                        f"params reaches {acc:.2f} %, {'meeting' if acc >= goal else f'{goal - acc:.2f} pt short of'} "
                        f"{goal} %" for aug, acc in sorted(best.items()))
    return (source_line(d["command"], "hand-tcl.json")
            + f"\n\nRecipe: {d['recipe']}; test split. The TCL-head nets are built from the search's blocks but lie "
              "outside the default space (its first-stage widths stop at 24).\n\n"
            + md_table(["model", "params", "MACs", "augmentation", "test acc", "pt vs convnet (same augmentation)"],
                       rows)
            + f"\n\n{verdict[0].upper() + verdict[1:]}.")


def render_tcl_ranks(results: Path | None = None) -> str:
    """Automatic vs fixed TCL ranks over seeds: hypervolume and best low-fidelity accuracy, mean ± sd."""
    d = load("tcl-ranks.json", results)
    lo, ref = d["low_fidelity"], d["hypervolume_reference"]
    rows = []
    for r in sorted(d["runs"], key=lambda r: (r["mode"], r["seed"])):
        rows.append([r["mode"], str(r["seed"]), f"{r['complete']}", f"{r['pruned']}", f"{r['hypervolume']:.4f}",
                     pct(r["best_val_accuracy"]), f"{r['best_params']:,}", f"{r['seconds'] / 60:.1f} min"])
    for mode in ("auto", "fixed"):
        h, a = d["summary"][mode]["hypervolume"], d["summary"][mode]["best_val_accuracy"]
        rows.append([f"**{mode}, mean ± sd**", f"{h['n']} seeds", "", "", f"{h['mean']:.4f} ± {h['sd']:.4f}",
                     f"{a['mean']:.2f} ± {a['sd']:.2f} %", "", ""])
    dh, da = d["auto_minus_fixed"]["hypervolume"], d["auto_minus_fixed"]["best_val_accuracy"]
    holds = d["auto_wins_hypervolume"] == d["seeds"] and min(dh) > 0
    verdict = (f"Auto − fixed, per seed: hypervolume {', '.join(f'{x:+.4f}' for x in dh)}; best val accuracy "
               f"{', '.join(f'{x:+.2f}' for x in da)} pt. Automatic ranks beat the fixed "
               f"{tuple(d['fixed_ranks'])} on hypervolume in {d['auto_wins_hypervolume']} of {d['seeds']} seeds: "
               + ("the paper's claim **holds** here on this budget" if holds else
                  "the paper's claim **does not hold consistently** here on this budget")
               + f"; on the best validation accuracy alone, automatic ranks are ahead in {sum(x > 0 for x in da)} of "
                 f"{d['seeds']} seeds ({d['trials']} finished trials per study, complete or pruned; low fidelity only: "
                 "the accuracies are validation accuracies after the trial budget, not full-recipe test accuracies).")
    return (source_line(d["command"], "tcl-ranks.json")
            + f"\n\nSpace `{d['space']}`; NSGA-II; trials train {lo['epochs']} epochs of {lo['max_batches']} "
              f"batches and are validated on {lo['val_batches']} × 500 images; hypervolume on (1 − accuracy, "
              f"params / {ref['params']:,}, MACs / {ref['macs']:,}), the reference being the space's own limits.\n\n"
            + md_table(["TCL ranks", "seed", "complete", "pruned", "hypervolume", "best val acc",
                        "its params", "search time"], rows) + "\n\n" + verdict)


# ----------------------------------------------------------------------------------------------------------
# the default job (tensorslim demo)


def render_demo(results: Path | None = None) -> str:
    data = load("demo.json", results)
    return (source_line(data["command"], "demo.json", note=f"; wall time {data['wall_s']:.0f} s")
            + "\n\n```\n" + data["table"].rstrip("\n") + "\n```")


# ----------------------------------------------------------------------------------------------------------
# anchor libraries (bench_anchors.py)


def render_anchors(results: Path | None = None) -> str:
    data = load("anchors.json", results)
    text = source_line(data["command"], "anchors.json")
    for section in data["sections"]:
        text += f"\n\n**{section['title']}**\n\n" + md_table(section["head"], section["rows"])
    if data.get("missing"):
        text += "\n\nNot measured (optional package missing, nothing installed): " + "; ".join(data["missing"]) + "."
    return text


def render_reference_front(results: Path | None = None) -> str:
    d = load("reference-front.json", results)
    g, s = d["grid"], d["search"]
    rows = []
    for name, label in (("nsga2", "NSGA-II (explore's sampler)"), ("random", "random sampling"),
                        ("exact-merge", "exact merge of the per-layer fronts")):
        r = s[name]
        evals = f"{r['evaluations']:,} ({r['evaluations'] / g['combinations']:.0%})" if r["evaluations"] else \
            f"0 (forms {r['partial_combinations']:,} partial sums)"
        met = "met" if r["mean"] >= d["goal"]["share"] else f"not met (short by {d['goal']['share'] - r['mean']:.3f})"
        rows.append([label, evals, f"{r['mean']:.4f} ± {r['spread']:.4f}", met if r["evaluations"] else "—"])
    tuned = [[f"{t['params']:,}", f"{t['macs']:,}", f"{t['output_error']:.3f}", pct(t["test_accuracy"])]
             for t in d["finetuned_front"]]
    seeds = d["settings"]["seeds"]
    return (source_line(d["command"], "reference-front.json")
            + f"\nGrid: {g['combinations']:,} whole-model combinations of {len(g['layers'])} layers "
            f"({' × '.join(map(str, g['choices']))} choices, keep-dense included) of `{d['baseline']}`, each "
            f"evaluated at rung (b); reference front {g['reference_front']} points, hypervolume {g['hypervolume']} "
            f"(normalised, reference point {tuple(g['reference_point'])}). Hypervolume share over {seeds} seeds "
            "(mean ± standard deviation); goal ≥ 0.95 with ≤ 10 % of the evaluations.\n\n"
            + md_table(["search", "evaluations", "hypervolume ÷ reference front", "goal"], rows)
            + f"\n\nA sample of the reference front, fine-tuned {d['settings']['epochs']} epoch(s) with "
            f"distillation and tested (baseline {pct(d['baseline_test_accuracy'])}; Spearman of rung (b) against "
            f"test accuracy {d['spearman_rung_b_vs_test']}):\n\n"
            + md_table(["params", "MACs", "rung (b): summed output error", "test accuracy"], tuned))


PROXY_DRAWS = ("proxy.json", "proxy-draw0.json")  # the table's run first, then earlier draws of other points


def _proxy_target(d: dict) -> str:
    st = d["settings"]
    return (f"{st['final_epochs']} epoch(s)" + (f" of at most {st['final_batches']} batches"
                                                if st.get("final_batches") else " (all batches)"))


def render_proxy(results: Path | None = None) -> str:
    d = load("proxy.json", results)
    proxies = ["weight_error", "output_error", "output_disagreement", "logit_error", "zero_shot", "short_ft"]
    rows = [[name, str(c["n"]), *[("—" if c.get(p) is None else f"{c[p]:.2f}") for p in proxies]]
            for name, c in d["correlations"].items()]
    interval = d.get("interval95") or {}
    if interval:
        rows.insert(1, ["all: 95 % bootstrap interval", "", *[(f"{interval[p][0]:.2f}–{interval[p][1]:.2f}"
                                                             if interval.get(p) else "—") for p in proxies]])
    bias = d.get("family_bias", {}).get("output_error", {})
    st = d["settings"]
    draws = [(name, load(name, results)) for name in PROXY_DRAWS if ((results or RESULTS) / name).is_file()]
    out = (source_line(d["command"], *[n for n, _ in draws])
           + f"\nTarget: {d['target']}, {_proxy_target(d)}, on `{d['baseline']}`. Calibration: {st['calibration']} "
           f"training images; zero-shot and short fine-tune ({st['short_batches']} batches) on {st['val_samples']} "
           f"validation images; points drawn with seed {st['seed']}. Goal: ≥ 0.8 for rung (b), the output error.\n\n"
           + md_table(["points", "n", "weight error", "rung (b): output error", "rung (b) at the output: "
                       "disagreement", "logit error", "zero-shot accuracy", "rung (c): short fine-tune"], rows)
           + ("\n\nRank bias of rung (b) per method (mean rank(final) − rank(proxy), as a share of the points; "
              "positive: the proxy under-rates the method): "
              + ", ".join(f"{m} {v:+.2f}" for m, v in bias.items()) if bias else ""))
    if len(draws) > 1:
        other = []
        for name, e in draws:
            c, iv = e["correlations"]["all"], (e.get("interval95") or {}).get("output_error")
            iv_d = (e.get("interval95") or {}).get("output_disagreement")
            other.append([f"`{name}`", str(e["settings"]["seed"]), str(c["n"]), _proxy_target(e),
                          f"{c['output_error']:.2f}" + (f" ({iv[0]:.2f}–{iv[1]:.2f})" if iv else ""),
                          "—" if c.get("output_disagreement") is None else f"{c['output_disagreement']:.2f}"
                          + (f" ({iv_d[0]:.2f}–{iv_d[1]:.2f})" if iv_d else ""),
                          f"{c['short_ft']:.2f}", f"`{e['command']}`"])
        out += ("\n\nEvery draw of points (different points, each its own run):\n\n"
                + md_table(["run", "seed", "n", "target fine-tune", "rung (b) (95 % interval)",
                            "rung (b) at the output (95 % interval)", "rung (c)", "command"], other))
    return out


def render_explore_budget(results: Path | None = None, source: str = "explore-budget.json") -> str:
    """An explore-budget run (``bench_explore_budget.py``; ``--json`` names its file)."""
    d = load(source, results)
    rows = []
    for name, r in d["rows"].items():
        label = name + (f" ({'+'.join(r['methods'])})" if "methods" in r else "")
        if name == d.get("judged"):
            label += ", judged against the goals"
        rows.append([label, f"{r['params']:,}",
                     f"{r['params_reduction']:.2f}×", f"{r['macs']:,}", f"{r['macs_reduction']:.2f}×",
                     pct(r["test_accuracy"]), f"{-r['drop']:+.2f} pt", f"{r['speedup_b1']:.2f}×"])
    met = ", ".join(f"{k} {'met' if v else 'not met'}" for k, v in d["met"].items())
    pr, objectives = d["pruning"], d["settings"].get("objectives", "macs,memory,accuracy")
    kept = (f" Objectives {objectives}. Pruning kept {list(pr['points'].values())[-1]:,} of {pr['points']['all']:,} "
            "layer points; survivors per method: " + "; ".join(
                f"{m} {v['survivors']}/{v['points']}" + (f", gone at stage {v['vanished']['stage']}"
                                                         if "vanished" in v else "")
                for m, v in sorted(pr["methods"].items())) + ".")
    sc = d["search"].get("screen")
    if sc:
        kept += (f" Rung (b) screen: {sc['evaluated']:,} combinations judged by their summed layer errors in "
                 f"{sc['seconds']:.0f} s, {sc['feasible']:,} within the budget's costs, the {sc['picked']} best made "
                 "the first low-fidelity trials.")
    warm = d["search"].get("warm_start")
    if warm:
        kept += (f" Warm start: {len(warm['plans'])} plan(s) ("
                 + "; ".join(", ".join(f"{k} {v.split(':algorithm')[0]}" for k, v in pl.items())
                             for pl in warm["plans"])
                 + f") and {len(warm['trials']) - len(warm['plans'])} one-layer neighbours were the first trials"
                 + f", of {d['search']['trials']} low-fidelity trials.")
    return (source_line(d["command"], source,
                        also=f"; rows re-measured with `{d['rows_command']}`" if d.get("rows_command") else "")
            + f"\nBudget `{d['budget']}` on `{d['baseline']}`; explore took {d['minutes']} min on 2 cores "
            f"(estimate printed before the search: {d['search']['estimate_s']['total_s'] / 60:.1f} min). Recipes: "
            + "; ".join(f"{k}: {v}" for k, v in d["recipe"].items())
            + f". Goals (≥ 10× params, ≥ 3× MACs, ≤ 0.5 pt test drop, ≥ 2× ORT batch 1, ≤ 60 min): {met}. "
            f"Front points at least as accurate as the finetune-budget model (within 0.05 pt) with fewer params or "
            f"MACs: {', '.join(d['front_points_beating_finetune_budget']) or 'none'}.{kept}\n\n"
            + md_table(["model", "params", "fewer", "MACs", "fewer", "test accuracy", "vs dense", "ORT b1 speedup"],
                       rows))


def render_latency_budget(results: Path | None = None) -> str:
    """benchmarks/results/latency-budget.json, written by benchmarks/bench_latency_budget.py."""
    d = load("latency-budget.json", results)
    tried = "; ".join(f"`{t['budget']}`: " + (t["error"] or "allocated") for t in d["tried"])
    if "row" not in d:
        return source_line(d.get("command", "benchmarks/bench_latency_budget.py"), "latency-budget.json") + (
            f"\nNo budget could be allocated ({tried}).")
    r, g = d["row"], d["goal"]
    rounds = ", ".join(f"round {x['round']}: estimate {x['estimate']:.3f}, measured "
                       + (f"{x['measured']:.3f}" if x["measured"] is not None else "—") for x in r["rounds"])
    layers = ", ".join(f"{name} {m} {rank}" for name, (m, rank) in r["layers"].items())
    met = ", ".join(f"{k} {'met' if v else 'not met'}" for k, v in d["met"].items())
    rows = [[f"`{r['budget']}`", f"{r['speedup_b1']:.2f}× ({r['speedup_min']:.2f}–{r['speedup_max']:.2f})",
             f"{r['ms_b1']:.3f} / {r['dense_ms_b1']:.3f}", f"{1 / r['estimate']:.2f}×", f"{r['params_reduction']:.2f}×",
             f"{r['macs_reduction']:.2f}×", pct(r["test_accuracy"]), f"{-r['drop']:+.2f} pt"]]
    return (source_line(d["command"], "latency-budget.json")
            + f"\nBaseline `{d['baseline']}` ({pct(r['dense_test_accuracy'])} test). Recipe: `{d['recipe']}` "
            + ("(a short fine-tune)" if d["settings"]["epochs"] < 5 else "(the 10 epochs of the finetune headline)")
            + f". Budgets tried: {tried}. Allocation rounds (fraction of the dense model's "
            f"latency; measured: the allocated model against the dense one in ORT): {rounds}; round "
            f"{r['chosen_round']} kept. Speedup: {d['timing']}. Goal ≥ {g['speedup_b1']:g}× at batch 1 at ≤ "
            f"{g['drop']:g} pt test drop: {met}. Layers: {layers}. Took {d['minutes']} min on 2 shared cores"
            + (f" ({d['note']})" if d.get("note") else "") + ".\n\n"
            + md_table(["budget", "ORT b1 speedup (min–max)", "ms b1 (model / dense)", "table estimate",
                        "fewer params", "fewer MACs", "test accuracy", "vs dense"], rows))


RENDERERS: dict[str, Callable[[Path | None], str]] = {
    "committed": render_committed,
    "provenance": render_provenance,
    "target": render_target,
    "finetune-methods": _finetune_renderer("finetune-methods"),
    "finetune-wide": _finetune_renderer("finetune-wide"),
    "finetune-schedules": _finetune_renderer("finetune-schedules"),
    "models": render_models,
    "decompose": render_decompose,
    "cp-planted": render_cp_planted,
    "layers": render_layers,
    "realise": render_realise,
    "realise-pte": render_realise_pte,
    "int8": render_int8,
    "pte": render_pte,
    "explore": render_explore,
    "reference-front": render_reference_front,
    "proxy": render_proxy,
    "explore-budget": render_explore_budget,
    "explore-budget-warm": lambda results=None: render_explore_budget(results, "explore-budget-warm.json"),
    "latency-budget": render_latency_budget,
    "search": render_search,
    "search-full": render_search_full,
    "tcl-ranks": render_tcl_ranks,
    "hand-tcl": render_hand_tcl,
    "demo": render_demo,
    "anchors": render_anchors,
}


def tables(text: str) -> dict[str, str]:
    """NAME -> the body between the markers, as it stands in ``text``."""
    return {m["name"]: m["body"] for m in MARKER.finditer(text)}


def render_body(name: str, results: Path | None = None) -> str:
    if name not in RENDERERS:
        raise RenderError(f"<!-- table:{name} -->: no such table (known: {', '.join(RENDERERS)})")
    return RENDERERS[name](results).rstrip("\n") + "\n"


def render_text(text: str, results: Path | None = None, only: set[str] | None = None) -> str:
    """``text`` with every generated table (or those in ``only``) rewritten from the JSON."""
    opens = re.findall(r"<!-- table:([a-z0-9-]+) -->", text)
    if len(opens) != len(tables(text)):
        raise RenderError("a <!-- table:NAME --> marker has no matching <!-- /table:NAME -->")

    def sub(m: re.Match) -> str:
        name = m["name"]
        body = m["body"] if only is not None and name not in only else render_body(name, results)
        return f"<!-- table:{name} -->\n{body}<!-- /table:{name} -->"

    return MARKER.sub(sub, text)


def check(path: Path = BENCHMARKS_MD, results: Path | None = None, only: set[str] | None = None) -> list[str]:
    """The unified diff between ``path`` and what this script would write (empty: up to date)."""
    text = path.read_text()
    new = render_text(text, results, only)
    return list(difflib.unified_diff(text.splitlines(keepends=True), new.splitlines(keepends=True),
                                     str(path), f"{path} (rendered)"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 and print the diff if the file is not up to date")
    ap.add_argument("--file", type=Path, default=BENCHMARKS_MD)
    ap.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    try:
        if args.check:
            diff = check(args.file, args.results)
            if diff:
                sys.stdout.writelines(diff)
                print(f"\n{args.file}: out of date; run .venv/bin/python benchmarks/render.py", file=sys.stderr)
                return 1
            print(f"{args.file}: every table matches its JSON ({len(tables(args.file.read_text()))} tables)")
            return 0
        text = args.file.read_text()
        new = render_text(text, args.results)
        if new != text:
            args.file.write_text(new)
        print(f"{args.file}: {len(tables(new))} tables rendered")
        return 0
    except RenderError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
