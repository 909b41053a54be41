"""Which dims were lazy (``?``) after tracing and got resolved by shape inference.

:func:`lazy_marks` compares a later graph (inferred or optimized) with the traced one and returns,
per node name, the shape positions and attribute names that were ``?`` when traced.  A fused node
is matched to the traced nodes it replaced through its ``modules`` attr and its op's ``parts``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lazyfuse.ir.graph import Graph, Node
from lazyfuse.ir.ops import OPS
from lazyfuse.ir.printer import Annotator, format_type
from lazyfuse.ir.types import UNKNOWN, TensorType

__all__ = ["Marks", "MarkAnnotator", "lazy_marks", "fused_parts", "format_type"]


@dataclass(frozen=True)
class Marks:
    """Resolved-lazy positions of one node: shape dim indices and attribute names."""

    dims: frozenset[int] = field(default_factory=frozenset)
    attrs: frozenset[str] = field(default_factory=frozenset)

    def __bool__(self) -> bool:
        return bool(self.dims or self.attrs)


NO_MARKS = Marks()


def fused_parts(node: Node) -> tuple[str, ...] | None:
    """The original ops of a fused node (``("linear", "batch_norm", "relu")``), else ``None``."""
    opdef = OPS.get(node.op)
    return tuple(opdef.parts) if opdef is not None and opdef.parts else None


def _counterparts(node: Node, traced: Graph) -> list[Node]:
    """The traced nodes that ``node`` stands for (itself, or the chain a fused node replaced)."""
    parts = fused_parts(node)
    if parts is None:
        try:
            old = traced.node(node.name)
        except KeyError:
            return []
        return [old] if old.op == node.op else []
    modules = node.attrs.get("modules", ())
    found: list[Node] = []
    for op, module in zip(parts, modules):
        cands = [n for n in traced.nodes if n.op == op and (n.module or "") == module]
        named = [n for n in cands if n.name in node.name.split("_") or n.name in node.name]
        if named or cands:
            found.append((named or cands)[0])
    return found


def _unknown_dims(t: TensorType | None) -> set[int]:
    return set() if t is None else {i for i, d in enumerate(t.shape) if d is UNKNOWN}


def lazy_marks(traced: Graph, graph: Graph) -> dict[str, Marks]:
    """Per node name of ``graph``: what was ``?`` in ``traced`` and is resolved in ``graph``."""
    out: dict[str, Marks] = {}
    for node in graph.nodes:
        olds = _counterparts(node, traced)
        if not olds:
            continue
        last = olds[-1]
        dims = {i for i in _unknown_dims(last.type) if node.type is not None and i < node.type.rank
                and node.type.shape[i] is not UNKNOWN}
        attrs = {k for old in olds for k, v in old.attrs.items()
                 if v is UNKNOWN and node.attrs.get(k, UNKNOWN) is not UNKNOWN}
        marks = Marks(frozenset(dims), frozenset(attrs))
        if marks:
            out[node.name] = marks
    return out


class MarkAnnotator(Annotator):
    """The printer hook (:class:`lazyfuse.ir.printer.Annotator`) that puts ``*`` on ``marks``."""

    def __init__(self, marks: dict[str, Marks]) -> None:
        self.marks = marks

    def dims(self, node: Node) -> frozenset[int]:
        return self.marks.get(node.name, NO_MARKS).dims

    def attrs(self, node: Node) -> frozenset[str]:
        return self.marks.get(node.name, NO_MARKS).attrs
