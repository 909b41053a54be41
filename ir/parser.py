"""Parse the text IR written by :mod:`lazyfuse.ir.printer` back into a :class:`Graph`.

Errors raise :class:`IRParseError` with ``line L:C`` and a caret under the offending column.
Blank lines and lines starting with ``//`` are ignored.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from lazyfuse.errors import IRParseError

from .graph import Graph, Loc, Node
from .types import DTYPES, UNKNOWN, Dim, Sym, TensorType, dim_mul

_T = TypeVar("_T")

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<comment>\#.*)
  | (?P<arrow>->)
  | (?P<none_type><none>)
  | (?P<num>-?(?:inf\b|nan\b|\d+\.\d*(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|\d+))
  | (?P<ref>[%@](?:"(?:[^"\\]|\\.)*"|[A-Za-z0-9_.]+))
  | (?P<str>"(?:[^"\\]|\\.)*")
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>[\[\](){},:=*?])
""", re.VERBOSE)


@dataclass
class Tok:
    kind: str
    text: str
    col: int  # 1-based


class _Line:
    """Tokens of one line with a cursor and error helpers."""

    def __init__(self, text: str, lineno: int) -> None:
        self.text, self.lineno = text, lineno
        self.toks: list[Tok] = []
        self.comment: Tok | None = None
        pos = 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None:
                raise self.error(pos + 1, f"unexpected character {text[pos]!r}")
            kind = m.lastgroup or ""
            if kind == "comment":
                self.comment = Tok(kind, m.group()[1:], pos + 2)
            elif kind != "ws":
                self.toks.append(Tok(kind, m.group(), pos + 1))
            pos = m.end()
        self.i = 0

    def error(self, col: int, msg: str) -> IRParseError:
        return IRParseError(f"line {self.lineno}:{col}: {msg}\n  {self.text}\n  {' ' * (col - 1)}^")

    def peek(self) -> Tok | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def next(self, what: str) -> Tok:
        t = self.peek()
        if t is None:
            raise self.error(len(self.text) + 1, f"expected {what}, got end of line")
        self.i += 1
        return t

    def expect(self, text: str) -> Tok:
        t = self.next(repr(text))
        if t.text != text:
            raise self.error(t.col, f"expected {text!r}, got {t.text!r}")
        return t

    def accept(self, text: str) -> bool:
        t = self.peek()
        if t is not None and t.text == text and t.kind != "str":
            self.i += 1
            return True
        return False

    def items(self, close: str, item: Callable[[], _T], *, empty: bool = True,
              trailing: bool = False) -> list[_T]:
        """``item, item, ... close`` after the opening bracket: one ``item()`` per element.  ``empty``
        allows ``close`` right away, ``trailing`` a comma before it (one-element tuples ``(x,)``)."""
        out: list[_T] = []
        if empty and self.accept(close):
            return out
        while True:
            out.append(item())
            if self.accept(close):
                return out
            self.expect(",")
            if trailing and self.accept(close):
                return out

    def at_end(self) -> None:
        t = self.peek()
        if t is not None:
            raise self.error(t.col, f"unexpected {t.text!r}")

    def error_here(self, msg: str) -> IRParseError:
        t = self.peek()
        return self.error(t.col if t else len(self.text) + 1, msg)


def _name_of(tok: Tok) -> str:
    body = tok.text[1:]
    return json.loads(body) if body.startswith('"') else body


# ---------------------------------------------------------------------------------------- pieces
def _parse_dim_expr(ln: _Line, first: Tok, what: str = "a dim") -> Any:
    """A dim or number starting at ``first``: ``?``, ``784``, ``N``, ``3*L``, ``0.1``."""
    if first.text == "?":
        return UNKNOWN
    if first.kind == "num":
        if not re.fullmatch(r"-?\d+", first.text):
            return float(first.text)
        value: Dim = int(first.text)
    elif first.kind == "ident":
        value = Sym(first.text)
    else:
        raise ln.error(first.col, f"expected {what}, got {first.text!r}")
    while ln.accept("*"):
        t = ln.next("a dim factor")
        if t.kind == "num" and re.fullmatch(r"\d+", t.text):
            value = dim_mul(value, int(t.text))
        elif t.kind == "ident":
            value = dim_mul(value, Sym(t.text))
        else:
            raise ln.error(t.col, f"expected an int or symbol after '*', got {t.text!r}")
    return value


def _parse_type(ln: _Line) -> TensorType | None:
    t = ln.next("a type like f32[N,784]")
    if t.kind == "none_type":
        return None
    if t.kind != "ident" or t.text not in DTYPES:
        raise ln.error(t.col, f"expected a dtype (f32, f64, i64), got {t.text!r}")
    ln.expect("[")

    def dim() -> Any:
        d = ln.next("a dim")
        value = _parse_dim_expr(ln, d)
        if isinstance(value, float):
            raise ln.error(d.col, f"a dim must be an int, symbol or '?', got {d.text!r}")
        return value

    return TensorType(DTYPES[t.text], ln.items("]", dim))


def _parse_value(ln: _Line) -> Any:
    t = ln.next("an attribute value")
    if t.kind == "str":
        return json.loads(t.text)
    if t.kind == "ident" and t.text in ("true", "false", "none"):
        return {"true": True, "false": False, "none": None}[t.text]
    if t.text == "(":
        return tuple(ln.items(")", lambda: _parse_value(ln), trailing=True))
    return _parse_dim_expr(ln, t, "an attribute value")


def _parse_attrs(ln: _Line) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    if not ln.accept("["):
        return attrs

    def attr() -> None:
        k = ln.next("an attribute name")
        if k.kind != "ident":
            raise ln.error(k.col, f"expected an attribute name, got {k.text!r}")
        if k.text in attrs:
            raise ln.error(k.col, f"duplicate attribute {k.text!r}")
        ln.expect("=")
        attrs[k.text] = _parse_value(ln)

    ln.items("]", attr)
    return attrs


def _split_comment_part(text: str, pos: int) -> tuple[str | None, bool, int]:
    """Read a quoted or bare (up to space or ':') piece; returns (text, was_quoted, new_pos)."""
    if pos < len(text) and text[pos] == '"':
        value, end = json.JSONDecoder().raw_decode(text, pos)
        return value, True, end
    m = re.compile(r"[^\s:]*").match(text, pos)
    assert m is not None
    return m.group(), False, m.end()


def _parse_comment(ln: _Line) -> tuple[Loc | None, str | None, str | None]:
    loc = module = module_type = None
    if ln.comment is None:
        return loc, module, module_type
    text, base = ln.comment.text, ln.comment.col
    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            break
        start = pos
        try:
            first, q1, pos = _split_comment_part(text, pos)
            second, q2 = None, False
            if pos < len(text) and text[pos] == ":":
                second, q2, pos = _split_comment_part(text, pos + 1)
        except json.JSONDecodeError:
            raise ln.error(base + start, "bad quoted name in comment") from None
        if pos < len(text) and not text[pos].isspace():
            raise ln.error(base + pos, f"unexpected {text[pos]!r} in location comment")
        if second is not None and not q2 and second.isdigit() and first:
            if loc is not None:
                raise ln.error(base + start, "two source locations in one comment")
            loc = Loc(first, int(second))
        else:
            if module is not None or module_type is not None:
                raise ln.error(base + start, "two module entries in one comment")
            module = first if (first or q1) else None
            module_type = second if (second or q2) else None
    return loc, module, module_type


# ---------------------------------------------------------------------------------------- graph
def _add(graph: Graph, ln: _Line, tok: Tok, node: Node) -> Node:
    if node.name in graph._names:
        raise ln.error(tok.col, f"redefinition of {tok.text}")
    graph.nodes.append(node)
    graph._names[node.name] = node
    return node


def _parse_refs(ln: _Line, graph: Graph) -> list[Node]:
    ln.expect("(")

    def ref() -> Node:
        t = ln.next("an operand like %x or @fc1.weight")
        if t.kind != "ref":
            raise ln.error(t.col, f"expected an operand like %x or @fc1.weight, got {t.text!r}")
        node = graph._names.get(_name_of(t))
        if node is None or (t.text[0] == "@") != (node.op in ("param", "buffer")):
            raise ln.error(t.col, f"use of undefined value {t.text}")
        if node.op == "output":
            raise ln.error(t.col, f"{t.text} is the output node and cannot be an operand")
        return node

    return ln.items(")", ref)


def _parse_header(ln: _Line) -> tuple[Graph, list[TensorType | None]]:
    t = ln.next("'graph'")
    if t.text != "graph":
        raise ln.error(t.col, f"expected 'graph', got {t.text!r}")
    t = ln.next("the graph name like @mlp")
    if t.kind != "ref" or t.text[0] != "@":
        raise ln.error(t.col, f"expected the graph name like @mlp, got {t.text!r}")
    symbols: list[str] = []

    def symbol() -> None:
        s = ln.next("a symbol name")
        if s.kind != "ident":
            raise ln.error(s.col, f"expected a symbol name, got {s.text!r}")
        if s.text in symbols:
            raise ln.error(s.col, f"symbol {s.text} declared twice")
        symbols.append(s.text)

    if ln.accept("["):
        ln.items("]", symbol, empty=False)
    graph = Graph(_name_of(t), symbols)

    def graph_input() -> None:
        r = ln.next("an input like %x: f32[N,784]")
        if r.kind != "ref" or r.text[0] != "%":
            raise ln.error(r.col, f"expected an input like %x, got {r.text!r}")
        ln.expect(":")
        ty = _parse_type(ln)
        _add(graph, ln, r, Node(graph, _name_of(r), "input", (), {"index": len(graph.nodes)}, ty))

    ln.expect("(")
    ln.items(")", graph_input)
    ln.expect("->")
    ln.expect("(")
    out_types: list[TensorType | None] = ln.items(")", lambda: _parse_type(ln))
    ln.expect("{")
    ln.at_end()
    if ln.comment is not None:
        raise ln.error(ln.comment.col - 1, "unexpected comment on the graph header")
    return graph, out_types


def _parse_body_line(ln: _Line, graph: Graph) -> None:
    first = ln.next("a node definition or 'return'")
    if first.kind == "ident" and first.text == "return":
        if graph.output is not None:
            raise ln.error(first.col, "a second 'return'")
        results = _parse_refs(ln, graph)
        ln.at_end()
        out = Node(graph, graph._unique_name("output"), "output", results, {}, None)
        graph.nodes.append(out)
        graph._names[out.name] = out
        return
    if graph.output is not None:
        raise ln.error(first.col, "node defined after 'return'")
    if first.kind != "ref":
        raise ln.error(first.col, f"expected a value name like %x or @fc1.weight, got {first.text!r}")
    ln.expect(":")
    ty = _parse_type(ln)
    ln.expect("=")
    op_tok = ln.next("an op name")
    if op_tok.kind == "str":
        op = json.loads(op_tok.text)
    elif op_tok.kind == "ident":
        op = op_tok.text
    else:
        raise ln.error(op_tok.col, f"expected an op name, got {op_tok.text!r}")
    if op in ("input", "output"):
        raise ln.error(op_tok.col, f"{op!r} nodes belong in the header / return line")
    is_state = op in ("param", "buffer")
    if is_state != (first.text[0] == "@"):
        raise ln.error(first.col, "params and buffers are named @target; other values %name")
    attrs = _parse_attrs(ln)
    t = ln.peek()
    inputs = _parse_refs(ln, graph) if (t is not None and t.text == "(") or not is_state else []
    ln.at_end()
    name = _name_of(first)
    if is_state:
        if "target" in attrs:
            raise ln.error(first.col, "the target of a param/buffer is its name, not an attribute")
        attrs = {"target": name, **attrs}
    loc, module, module_type = _parse_comment(ln)
    _add(graph, ln, first, Node(graph, name, op, inputs, attrs, ty, loc, module, module_type))


def parse_graph(text: str) -> Graph:
    """Parse one graph in the text format; raises :class:`IRParseError` with line:col."""
    lines = [(i + 1, line) for i, line in enumerate(text.splitlines())
             if line.strip() and not line.lstrip().startswith("//")]
    if not lines:
        raise IRParseError("line 1:1: empty input, expected 'graph @name(...) -> (...) {'")
    graph, out_types = _parse_header(_Line(lines[0][1], lines[0][0]))
    closed = None
    for lineno, line in lines[1:]:
        if closed is not None:
            raise _Line(line, lineno).error(1, "text after the closing '}'")
        if line.strip() == "}":
            closed = lineno
            continue
        _parse_body_line(_Line(line, lineno), graph)
    if closed is None:
        last = lines[-1]
        raise _Line(last[1], last[0]).error(len(last[1]) + 1, "missing closing '}'")
    got = [str(t) if t is not None else "<none>" for t in graph.output_types]
    want = [str(t) if t is not None else "<none>" for t in out_types]
    if got != want:
        header = _Line(lines[0][1], lines[0][0])
        raise header.error(lines[0][1].find("->") + 1, f"header declares results ({', '.join(want)}) "
                           f"but 'return' gives ({', '.join(got)})")
    return graph
