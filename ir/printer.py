"""The text form of a graph (see docs/contracts.md); :mod:`lazyfuse.ir.parser` reads it back.

```
graph @mlp[N](%x: f32[N,784]) -> (f32[N,10]) {
  @fc1.weight: f32[256,784] = param
  %fc1: f32[N,256] = linear[bias=true, ...](%x, @fc1.weight, @fc1.bias)  # mlp.py:13 fc1:Linear
  return (%fc1)
}
```
Names that are not plain (``[A-Za-z0-9_.]+``) are printed as JSON strings: ``@"odd name"``.

An :class:`Annotator` passed to :func:`format_graph` / :func:`format_node` marks chosen type dims
and attribute values (``f32[N,256*]``, ``num_features=256*``); the default marks nothing, so the
output is ``str(graph)``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

import numpy as np

from lazyfuse.errors import IRTypeError

from .types import Sym, TensorType, _Unknown

if TYPE_CHECKING:
    from .graph import Graph, Node

NAME_RE = re.compile(r"[A-Za-z0-9_.]+\Z")
IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
FILE_RE = re.compile(r"[A-Za-z0-9_./+\-]+\Z")


def quote_name(name: str, pattern: re.Pattern[str] = NAME_RE) -> str:
    return name if pattern.match(name) else json.dumps(name)


def format_ref(node: Node) -> str:
    if node.op in ("param", "buffer"):
        return "@" + quote_name(node.name)
    return "%" + quote_name(node.name)


class Annotator:
    """The printer's annotation hook: which type dims and attrs of a node get ``mark`` appended.

    This base class marks nothing; subclasses override :meth:`dims` and :meth:`attrs`.
    """

    mark = "*"

    def dims(self, node: Node) -> Collection[int]:
        """Indices into ``node.type.shape`` to mark."""
        return ()

    def attrs(self, node: Node) -> Collection[str]:
        """Attribute names of ``node`` whose values to mark."""
        return ()


NO_ANNOTATIONS = Annotator()


def format_type(t: TensorType | None, dims: Collection[int] = (), mark: str = "*") -> str:
    """``f32[N,256]``; the dims whose index is in ``dims`` get ``mark`` appended (``f32[N,256*]``)."""
    if t is None:
        return "<none>"
    if not dims:
        return str(t)
    shape = (f"{d}{mark}" if i in dims else str(d) for i, d in enumerate(t.shape))
    return f"{t.dtype.short}[{','.join(shape)}]"


def format_value(v: Any) -> str:
    """One attribute value: ints, floats (repr), true/false, none, "strings", tuples, dims."""
    if v is None:
        return "none"
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if math.isnan(f):
            return "nan"
        if math.isinf(f):
            return "inf" if f > 0 else "-inf"
        return repr(f)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (Sym, _Unknown)):
        return str(v)
    if isinstance(v, (tuple, list)):
        items = [format_value(x) for x in v]
        return "(" + items[0] + ",)" if len(items) == 1 else "(" + ", ".join(items) + ")"
    raise IRTypeError(f"attribute value {v!r} of type {type(v).__name__} cannot be printed in the IR")


def format_attrs(attrs: dict[str, Any], marked: Collection[str] = (), mark: str = "*") -> str:
    """``[k=v, ...]`` sorted by key (empty without attrs); values of keys in ``marked`` get ``mark``."""
    if not attrs:
        return ""
    items = [f"{k}={format_value(attrs[k])}{mark if k in marked else ''}" for k in sorted(attrs)]
    return "[" + ", ".join(items) + "]"


def format_comment(node: Node) -> str:
    parts = []
    if node.loc is not None:
        parts.append(f"{quote_name(node.loc.file, FILE_RE)}:{node.loc.line}")
    if node.module is not None or node.module_type is not None:
        mod = "" if node.module is None else quote_name(node.module)
        typ = "" if node.module_type is None else ":" + quote_name(node.module_type, IDENT_RE)
        if node.module == "" and node.module_type is None:
            mod = '""'
        parts.append(mod + typ)
    return "  # " + " ".join(parts) if parts else ""


def _annotated_type(node: Node, annotate: Annotator) -> str:
    return format_type(node.type, annotate.dims(node), annotate.mark)


def format_node(node: Node, annotate: Annotator = NO_ANNOTATIONS) -> str:
    """One node's line (without indentation), as ``str(graph)`` prints it."""
    if node.op == "output":
        return "return (" + ", ".join(n.ref for n in node.inputs) + ")"
    attrs = node.attrs
    if node.op in ("param", "buffer"):
        attrs = {k: v for k, v in attrs.items() if k != "target"}
        operands = "" if not node.inputs else "(" + ", ".join(n.ref for n in node.inputs) + ")"
    else:
        operands = "(" + ", ".join(n.ref for n in node.inputs) + ")"
    return (f"{node.ref}: {_annotated_type(node, annotate)} = {quote_name(node.op, IDENT_RE)}"
            f"{format_attrs(attrs, annotate.attrs(node), annotate.mark)}{operands}{format_comment(node)}")


def format_header(graph: Graph, annotate: Annotator = NO_ANNOTATIONS) -> str:
    """``graph @name[syms](%x: type, ...) -> (types) {``; output types are the returned values'."""
    syms = f"[{','.join(graph.symbols)}]" if graph.symbols else ""
    ins = ", ".join(f"{n.ref}: {_annotated_type(n, annotate)}" for n in graph.inputs)
    out = graph.output
    outs = "" if out is None else ", ".join(_annotated_type(n, annotate) for n in out.inputs)
    return f"graph @{quote_name(graph.name)}{syms}({ins}) -> ({outs}) {{"


def format_graph(graph: Graph, annotate: Annotator = NO_ANNOTATIONS) -> str:
    """The whole text form (``str(graph)``), with ``annotate``'s marks if given."""
    lines = [format_header(graph, annotate)]
    lines += ["  " + format_node(n, annotate) for n in graph.nodes if n.op != "input"]
    lines.append("}")
    return "\n".join(lines)
