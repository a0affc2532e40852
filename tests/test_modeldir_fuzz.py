"""Fuzzing the model directory: every damaged directory is one ``error:`` line, exit 2, no traceback, bounded
memory, and the directory is left as it was.

A valid compressed model directory (lenet5 with CP, SVD and TT layers) is mutated in well over 200 ways, each
invalid by construction: deleted required fields, swapped types, huge / negative / NaN / fractional numbers,
records that do not fit the model, truncated and bit-flipped weights. Each is read by ``tensorslim inspect``
in this process; ``ru_maxrss`` bounds the memory that any of them could have allocated.
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
import resource
import shutil
from pathlib import Path

import pytest
import torch

from tensorslim import modeldir, surgery

PLAN = {"rules": [{"layers": "features.conv2", "method": "cp", "rank": 4},
                  {"layers": "classifier.fc1", "method": "svd", "rank": 16},
                  {"layers": "classifier.fc2", "method": "tt", "rank": 4,
                   "options": {"in_shape": [10, 12], "out_shape": [7, 12]}}]}


@pytest.fixture(scope="module")
def valid_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = modeldir.build({"builder": "lenet5", "kwargs": {"num_classes": 10}}, (1, 28, 28))
    small = surgery.compress(model, PLAN, (1, 28, 28))
    path = tmp_path_factory.mktemp("fuzz") / "valid"
    modeldir.save(small, path, dataset="fashion-mnist", metrics={"accuracy": {"test": 88.0}, "params": 1})
    return path


def _paths(obj, prefix=()):
    """Every (path, value) in a JSON tree."""
    yield prefix, obj
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, (*prefix, i))


def _set(obj, path, value):
    obj = copy.deepcopy(obj)
    target = obj
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return obj


_DELETE = object()

# fields whose deletion leaves a valid directory (optional in the schema), as paths with '*' for list indexes
OPTIONAL = {("version",), ("input_shape",), ("dataset",), ("compression",), ("trust_code",), ("weights_sha256",),
            ("spec", "kwargs"), ("spec", "kwargs", "num_classes"), ("compression", "plans"), ("compression", "skipped"),
            ("compression", "layers"), ("compression", "layers", "*", "method"), ("compression", "layers", "*", "rank"),
            ("compression", "layers", "*", "rel_error"), ("compression", "layers", "*", "params_before"),
            ("compression", "layers", "*", "params_after"), ("compression", "layers", "*", "macs_before"),
            ("compression", "layers", "*", "macs_after"), ("compression", "layers", "*", "config", "bias"),
            ("compression", "layers", "*", "config", "form"), ("compression", "layers", "*", "config", "stride"),
            ("compression", "layers", "*", "config", "padding"), ("compression", "layers", "*", "config", "dilation")}
# informational fields: any JSON value of the right type is valid
FREE = {"plans", "skipped", "reason", "method", "rank", "rel_error"}
COUNTS = {"params_before", "params_after", "macs_before", "macs_after"}  # any count is valid there


def _pattern(path):
    return tuple("*" if isinstance(k, int) else k for k in path)


def meta_mutations(meta: dict) -> list[tuple[str, dict]]:
    out = []
    for path, value in _paths(meta):
        if not path or any(k in FREE for k in path if isinstance(k, str)):
            continue
        pat = _pattern(path)
        where = "/".join(map(str, path))
        if isinstance(path[-1], str) and pat not in OPTIONAL and pat[:2] != ("compression", "plans"):
            out.append((f"delete {where}", _set(meta, path, _DELETE)))
        if path == ("dataset",) or pat[-1:] == ("bias",):
            swaps = [17, [1], {"x": 1}]
        elif isinstance(value, bool):
            swaps = ["yes", 2, [True]]
        elif isinstance(value, int):
            swaps = [str(value), float(value) + 0.5, [value], None, -1, 0, 10**12, 2**70, "NaN"]
        elif isinstance(value, str):
            swaps = [7, [value], None, {"v": value}, value + "-x"]
        elif isinstance(value, list):
            swaps = ["oops", {"0": 1}, 3, [], [None] * len(value)]
        elif isinstance(value, dict):
            swaps = ["oops", [1, 2], 5, None]
        else:
            swaps = []
        if path[-1] in COUNTS:
            swaps = [v for v in swaps if not (isinstance(v, int) and 0 <= v < 2**63)]
        for new in swaps:
            if new == value and type(new) is type(value):
                continue
            out.append((f"{where} = {json.dumps(new)[:40]}", _set(meta, path, new)))
    out += [
        ("unknown top key", {**meta, "evil": 1}),
        ("unknown spec key", _set(meta, ("spec", "evil"), 1)),
        ("unknown layer key", _set(meta, ("compression", "layers", 0, "evil"), 1)),
        ("unknown config key", _set(meta, ("compression", "layers", 0, "config", "evil"), 1)),
        ("input_shape 4 huge dims", _set(meta, ("input_shape",), [1, 4096, 4096, 4096])),
        ("input_shape 5 dims", _set(meta, ("input_shape",), [1, 1, 1, 28, 28])),
        ("input_shape floats", _set(meta, ("input_shape",), [1.0, 28.0, 28.0])),
        ("input_shape string", _set(meta, ("input_shape",), "1,28,28")),
        ("input_shape too small for the model", _set(meta, ("input_shape",), [1, 4, 4])),
        ("version string", _set(meta, ("version",), "1")),
        ("version future", _set(meta, ("version",), 99)),
        ("compression string", _set(meta, ("compression",), "cp")),
        ("layers string", _set(meta, ("compression", "layers"), "all")),
        ("layer far larger than its slot",
         _set(meta, ("compression", "layers", 1, "config", "in_features"), 400 * 10**6)),
        ("svd rank far above full", _set(meta, ("compression", "layers", 1, "config", "rank"), 10**9)),
        ("cp rank huge", _set(meta, ("compression", "layers", 0, "config", "rank"), 10**8)),
        ("tt ranks huge", _set(meta, ("compression", "layers", 2, "config", "ranks"), [1, 10**7, 1])),
        ("tt shape does not multiply", _set(meta, ("compression", "layers", 2, "config", "in_shape"), [10, 13])),
        ("layer names a missing slot", _set(meta, ("compression", "layers", 0, "name"), "features.nope")),
        ("layer names a non-conv slot", _set(meta, ("compression", "layers", 0, "name"), "features")),
        ("layer type unknown", _set(meta, ("compression", "layers", 0, "type"), "os.system")),
        ("layer type of another slot", _set(meta, ("compression", "layers", 0, "type"), "SVDLinear")),
        ("duplicate layer", _set(meta, ("compression", "layers"), [meta["compression"]["layers"][0]] * 2)),
        ("kwargs huge num_classes", _set(meta, ("spec", "kwargs", "num_classes"), 10**9)),
        ("kwargs huge in_channels", _set(meta, ("spec", "kwargs", "in_channels"), 10**6)),
        ("kwargs unknown argument", _set(meta, ("spec", "kwargs", "bogus"), 1)),
        ("kwargs deep nesting", _set(meta, ("spec", "kwargs", "num_classes"), [[[[[[[[[[1]]]]]]]]]])),
        ("builder unknown", _set(meta, ("spec", "builder"), "lenet6")),
        ("checksum of other weights", _set(meta, ("weights_sha256",), "0" * 64)),
        ("not an object", [meta]),
    ]
    return out


def _text_mutations(text: str) -> list[tuple[str, str]]:
    return [("truncated model.json", text[: len(text) // 2]), ("empty model.json", ""),
            ("NaN literal", text.replace('"version": 1', '"version": NaN')),
            ("Infinity literal", text.replace('"version": 1', '"version": Infinity')),
            ("deep JSON", "[" * 100000 + "]" * 100000), ("binary", "\udcff")]


def weight_mutations(blob: bytes, seed: int = 0) -> list[tuple[str, bytes]]:
    rng = random.Random(seed)
    header_len = int.from_bytes(blob[:8], "little")
    out = [("empty weights", b""), ("7 bytes", blob[:7]), ("header only", blob[: 8 + header_len]),
           ("header length huge", (2**62).to_bytes(8, "little") + blob[8:]),
           ("header length past the end", (len(blob)).to_bytes(8, "little") + blob[8:]),
           ("header not JSON", blob[:8] + b"\xff" * header_len + blob[8 + header_len:])]
    for frac in (0.1, 0.3, 0.5, 0.7, 0.9, 0.99):
        out.append((f"truncated at {frac:.0%}", blob[: int(len(blob) * frac)]))
    out.append(("one byte short", blob[:-1]))
    out.append(("one byte extra", blob + b"\x00"))
    for i in range(40):  # bit flips across the header and the tensor data
        pos = rng.randrange(len(blob)) if i % 2 else rng.randrange(8, 8 + header_len)
        flipped = bytearray(blob)
        flipped[pos] ^= 1 << rng.randrange(8)
        out.append((f"bit flip at byte {pos}", bytes(flipped)))
    return out


def metrics_mutations() -> list[tuple[str, str]]:
    return [("metrics not JSON", "{"), ("metrics a list", "[]"), ("metrics NaN accuracy", '{"accuracy": NaN}'),
            ("metrics accuracy 1e9", '{"accuracy": {"test": 1e9}}'), ("metrics params -1", '{"params": -1}'),
            ("metrics params float", '{"params": 1.5}'), ("metrics history string", '{"history": "x"}'),
            ("metrics accuracy string", '{"accuracy": "high"}')]


def _digest(path: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.iterdir())}


def test_fuzzed_model_directories_fail_cleanly(valid_dir, tmp_path, capsys, monkeypatch):
    from tensorslim.cli import main

    monkeypatch.chdir(tmp_path)
    meta = json.loads((valid_dir / "model.json").read_text())
    text = (valid_dir / "model.json").read_text()
    blob = (valid_dir / "weights.safetensors").read_bytes()
    cases: list[tuple[str, str, bytes | str]] = []
    cases += [(name, "model.json", json.dumps(m)) for name, m in meta_mutations(meta)]
    cases += [(name, "model.json", t) for name, t in _text_mutations(text)]
    cases += [(name, "weights.safetensors", b) for name, b in weight_mutations(blob)]
    cases += [(name, "metrics.json", t) for name, t in metrics_mutations()]
    assert len(cases) >= 200, len(cases)

    def run(argv):
        with pytest.raises(SystemExit) as info:
            main(argv)
            raise SystemExit(0)
        return info.value.code, capsys.readouterr()

    code, _ = run(["inspect", str(valid_dir)])  # the unmutated directory is fine
    assert code == 0
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    work = tmp_path / "case"
    failures = []
    for i, (name, file, content) in enumerate(cases):
        if work.exists():
            shutil.rmtree(work)
        shutil.copytree(valid_dir, work)
        target = work / file
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_bytes(content.encode("utf-8", "surrogateescape"))
        before = _digest(work)
        for leftover in (tmp_path / "x.onnx", tmp_path / "report"):
            shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink(missing_ok=True)
        argv = ["inspect", str(work)] if i % 4 else ["export", str(work), "--out", str(tmp_path / "x.onnx"),
                                                     "--data", "none"]
        if file == "metrics.json":
            argv = ["report", str(work), "--out", str(tmp_path / "report")]
        code, captured = run(argv)
        lines = [line for line in captured.err.splitlines() if line.strip()]
        ok = (code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in captured.err
              and _digest(work) == before and not (tmp_path / "x.onnx").exists()
              and not (tmp_path / "report").exists())
        if not ok:
            failures.append(f"{name} [{argv[0]}]: exit {code}, stderr {captured.err.strip()[:200]!r}")
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - baseline) / 1024
    assert not failures, f"{len(failures)} of {len(cases)} cases:\n" + "\n".join(failures)
    assert grown_mib < 400, f"peak memory grew by {grown_mib:.0f} MiB"
