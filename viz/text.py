"""The text IR with lazy dims marked: ``f32[N,256*]`` where inference resolved a traced ``?``.

The lines are the printer's (:mod:`lazyfuse.ir.printer`) through its annotation hook, with a legend
comment on top; without marks the output equals ``str(graph)``.
"""

from __future__ import annotations

from lazyfuse.ir.graph import Graph
from lazyfuse.ir.printer import format_graph

from .marks import MarkAnnotator, Marks

__all__ = ["LEGEND", "format_graph_marked"]

LEGEND = ("// dims: 784 declared, N symbolic (from --input), ? lazy (unresolved), "
          "256* lazy after tracing and resolved by shape inference")


def format_graph_marked(graph: Graph, marks: dict[str, Marks], legend: bool = True) -> str:
    """``str(graph)`` with resolved lazy dims and attrs marked ``*`` and a legend comment."""
    text = format_graph(graph, MarkAnnotator(marks))
    return f"{LEGEND}\n{text}" if legend else text
