"""What an ONNX file contains: op counts, inputs and outputs, stored weights, weights computed in the graph.

:func:`node_summary` counts op types (subgraphs included); :func:`inspect_onnx` returns a :class:`GraphInfo`
with, besides the counts, the number of initializer elements and the compute nodes (``MatMul``, ``Gemm``,
``Einsum``, ``Conv``, ...) whose inputs are all constants, i.e. weight reconstruction done in the graph on every
run. :func:`load_model_proto` reads a file and refuses, in one line, anything that is not an ONNX model.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ._common import ExportError, one_line

#: Compute ops that, fed only by constants, mean the graph recomputes a weight on every run.
COMPUTE_OPS = frozenset({"MatMul", "Gemm", "Einsum", "Conv", "ConvTranspose", "MatMulInteger",
                         "QLinearMatMul"})


@dataclasses.dataclass(frozen=True)
class GraphInfo:
    """What an ONNX file contains (see :func:`inspect_onnx`)."""

    path: Path
    opset: int | None
    ops: dict[str, int]  # op type -> count, most frequent first (nodes of subgraphs included)
    inputs: list[tuple[str, list[int | str]]]  # name, shape (symbolic dims as their name, "?" if unnamed)
    outputs: list[tuple[str, list[int | str]]]
    initializer_params: int  # elements of the floating-point initializers (the weights as stored in the file)
    initializer_bytes: int  # bytes of all initializers
    weight_only_nodes: list[str]  # "OpType name" of compute nodes whose inputs are all constants

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["path"] = str(self.path)
        return d


def load_model_proto(path: str | os.PathLike) -> onnx.ModelProto:
    """The ONNX model at ``path`` (external weights not loaded); ExportError for anything that is not one."""
    path = Path(path)
    if not path.exists():
        raise ExportError(f"{path}: file not found")
    if not path.is_file():
        raise ExportError(f"{path}: not a file")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # noqa: BLE001 - protobuf DecodeError and friends
        raise ExportError(f"{path}: not an ONNX model ({one_line(err, 160)})") from None
    # protobuf parses many non-ONNX byte strings (even an empty file) into an empty message
    if proto.ir_version <= 0 or not proto.opset_import or not proto.graph.node:
        raise ExportError(f"{path}: not an ONNX model (no graph, IR version or opset found)")
    return proto


def _dims(value_info) -> list[int | str]:  # noqa: ANN001 - onnx.ValueInfoProto
    dims: list[int | str] = []
    for d in value_info.type.tensor_type.shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        else:
            dims.append(d.dim_param or "?")
    return dims


def inspect_onnx(path: str | os.PathLike) -> GraphInfo:
    """Op counts, inputs/outputs, stored weights and weight-only compute nodes of an ONNX file."""
    proto = load_model_proto(path)
    g = proto.graph
    ops: Counter[str] = Counter()

    def walk(graph) -> None:  # noqa: ANN001 - onnx.GraphProto
        for node in graph.node:
            ops[node.op_type] += 1
            for attr in node.attribute:
                if attr.HasField("g"):
                    walk(attr.g)
                for sub in attr.graphs:
                    walk(sub)

    walk(g)
    float_types = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE,
                   onnx.TensorProto.BFLOAT16}
    n_init = n_bytes = 0
    for t in g.initializer:
        n = int(np.prod(t.dims)) if len(t.dims) else 1
        if t.data_type in float_types:  # weights; integer initializers are shapes and indices
            n_init += n
        try:
            n_bytes += n * np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.data_type)).itemsize
        except (KeyError, TypeError, ValueError):  # string tensors and exotic types: count 4 bytes
            n_bytes += 4 * n
    # constants: initializers, Constant nodes, and anything computed from constants alone
    const = {t.name for t in g.initializer}
    weight_only: list[str] = []
    for node in g.node:  # nodes are topologically sorted in a valid ONNX graph
        ins = [i for i in node.input if i]
        if node.op_type == "Constant" or (ins and all(i in const for i in ins)):
            const.update(node.output)
            if node.op_type in COMPUTE_OPS:
                weight_only.append(f"{node.op_type} {node.name or node.output[0]}")
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    init_names = {t.name for t in g.initializer}
    return GraphInfo(
        path=Path(path),
        opset=opset,
        ops=dict(ops.most_common()),
        inputs=[(v.name, _dims(v)) for v in g.input if v.name not in init_names],
        outputs=[(v.name, _dims(v)) for v in g.output],
        initializer_params=n_init,
        initializer_bytes=n_bytes,
        weight_only_nodes=weight_only,
    )


def node_summary(path: str | os.PathLike) -> dict[str, int]:
    """Counts of op types in the ONNX file ``path`` (subgraphs included), most frequent first."""
    return inspect_onnx(path).ops
