"""The ``compact_names`` graph pass: short tensor and node names, exactly.

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
"""

from __future__ import annotations

import onnx


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

