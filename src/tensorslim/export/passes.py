"""Graph-rewrite passes on ONNX models: pure functions from an ``onnx.ModelProto`` to a new one.

A pass never changes the model it is given: it returns a rewritten copy (the copy is returned even when there
was nothing to rewrite), so the same pass can rewrite an exported file before it is written or a model held
in memory for an ONNX Runtime session. Passes are registered by name in :data:`PASSES` (``compact_names`` and
``drop_zero_points`` are in :mod:`.compact`);
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
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from ._common import ExportError
from .compact import compact_names, drop_zero_points
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
    return [dataclasses.replace(c, padded=c.channels - c.channels % -block) for c in all_chains(model)
            if c.channels % block]


def all_chains(model: onnx.ModelProto) -> list[ConvChain]:
    """Every conv chain of ``model``'s main graph (``padded`` = ``channels``), aligned or not."""
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
        chains.append(ConvChain(first, tuple(depthwise), last, channels, channels))
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
    _tidy(g)
    return out


def _tidy(g: Any) -> None:
    """Drop initializers no node uses any more, and the recorded shapes of node outputs (stale after a rewrite;
    ONNX Runtime infers them again)."""
    graph_outputs = {o.name for o in g.output}
    used = {name for n in g.node for name in n.input} | graph_outputs | {i.name for i in g.input}
    keep = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
    stale = {n.output[0] for n in g.node}
    keep_vi = [v for v in g.value_info if v.name not in stale]
    del g.value_info[:]
    g.value_info.extend(keep_vi)


# --- realise_cp: exact alternative realisations of CP chains ---------------------------------------------------

#: How a CP chain (1×1 → depthwise → 1×1) can be realised; every form computes the same function exactly.
REALISATIONS = ("as_exported", "cp3", "fused_in", "fused_out")


@dataclasses.dataclass(frozen=True)
class CPChain:
    """A CP chain of the graph: its key (the first conv's node name, else its output), the node indices, the
    sizes ``S → R → T``, the spatial kernel and the output size (None where the graph does not record it)."""

    key: str
    first: int
    depthwise: tuple[int, ...]
    last: int
    in_channels: int
    rank: int
    out_channels: int
    kernel: tuple[int, int]


def _ints(node: Any, name: str, default: list[int]) -> list[int]:
    v = _attr(node, name, None)
    return list(default) if v is None else ([v] if isinstance(v, int) else list(v))


def _is_pointwise(node: Any, shape: tuple[int, ...]) -> bool:
    """A plain 1×1 conv: stride 1, no padding, no dilation, no auto_pad."""
    return (tuple(shape[2:]) == (1, 1) and set(_ints(node, "strides", [1, 1])) == {1}
            and set(_ints(node, "pads", [0] * 4)) == {0} and set(_ints(node, "dilations", [1, 1])) == {1}
            and not any(a.name == "auto_pad" and a.s not in (b"", b"NOTSET") for a in node.attribute))


def cp_chains(model: onnx.ModelProto) -> list[CPChain]:
    """The chains of ``model`` that are CP layers: a bias-free plain 1×1 conv ``S → R``, one depthwise ``kh×kw``
    conv or a depthwise ``kh×1`` then ``1×kw`` pair (CP-4), then a plain 1×1 conv ``R → T``."""
    g = model.graph
    shapes = {t.name: tuple(t.dims) for t in g.initializer}
    out = []
    for c in all_chains(model):
        first, last = g.node[c.first], g.node[c.last]
        w0, w1 = shapes[first.input[1]], shapes[last.input[1]]
        dws = [g.node[d] for d in c.depthwise]
        if not dws or len(first.input) > 2 and first.input[2] or not _is_pointwise(first, w0) \
                or not _is_pointwise(last, w1):
            continue
        if any(a.name == "auto_pad" and a.s not in (b"", b"NOTSET") for d in dws for a in d.attribute):
            continue
        kernels = [shapes[d.input[1]][2:] for d in dws]
        if len(dws) == 1:
            kernel = tuple(kernels[0])
        elif len(dws) == 2 and kernels[0][1] == 1 and kernels[1][0] == 1:
            kernel = (kernels[0][0], kernels[1][1])
        else:
            continue
        out.append(CPChain(first.name or first.output[0], c.first, c.depthwise, c.last, int(w0[1]), c.channels,
                           int(w1[0]), (int(kernel[0]), int(kernel[1]))))
    return out


def realise_cp(model: onnx.ModelProto, *, forms: str | Mapping[str, str] = "as_exported") -> onnx.ModelProto:
    """A copy of ``model`` with its CP chains (:func:`cp_chains`) rewritten to another exact realisation.

    ``forms``: one form for every chain, or ``{chain key: form}`` (chains not named stay as exported):

    * ``as_exported``: unchanged.
    * ``cp3``: a CP-4 pair of depthwise convs ``kh×1`` then ``1×kw`` becomes one depthwise ``kh×kw`` conv whose
      filter ``r`` is the outer product ``H[r] ⊗ V[r]``, with the pair's strides, pads and dilations combined
      (each of the pair acts on one axis only, so the composition is that one conv, zero padding included).
    * ``fused_in``: the first 1×1 conv ``A`` (``R×S``) is folded into the (merged) depthwise conv ``K``: one dense
      ``kh×kw`` conv ``S → R`` with ``W[r, s] = A[r, s] · K[r]`` (exact: the 1×1 is bias-free, so zero padding
      commutes with it), then the last 1×1. More MACs than CP-3 (``S·R·kh·kw`` for ``S·R + R·kh·kw``), but dense
      kernels.
    * ``fused_out``: the depthwise conv is folded into the last 1×1 ``B`` (``T×R``): the first 1×1, then one dense
      ``kh×kw`` conv ``R → T`` with ``W[t, r] = B[t, r] · K[r]`` and the last conv's bias.

    ``model`` itself is not modified; initializers no longer used are dropped.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    chains = cp_chains(out)
    wanted = {c.key: (forms if isinstance(forms, str) else forms.get(c.key, "as_exported")) for c in chains}
    bad = sorted({f for f in wanted.values() if f not in REALISATIONS}
                 | ({forms} - set(REALISATIONS) if isinstance(forms, str) else set()))
    if bad:
        raise ExportError(f"unknown CP realisation {bad[0]!r} (known: {', '.join(REALISATIONS)})")
    g = out.graph
    inits = {t.name: t for t in g.initializer}
    array = lambda name: numpy_helper.to_array(inits[name])  # noqa: E731

    def add(base: str, value: np.ndarray) -> str:
        name, k = f"{base}_realised", 0
        while name in inits:
            k += 1
            name = f"{base}_realised{k}"
        t = numpy_helper.from_array(value.astype(np.float32, copy=False), name)
        g.initializer.append(t)
        inits[name] = t
        return name

    def conv(inputs: list[str], output: str, like: Any, kernel: tuple[int, int], group: int) -> Any:
        attrs = {"kernel_shape": list(kernel), "group": group, "strides": _ints(like, "strides", [1, 1]),
                 "pads": _ints(like, "pads", [0] * 4), "dilations": _ints(like, "dilations", [1, 1])}
        return onnx.helper.make_node("Conv", inputs, [output], name=f"{like.name or output}_realised", **attrs)

    replace: dict[int, Any] = {}  # node index -> the node that takes its place
    remove: set[int] = set()
    for c in chains:
        form = wanted[c.key]
        if form == "as_exported" or (form == "cp3" and len(c.depthwise) == 1):
            continue
        first, last = g.node[c.first], g.node[c.last]
        dws = [g.node[d] for d in c.depthwise]
        if len(dws) == 2:  # merge the CP-4 pair into one depthwise kh×kw conv
            h, w = dws
            k = array(h.input[1]) * array(w.input[1])  # (R,1,kh,1) * (R,1,1,kw) -> (R,1,kh,kw)
            ph, pw = _ints(h, "pads", [0] * 4), _ints(w, "pads", [0] * 4)
            merged = onnx.helper.make_node(
                "Conv", [h.input[0], add(h.input[1], k)], [w.output[0]], name=f"{h.name or w.output[0]}_merged",
                kernel_shape=list(c.kernel), group=c.rank,
                strides=[_ints(h, "strides", [1, 1])[0], _ints(w, "strides", [1, 1])[1]],
                pads=[ph[0], pw[1], ph[2], pw[3]],
                dilations=[_ints(h, "dilations", [1, 1])[0], _ints(w, "dilations", [1, 1])[1]])
        else:
            merged = dws[0]
            k = array(merged.input[1])
        if form == "cp3":
            replace[c.depthwise[0]] = merged
            remove.update(c.depthwise[1:])
        elif form == "fused_in":
            a = array(first.input[1])  # (R,S,1,1)
            fused = conv([first.input[0], add(first.input[1], a * k)], merged.output[0], merged, c.kernel, 1)
            replace[c.depthwise[-1]] = fused
            remove.update({c.first, *c.depthwise[:-1]})
        else:  # fused_out
            b = array(last.input[1])  # (T,R,1,1)
            inputs = [merged.input[0], add(last.input[1], b * k.reshape(1, c.rank, *c.kernel))]
            if len(last.input) > 2 and last.input[2]:
                inputs.append(last.input[2])
            replace[c.last] = conv(inputs, last.output[0], merged, c.kernel, 1)
            remove.update(c.depthwise)
    if replace or remove:
        nodes = [replace.get(i, n) for i, n in enumerate(g.node) if i not in remove or i in replace]
        del g.node[:]
        g.node.extend(nodes)
        _tidy(g)
    return out


def cp_chain_macs(chain: CPChain, form: str, out_hw: tuple[int, int], in_hw: tuple[int, int]) -> int:
    """MACs per sample of one CP chain in ``form`` (the input ``in_hw``, the output ``out_hw``)."""
    s, r, t = chain.in_channels, chain.rank, chain.out_channels
    kk = chain.kernel[0] * chain.kernel[1]
    pix_in, pix_out = in_hw[0] * in_hw[1], out_hw[0] * out_hw[1]
    if form == "fused_in":
        return s * r * kk * pix_out + r * t * pix_out
    if form == "fused_out":
        return s * r * pix_in + r * t * kk * pix_out
    return s * r * pix_in + r * kk * pix_out + r * t * pix_out  # CP-3 (CP-4 differs only in the depthwise part)


Pass = Callable[..., onnx.ModelProto]

#: The graph-rewrite passes by name; each is ``fn(model, **options) -> new model`` and leaves ``model`` as is.
PASSES: dict[str, Pass] = {"pad_channels": pad_channels, "realise_cp": realise_cp, "compact_names": compact_names,
                           "drop_zero_points": drop_zero_points}


def get_pass(name: str) -> Pass:
    """The pass registered as ``name``; ExportError naming the known ones otherwise."""
    try:
        return PASSES[name]
    except (KeyError, TypeError):
        raise ExportError(f"unknown graph pass {name!r} (known: {', '.join(sorted(PASSES))})") from None


def apply_passes(model: onnx.ModelProto, names: Sequence[str], **options: Any) -> onnx.ModelProto:
    """Run the passes ``names`` on ``model`` in order; ``options`` (e.g. ``block``, ``forms``) go to every pass
    that takes them.

    Returns a new model (a copy when ``names`` is empty); ``model`` is not modified.
    """
    passes = [get_pass(n) for n in names]
    if not passes:
        out = onnx.ModelProto()
        out.CopyFrom(model)
        return out
    for fn in passes:
        takes = inspect.signature(fn).parameters
        model = fn(model, **{k: v for k, v in options.items() if k in takes})
    return model
