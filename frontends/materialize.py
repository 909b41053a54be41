"""Static materialization: allocate a model's lazy modules with the sizes shape inference found.

Runs on a graph after the ``infer_shapes`` pass.  Each lazy class declares where its sizes live
(``LazyModuleMixin.lazy_dims``: size -> {array: axis}), so a size is read from the inferred type of
one of its arrays, or, for a module without arrays (``LazyBatchNorm1d(affine=False,
track_running_stats=False)``), from its op's inferred attribute of the same name.  Modules are
materialized in the order the graph first uses their arrays (the order an eager first forward
would), so the random draws match an eager run.  Every size is checked before the first module is
touched: on any error the model is left as it was.
"""

from __future__ import annotations

from typing import Any

from lazyfuse.errors import InferenceError
from lazyfuse.frontends.nn import LazyModuleMixin, Module
from lazyfuse.ir.graph import Graph, Node

__all__ = ["plan", "materialize_lazy"]

_STATE_OPS = ("param", "buffer", "input")


class _Plan:
    """The sizes found so far, per module path, in first-use order."""

    def __init__(self) -> None:
        self.modules: dict[str, Any] = {}
        self.sizes: dict[str, dict[str, tuple[int, Node]]] = {}

    def add(self, path: str, module: Any, dim: str, size: Any, node: Node, source: str) -> None:
        """Record ``size`` (read from ``node``, described by ``source``) as ``module``'s ``dim``."""
        if not isinstance(size, int) or size < 1:
            raise InferenceError(
                f"cannot materialize module '{path}' ({type(module).__name__}): {dim} is {size}, "
                f"not a concrete size, after shape inference ({source}); run infer_shapes first"
            )
        sizes = self.sizes.setdefault(path, {})
        self.modules[path] = module
        prev = sizes.get(dim)
        if prev is not None and prev[0] != size:
            raise InferenceError(f"module '{path}' ({type(module).__name__}): {dim} resolved to both "
                                 f"{prev[0]} ({prev[1].ref}) and {size} ({node.ref})")
        if prev is None:
            sizes[dim] = (size, node)


def _lazy_submodule(model: Module, path: str) -> Any:
    module = model.get_submodule(path)
    return module if isinstance(module, LazyModuleMixin) else None


def plan(graph: Graph, model: Module) -> list[tuple[str, Any, dict[str, int]]]:
    """``(path, module, sizes)`` for each lazy module the graph sizes, in first-use order."""
    found = _Plan()
    for node in graph.params():
        path, _, name = node.attrs["target"].rpartition(".")
        try:
            module = _lazy_submodule(model, path)
        except AttributeError:
            raise InferenceError(f"{node.ref}: the model has no module '{path}' (was the graph traced "
                                 "from this model?)") from None
        if module is None or not module.has_uninitialized_params():
            continue
        shape = node.type.shape if node.type is not None else ()
        for dim, size in module.dims_from_shapes(name, shape).items():
            found.add(path, module, dim, size, node, f"{node.ref}: {node.type}")
    # A size no array holds comes from the op's inferred attribute; such a module draws no random
    # numbers, so its place in the order does not matter.
    for node in graph.nodes:
        if node.module is None or node.op in _STATE_OPS:
            continue
        try:
            module = _lazy_submodule(model, node.module)
        except AttributeError:
            continue
        if module is None:
            continue
        known = found.sizes.get(node.module, {})
        for dim in module.lazy_dims:
            if dim not in known:
                found.add(node.module, module, dim, node.attrs.get(dim), node, node.ref)
    return [(path, found.modules[path], {d: s for d, (s, _) in sizes.items()})
            for path, sizes in found.sizes.items()]


def materialize_lazy(graph: Graph, model: Module) -> None:
    """Materialize ``model``'s lazy modules with the sizes in the inferred ``graph`` (atomic)."""
    for _path, module, sizes in plan(graph, model):
        module.materialize(**sizes)
