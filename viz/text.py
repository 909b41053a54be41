"""The text IR with lazy dims marked: ``f32[N,256*]`` where inference resolved a traced ``?``.

The lines are the printer's (:mod:`lazyfuse.ir.printer`) with marks added and a legend comment on
top; without marks the output equals ``str(graph)``.
"""

from __future__ import annotations

from lazyfuse.ir.graph import STATE_OPS, Graph, Node
from lazyfuse.ir.printer import IDENT_RE, format_comment, format_value, quote_name

from .marks import NO_MARKS, Marks, format_type

__all__ = ["LEGEND", "format_graph_marked"]

LEGEND = ("// dims: 784 declared, N symbolic (from --input), ? lazy (unresolved), "
          "256* lazy after tracing and resolved by shape inference")


def _attrs(node: Node, marks: Marks) -> str:
    attrs = {k: v for k, v in node.attrs.items() if not (node.op in STATE_OPS and k == "target")}
    if not attrs:
        return ""
    items = [f"{k}={format_value(attrs[k])}{'*' if k in marks.attrs else ''}" for k in sorted(attrs)]
    return "[" + ", ".join(items) + "]"


def _node_line(node: Node, marks: dict[str, Marks]) -> str:
    if node.op == "output":
        return "return (" + ", ".join(n.ref for n in node.inputs) + ")"
    m = marks.get(node.name, NO_MARKS)
    operands = "" if node.op in STATE_OPS and not node.inputs else \
        "(" + ", ".join(n.ref for n in node.inputs) + ")"
    return (f"{node.ref}: {format_type(node.type, m.dims)} = {quote_name(node.op, IDENT_RE)}"
            f"{_attrs(node, m)}{operands}{format_comment(node)}")


def format_graph_marked(graph: Graph, marks: dict[str, Marks], legend: bool = True) -> str:
    """``str(graph)`` with resolved lazy dims and attrs marked ``*`` and a legend comment."""
    syms = f"[{','.join(graph.symbols)}]" if graph.symbols else ""
    ins = ", ".join(f"{n.ref}: {n.type}" for n in graph.inputs)
    out = graph.output
    outs = "" if out is None else ", ".join(
        format_type(n.type, marks.get(n.name, NO_MARKS).dims) for n in out.inputs)
    lines = [LEGEND] if legend else []
    lines.append(f"graph @{quote_name(graph.name)}{syms}({ins}) -> ({outs}) {{")
    lines += ["  " + _node_line(n, marks) for n in graph.nodes if n.op != "input"]
    lines.append("}")
    return "\n".join(lines)
