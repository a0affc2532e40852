"""What small TCL-head convnets reach on the full-fidelity NAS recipe (context for issue 14 §6's 93.0 % goal).

The NAS run (``bench_search_full.py``) found no model with >= 93.0 % test accuracy at <= 110,000 params. Is the
goal within reach of this recipe at all? This trains hand-designed plain conv stacks with a TCL head (the search's
own building blocks, ``tensorslim.search.space.build_network``; NOT points of the default space, whose first-stage
widths stop at 24) and the hand convnet, with ``tensorslim.search.final.train_final``, the finalists' code path
and recipe (SGD nesterov 0.9, lr 0.05, wd 5e-4, cosine, batch 128, 15 epochs, seed 0, test split), each without
augmentation (the recipe of the NAS table) and with Fashion-MNIST's standard 2-pixel random translation
(``Fidelity(augment=True)``, ``tensorslim search --final-augment``).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_hand_tcl.py      # resumable: finished models are kept

Model directories go to ``runs/hand-tcl/`` (not committed), results to ``benchmarks/results/hand-tcl.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
EPOCHS = 15


def arch(stem: int, stages: list[tuple[int, int, int]], rank: list[int]) -> dict:
    """Stem 3x3 conv, then stages of (depth, width, stride) plain 3x3 conv blocks, then a TCL head."""
    return {"input_shape": [1, 28, 28], "num_classes": 10, "stem": {"width": stem, "stride": 1},
            "stages": [{"block": "conv", "depth": d, "width": w, "kernel": 3, "expansion": 1, "stride": s}
                       for d, w, s in stages],
            "pool_to": None, "head": {"kind": "tcl", "rank": rank, "bn": "before"}}


MODELS = {
    "tcl-16-32-64": arch(16, [(2, 32, 2), (2, 64, 2)], [32, 4, 4]),
    "tcl-24-40-72": arch(24, [(2, 40, 2), (2, 72, 2)], [36, 4, 4]),
    "convnet": None,  # the hand convnet (219,962 params), the NAS table's baseline
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "hand-tcl")
    ap.add_argument("--out", type=Path, default=BENCH / "results" / "hand-tcl.json")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT / "src"))
    import torch

    from tensorslim import modeldir
    from tensorslim.search import Fidelity
    from tensorslim.search.final import baseline_spec, train_final
    from tensorslim.search.space import spec

    torch.set_flush_denormal(True)
    rows = []
    for augment in (False, True):
        for name, a in MODELS.items():
            torch.manual_seed(0)
            build = baseline_spec("convnet", (1, 28, 28), 10) if a is None else spec(a)
            model = modeldir.build(build, (1, 28, 28))
            dest = args.work / f"{name}-{'augment' if augment else 'plain'}"
            t0 = time.perf_counter()
            m = train_final(model, dest, "fashion-mnist", Fidelity(epochs=EPOCHS, max_batches=None, val_batches=None,
                                                                   augment=augment or None), seed=0, log=print)
            rows.append({"model": name, "augment": augment, "arch": a, "params": m["params"], "macs": m["macs"],
                         "test_accuracy": m["accuracy"]["test"], "val_accuracy": m["accuracy"]["val"],
                         "train_seconds": m["train_seconds"], "dir": str(dest.relative_to(ROOT))
                         if dest.is_relative_to(ROOT) else str(dest)})
            print(f"{name:<14} augment={augment!s:<5} {m['params']:>8,} params  test {m['accuracy']['test']:.2f} % "
                  f"({(time.perf_counter() - t0) / 60:.1f} min)", flush=True)
    doc = {"benchmark": "hand-tcl", "command": "OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_hand_tcl.py",
           "epochs": EPOCHS, "recipe": "SGD nesterov momentum 0.9, lr 0.05, weight decay 5e-4, cosine, batch 128, "
           f"{EPOCHS} epochs, seed 0 (tensorslim.search.final.train_final)", "goal_accuracy": 93.0,
           "goal_params": 110_000, "rows": rows, "collected": time.strftime("%Y-%m-%d %H:%M:%S")}
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
