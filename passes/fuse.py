"""``fuse``: rewrite Linear -> BatchNorm -> ReLU chains into fused nodes (see :mod:`.patterns`).

A chain matches a pattern when each intermediate value has exactly one use, as operand 0 of the
next op, and is not a graph output; the fused op's edge rules must allow every edge (Linear ->
BatchNorm only for a 2-D ``(N,C)`` value, :func:`lazyfuse.ir.fused_ops.edge_problem`) and every op
that follows a ``training`` flag (BatchNorm) must belong to a module (the runtime reads that
module's flag).  Patterns are tried longest first at each node in graph order.

The pass only restructures the graph: parameters are not touched and eval-mode BatchNorm is not
folded into the weights; the fused op computes the same thing from the live arrays at call time.
"""

from __future__ import annotations

from typing import Any

from lazyfuse.ir.fused_ops import edge_problem
from lazyfuse.ir.graph import Graph, Node
from lazyfuse.ir.ops import MODE_ATTR, OPS

from .manager import PassContext, register_pass
from .patterns import PATTERNS, FusionPattern


def _node_ok(node: Node) -> bool:
    """Per-node legality: an op that follows a ``training`` flag needs a module path to read it."""
    return not OPS[node.op].uses_training or bool(node.module)


def _sole_consumer(node: Node) -> Node | None:
    """The one node using ``node``, exactly once and as operand 0, unless it is the output."""
    users = node.users
    if len(users) != 1:
        return None
    user = users[0]
    if user.op == "output" or user.inputs[0] is not node or user.inputs.count(node) != 1:
        return None
    return user


def match_chain(start: Node, pattern: FusionPattern) -> list[Node] | None:
    """The nodes of ``pattern`` starting at ``start`` when fusing them is legal, else ``None``."""
    if start.op != pattern.ops[0] or not _node_ok(start):
        return None
    chain = [start]
    for op in pattern.ops[1:]:
        cur = chain[-1]
        nxt = _sole_consumer(cur)
        if nxt is None or nxt.op != op or not _node_ok(nxt) or cur.type is None:
            return None
        if edge_problem(cur.op, op, cur.type) is not None:
            return None
        chain.append(nxt)
    return chain


def fused_attrs(chain: list[Node]) -> dict[str, Any]:
    """The fused node's attrs: the chain's attrs (defaults filled) plus ``modules`` and, for the
    part that follows a ``training`` flag, ``bn_module``."""
    attrs: dict[str, Any] = {}
    for n in chain:
        attrs.update(OPS[n.op].with_defaults(n.attrs))
    attrs["modules"] = tuple(n.module or "" for n in chain)
    moded = [n for n in chain if OPS[n.op].uses_training]
    if moded:
        attrs[MODE_ATTR] = moded[0].module
    return attrs


def rewrite(graph: Graph, chain: list[Node], fused_op: str) -> Node:
    """Replace ``chain`` by one ``fused_op`` node named after the chain (``fc1_bn1_relu1``)."""
    first, last = chain[0], chain[-1]
    operands = list(first.inputs) + [x for n in chain[1:] for x in n.inputs[1:]]
    fused = graph.create_node(
        fused_op, operands, fused_attrs(chain), last.type, name=fused_op, loc=first.loc,
        module=first.module, module_type="+".join(n.module_type or n.op for n in chain), after=last)
    last.replace_all_uses_with(fused)
    for n in reversed(chain):
        graph.erase(n)
    graph.rename(fused, "_".join(n.name for n in chain))
    return fused


@register_pass("fuse")
def fuse(graph: Graph, ctx: PassContext) -> Graph:
    """Fuse every legal pattern occurrence in place (longest pattern first at each node)."""
    for node in list(graph.nodes):
        if node not in graph:
            continue
        for pattern in PATTERNS:
            chain = match_chain(node, pattern)
            if chain is not None:
                rewrite(graph, chain, pattern.fused_op)
                break
    return graph
