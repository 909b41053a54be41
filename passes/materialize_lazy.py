"""``materialize_lazy``: allocate the lazy modules of ``graph.model`` with the inferred sizes.

Runs after ``infer_shapes``.  Modules are materialized in the order the graph first uses their
arrays (the order an eager first forward would), so the random draws match an eager run.  Every
size is checked before the first module is touched: on any error the model is left as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lazyfuse.errors import InferenceError
from lazyfuse.frontends import nn
from lazyfuse.ir.graph import Graph, Node

from .manager import PassContext, register_pass

# For each lazy class: the materialize() keyword and how to read it from (array name, resolved shape).
_SIZE_FROM: dict[type, tuple[str, dict[str, Callable[[tuple], Any]]]] = {
    nn.LazyLinear: ("in_features", {"weight": lambda s: s[1]}),
    nn.LazyBatchNorm1d: ("num_features", {n: (lambda s: s[0])
                                           for n in ("weight", "bias", "running_mean", "running_var")}),
}


def _lazy_class(module: Any) -> type | None:
    for cls in type(module).__mro__:
        if cls in _SIZE_FROM:
            return cls
    return None


def plan(graph: Graph, model: Any) -> list[tuple[str, Any, str, int]]:
    """``(path, module, keyword, size)`` for each lazy module the graph sizes, in first-use order."""
    found: dict[str, tuple[str, Any, str, int, Node]] = {}
    for node in graph.params():
        path, _, name = node.attrs["target"].rpartition(".")
        try:
            module = model.get_submodule(path)
        except AttributeError:
            raise InferenceError(f"{node.ref}: the model has no module '{path}' (was the graph traced "
                                 "from this model?)") from None
        cls = _lazy_class(module)
        if cls is None or not module.has_uninitialized_params():
            continue
        keyword, readers = _SIZE_FROM[cls]
        if name not in readers:
            continue
        size = readers[name](node.type.shape) if node.type is not None and node.type.rank else None
        _add(found, path, module, keyword, size, node, f"{node.ref}: {node.type}")
    # A lazy module without arrays (LazyBatchNorm1d(affine=False, track_running_stats=False)) takes
    # its size from its op's inferred attribute; it draws no random numbers, so order is free.
    for node in graph.nodes:
        if node.module is None or node.module in found or node.op in ("param", "buffer", "input"):
            continue
        try:
            module = model.get_submodule(node.module)
        except AttributeError:
            continue
        cls = _lazy_class(module)
        if cls is None:
            continue
        keyword = _SIZE_FROM[cls][0]
        _add(found, node.module, module, keyword, node.attrs.get(keyword), node, node.ref)
    return [entry[:4] for entry in found.values()]


def _add(found: dict, path: str, module: Any, keyword: str, size: Any, node: Node, source: str) -> None:
    """Record ``size`` (read from ``node``, described by ``source``) as ``module``'s ``keyword``."""
    if not isinstance(size, int) or size < 1:
        raise InferenceError(
            f"cannot materialize module '{path}' ({type(module).__name__}): {keyword} is {size}, "
            f"not a concrete size, after shape inference ({source}); run infer_shapes first"
        )
    prev = found.get(path)
    if prev is not None and prev[3] != size:
        raise InferenceError(f"module '{path}' ({type(module).__name__}): {keyword} resolved to both "
                             f"{prev[3]} ({prev[4].ref}) and {size} ({node.ref})")
    if prev is None:
        found[path] = (path, module, keyword, size, node)


@register_pass("materialize_lazy")
def materialize_lazy(graph: Graph, ctx: PassContext) -> Graph:
    """Materialize the graph model's lazy modules (a no-op without a model)."""
    model = ctx.model if ctx.model is not None else graph.model
    if model is None:
        return graph
    for _path, module, keyword, size in plan(graph, model):
        module.materialize(**{keyword: size})
    return graph
