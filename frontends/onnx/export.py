"""``to_onnx(graph, arrays)``: an inferred lazyfuse :class:`Graph` as an ONNX model.

The graph is the one after shape inference and lazy materialization, before fusion, so every node is
one of the table's plain ops; each becomes ONNX nodes by one entry of :data:`EXPORTERS`, with
inference semantics (BatchNorm normalizes by the running statistics it holds at export time).
Names: graph inputs keep their names, parameters and buffers are initializers named by their
state_dict targets (``fc1.weight``), each op's output is named like its IR value (``fc1``), and an
ONNX node is named by its module path (``layers.0``; the IR name for a function call), with the
user's source line as its ``doc_string``.  Symbolic dims become ``dim_param`` symbols of the spec's
names; output shapes are declared too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from lazyfuse.errors import CompileError
from lazyfuse.ir.graph import Graph, Node
from lazyfuse.ir.ops import OPS
from lazyfuse.ir.types import Sym, TensorType

from . import require_onnx

DEFAULT_OPSET = 18
MIN_OPSET = 14  # Reshape's allowzero, Gemm with an optional C, BatchNormalization without spatial


class Writer:
    """Collects the ONNX nodes, initializers and value names of one export."""

    def __init__(self, graph: Graph, arrays: Mapping[str, np.ndarray]) -> None:
        self.onnx = require_onnx()
        self.graph = graph
        self.arrays = arrays
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.names: set[str] = set()

    def value(self, node: Node) -> str:
        """The ONNX name of an IR value."""
        return node.attrs["target"] if node.op in ("param", "buffer") else node.name

    def operands(self, node: Node) -> dict[str, str]:
        """The node's operands by the op table's names (``input``, ``weight``, ``running_mean``...)."""
        names = OPS[node.op].operand_names(node.attrs, len(node.inputs))
        return {name: self.value(src) for name, src in zip(names, node.inputs)}

    def constant(self, base: str, array: np.ndarray) -> str:
        """An extra initializer (a Reshape shape, BatchNorm's unit scale), named after ``base``."""
        name, k = base, 1
        while name in self.names or name in self.arrays:
            k += 1
            name = f"{base}_{k}"
        self.names.add(name)
        self.initializers.append(self.onnx.numpy_helper.from_array(np.asarray(array), name=name))
        return name

    def emit(self, node: Node, op_type: str, inputs: list[str], outputs: list[str] | None = None,
             suffix: str = "", **attrs: Any) -> str:
        """One ONNX node for IR ``node`` (``suffix`` names a helper node: ``fc/transpose``)."""
        out = outputs or [self.value(node)]
        name = (node.module or node.name) + suffix
        doc = str(node.loc) if node.loc is not None else ""
        if node.module_type:
            doc += f" {node.module}:{node.module_type}"
        self.nodes.append(self.onnx.helper.make_node(op_type, inputs, out, name=name, doc_string=doc.strip(),
                                                     **attrs))
        return out[0]


def _error(node: Node, what: str) -> CompileError:
    return CompileError(f"export_onnx: {node.ref} ({node.op}{' in ' + node.module if node.module else ''}): "
                        f"{what}")


# ------------------------------------------------------------------------------------- op entries
def _linear(w: Writer, node: Node) -> None:
    ops = w.operands(node)
    x, weight, bias = ops["input"], ops["weight"], ops.get("bias")
    if node.inputs[0].type.rank == 2:
        w.emit(node, "Gemm", [x, weight] + ([bias] if bias else []), transB=1)
        return
    wt = w.emit(node, "Transpose", [weight], [f"{w.value(node)}/weight_t"], "/transpose", perm=[1, 0])
    if bias is None:
        w.emit(node, "MatMul", [x, wt])
        return
    mm = w.emit(node, "MatMul", [x, wt], [f"{w.value(node)}/matmul"], "/matmul")
    w.emit(node, "Add", [mm, bias])


def _batch_norm(w: Writer, node: Node) -> None:
    a = node.attrs
    if not a["track_running_stats"]:
        raise _error(node, "track_running_stats=False normalizes by batch statistics in eval mode too; "
                           "ONNX BatchNormalization (inference) needs running statistics")
    ops = w.operands(node)
    dtype = node.type.dtype.numpy
    c = node.type.shape[1]
    scale = ops.get("weight") or w.constant(f"{w.value(node)}.scale", np.ones(c, dtype))
    shift = ops.get("bias") or w.constant(f"{w.value(node)}.shift", np.zeros(c, dtype))
    extra = {} if a["momentum"] is None else {"momentum": 1.0 - float(a["momentum"])}  # ONNX's is 1 - torch's
    w.emit(node, "BatchNormalization", [ops["input"], scale, shift, ops["running_mean"], ops["running_var"]],
           epsilon=float(a["eps"]), **extra)


def _relu(w: Writer, node: Node) -> None:
    w.emit(node, "Relu", [w.operands(node)["input"]])


def _add(w: Writer, node: Node) -> None:
    ops = w.operands(node)
    w.emit(node, "Add", [ops["input"], ops["other"]])


def _reshape_to_type(w: Writer, node: Node) -> None:
    """Reshape ``node``'s input to ``node.type``: a symbolic dim at its input position is ``0`` (copy),
    one other symbolic dim is ``-1``."""
    src = node.inputs[0].type
    shape, free = [], 0
    for i, d in enumerate(node.type.shape):
        if isinstance(d, int):
            shape.append(d)
        elif i < src.rank and src.shape[i] == d:
            shape.append(0)
        else:
            shape.append(-1)
            free += 1
    if free > 1:
        raise _error(node, f"cannot write the target shape {node.type} with one -1")
    target = w.constant(f"{w.value(node)}.shape", np.asarray(shape, np.int64))
    w.emit(node, "Reshape", [w.operands(node)["input"], target])


def _flatten(w: Writer, node: Node) -> None:
    rank = node.inputs[0].type.rank
    start, end = node.attrs["start_dim"] % max(rank, 1), node.attrs["end_dim"] % max(rank, 1)
    if start == 1 and end == rank - 1:  # ONNX Flatten always gives 2-D: (N, rest)
        w.emit(node, "Flatten", [w.operands(node)["input"]], axis=1)
    else:
        _reshape_to_type(w, node)


def _conv2d(w: Writer, node: Node) -> None:
    a, ops = node.attrs, w.operands(node)
    top, bottom, left, right = a["padding"]
    w.emit(node, "Conv", [ops["input"], ops["weight"]] + ([ops["bias"]] if "bias" in ops else []),
           kernel_shape=list(a["kernel_size"]), strides=list(a["stride"]), pads=[top, left, bottom, right],
           dilations=list(a["dilation"]), group=int(a["groups"]))


def _max_pool2d(w: Writer, node: Node) -> None:
    """MaxPool with ``ceil_mode=0`` and end pads that give the op's own output size: PyTorch's
    ceil mode drops a last window that would start in the end padding, ONNX's (before opset 19)
    keeps it, and padded positions never win a max in either, so extra end padding is exact."""
    a = node.attrs
    begin, end = list(a["padding"]), []
    for size, out, k, s, p, d in zip(node.inputs[0].type.shape[2:], node.type.shape[2:], a["kernel_size"],
                                     a["stride"], a["padding"], a["dilation"]):
        end.append(max(p, (out - 1) * s + d * (k - 1) + 1 - size - p))
    w.emit(node, "MaxPool", [w.operands(node)["input"]], kernel_shape=list(a["kernel_size"]),
           strides=list(a["stride"]), pads=begin + end, dilations=list(a["dilation"]), ceil_mode=0)


def _transpose(w: Writer, node: Node) -> None:
    w.emit(node, "Transpose", [w.operands(node)["input"]], perm=[1, 0])


EXPORTERS: dict[str, Callable[[Writer, Node], None]] = {
    "linear": _linear, "batch_norm": _batch_norm, "relu": _relu, "add": _add, "flatten": _flatten,
    "reshape": _reshape_to_type, "conv2d": _conv2d, "max_pool2d": _max_pool2d, "transpose": _transpose,
}


# ------------------------------------------------------------------------------------- the model
def _value_info(onnx: Any, name: str, t: TensorType) -> Any:
    elem = onnx.helper.np_dtype_to_tensor_dtype(t.dtype.numpy)
    dims = [str(d) if isinstance(d, Sym) else int(d) for d in t.shape]  # "N", or a product "N*4"
    return onnx.helper.make_tensor_value_info(name, elem, dims)


def to_onnx(graph: Graph, arrays: Mapping[str, np.ndarray], opset: int = DEFAULT_OPSET,
            producer_version: str = "") -> Any:
    """The ``onnx.ModelProto`` of ``graph`` (inferred, unfused) with ``arrays`` (target -> array)
    as its initializers."""
    onnx = require_onnx()
    newest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= newest:
        raise CompileError(f"export_onnx: opset must be an int from {MIN_OPSET} to {newest} (this onnx's "
                           f"newest), got {opset!r}")
    w = Writer(graph, arrays)
    for node in graph.nodes:
        if node.op in ("input", "output"):
            continue
        if node.op in ("param", "buffer"):
            target = node.attrs["target"]
            if target not in arrays:
                raise _error(node, "the model holds no array for it")
            w.initializers.append(onnx.numpy_helper.from_array(np.asarray(arrays[target]), name=target))
            w.names.add(target)
            continue
        if node.type is None or not all(isinstance(d, (int, Sym)) for d in node.type.shape):
            raise _error(node, f"its type {node.type} is not resolved; export runs after shape inference")
        export = EXPORTERS.get(node.op)
        if export is None:
            raise _error(node, f"no ONNX export for op {node.op!r} (exported ops: {', '.join(EXPORTERS)})")
        export(w, node)
    inputs = [_value_info(onnx, n.name, n.type) for n in graph.inputs]
    outputs = [_value_info(onnx, w.value(n), n.type) for n in graph.output.inputs]
    # The params/buffers nothing reads (num_batches_tracked) are dropped, as ONNX checkers warn on them.
    used = {i for n in w.nodes for i in n.input}
    inits = [t for t in w.initializers if t.name in used]
    g = onnx.helper.make_graph(w.nodes, graph.name, inputs, outputs, initializer=inits)
    opsets = [onnx.helper.make_opsetid("", opset)]
    # The oldest IR version that has this opset, not this onnx's newest: runtimes lag behind onnx
    # (onnxruntime 1.30 reads IR <= 13; onnx 1.23 writes 14 by default).
    return onnx.helper.make_model(g, opset_imports=opsets, producer_name="lazyfuse",
                                  producer_version=producer_version,
                                  ir_version=onnx.helper.find_min_ir_version_for(opsets))
