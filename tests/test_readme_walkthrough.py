"""README.md's Quickstart, command by command, as a new user runs it on a fresh clone, at reduced size.

Only sizes change: 1 training epoch instead of 20, a fifth of an epoch of fine-tuning instead of 3, digits
instead of Fashion-MNIST, and a 3×32×32 input for the ImageNet VGG-16 factory. Each command must exit 0, and what
one writes, the next reads.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REDUCE = [("--epochs 20", "--epochs 1"), ("--epochs 3", "--epochs 0.2"), ("fashion-mnist", "digits"),
          ("--input-shape 3,224,224", "--input-shape 3,32,32")]


def quickstart_commands() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Quickstart\n\n```\n(.*?)```", text, flags=re.S).group(1)
    commands = []
    for line in block.splitlines():
        if not line.startswith("tensorslim "):
            continue
        for old, new in REDUCE:
            line = line.replace(old, new)
        commands.append(shlex.split(line, comments=True)[1:])
    return commands


def test_quickstart_runs_as_written(tmp_path, monkeypatch, capsys):
    from tensorslim.cli import main

    (tmp_path / "examples").symlink_to(ROOT / "examples")
    monkeypatch.chdir(tmp_path)
    commands = quickstart_commands()
    assert len(commands) >= 10 and commands[2][0] == "train"
    for argv in commands:
        try:
            main(argv)
        except SystemExit as err:
            raise AssertionError(f"tensorslim {' '.join(argv)} exited {err.code}: {capsys.readouterr().err}") from None
    for out in ("runs/convnet", "runs/convnet-tucker", "runs/small"):
        assert (tmp_path / out / "model.json").is_file(), out
    assert (tmp_path / "small.onnx").is_file()
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert all(m["latency_ms"] for m in report["models"])  # --latency measured them
    meta = json.loads((tmp_path / "runs" / "convnet-tucker" / "model.json").read_text())
    assert any(e["method"] == "tucker2" for e in meta["compression"]["layers"])
