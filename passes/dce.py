"""``dce``: remove nodes whose values nothing uses.

Inputs and the output stay (they are the call signature).  A node whose op updates operands in
place (its op table ``effects``: a ``batch_norm`` tracking running statistics, or a fused op
containing one) is kept even when its value is unused: in train mode it updates them, as eager does.
"""

from __future__ import annotations

from lazyfuse.ir.graph import Graph, Node
from lazyfuse.ir.ops import has_effects

from .manager import PassContext, register_pass


def has_side_effects(node: Node) -> bool:
    """True for nodes that must run even when their result is unused."""
    return node.op in ("input", "output") or has_effects(node)


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
