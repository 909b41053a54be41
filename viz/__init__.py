"""lazyfuse.viz: pictures and annotated dumps of graphs (``lazyfuse viz`` / ``lazyfuse dump``).

``render_file(graph, "mlp.svg")`` writes ``.svg``, ``.png``, ``.dot`` or ``.html``; pass the traced
graph as ``traced=`` to mark the lazy dims that shape inference resolved (``256*``).

Fonts (see :mod:`lazyfuse.viz.dot_style`): an SVG (and the HTML page) is laid out with DejaVu Sans
metrics and declares ``DejaVu Sans`` first, then narrower fallbacks, so its text fits whichever of
them a viewer has; a PNG, whose text Graphviz draws itself, is laid out in Helvetica (graphviz-pure
draws it with its built-in Arimo, which has Helvetica's widths).  A ``.dot`` file is the SVG's source.
"""

from __future__ import annotations

from pathlib import Path

from lazyfuse.errors import LazyFuseError
from lazyfuse.ir.graph import Graph

from .build_dot import graph_to_dot
from .dot_style import PNG_FONTS, SVG_FONTS
from .html import svg_to_html
from .marks import lazy_marks
from .render import GraphvizError, GraphvizNotFoundError, find_dot, run_dot
from .text import format_graph_marked

__all__ = ["render_file", "render", "graph_to_dot", "format_graph_marked", "lazy_marks", "find_dot",
           "GraphvizError", "GraphvizNotFoundError", "OUTPUT_FORMATS"]

OUTPUT_FORMATS = ("svg", "png", "dot", "html")


def render(graph: Graph, fmt: str, traced: Graph | None = None, title: str | None = None) -> bytes:
    """The picture of ``graph`` as ``fmt`` (``svg``, ``png``, ``dot`` or ``html``) bytes."""
    if fmt not in OUTPUT_FORMATS:
        raise LazyFuseError(f"unsupported output format {fmt!r}; expected one of "
                            f"{', '.join('.' + f for f in OUTPUT_FORMATS)}")
    title = title if title is not None else f"@{graph.name}"
    if fmt == "png":
        return run_dot(graph_to_dot(graph, traced=traced, title=title, fonts=PNG_FONTS), "png")
    dot = graph_to_dot(graph, traced=traced, title=title, fonts=SVG_FONTS)
    if fmt == "dot":
        return dot.encode("utf-8")
    svg = SVG_FONTS.declare(run_dot(dot, "svg").decode("utf-8"))
    if fmt == "svg":
        return svg.encode("utf-8")
    marks = lazy_marks(traced, graph) if traced is not None else {}
    ir = format_graph_marked(graph, marks, legend=bool(marks))
    return svg_to_html(svg, title, ir, "hover a node for its IR line").encode("utf-8")


def render_file(graph: Graph, path: str | Path, traced: Graph | None = None,
                title: str | None = None) -> Path:
    """Write the picture of ``graph`` to ``path``; the format comes from the suffix. Returns the path."""
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in OUTPUT_FORMATS:
        raise LazyFuseError(f"cannot tell the picture format from {path.name!r}: use a .svg, .png, "
                            ".dot or .html file name")
    data = render(graph, fmt, traced=traced, title=title)
    path.write_bytes(data)
    return path
