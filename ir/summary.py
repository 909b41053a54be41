"""``Graph.summary()``: a per-module table (module path, type, output type, parameter count)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .graph import SOURCE_OPS

if TYPE_CHECKING:
    from .graph import Graph, Node


def _count(nodes: list[Node]) -> int | None:
    """Total elements of these param nodes, ``None`` if any is lazy (not concrete)."""
    total = 0
    for p in nodes:
        if p.type is None or not p.type.is_concrete:
            return None
        total += int(p.type.numel())  # type: ignore[arg-type]
    return total


def _fmt(n: int | None) -> str:
    return "?" if n is None else f"{n:,}"


def graph_summary(graph: Graph) -> str:
    rows = [("Module", "Type", "Output", "Params")]
    for node in graph.nodes:
        if node.module is None or node.op in SOURCE_OPS or node.op == "output":
            continue
        params = [i for i in dict.fromkeys(node.inputs) if i.op == "param"]
        rows.append((node.module or "(root)", node.module_type or node.op,
                     "?" if node.type is None else str(node.type), _fmt(_count(params))))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]

    def line(r: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))

    ins = ", ".join(f"%{n.name}: {n.type}" for n in graph.inputs)
    out = [f"Graph @{graph.name}({ins})", line(rows[0]), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in rows[1:]]
    out.append("  ".join("-" * w for w in widths))
    params = [p for p in graph.params() if p.op == "param"]
    total = _count(params)
    if total is None:
        known = _count([p for p in params if p.type is not None and p.type.is_concrete])
        out.append(f"Total params: ? ({_fmt(known)} known; lazy parameters are not resolved yet)")
    else:
        out.append(f"Total params: {_fmt(total)}")
    return "\n".join(out)
