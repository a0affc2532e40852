"""Convert the printed output of an earlier bench_decompose run (benchmarks/results/decompose_lenet5.txt) to JSON.

bench_decompose.py printed only text in that session, and the lenet5 model it read is not kept, so the run
cannot be repeated as it was. This script parses the table rows of the text file (TensorLy's warnings are
dropped) into benchmarks/results/decompose_lenet5.json, which benchmarks/render.py renders. No number is
changed: each field is the printed string converted to int or float.

    .venv/bin/python benchmarks/decompose_txt_to_json.py
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
ROW = re.compile(r"^(?P<layer>\S+)\s+(?P<shape>\d+(?:x\d+)+)\s+(?P<form>cp3|cp4|tucker2|tt)\s+(?P<ratio>[0-9.]+)\s+"
                 r"(?P<rank>[0-9,]+)\s+(?P<method>\S+)\s+(?P<rel_error>[0-9.]+)\s+(?P<seconds>[0-9.]+)\s*$")
COMMAND = (".venv/bin/python benchmarks/bench_decompose.py "
           "--weights runs/baselines/lenet5-fashion-mnist/weights.safetensors")


def parse(text: str) -> dict:
    lines = text.splitlines()
    rows = []
    for line in lines:
        m = ROW.match(line)
        if m:
            d = m.groupdict()
            rows.append({"layer": d["layer"], "shape": d["shape"], "form": d["form"], "ratio": float(d["ratio"]),
                         "rank": d["rank"], "method": d["method"], "rel_error": float(d["rel_error"]),
                         "seconds": float(d["seconds"])})
    return {"source": "decompose_lenet5.txt (printed output, parsed by benchmarks/decompose_txt_to_json.py)",
            "command": COMMAND, "header": [ln for ln in lines[:2]], "rows": rows}


def main() -> int:
    src = RESULTS / "decompose_lenet5.txt"
    data = parse(src.read_text())
    if not data["rows"]:
        print(f"error: {src}: no table rows found", file=sys.stderr)
        return 1
    (RESULTS / "decompose_lenet5.json").write_text(json.dumps(data, indent=1) + "\n")
    print(f"{len(data['rows'])} rows -> {RESULTS / 'decompose_lenet5.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
