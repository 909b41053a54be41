"""``Graph.summary()``: a per-module table (module path, type, output type, parameter count and,
for a module that is still lazy, the sizes shape inference resolved for it)."""

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


def _ancestors(path: str) -> list[str]:
    """``"a.b.c"`` -> ``["a", "a.b"]``: the containers around a module path, outermost first."""
    parts = path.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _modules(graph: Graph) -> dict[str, object]:
    """Module path -> module, from the model the graph was traced from (if it is still there)."""
    named = getattr(graph.model, "named_modules", None)
    try:
        return dict(named()) if callable(named) else {}
    except Exception:  # a model that cannot list its modules: rows say only what the graph knows
        return {}


def _lazy_sizes(node: Node, module: object, model: object) -> str:
    """``in_features=50176`` for a module that is still lazy: the attrs of ``node`` named like the
    sizes its class declares lazy (``lazy_dims``; a frontend's model view may say it for modules
    that do not: ``lazy_dims_of``), as shape inference resolved them."""
    dims = getattr(module, "lazy_dims", None)
    if not dims:
        of = getattr(type(model), "lazy_dims_of", None)
        dims = of(model, module) if of is not None else ()
    return "  ".join(f"{d}={node.attrs[d]}" for d in dims if d in node.attrs)


def graph_summary(graph: Graph) -> str:
    """One row per module call (``path:Type`` nodes) and, before its first child, one per container
    (a module whose own forward was traced), with the type of the last value computed inside it and
    the parameters of everything below it.  Functions called inside a forward count for their
    container's output but get no row of their own."""
    nodes = [n for n in graph.nodes
             if n.module is not None and n.op not in SOURCE_OPS and n.op != "output"]
    last: dict[str, Node] = {}  # per container: the last node computed inside it
    for node in nodes:
        scopes = _ancestors(node.module) + ([node.module] if node.module_type is None else [])
        for scope in scopes:
            last[scope] = node
    modules = _modules(graph)
    params = [p for p in graph.params() if p.op == "param"]
    rows, seen = [("Module", "Type", "Output", "Params", "Lazy sizes")], set()
    for node in nodes:
        scopes = _ancestors(node.module) + ([node.module] if node.module_type is None else [])
        for scope in scopes:
            if scope and scope not in seen:
                seen.add(scope)
                inside = [p for p in params if p.attrs["target"].startswith(scope + ".")]
                out = last[scope].type
                cls = type(modules[scope]).__name__ if scope in modules else ""
                rows.append((scope, cls, "?" if out is None else str(out), _fmt(_count(inside)), ""))
        if node.module_type is not None:
            own = [i for i in dict.fromkeys(node.inputs) if i.op == "param"]
            rows.append((node.module or "(root)", node.module_type,
                         "?" if node.type is None else str(node.type), _fmt(_count(own)),
                         _lazy_sizes(node, modules.get(node.module or ""), graph.model)))
    if not any(r[4] for r in rows[1:]):  # nothing lazy: no column
        rows = [r[:4] for r in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]

    def line(r: tuple[str, ...]) -> str:
        cells = [c.rjust(w) if i == 3 else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))]
        return "  ".join(cells).rstrip()

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
