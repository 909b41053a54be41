"""The public entry points: ``infer_shapes``, ``compile`` and ``summary``."""

from __future__ import annotations

from lazyfuse.backends import get_backend
from lazyfuse.errors import CompileError, TraceError
from lazyfuse.frontends.nn import Module
from lazyfuse.frontends.spec import TensorSpec, as_spec
from lazyfuse.frontends.trace import trace
from lazyfuse.ir.graph import Graph
from lazyfuse.passes.manager import PassContext, run_passes
from lazyfuse.runtime import CompiledModule


def _not_a_graph(obj: object) -> TraceError:
    msg = f"infer_shapes: expected a lazyfuse.Graph, got {type(obj).__name__}"
    if isinstance(obj, Module):
        msg += "; trace the model first: lf.infer_shapes(lf.trace(model, spec))"
    return TraceError(msg)


def infer_shapes(graph: Graph, ctx: PassContext | None = None) -> Graph:
    """Resolve every lazy ``?`` dim of a traced graph and materialize the model's lazy modules.

    Returns a new graph (the argument is left as traced).  Uses ``graph.model``; without a model
    only the shapes are inferred.  On an :class:`InferenceError` the model is unchanged.
    """
    if not isinstance(graph, Graph):
        raise _not_a_graph(graph)
    ctx = PassContext(model=graph.model) if ctx is None else ctx
    return run_passes(graph.copy(), ["infer_shapes", "materialize_lazy"], ctx)


def compile(model: Module, *specs: TensorSpec | tuple, backend: str = "cpu",
            ctx: PassContext | None = None) -> CompiledModule:
    """Trace ``model`` on ``specs``, run the backend's pass pipeline and build a callable.

    ``backend`` is ``"cpu"`` (Numba), ``"reference"`` (NumPy interpreter) or ``"cuda"``.  Lazy
    modules are materialized from the specs alone (no data); the compiled module shares the model's
    parameters and buffers and follows ``model.training`` at call time.
    """
    be = get_backend(backend)  # unknown names fail before any work
    if not isinstance(model, Module):
        raise CompileError(f"compile: expected a lazyfuse.nn.Module, got {type(model).__name__}")
    tspecs = [as_spec(s) for s in specs]
    graph = trace(model, *tspecs)
    ctx = PassContext(model=model) if ctx is None else ctx
    if ctx.model is None:
        ctx.model = model
    optimized = run_passes(graph, be.pipeline, ctx)
    optimized.model = model
    return CompiledModule(model, optimized, be.build(optimized), tspecs)


def summary(model: Module, *specs: TensorSpec | tuple) -> str:
    """Per-layer output shapes and parameter counts, computed from the specs alone.

    Nothing is allocated: lazy modules stay lazy (shape inference runs on the traced graph without
    materializing).
    """
    graph = trace(model, *specs)
    inferred = run_passes(graph.copy(), ["infer_shapes"], PassContext(model=None))
    return inferred.summary()
