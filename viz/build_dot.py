"""A styled Graphviz DOT picture of a graph (what ``lazyfuse viz`` lays out).

- one box per op: op name, module path and class, key attributes, parameter shapes;
- edges carry the value type (``f32[N,256]``); lazy dims resolved by inference are marked ``256*``
  when the traced graph is given;
- a fused node becomes a cluster around the original ops it replaced (reconstructed from its
  op's ``parts`` and ``modules`` attr; dashed edges inside are values that never reach memory);
- nodes are grouped in clusters by the parent module path (``layers`` for ``layers.0``);
- colours by op kind, a legend, and every node's full IR line as its tooltip.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lazyfuse.ir.dot import DotStyle, Drawn, quote
from lazyfuse.ir.dot import graph_to_dot as ir_graph_to_dot
from lazyfuse.ir.fused_ops import part_attrs, split_operands
from lazyfuse.ir.graph import STATE_OPS, Graph, Node
from lazyfuse.ir.ops import OPS
from lazyfuse.ir.types import TensorType

from .dot_style import CATEGORIES, FUSED, SVG_FONTS, Fonts, attr_summary, category_of
from .marks import NO_MARKS, Marks, format_type, fused_parts, lazy_marks

__all__ = ["graph_to_dot", "dot_quote", "VizStyle"]


dot_quote = quote  # the one DOT quoting, :func:`lazyfuse.ir.dot.quote`


def _h(s: Any) -> str:
    """Escape text for a Graphviz HTML-like label."""
    return html.escape(str(s), quote=True)


@dataclass
class _Box:
    """One drawn op: a graph node or one part of a fused node."""

    id: str
    op: str
    attrs: dict[str, Any]
    module: str | None
    module_type: str | None
    name: str
    state: list[Node]
    tooltip: str
    marks: Marks = NO_MARKS


class VizStyle(DotStyle):
    """The styled picture as a :class:`lazyfuse.ir.dot.DotStyle` (the walk is :func:`ir_graph_to_dot`)."""

    def __init__(self, graph: Graph, marks: dict[str, Marks], title: str | None, show_legend: bool,
                 fonts: Fonts = SVG_FONTS) -> None:
        self.g = graph
        self.fonts = fonts
        self.marks = marks
        self.title = title
        self.show_legend = show_legend
        self.any_marks = bool(marks)
        self.symbolic = bool(graph.symbols)

    # ---------------------------------------------------------------------------- labels
    def _type(self, node: Node) -> str:
        return format_type(node.type, self.marks.get(node.name, NO_MARKS).dims)

    def _state_rows(self, box: _Box) -> list[str]:
        groups: dict[str, list[str]] = {}
        for p in box.state:
            if p.type is not None and p.type.rank == 0 and p.type.dtype.short == "i64":
                continue  # num_batches_tracked: in the tooltip, not worth a line
            target = p.attrs.get("target", p.name)
            short = target[len(box.module) + 1:] if box.module and target.startswith(box.module + ".") \
                else target
            groups.setdefault(self._type(p), []).append(short)
        return [f"{', '.join(names)} {t}" for t, names in groups.items()]

    def _box_label(self, box: _Box) -> str:
        cat = category_of(box.op)
        border = CATEGORIES[cat].border
        who = box.module if box.module else f"%{box.name}"
        if box.module_type:
            who += f" : {box.module_type}"
        rows = [f'<tr><td align="left"><b>{_h(box.op)}</b>  '
                f'<font color="{border}">{_h(who)}</font></td></tr>']
        summary = attr_summary(box.op, box.attrs, box.marks.attrs)
        if summary:
            rows.append(f'<tr><td align="left"><font point-size="10">{_h(summary)}</font></td></tr>')
        for r in self._state_rows(box):
            rows.append(f'<tr><td align="left"><font point-size="9" color="#475569" face="{self.fonts.mono}">'
                        f'{_h(r)}</font></td></tr>')
        return _table(rows)

    def _box_line(self, box: _Box) -> str:
        st = CATEGORIES[category_of(box.op)]
        return (f'{box.id} [label={self._box_label(box)}, fillcolor="{st.fill}", color="{st.border}", '
                f"tooltip={dot_quote(box.tooltip)}];")

    # ---------------------------------------------------------------------------- nodes
    def draw(self, node: Node, new_id: Callable[[], str]) -> Drawn | None:
        if node.op in STATE_OPS:
            return None  # drawn as rows of the op that uses them
        if node.op == "input":
            ident = new_id()
            label = _table([f'<tr><td><b>input</b> {_h("%" + node.name)}</td></tr>',
                            f'<tr><td><font point-size="10" face="{self.fonts.mono}">'
                            f"{_h(self._type(node))}</font></td></tr>"])
            st = CATEGORIES["io"]
            line = (f'{ident} [label={label}, fillcolor="{st.fill}", color="{st.border}", '
                    f'shape=box, style="rounded,filled,bold", '
                    f"tooltip={dot_quote(f'%{node.name}: {node.type} (graph input)')}];")
            return Drawn([line], [], ident)
        if node.op == "output":
            ident = new_id()
            st = CATEGORIES["io"]
            line = (f'{ident} [label=<<b>return</b>>, fillcolor="{st.fill}", color="{st.border}", '
                    f'style="rounded,filled,bold", tooltip={dot_quote(node.format())}];')
            return Drawn([line], [ident] * len(node.inputs), None)
        parts = fused_parts(node)
        if parts is None:
            return self._draw_plain(node, new_id)
        return self._draw_fused(node, parts, new_id)

    def _draw_plain(self, node: Node, new_id: Callable[[], str]) -> Drawn:
        box = _Box(new_id(), node.op, node.attrs, node.module, node.module_type, node.name,
                   [i for i in node.inputs if i.op in STATE_OPS], node.format(),
                   self.marks.get(node.name, NO_MARKS))
        return Drawn([self._box_line(box)], [box.id] * len(node.inputs), box.id, _parent_path(node.module))

    def _draw_fused(self, node: Node, parts: tuple[str, ...], new_id: Callable[[], str]) -> Drawn:
        modules = list(node.attrs.get("modules", ())) + [""] * len(parts)
        try:
            spans = split_operands(parts, node.attrs, len(node.inputs))
        except Exception:  # a malformed fused node: draw it as a plain box
            return self._draw_plain(node, new_id)
        marks = self.marks.get(node.name, NO_MARKS)
        types = _part_types(parts, node, spans)
        classes = (node.module_type or "").split("+")
        classes = classes if len(classes) == len(parts) else [""] * len(parts)
        ids: list[str] = []
        entries: list[str] = []
        lines: list[str] = []
        for k, (op, (a, b)) in enumerate(zip(parts, spans)):
            attrs = part_attrs(op, node.attrs)
            module = modules[k] or None
            # A part that was a function call carries its op name as its "class" (fuse joins
            # ``module_type or op``): like an unfused function call it shows only where it ran.
            cls = classes[k] if classes[k] and classes[k] != op else None
            box = _Box(new_id(), op, attrs, module, cls,
                       f"{node.name}[{k}]", [i for i in node.inputs[a:b] if i.op in STATE_OPS],
                       f"{op} inside fused %{node.name} (module {module or '-'})\n{node.format()}",
                       Marks(frozenset(), frozenset(k2 for k2 in marks.attrs if k2 in attrs)))
            lines.append("  " + self._box_line(box))
            ids.append(box.id)
            entries += [box.id] * (b - a)
        for k in range(1, len(ids)):
            t = types[k - 1]
            label = "" if t is None else f", label={dot_quote(' ' + format_type(t))}"
            lines.append(f'  {ids[k - 1]} -> {ids[k]} [style=dashed, color="{FUSED.border}"{label}];')
        # The fused op's name sits in a badge beside the first part, where no edge crosses it.
        badge = new_id()
        label = _table([f"<tr><td><b>{_h(node.op)}</b></td></tr>",
                        f'<tr><td><font face="{self.fonts.mono}" point-size="10">{_h("%" + node.name)}</font>'
                        "</td></tr>",
                        f'<tr><td><font point-size="9" color="{FUSED.border}">one kernel, {len(parts)} ops'
                        "</font></td></tr>"])
        lines.append(f"  {badge} [shape=plain, style=solid, label={label}, "
                     f"tooltip={dot_quote(node.format())}];")
        lines.append(f"  {{rank=same; {badge}; {ids[0]};}}")
        lines.append(f"  {badge} -> {ids[0]} [style=invis];")
        head = [f"subgraph cluster_{ids[0]} {{",
                f'  label=""; style="rounded,filled,bold"; fillcolor="{FUSED.fill}"; '
                f'color="{FUSED.border}"; penwidth=1.6; tooltip={dot_quote(node.format())};']
        common = _common_module([m for m in modules[:len(parts)] if m])
        return Drawn(head + lines + ["}"], entries, ids[-1], _parent_path(common))

    # ---------------------------------------------------------------------------- clusters / edges / legend
    def cluster_name(self, path: tuple[str, ...], index: int) -> str:
        return dot_quote("cluster_m_" + ".".join(path))

    def cluster_attrs(self, path: tuple[str, ...]) -> str:
        return (f'label={dot_quote(".".join(path))}; style="rounded,dashed"; color="#94a3b8"; '
                f'fontcolor="#475569"; fontsize=10; fontname="{self.fonts.sans}";')

    def edge_label(self, src: Node, dst: Node, pos: int) -> str | None:
        return " " + self._type(src)

    def defaults(self, graph: Graph) -> list[str]:
        sans, mono = self.fonts.sans, self.fonts.mono
        return [f'graph [rankdir=TB, nodesep=0.35, ranksep=0.4, pad=0.25, fontname="{sans}", '
                f'fontsize=13, labelloc=t, labeljust=l, bgcolor="white"'
                + (f", label={dot_quote(self.title)}" if self.title else "") + "];",
                f'node [shape=box, style="rounded,filled", fontname="{sans}", fontsize=11, penwidth=1.3, '
                'margin="0.14,0.06"];',
                f'edge [fontname="{mono}", fontsize=9, color="#64748b", fontcolor="#334155", '
                'arrowsize=0.7];']

    def trailer(self, graph: Graph) -> list[str]:
        return self.legend() if self.show_legend else []

    def legend(self) -> list[str]:
        plain = [n for n in self.g.nodes if n.op not in STATE_OPS and fused_parts(n) is None]
        present = {category_of(n.op) for n in plain}
        present |= {category_of(op) for n in self.g.nodes for op in (fused_parts(n) or ())}
        rows = []
        for cat, st in CATEGORIES.items():
            if cat in present:
                rows.append(f'<tr><td width="18" bgcolor="{st.fill}" border="1" color="{st.border}"> </td>'
                            f'<td align="left">{_h(st.legend)}</td></tr>')
        if any(fused_parts(n) for n in self.g.nodes):
            rows.append(f'<tr><td width="18" bgcolor="{FUSED.fill}" border="1" color="{FUSED.border}"> </td>'
                        f'<td align="left">{_h(FUSED.legend)}</td></tr>')
        notes = [("f32[N,256]", "edge: the value's type")]
        if self.symbolic:
            notes.append((", ".join(self.g.symbols), "symbolic dims (from the input spec)"))
        if any(n.type is not None and not n.type.is_resolved for n in self.g.nodes):
            notes.append(("?", "lazy dim, not resolved yet"))
        if self.any_marks:
            notes.append(("256*", "lazy after tracing, resolved by shape inference"))
        mono = self.fonts.mono
        for sym, text in notes:
            rows.append(f'<tr><td align="right"><font face="{mono}" point-size="9">{_h(sym)}</font></td>'
                        f'<td align="left">{_h(text)}</td></tr>')
        table = ('<<table border="0" cellborder="0" cellspacing="3" cellpadding="2">'
                 '<tr><td colspan="2" align="left"><b>legend</b></td></tr>' + "".join(rows) + "</table>>")
        return [f'legend [shape=box, style="rounded,filled", fillcolor="#ffffff", color="#cbd5e1", '
                f'fontsize=10, label={table}, tooltip="legend"];']


def _table(rows: list[str]) -> str:
    """An HTML-like label of ``rows`` (``<tr>`` s): rows keep a little air between lines of text,
    where ``<br/>`` lines would let one line's descenders touch the next line's capitals."""
    return '<<table border="0" cellborder="0" cellspacing="0" cellpadding="1">' + "".join(rows) + "</table>>"


def _parent_path(module: str | None) -> tuple[str, ...]:
    """The nested cluster a box of ``module`` sits in: its parent path (``layers`` for ``layers.0``)."""
    if not module or "." not in module:
        return ()
    return tuple(module.split(".")[:-1])


def _common_module(modules: list[str]) -> str | None:
    """The deepest module path that holds all of ``modules`` as (grand)children, plus a leaf."""
    if not modules:
        return None
    parents = [m.split(".")[:-1] for m in modules]
    common: list[str] = []
    for segs in zip(*parents):
        if len(set(segs)) != 1:
            break
        common.append(segs[0])
    return ".".join(common + ["_"]) if common else None


def _part_types(parts: tuple[str, ...], node: Node, spans: list[tuple[int, int]]) -> list[TensorType | None]:
    """The value type after each part of a fused node (``None`` where a rule cannot say)."""
    out: list[TensorType | None] = []
    prev: TensorType | None = None
    for k, (op, (a, b)) in enumerate(zip(parts, spans)):
        operands = [i.type for i in node.inputs[a:b]]
        if k:
            operands = [prev, *operands]
        try:
            prev = OPS[op].shape_rule(part_attrs(op, node.attrs), operands).out
        except Exception:
            prev = None
        out.append(prev)
        if prev is None:
            break
    return out + [None] * (len(parts) - len(out))


def graph_to_dot(graph: Graph, traced: Graph | None = None, title: str | None = None,
                 legend: bool = True, fonts: Fonts = SVG_FONTS) -> str:
    """DOT text for ``graph``; with ``traced`` (the graph as traced), resolved lazy dims get a ``*``.

    ``fonts``: what the text is laid out with (:data:`~lazyfuse.viz.dot_style.SVG_FONTS`, the
    default, for an SVG; :data:`~lazyfuse.viz.dot_style.PNG_FONTS` for a PNG that Graphviz draws).
    """
    marks = lazy_marks(traced, graph) if traced is not None else {}
    return ir_graph_to_dot(graph, VizStyle(graph, marks, title, legend, fonts))
