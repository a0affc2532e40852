"""File-size passes of a quantized graph, both exact: ``compact_names`` and ``drop_zero_points``.

``compact_names``: short tensor and node names
----------------------------------------------

What it rewrites. Every tensor name that is not a graph input or output (initializers and intermediate values)
becomes ``t0``, ``t1``, ... in order of first use, every node name becomes ``n0``, ``n1``, ..., and doc strings
and recorded intermediate shapes (``value_info``) are dropped. The graph's inputs and outputs keep their names,
so a session is fed and read exactly as before.

Why it is exact. Names carry no arithmetic: the same nodes run on the same tensors in the same order.

Why. ONNX Runtime's quantizer names each tensor it adds after the float one (``..._quantized``,
``..._zero_point``, ``..._scale``, ``..._DequantizeLinear_Output``), and a QDQ graph has about five tensors per
weight. On a factorized model those names are a large share of the file: about 17 % of the int8 convnet-wide
file (``benchmarks/bench_int8.py``), against a negligible one in a float file of a dense model. The int8 export
applies this pass; graphs with subgraphs (``If``, ``Loop``) are returned unchanged.

``drop_zero_points``: omit zero points that are all zeros
---------------------------------------------------------
What it rewrites. A ``DequantizeLinear`` node whose input and zero point are initializers, the zero point all
zeros, loses its zero-point input (then unused initializers are dropped) when its input is

* an int32 tensor: a quantized bias (ORT stores one int32 zero point per output channel, 4 bytes each); or
* an int8/uint8 tensor read only as the weight (input 1) of ``Conv`` nodes.

Why it is exact. ONNX defines an omitted zero point as 0 of the input's type, so every dequantized value is the
same. The fusions stay: ONNX Runtime still turns each QDQ ``Conv`` into ``QLinearConv`` and each ``Gemm`` into
``QGemm`` (the tests compare the op counts of the optimised graphs, and the outputs bit for bit). The weight zero
points of ``Gemm``/``MatMul`` are kept: without them ONNX Runtime 1.32 leaves those layers as float ``Gemm``
between ``DequantizeLinear`` nodes (measured while writing this pass).
"""

from __future__ import annotations

import onnx
from onnx import numpy_helper


def compact_names(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` with short tensor and node names (see the module docstring); outputs unchanged."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for n in g.node for a in n.attribute):
        return out
    keep = {v.name for v in g.input} | {v.name for v in g.output}
    names: dict[str, str] = {}

    def short(name: str) -> str:
        if not name or name in keep:
            return name
        if name not in names:
            names[name] = f"t{len(names)}"
        return names[name]

    for i, node in enumerate(g.node):
        node.name, node.doc_string = f"n{i}", ""
        node.input[:] = [short(x) for x in node.input]
        node.output[:] = [short(x) for x in node.output]
    for init in g.initializer:
        init.name, init.doc_string = short(init.name), ""
    for sparse in g.sparse_initializer:
        sparse.values.name = short(sparse.values.name)
    del g.value_info[:]
    g.doc_string = out.doc_string = ""
    return out


_BIAS = {onnx.TensorProto.INT32}
_WEIGHT = {onnx.TensorProto.INT8, onnx.TensorProto.UINT8}


def drop_zero_points(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` without the all-zero zero points of biases and conv weights (module docstring)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    inits = {t.name: t for t in g.initializer}
    readers: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
    for node in g.node:
        for k, name in enumerate(node.input):
            readers.setdefault(name, []).append((node, k))
    outputs = {v.name for v in g.output}
    dropped: set[str] = set()
    for node in g.node:
        if node.op_type != "DequantizeLinear" or len(node.input) < 3 or node.input[2] not in inits:
            continue
        x = inits.get(node.input[0])
        if x is None or numpy_helper.to_array(inits[node.input[2]]).any():
            continue
        users = readers.get(node.output[0], [])
        conv_weight = bool(users) and node.output[0] not in outputs and all(
            n.op_type == "Conv" and k == 1 for n, k in users)
        if x.data_type in _BIAS or (x.data_type in _WEIGHT and conv_weight):
            dropped.add(node.input[2])
            del node.input[2]
    used = {name for node in g.node for name in node.input} | outputs | {v.name for v in g.input}
    keep = [t for t in g.initializer if t.name in used or t.name not in dropped]
    del g.initializer[:]
    g.initializer.extend(keep)
    return out
