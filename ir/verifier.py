"""``verify(graph)``: check the IR invariants, raising :class:`VerifierError` on the first problem."""

from __future__ import annotations

from typing import Any

from lazyfuse.errors import DTypeError, ShapeError, VerifierError

from .graph import STATE_OPS, Graph, Node
from .ops import OPS, OpDef, check_attrs, infer_node
from .types import TensorType


def _fail(node: Node | None, msg: str) -> VerifierError:
    where = f"{node.ref} ({node.op})" if node is not None else "graph"
    return VerifierError(f"{where}: {msg}")


def verify(graph: Graph) -> None:
    """Check users/inputs consistency, unique names, def-before-use, acyclicity, one output,
    op arity and attr schemas, types, and that each shape rule reproduces its node's type."""
    _check_structure(graph)
    for node in graph.nodes:
        _check_node(node)


def _check_structure(graph: Graph) -> None:
    seen: set[Node] = set()
    names: dict[str, Node] = {}
    members = set(graph.nodes)
    if len(members) != len(graph.nodes):
        raise _fail(None, "a node appears twice in graph.nodes")
    cycle = graph.find_cycle()
    if cycle is not None:
        raise _fail(cycle[0], "cycle: " + " -> ".join(n.ref for n in cycle + cycle[:1]))
    outputs = [n for n in graph.nodes if n.op == "output"]
    if len(outputs) != 1:
        raise _fail(None, f"expected exactly one output node, found {len(outputs)}")
    if graph.nodes[-1] is not outputs[0]:
        raise _fail(outputs[0], "the output node must be the last node")
    indices = sorted(n.attrs.get("index") for n in graph.nodes if n.op == "input")
    if indices != list(range(len(indices))):
        raise _fail(None, f"input indices must be 0..{len(indices) - 1}, got {indices}")
    for node in graph.nodes:
        if node.graph is not graph:
            raise _fail(node, "node.graph is a different graph")
        if node.name in names:
            raise _fail(node, f"duplicate name {node.name!r}")
        names[node.name] = node
        if graph._names.get(node.name) is not node:
            raise _fail(node, "name table out of sync with graph.nodes")
        for i, src in enumerate(node.inputs):
            if src not in members:
                raise _fail(node, f"operand {i} ({src.ref}) is not in the graph")
            if src not in seen:
                raise _fail(node, f"operand {i} ({src.ref}) is used before it is defined")
            if node not in src._users:
                raise _fail(src, f"users list misses {node.ref}, which uses it")
        for user in node._users:
            if user not in members:
                raise _fail(node, f"dangling user {user.ref} is not in the graph")
            if node not in user.inputs:
                raise _fail(node, f"lists {user.ref} as a user, but {user.ref} does not use it")
        seen.add(node)
    if len(names) != len(graph._names):
        raise _fail(None, "name table has entries for nodes not in the graph")


def _check_node(node: Node) -> None:
    opdef = OPS.get(node.op)
    if opdef is None:
        raise _fail(node, f"unknown op {node.op!r}")
    problems = check_attrs(opdef, node.attrs)
    if problems:
        raise _fail(node, "; ".join(problems))
    attrs = opdef.with_defaults(node.attrs)
    _check_operand_count(node, opdef, attrs)
    if node.op in STATE_OPS and node.attrs["target"] != node.name:
        raise _fail(node, f"target {node.attrs['target']!r} differs from the node name")
    if node.op == "output":
        if node.type is not None:
            raise _fail(node, "the output node has no type of its own")
        return
    if not isinstance(node.type, TensorType):
        raise _fail(node, f"missing or bad type {node.type!r}")
    for src in node.inputs:
        if src.op == "output":
            raise _fail(node, f"uses the output node {src.ref}")
        if not isinstance(src.type, TensorType):
            raise _fail(node, f"operand {src.ref} has no type")
    if opdef.shape_rule is None:
        return
    in_types = [src.type for src in node.inputs]
    if not all(t.is_resolved for t in in_types):
        return
    try:
        res = infer_node(node.op, attrs, in_types)
    except (ShapeError, DTypeError) as e:
        raise _fail(node, f"shape rule fails: {e}") from None
    if res.out != node.type:
        raise _fail(node, f"type is {node.type}, but the shape rule gives {res.out}")
    for k, v in res.attrs.items():
        if attrs.get(k) != v:
            raise _fail(node, f"attr {k}={attrs.get(k)} is unresolved; the shape rule gives {v}")
    for i, t in res.inputs.items():
        raise _fail(node, f"operand {i} ({node.inputs[i].ref}) has type {node.inputs[i].type}, "
                          f"the shape rule refines it to {t}")


def _check_operand_count(node: Node, opdef: OpDef, attrs: dict[str, Any]) -> None:
    """The operands must match the op's operand names for these attrs."""
    lo, hi = opdef.arity_range(attrs)
    if lo <= len(node.inputs) <= hi:
        return
    if lo == hi:
        names = ", ".join(opdef.operand_names(attrs)) or "none"
        raise _fail(node, f"expected {lo} operands, got {len(node.inputs)} (operands: {names})")
    raise _fail(node, f"expected {lo}..{hi} operands, got {len(node.inputs)}")
