"""Graphviz DOT text for a graph: the one walk over nodes, module clusters and edges.

:func:`graph_to_dot` walks the graph; a :class:`DotStyle` decides what each node looks like (one
box, several, or none), which module cluster it sits in, the edge labels and any statements before
and after.  The base :class:`DotStyle` is the plain picture of ``Graph.to_dot()``: one box per op
(label: name, op, key attrs), values on edges (``f32[N,256]``), params/buffers as small ellipses,
nodes clustered by module path.  ``lazyfuse.viz`` supplies the styled picture.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .graph import STATE_OPS
from .printer import format_value

if TYPE_CHECKING:
    from .graph import Graph, Node

__all__ = ["Drawn", "DotStyle", "graph_to_dot", "quote", "KEY_ATTRS"]

# Attributes worth showing in a node label; the rest stay in the text IR.
KEY_ATTRS = ("in_features", "out_features", "num_features", "start_dim", "end_dim", "shape", "momentum",
             "training")


def quote(s: str) -> str:
    """A DOT double-quoted string; backslashes, quotes and newlines are escaped."""
    s = s.replace("\\", "\\\\").replace('"', '\\"').replace("\r", "").replace("\n", "\\n")
    return f'"{s}"'


@dataclass
class Drawn:
    """What a style draws for one graph node.

    ``lines``: DOT statements (relative indentation; a group may open its own ``subgraph``);
    ``entry``: per operand position, the DOT id its in-edge goes to; ``exit``: the id the node's
    value leaves from (``None``: no out-edges); ``cluster``: the module cluster path it sits in
    (``()``: top level; each element is one nesting level).
    """

    lines: list[str]
    entry: list[str]
    exit: str | None
    cluster: tuple[str, ...] = ()


class DotStyle:
    """How :func:`graph_to_dot` draws a graph; this base class is the plain ``Graph.to_dot()`` style."""

    def defaults(self, graph: Graph) -> list[str]:
        """Statements right after ``digraph ... {``: graph, node and edge defaults."""
        return ["rankdir=TB;",
                'node [shape=box, style="rounded,filled", fillcolor="#eef3fb", fontname="Helvetica"];',
                'edge [fontname="Helvetica", fontsize=10];']

    def draw(self, node: Node, new_id: Callable[[], str]) -> Drawn | None:
        """The DOT of one node (``None``: not drawn; edges from and to it are left out)."""
        ident = new_id()
        extra = ""
        if node.op in STATE_OPS:
            extra = ', shape=ellipse, fillcolor="#f4f4f4", fontsize=10'
        elif node.op in ("input", "output"):
            extra = ', shape=oval, fillcolor="#e8f5e9"'
        return Drawn([f"{ident} [label={quote(self.label(node))}{extra}];"], [ident] * len(node.inputs),
                     ident, self.cluster_of(node))

    def label(self, node: Node) -> str:
        """A plain box's text: name and op, then the key attributes."""
        if node.op in STATE_OPS:
            return f"{node.name}\n{node.type}"
        if node.op == "input":
            return f"input {node.name}\n{node.type}"
        if node.op == "output":
            return "output"
        attrs = ", ".join(f"{k}={format_value(node.attrs[k])}" for k in KEY_ATTRS if k in node.attrs)
        head = node.op if node.name == node.op else f"{node.name}: {node.op}"
        return head + (f"\n{attrs}" if attrs else "")

    def cluster_of(self, node: Node) -> tuple[str, ...]:
        """One flat cluster per module path; params/buffers join their owner's."""
        if node.op in STATE_OPS:
            target = node.attrs.get("target", node.name)
            return (target.rsplit(".", 1)[0],) if "." in target else ()
        return () if node.module is None else (node.module,)

    def cluster_name(self, path: tuple[str, ...], index: int) -> str:
        """The ``subgraph`` id of the cluster at ``path``, the ``index``-th one emitted."""
        return f"cluster_{index}"

    def cluster_attrs(self, path: tuple[str, ...]) -> str:
        """The attribute statements of the cluster at ``path`` (one line)."""
        return f'label={quote(path[-1])}; style="rounded,dashed"; color="#9aa5b1";'

    def edge_label(self, src: Node, dst: Node, pos: int) -> str | None:
        """The label of the edge from ``src`` into operand ``pos`` of ``dst`` (``None``: no label)."""
        return None if src.type is None else str(src.type)

    def trailer(self, graph: Graph) -> list[str]:
        """Statements after the edges (a legend)."""
        return []


@dataclass
class _Cluster:
    lines: list[str] = field(default_factory=list)
    children: dict[str, _Cluster] = field(default_factory=dict)


def graph_to_dot(graph: Graph, style: DotStyle | None = None) -> str:
    """DOT text for ``graph`` drawn by ``style`` (default: the plain :class:`DotStyle`)."""
    style = style if style is not None else DotStyle()
    counter = itertools.count()

    def new_id() -> str:
        return f"n{next(counter)}"

    root = _Cluster()
    entry: dict[Node, list[str]] = {}
    exit_: dict[Node, str] = {}
    for n in graph.nodes:
        drawn = style.draw(n, new_id)
        if drawn is None:
            continue
        c = root
        for part in drawn.cluster:
            c = c.children.setdefault(part, _Cluster())
        c.lines += drawn.lines
        entry[n] = drawn.entry
        if drawn.exit is not None:
            exit_[n] = drawn.exit

    out = [f"digraph {quote(graph.name)} {{"] + ["  " + s for s in style.defaults(graph)]
    index = itertools.count()

    def emit(c: _Cluster, path: tuple[str, ...], indent: str) -> None:
        out.extend(indent + line for line in c.lines)
        for name, child in c.children.items():
            sub = path + (name,)
            out.append(f"{indent}subgraph {style.cluster_name(sub, next(index))} {{")
            out.append(f"{indent}  {style.cluster_attrs(sub)}")
            emit(child, sub, indent + "  ")
            out.append(indent + "}")

    emit(root, (), "  ")
    for n in graph.nodes:
        targets = entry.get(n)
        if targets is None:
            continue
        for pos, src in enumerate(n.inputs):
            if src not in exit_:
                continue
            text = style.edge_label(src, n, pos)
            label = "" if text is None else f" [label={quote(text)}]"
            out.append(f"  {exit_[src]} -> {targets[pos]}{label};")
    out += ["  " + s for s in style.trailer(graph)]
    out.append("}")
    return "\n".join(out) + "\n"
