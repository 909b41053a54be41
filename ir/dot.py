"""Graphviz DOT text for a graph: one box per op (label: name, op, key attrs), values on edges
(``f32[N,256]``), params/buffers as small ellipses, nodes clustered by module path."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .graph import STATE_OPS
from .printer import format_value

if TYPE_CHECKING:
    from .graph import Graph, Node

# Attributes worth showing in a node label; the rest stay in the text IR.
KEY_ATTRS = ("in_features", "out_features", "num_features", "start_dim", "end_dim", "shape", "momentum",
             "training")


def quote(s: str) -> str:
    """A DOT double-quoted string; backslashes, quotes and newlines are escaped."""
    s = s.replace("\\", "\\\\").replace('"', '\\"').replace("\r", "").replace("\n", "\\n")
    return f'"{s}"'


def _label(node: Node) -> str:
    if node.op in STATE_OPS:
        return f"{node.name}\n{node.type}"
    if node.op == "input":
        return f"input {node.name}\n{node.type}"
    if node.op == "output":
        return "output"
    attrs = ", ".join(f"{k}={format_value(node.attrs[k])}" for k in KEY_ATTRS if k in node.attrs)
    head = node.op if node.name == node.op else f"{node.name}: {node.op}"
    return head + (f"\n{attrs}" if attrs else "")


def _module_of(node: Node) -> str | None:
    if node.op in STATE_OPS:
        target = node.attrs.get("target", node.name)
        return target.rsplit(".", 1)[0] if "." in target else None
    return node.module


def graph_to_dot(graph: Graph) -> str:
    ids = {n: f"n{i}" for i, n in enumerate(graph.nodes)}
    lines = [f"digraph {quote(graph.name)} {{", "  rankdir=TB;",
             '  node [shape=box, style="rounded,filled", fillcolor="#eef3fb", fontname="Helvetica"];',
             '  edge [fontname="Helvetica", fontsize=10];']

    def node_line(n: Node) -> str:
        extra = ""
        if n.op in STATE_OPS:
            extra = ', shape=ellipse, fillcolor="#f4f4f4", fontsize=10'
        elif n.op in ("input", "output"):
            extra = ', shape=oval, fillcolor="#e8f5e9"'
        return f"{ids[n]} [label={quote(_label(n))}{extra}];"

    clusters: dict[str, list[Node]] = {}
    for n in graph.nodes:
        mod = _module_of(n)
        if mod is None:
            lines.append("  " + node_line(n))
        else:
            clusters.setdefault(mod, []).append(n)
    for i, (mod, members) in enumerate(clusters.items()):
        lines.append(f"  subgraph cluster_{i} {{")
        lines.append(f'    label={quote(mod)}; style="rounded,dashed"; color="#9aa5b1";')
        lines += ["    " + node_line(n) for n in members]
        lines.append("  }")
    for n in graph.nodes:
        for src in n.inputs:
            label = "" if src.type is None else f" [label={quote(str(src.type))}]"
            lines.append(f"  {ids[src]} -> {ids[n]}{label};")
    lines.append("}")
    return "\n".join(lines) + "\n"
