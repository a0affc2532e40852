"""What :func:`tensorslim.export.export_onnx` does to the file after exporting it: the deployment target's graph
passes and the realisation of each CP layer, written into the file itself and recorded in its metadata.

A speed claim is about the user's exported file in a plain runtime session, so every rewrite that makes the file
faster is made to the file, never to a session's graph in memory:

* Target (:mod:`tensorslim.methods.targets`): the one named, else the one the model was compressed for (the
  last plan in its compression record), else the machine's default (``ort-x86`` on x86).
* Passes: by default ``pad_channels`` (:mod:`.passes`) to the target's ``pad_block`` on targets that have one
  (the x86 ONNX Runtime target: 16), none elsewhere; an explicit list runs those passes (``pad_channels`` to the
  target's block, or to this CPU's NCHWc block for a target without one).
* Realisation of CP layers (:func:`.passes.realise_cp`): ``as_exported`` (default), one form for every CP layer
  (``cp3``, ``fused_in``, ``fused_out``), or ``fastest``: per CP layer, every exact form is timed as a one-layer
  model (realised and padded as the file will be) in a 1-thread ONNX Runtime session, in alternation, at each of
  ``batches`` (median of ``repeats`` runs); the form with the smallest geometric mean of its time relative to
  ``as_exported`` over the batch sizes wins. Choices are cached per CPU model, ONNX Runtime version and layer
  shape in ``$TENSORSLIM_CACHE_DIR/realise.json`` (default ``~/.cache/tensorslim``), so re-exporting does not
  time again.

The file's ``metadata_props`` record what was done: ``tensorslim.target`` (the target's name),
``tensorslim.passes`` (JSON list of ``{"name", "block", "chains"}``) and ``tensorslim.realisations`` (JSON
object: CP layer key -> ``{"form", "ms"}`` with the measured medians per form and batch when timed, and the
``cpu``). Verification (ONNX Runtime against PyTorch, ``rtol``) then runs on the rewritten file.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
from onnx import helper

from .._atomic import write_text
from ..methods import targets
from ..records import COMPRESSION_ATTR
from . import passes as passes_mod
from ._common import ExportError
from .hardware import cpu_model, nchwc_block
from .session import ort_session

REALISE_CHOICES = (*passes_mod.REALISATIONS, "fastest")
META_TARGET, META_PASSES, META_REALISATIONS = "tensorslim.target", "tensorslim.passes", "tensorslim.realisations"


def model_target(model: Any) -> str | None:
    """The target the model was compressed for (its last recorded plan's ``target``), None when unrecorded."""
    record = getattr(model, COMPRESSION_ATTR, None) or {}
    plans = record.get("plans") or [] if isinstance(record, dict) else []
    target = plans[-1].get("target") if plans and isinstance(plans[-1], dict) else None
    return target if target in targets.TARGETS else None


def check_realise(realise: Any) -> str:
    if realise not in REALISE_CHOICES:
        raise ExportError(f"realise must be one of {', '.join(REALISE_CHOICES)}, got {realise!r}")
    return realise


def finish_file(path: str | os.PathLike, *, model: Any = None, target: str | None = None,
                passes: Sequence[str] | None = None, realise: str = "as_exported",
                batches: Sequence[int] = (1, 32), repeats: int = 15) -> tuple[list[str], int]:
    """Rewrite the ONNX file at ``path`` in place for ``target`` (see the module docstring). Returns notes for
    the export result and the number of zero weights the padding added. ``model``: the exported module (its
    recorded target is the default)."""
    realise = check_realise(realise)
    target_obj = targets.get(target if target is not None else model_target(model))
    names = list(passes) if passes is not None else (["pad_channels"] if target_obj.pad_block > 1 else [])
    for n in names:
        passes_mod.get_pass(n)
    block = target_obj.pad_block or nchwc_block()
    proto = onnx.load(str(path))
    chains = passes_mod.cp_chains(proto)
    notes: list[str] = []
    record: dict[str, Any] = {}
    if chains and realise == "fastest":
        forms = {}
        for chain, choice in zip(chains, choose_forms(proto, chains, block if "pad_channels" in names else 1,
                                                      batches, repeats)):
            forms[chain.key] = choice["form"]
            record[chain.key] = choice
        notes.append("CP realisations timed on this CPU: " + ", ".join(
            f"{k} {v['form']}" for k, v in record.items()))
    elif chains:
        forms = {c.key: realise for c in chains}
        record = {c.key: {"form": realise} for c in chains}
    else:
        forms = {}
    if forms:
        proto = passes_mod.realise_cp(proto, forms=forms)
    applied = []
    zeros = 0
    for n in names:
        if n == "realise_cp":  # done above, from ``realise``
            continue
        count = len(passes_mod.conv_chains(proto, block)) if n == "pad_channels" else len(forms)
        before = _weights(proto)
        proto = passes_mod.apply_passes(proto, [n], block=block, forms=forms)
        if n == "pad_channels":
            zeros += _weights(proto) - before
        applied.append({"name": n, "block": block, "chains": count})
    meta = {META_TARGET: target_obj.name, META_PASSES: json.dumps(applied),
            META_REALISATIONS: json.dumps(record)}
    keep = [p for p in proto.metadata_props if p.key not in meta]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(path))
    if any(a["chains"] for a in applied if a["name"] == "pad_channels"):
        padded = sum(a["chains"] for a in applied if a["name"] == "pad_channels")
        notes.append(f"pad_channels: {padded} conv chain(s) padded to a multiple of {block} in the file "
                     f"(target {target_obj.name})")
    return notes, zeros


def _weights(proto: onnx.ModelProto) -> int:
    return sum(math.prod(t.dims) for t in proto.graph.initializer)


def file_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The ``tensorslim.*`` metadata of an exported file, JSON values decoded."""
    proto = onnx.load(str(path), load_external_data=False)
    out: dict[str, Any] = {}
    for p in proto.metadata_props:
        if p.key.startswith("tensorslim."):
            with contextlib.suppress(ValueError):
                out[p.key] = json.loads(p.value) if p.key != META_TARGET else p.value
    return out


# --- the micro-benchmark ----------------------------------------------------------------------------------------


def _spatial(proto: onnx.ModelProto) -> dict[str, tuple[int, int]]:
    """(H, W) of every 4-D tensor whose spatial size the graph fixes (shape inference)."""
    inferred = onnx.shape_inference.infer_shapes(proto)
    out = {}
    g = inferred.graph
    for v in [*g.input, *g.value_info, *g.output]:
        dims = v.type.tensor_type.shape.dim
        if len(dims) == 4 and all(d.HasField("dim_value") for d in dims[2:]):
            out[v.name] = (int(dims[2].dim_value), int(dims[3].dim_value))
    return out


def chain_model(proto: onnx.ModelProto, chain: passes_mod.CPChain, in_hw: tuple[int, int]) -> onnx.ModelProto:
    """The CP chain as a one-layer model with a dynamic batch: input ``S×H×W``, its nodes and weights."""
    g = proto.graph
    nodes = [g.node[i] for i in (chain.first, *chain.depthwise, chain.last)]
    used = {name for n in nodes for name in n.input}
    inits = [t for t in g.initializer if t.name in used]
    x = helper.make_tensor_value_info(nodes[0].input[0], onnx.TensorProto.FLOAT,
                                      ["batch", chain.in_channels, *in_hw])
    y = helper.make_tensor_value_info(nodes[-1].output[0], onnx.TensorProto.FLOAT, None)
    graph = helper.make_graph(nodes, "cp_chain", [x], [y], inits)
    return helper.make_model(graph, opset_imports=list(proto.opset_import), ir_version=proto.ir_version)


def _cache_path() -> Path:
    return Path(os.environ.get("TENSORSLIM_CACHE_DIR") or Path.home() / ".cache" / "tensorslim") / "realise.json"


def _read_cache() -> dict[str, Any]:
    try:
        data = json.loads(_cache_path().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(data: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):
        _cache_path().parent.mkdir(parents=True, exist_ok=True)
        write_text(_cache_path(), json.dumps(data, indent=1, sort_keys=True) + "\n")


def time_forms(mini: onnx.ModelProto, forms: Sequence[str], block: int, batches: Sequence[int],
               repeats: int, threads: int = 1) -> dict[str, dict[str, float]]:
    """Median ms of each form of a one-chain model per batch size, timed in alternation in 1-thread ORT."""
    sessions = {}
    with tempfile.TemporaryDirectory(prefix="tensorslim-realise-") as tmp:
        for form in forms:
            m = passes_mod.realise_cp(mini, forms=form)
            if block > 1:
                m = passes_mod.pad_channels(m, block=block)
            file = Path(tmp) / f"{form}.onnx"
            onnx.save(m, str(file))
            sessions[form] = ort_session(file, threads=threads)
    name = mini.graph.input[0].name
    shape = [d.dim_value for d in mini.graph.input[0].type.tensor_type.shape.dim[1:]]
    out: dict[str, dict[str, float]] = {f: {} for f in forms}
    rng = np.random.default_rng(0)
    for b in batches:
        feed = {name: rng.standard_normal((b, *shape), dtype=np.float32)}
        times: dict[str, list[int]] = {f: [] for f in forms}
        for _ in range(3):  # warm-up
            for s in sessions.values():
                s.run(None, feed)
        for _ in range(repeats):
            for f, s in sessions.items():
                t0 = time.perf_counter_ns()
                s.run(None, feed)
                times[f].append(time.perf_counter_ns() - t0)
        for f in forms:
            out[f][str(b)] = statistics.median(times[f]) / 1e6
    return out


def relative_time(ms: dict[str, dict[str, float]], form: str) -> float:
    """Geometric mean over the batch sizes of ``form``'s median time relative to ``as_exported``'s."""
    return math.exp(statistics.fmean(math.log(ms[form][b] / ms["as_exported"][b]) for b in ms[form]))


def choose_forms(proto: onnx.ModelProto, chains: list[passes_mod.CPChain], block: int,
                 batches: Sequence[int] = (1, 32), repeats: int = 15) -> list[dict[str, Any]]:
    """The fastest exact form of each chain on this CPU (see the module docstring), with its timings."""
    spatial = _spatial(proto)
    g = proto.graph
    cache = _read_cache()
    cpu = cpu_model()
    changed = False
    out = []
    for chain in chains:
        in_hw = spatial.get(g.node[chain.first].input[0])
        if in_hw is None:
            out.append({"form": "as_exported", "reason": "spatial size not fixed by the graph"})
            continue
        dws = [g.node[d] for d in chain.depthwise]
        geometry = [passes_mod._ints(d, k, []) for d in dws for k in ("strides", "pads", "dilations")]
        key = json.dumps([cpu, onnxruntime.__version__, chain.in_channels, chain.rank, chain.out_channels,
                          chain.kernel, len(dws), geometry, in_hw, block, list(batches)])
        if key in cache:
            out.append({**cache[key], "cached": True})
            continue
        forms = ["as_exported", *(["cp3"] if len(dws) == 2 else []), "fused_in", "fused_out"]
        ms = time_forms(chain_model(proto, chain, in_hw), forms, block, batches, repeats)

        best = min(forms, key=lambda f, ms=ms: relative_time(ms, f))
        choice = {"form": best, "ms": ms, "cpu": cpu}
        cache[key] = choice
        changed = True
        out.append(choice)
    if changed:
        _write_cache(cache)
    return out
