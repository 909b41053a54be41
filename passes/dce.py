"""``dce``: remove nodes whose values nothing uses.

Inputs stay (they are the call signature).  A ``batch_norm`` that tracks running statistics is
kept even when its output is unused: in train mode it updates the running stats, as eager does.
"""

from __future__ import annotations

from lazyfuse.ir.graph import Graph, Node

from .manager import PassContext, register_pass


def has_side_effects(node: Node) -> bool:
    """True for ops that must run even when their result is unused."""
    if node.op in ("input", "output"):
        return True
    if node.op == "batch_norm" or node.attrs.get("bn_module") is not None:
        return bool(node.attrs.get("track_running_stats", True))
    return False


@register_pass("dce")
def dce(graph: Graph, ctx: PassContext) -> Graph:
    """Erase unused side-effect-free nodes, last first, until none is left."""
    changed = True
    while changed:
        changed = False
        for node in reversed(list(graph.nodes)):
            if not node.users and not has_side_effects(node):
                graph.erase(node)
                changed = True
    return graph
