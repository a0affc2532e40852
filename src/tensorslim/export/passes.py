"""Graph-rewrite passes on ONNX models: pure functions from an ``onnx.ModelProto`` to a new one.

A pass never changes the model it is given: it returns a rewritten copy (the copy is returned even when there
was nothing to rewrite), so the same pass can rewrite an exported file before it is written or a model held
in memory for an ONNX Runtime session. Passes are registered by name in :data:`PASSES`;
:func:`apply_passes` runs several in order.

``pad_channels``: zero-pad the ranks of factorized convolutions
--------------------------------------------------------------
What it rewrites. A *chain* is a ``Conv`` with ``group == 1`` (the *first* conv, ``C`` output channels) whose
output is read only by depthwise ``Conv`` nodes (``group == C``, weights ``C×1×kh×kw``, no bias), one after
the other, and finally by one ``Conv`` with ``group == 1`` and ``C`` input channels (the *last* conv). The
inner ``C`` channels are the ranks of a CP layer (1×1 → depthwise → 1×1) or of a Tucker-2 layer (1×1 → core,
and core → 1×1: two chains). When ``C`` is not a multiple of ``block``, ``C`` becomes ``C' = C + extra``, the
next multiple of ``block``:

* the first conv's weight ``C×I×kh×kw`` gets ``extra`` zero filters (``C'×I×kh×kw``) and its bias, if any,
  ``extra`` zeros;
* each depthwise conv's weight gets ``extra`` zero filters (``C'×1×kh×kw``) and ``group = C'``;
* the last conv's weight ``O×C×kh×kw`` gets ``extra`` zero input columns (``O×C'×kh×kw``).

Why it is exact. The added channels of the first conv are zero everywhere (zero filter, zero bias); a
depthwise conv maps a zero channel to a zero channel (zero filter, and no bias is allowed inside the chain);
the last conv multiplies them by zero weights. Every output of the graph is therefore unchanged, in exact
arithmetic and in floating point alike (the added terms are exact zeros). Nothing else changes: a tensor that
feeds more than one node, or is a graph output, is never padded; initializers shared with other nodes are
copied, not changed; initializers no longer used are dropped, as are the recorded intermediate shapes
(``value_info``), which ONNX Runtime infers again.

Why. ONNX Runtime's NCHWc transformer (``ORT_ENABLE_ALL`` on x86) runs a convolution in its blocked memory
layout only when its channel counts are multiples of the CPU's block (16 with AVX-512, 8 with AVX2,
:func:`tensorslim.export.hardware.nchwc_block`). A rank that is not one sends the depthwise and the last conv
back to plain NCHW kernels, with layout reorders in between; padded, the whole chain stays in the blocked
layout, which is faster although it computes on more channels (``benchmarks/bench_layers.py`` times both).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from ._common import ExportError
from .hardware import nchwc_block


@dataclasses.dataclass(frozen=True)
class ConvChain:
    """A chain of convolutions whose inner channels :func:`pad_channels` pads (node indices in the graph)."""

    first: int  # the group-1 conv that produces the inner channels
    depthwise: tuple[int, ...]  # depthwise convs in between, in order
    last: int  # the group-1 conv that consumes them
    channels: int  # inner channels now
    padded: int  # inner channels after padding: the next multiple of the block


def _attr(node: Any, name: str, default: Any) -> Any:
    for a in node.attribute:
        if a.name == name:
            return a.i if a.type == a.INT else list(a.ints)
    return default


def conv_chains(model: onnx.ModelProto, block: int) -> list[ConvChain]:
    """The conv chains of ``model``'s main graph whose inner channels are not a multiple of ``block``.

    See the module docstring for what a chain is. Reads only the graph structure and the weights' shapes.
    """
    if block <= 1:
        return []
    g = model.graph
    shapes = {t.name: tuple(t.dims) for t in g.initializer}
    inits = set(shapes)
    consumers: dict[str, list[int]] = {}
    for i, node in enumerate(g.node):
        for name in node.input:
            if name:
                consumers.setdefault(name, []).append(i)
    graph_outputs = {o.name for o in g.output}

    def weight_shape(i: int) -> tuple[int, ...] | None:
        node = g.node[i]
        if node.op_type != "Conv" or node.domain not in ("", "ai.onnx") or len(node.input) < 2:
            return None
        shape = shapes.get(node.input[1])
        return shape if shape is not None and len(shape) == 4 else None

    def only_consumer(tensor: str) -> int | None:
        users = consumers.get(tensor, [])
        if len(users) != 1 or tensor in graph_outputs or g.node[users[0]].input[0] != tensor:
            return None
        return users[0]

    chains: list[ConvChain] = []
    for first, node in enumerate(g.node):
        w0 = weight_shape(first)
        if w0 is None or _attr(node, "group", 1) != 1:
            continue
        channels = int(w0[0])
        extra = -channels % block
        if extra == 0:
            continue
        depthwise: list[int] = []
        last = only_consumer(node.output[0])
        while last is not None:
            w, group = weight_shape(last), _attr(g.node[last], "group", 1)
            if w is None:
                last = None
            elif group == channels > 1 and w[0] == channels and w[1] == 1:  # 1 channel: a plain conv, not depthwise
                depthwise.append(last)
                last = only_consumer(g.node[last].output[0])
            elif group == 1 and w[1] == channels:
                break
            else:
                last = None
        if last is None:
            continue
        if len(node.input) > 2 and node.input[2] not in inits:
            continue  # a bias computed in the graph: its padded channels could not be made zero
        if any(len(g.node[d].input) > 2 and g.node[d].input[2] for d in depthwise):
            continue  # a bias inside the chain would make the padded channels non-zero
        chains.append(ConvChain(first, tuple(depthwise), last, channels, channels + extra))
    return chains


def pad_channels(model: onnx.ModelProto, *, block: int | None = None) -> onnx.ModelProto:
    """A copy of ``model`` with the inner channels of its conv chains zero-padded to a multiple of ``block``.

    ``block``: the channel block to pad to; None: this CPU's NCHWc block (:func:`.hardware.nchwc_block`).
    Exact: the outputs are unchanged (see the module docstring). ``model`` itself is not modified.
    """
    block = nchwc_block() if block is None else int(block)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    chains = conv_chains(out, block)
    if not chains:
        return out
    g = out.graph
    inits = {t.name: t for t in g.initializer}

    def pad_input(node: Any, index: int, axis: int, extra: int) -> None:
        """Append ``extra`` zeros along ``axis`` to initializer input ``index`` of ``node``, under a new name."""
        base = node.input[index]
        array = numpy_helper.to_array(inits[base])
        zeros = np.zeros((*array.shape[:axis], extra, *array.shape[axis + 1:]), array.dtype)
        name, k = f"{base}_pad", 0
        while name in inits:
            k += 1
            name = f"{base}_pad{k}"
        t = numpy_helper.from_array(np.concatenate([array, zeros], axis=axis), name)
        g.initializer.append(t)
        inits[name] = t
        node.input[index] = name

    for chain in chains:
        extra = chain.padded - chain.channels
        first = g.node[chain.first]
        pad_input(first, 1, 0, extra)
        if len(first.input) > 2 and first.input[2]:
            pad_input(first, 2, 0, extra)
        for d in chain.depthwise:
            pad_input(g.node[d], 1, 0, extra)
            for a in g.node[d].attribute:
                if a.name == "group":
                    a.i = chain.padded
        pad_input(g.node[chain.last], 1, 1, extra)
    graph_outputs = {o.name for o in g.output}
    used = {name for n in g.node for name in n.input} | graph_outputs | {i.name for i in g.input}
    keep = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
    # shapes recorded for the padded tensors are stale: drop them, ORT infers them again
    stale = {n.output[0] for n in g.node}
    keep_vi = [v for v in g.value_info if v.name not in stale]
    del g.value_info[:]
    g.value_info.extend(keep_vi)
    return out


Pass = Callable[..., onnx.ModelProto]

#: The graph-rewrite passes by name; each is ``fn(model, **options) -> new model`` and leaves ``model`` as is.
PASSES: dict[str, Pass] = {"pad_channels": pad_channels}


def get_pass(name: str) -> Pass:
    """The pass registered as ``name``; ExportError naming the known ones otherwise."""
    try:
        return PASSES[name]
    except (KeyError, TypeError):
        raise ExportError(f"unknown graph pass {name!r} (known: {', '.join(sorted(PASSES))})") from None


def apply_passes(model: onnx.ModelProto, names: Sequence[str], **options: Any) -> onnx.ModelProto:
    """Run the passes ``names`` on ``model`` in order; ``options`` (e.g. ``block``) go to every pass.

    Returns a new model (a copy when ``names`` is empty); ``model`` is not modified.
    """
    passes = [get_pass(n) for n in names]
    if not passes:
        out = onnx.ModelProto()
        out.CopyFrom(model)
        return out
    for fn in passes:
        model = fn(model, **options)
    return model
