"""The text form of a graph (see docs/contracts.md); :mod:`lazyfuse.ir.parser` reads it back.

```
graph @mlp[N](%x: f32[N,784]) -> (f32[N,10]) {
  @fc1.weight: f32[256,784] = param
  %fc1: f32[N,256] = linear[bias=true, ...](%x, @fc1.weight, @fc1.bias)  # mlp.py:13 fc1:Linear
  return (%fc1)
}
```
Names that are not plain (``[A-Za-z0-9_.]+``) are printed as JSON strings: ``@"odd name"``.
"""

from __future__ import annotations

import json
import math
import re
from typing import TYPE_CHECKING, Any

import numpy as np

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


def format_type(t: TensorType | None) -> str:
    return "<none>" if t is None else str(t)


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
    raise TypeError(f"attribute value {v!r} of type {type(v).__name__} cannot be printed in the IR")


def format_attrs(attrs: dict[str, Any]) -> str:
    if not attrs:
        return ""
    return "[" + ", ".join(f"{k}={format_value(attrs[k])}" for k in sorted(attrs)) + "]"


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


def format_node(node: Node) -> str:
    if node.op == "output":
        return "return (" + ", ".join(n.ref for n in node.inputs) + ")"
    attrs = node.attrs
    if node.op in ("param", "buffer"):
        attrs = {k: v for k, v in attrs.items() if k != "target"}
        operands = "" if not node.inputs else "(" + ", ".join(n.ref for n in node.inputs) + ")"
    else:
        operands = "(" + ", ".join(n.ref for n in node.inputs) + ")"
    return (f"{node.ref}: {format_type(node.type)} = {quote_name(node.op, IDENT_RE)}"
            f"{format_attrs(attrs)}{operands}{format_comment(node)}")


def format_header(graph: Graph) -> str:
    syms = f"[{','.join(graph.symbols)}]" if graph.symbols else ""
    ins = ", ".join(f"{n.ref}: {format_type(n.type)}" for n in graph.inputs)
    outs = ", ".join(format_type(t) for t in graph.output_types)
    return f"graph @{quote_name(graph.name)}{syms}({ins}) -> ({outs}) {{"


def format_graph(graph: Graph) -> str:
    lines = [format_header(graph)]
    lines += ["  " + format_node(n) for n in graph.nodes if n.op != "input"]
    lines.append("}")
    return "\n".join(lines)
