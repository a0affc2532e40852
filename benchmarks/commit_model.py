"""Copy a trained model directory into benchmarks/models/NAME, recording how it was made.

Copies model.json, weights.safetensors and metrics.json (not the checkpoint) and adds to metrics.json a
``provenance`` entry: the exact command, the git commit it ran at (and whether src/ had uncommitted edits),
the training budget and, for a compressed model, the name of its committed baseline. The test accuracy on
the official test split is the one the command itself recorded (``accuracy.test``); it must be there.

    .venv/bin/python benchmarks/commit_model.py runs/baselines/convnet-fashion-mnist \\
        --command "OMP_NUM_THREADS=1 .venv/bin/tensorslim train convnet ..." --commit SHA --budget "20 epochs"
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

MODELS = Path(__file__).resolve().parent / "models"
FILES = ("model.json", "weights.safetensors", "metrics.json")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", type=Path)
    ap.add_argument("--name", help="folder name under benchmarks/models (default: the source's name)")
    ap.add_argument("--command", required=True)
    ap.add_argument("--commit", required=True)
    ap.add_argument("--tree", default="clean", help="state of the working tree when the command started")
    ap.add_argument("--budget", required=True)
    ap.add_argument("--baseline", default=None, help="name of the committed baseline (compressed models)")
    ap.add_argument("--budget-matched", default=None,
                    help="compressed models: a committed dense model of the baseline's architecture trained on "
                         "this model's whole budget (a second row of the target table)")
    args = ap.parse_args(argv)
    metrics = json.loads((args.source / "metrics.json").read_text())
    if metrics.get("accuracy", {}).get("test") is None:
        print(f"error: {args.source}/metrics.json has no accuracy.test", file=sys.stderr)
        return 2
    if len(args.commit) != 40:
        print("error: --commit must be a full 40-digit commit", file=sys.stderr)
        return 2
    dest = MODELS / (args.name or args.source.name)
    dest.mkdir(parents=True, exist_ok=True)
    for f in FILES[:2]:
        shutil.copy2(args.source / f, dest / f)
    if args.baseline and "original" in metrics:  # a machine-local path; the committed name is what matters
        metrics["original"]["path"] = f"benchmarks/models/{args.baseline}"
    metrics["provenance"] = {"command": args.command, "commit": args.commit, "working_tree": args.tree,
                             "budget": args.budget, "baseline": args.baseline,
                             "budget_matched": args.budget_matched,
                             "source": str(args.source)}
    (dest / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"{dest}: test accuracy {metrics['accuracy']['test']:.2f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
