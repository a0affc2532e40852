"""Architecture search with TCL heads on Fashion-MNIST (tensorslim.search).

(a) a found model vs mobilenetv2 (and resnet20) trained on the same final budget: size ratio, accuracy gap;
(b) automatic TCL-rank search vs handcrafted ranks (0.5, 0.5, 0.5) on the same budget (same space, strategy,
    trials, fidelity, seed): hypervolume of both, one common reference point;
(c) two worker processes on one journal study: trials finished, lost, duplicated.

Every phase is resumable (journal studies and model directories under --work); rerun the same command to
continue. Progress lines go to stdout; results to benchmarks/results/search.json.

    nice -n 10 .venv/bin/python benchmarks/bench_search.py                 # all phases, in order
    .venv/bin/python benchmarks/bench_search.py --phase search             # one phase (workers, search,
                                                                           # baselines, final, table)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from tensorslim import _atomic
from tensorslim.search import Fidelity, SearchSpace, finalize, run_study
from tensorslim.search.final import pareto_trials, train_final
from tensorslim.search.objectives import normalise
from tensorslim.search.run import _counts, open_study
from tensorslim.search.space import count
from tensorslim.study.pareto import hypervolume

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "search.json"
DATASET = "fashion-mnist"
FIXED = (0.5, 0.5, 0.5)


def bench_space() -> SearchSpace:
    """Small enough to search on 2 shared cores: every stage halves the map, at most 4 M MACs (architectures
    above that are pruned before training and not counted as trials)."""
    return SearchSpace(input_shape=(1, 28, 28), num_classes=10, stages=[2, 3], depths=[1, 2],
                       widths=[[8, 16, 24], [16, 24, 32], [32, 48, 64]], stem_widths=[8, 16], expansions=[1, 2, 4],
                       kernels=[3, 5], downsample=[2], max_macs=4_000_000)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def progress(work: Path) -> dict:
    f = work / "progress.json"
    return json.loads(f.read_text()) if f.is_file() else {}


def save_progress(work: Path, data: dict) -> None:
    _atomic.write_text(work / "progress.json", json.dumps(data, indent=2) + "\n")


def low_fid(args) -> Fidelity:
    return Fidelity(epochs=args.epochs, max_batches=args.max_batches, val_batches=args.val_batches)


def final_fid(args) -> Fidelity:
    return Fidelity(epochs=args.final_epochs, max_batches=args.final_max_batches, val_batches=4)


def phase_search(args, work: Path) -> None:
    for mode in ("auto", "fixed"):
        prog = progress(work)
        t0 = time.perf_counter()
        run_study(DATASET, space=bench_space(), rank_mode=mode, fixed_ranks=FIXED if mode == "fixed" else None,
                  n_trials=args.trials, storage=str(work / f"{mode}.journal"), study=f"bench-{mode}",
                  strategy="nsga2", strategy_options={"population_size": args.population},
                  low_fidelity=low_fid(args), seed=0, log=log)
        prog = progress(work)
        prog[f"search_seconds_{mode}"] = prog.get(f"search_seconds_{mode}", 0.0) + time.perf_counter() - t0
        save_progress(work, prog)


def _study(work: Path, mode: str):
    space = bench_space()
    from tensorslim.search.run import definition

    defn = definition(space, mode, FIXED if mode == "fixed" else None, ("accuracy", "params", "macs"), DATASET)
    return open_study(f"bench-{mode}", str(work / f"{mode}.journal"), defn)


def phase_baselines(args, work: Path) -> None:
    from tensorslim import modeldir

    for name in ("resnet20", "mobilenetv2"):
        torch.manual_seed(0)
        model = modeldir.build({"builder": name, "kwargs": {"in_channels": 1, "num_classes": 10}}, (1, 28, 28))
        train_final(model, work / "baselines" / name, DATASET, final_fid(args), seed=0, log=log)


def phase_final(args, work: Path) -> None:
    finalize(_study(work, "auto"), work / "auto", final=final_fid(args), final_top=args.final_top, baselines=(),
             report=False, storage_url=str(work / "auto.journal"), log=log)


def phase_workers(args, work: Path) -> dict:
    """Two worker processes of the `tensorslim search` command on one journal study."""
    journal = work / "workers.journal"
    cmd = [sys.executable, "-m", "tensorslim.cli.search", "--data", "digits", "--trials", str(args.worker_trials),
           "--storage", f"journal://{journal}", "--study", "bench-workers", "--worker-only", "--epochs", "1",
           "--max-batches", "4", "--val-batches", "1", "--threads", "1", "--no-prune", "--strategy", "random"]
    t0 = time.perf_counter()
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outs = [p.communicate()[0] for p in procs]
    seconds = time.perf_counter() - t0
    import optuna

    from tensorslim.search.storage import open_storage

    study = optuna.load_study(study_name="bench-workers", storage=open_storage(str(journal)))
    trials = study.get_trials(deepcopy=False)
    finished = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    workers: dict[str, int] = {}
    for t in finished:
        workers[t.user_attrs.get("worker", "?")] = workers.get(t.user_attrs.get("worker", "?"), 0) + 1
    numbers = [t.number for t in trials]
    res = {"requested": args.worker_trials, "finished": len(finished), "states": _counts(study),
           "duplicate_numbers": len(numbers) - len(set(numbers)), "per_worker": workers,
           "exit_codes": [p.returncode for p in procs], "seconds": round(seconds, 1)}
    if any(p.returncode for p in procs):
        res["worker_output_tail"] = [o[-500:] for o in outs]
    return res


def _front_stats(study, reference: dict) -> dict:
    from optuna.trial import TrialState

    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if "values" in t.user_attrs]
    pts = [normalise(t.user_attrs["values"], ("accuracy", "params", "macs"), reference) for t in done]
    front = pareto_trials(study)
    return {"counts": _counts(study), "hypervolume": hypervolume(pts, [1.0, 1.0, 1.0]), "pareto_size": len(front),
            "best_accuracy": max((t.user_attrs["values"]["accuracy"] for t in done), default=None),
            "smallest_params": min((t.user_attrs["params"] for t in done), default=None),
            "trial_seconds_mean": (sum(t.user_attrs.get("seconds", 0) for t in done) / len(done)) if done else None,
            "pareto": [{"trial": t.number, "summary": t.user_attrs["summary"], "params": t.user_attrs["params"],
                        "macs": t.user_attrs["macs"], "val_accuracy": t.user_attrs["values"]["accuracy"]}
                       for t in front]}


def phase_table(args, work: Path, workers: dict | None) -> dict:
    prog = progress(work)
    big_params, big_macs = count(bench_space().max_architecture())
    ref = {"params": big_params, "macs": big_macs}
    out: dict = {"dataset": DATASET, "space": bench_space().to_dict(), "fixed_ranks": list(FIXED),
                 "low_fidelity": vars(low_fid(args)), "final": vars(final_fid(args)), "trials": args.trials,
                 "hypervolume_reference": ref, "threads": torch.get_num_threads(),
                 "machine_load_avg": os.getloadavg()}
    print("\n(b) automatic TCL-rank search vs handcrafted ranks (NSGA-II, same budget; HV on (1-acc, params/P, "
          f"MACs/M), reference P={big_params:,}, M={big_macs:,})")
    print(f"{'ranks':<22}{'complete':>9}{'pruned':>8}{'pareto':>8}{'HV':>9}{'best acc':>10}{'search s':>10}")
    for mode in ("auto", "fixed"):
        if not (work / f"{mode}.journal").exists():
            continue
        s = _front_stats(_study(work, mode), ref)
        s["search_seconds"] = round(prog.get(f"search_seconds_{mode}", 0.0), 1)
        out[f"search_{mode}"] = s
        label = "auto (searched)" if mode == "auto" else f"fixed {FIXED}"
        c = s["counts"]
        print(f"{label:<22}{c.get('complete', 0):>9}{c.get('pruned', 0):>8}{s['pareto_size']:>8}"
              f"{s['hypervolume']:>9.4f}{(s['best_accuracy'] or 0):>10.2f}{s['search_seconds']:>10.0f}")
    base = {}
    for name in ("mobilenetv2", "resnet20"):
        f = work / "baselines" / name / "metrics.json"
        if f.is_file():
            m = json.loads(f.read_text())
            if "test" in m.get("accuracy", {}):
                base[name] = {"test_accuracy": m["accuracy"]["test"], "params": m["params"], "macs": m["macs"],
                              "train_seconds": m.get("train_seconds")}
    found = []
    pj = work / "auto" / "pareto.json"
    if pj.is_file():
        for p in json.loads(pj.read_text())["pareto"]:
            found.append({"trial": p["trial"], "summary": p["summary"], "params": p["params"], "macs": p["macs"],
                          "test_accuracy": p["test_accuracy"], "dir": p["dir"]})
    out["baselines"], out["found"] = base, found
    print(f"\n(a) found models vs baselines, same final budget ({args.final_epochs} epoch(s) x "
          f"{args.final_max_batches or 'all'} batches of 128), Fashion-MNIST test accuracy")
    print(f"{'model':<58}{'params':>10}{'MACs':>12}{'test acc':>10}{'x smaller':>11}{'gap pt':>8}")
    mb = base.get("mobilenetv2")
    for name, b in base.items():
        print(f"{name:<58}{b['params']:>10,}{b['macs']:>12,}{b['test_accuracy']:>10.2f}{'':>11}{'':>8}")
    verdict = None
    for f in found:
        ratio = mb["params"] / f["params"] if mb else None
        gap = mb["test_accuracy"] - f["test_accuracy"] if mb else None
        f["x_smaller_than_mobilenetv2"], f["gap_to_mobilenetv2"] = ratio, gap
        label = f"trial {f['trial']}: {f['summary']}"[:57]
        ratio_s = f"{ratio:.1f}" if ratio is not None else "-"
        gap_s = f"{gap:+.2f}" if gap is not None else "-"
        print(f"{label:<58}{f['params']:>10,}{f['macs']:>12,}{f['test_accuracy']:>10.2f}{ratio_s:>11}{gap_s:>8}")
        if ratio is not None and ratio >= 10 and gap <= 0.5:
            verdict = verdict or f
    out["criterion_a"] = {"met": verdict is not None, "model": verdict,
                          "search_seconds": round(prog.get("search_seconds_auto", 0.0), 1)}
    status = f"met by trial {verdict['trial']}" if verdict else "not met" if mb else "mobilenetv2 not trained yet"
    print(f"criterion (>= 10x smaller than mobilenetv2 at <= 0.5 pt gap): {status}")
    if workers is None and RESULTS.is_file():
        workers = json.loads(RESULTS.read_text()).get("workers")
    if workers:
        out["workers"] = workers
        print(f"\n(c) two worker processes, one journal study: requested {workers['requested']}, finished "
              f"{workers['finished']}, states {workers['states']}, duplicate trial numbers "
              f"{workers['duplicate_numbers']}, per worker {list(workers['per_worker'].values())}, "
              f"{workers['seconds']} s")
    dirs = [Path(f["dir"]) for f in found] + [work / "baselines" / n for n in base]
    if dirs:
        try:
            from tensorslim.report import write_report

            write_report(dirs, work / "report", title="tensorslim search on Fashion-MNIST")
            out["report"] = str(work / "report" / "index.html")
        except Exception as err:  # noqa: BLE001 - the report is a convenience
            out["report_error"] = str(err)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    _atomic.write_text(RESULTS, json.dumps(out, indent=2, default=str) + "\n")
    print(f"\nwrote {RESULTS}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--phase", default="all", choices=["all", "workers", "search", "baselines", "final", "table"])
    ap.add_argument("--work", default=str(ROOT / "results" / "search_runs"))
    ap.add_argument("--trials", type=int, default=24)
    ap.add_argument("--population", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--max-batches", type=int, default=30)
    ap.add_argument("--val-batches", type=int, default=4)
    ap.add_argument("--final-epochs", type=int, default=1)
    ap.add_argument("--final-max-batches", type=int, default=200)
    ap.add_argument("--final-top", type=int, default=3)
    ap.add_argument("--worker-trials", type=int, default=6)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    workers = None
    if args.phase in ("all", "workers"):
        workers = phase_workers(args, work)
        log(f"workers: {workers}")
    if args.phase in ("all", "search"):
        phase_search(args, work)
    if args.phase in ("all", "baselines"):
        phase_baselines(args, work)
    if args.phase in ("all", "final"):
        phase_final(args, work)
    if args.phase in ("all", "table", "workers"):
        phase_table(args, work, workers)


if __name__ == "__main__":
    main()
