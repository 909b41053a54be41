"""The public entry points: ``infer_shapes``, ``compile`` and ``summary``."""

from __future__ import annotations

from typing import Any

from lazyfuse.backends import Backend, get_backend
from lazyfuse.errors import CompileError, TraceError
from lazyfuse.frontends.materialize import materialize_lazy
from lazyfuse.frontends.model_access import local_state_reader
from lazyfuse.frontends.nn import Module
from lazyfuse.frontends.spec import TensorSpec, as_spec
from lazyfuse.frontends.torch import is_torch_module
from lazyfuse.frontends.trace import trace
from lazyfuse.ir.graph import Graph
from lazyfuse.passes.manager import PassContext, register_pass, run_passes
from lazyfuse.runtime import CompiledModule


def _not_a_graph(obj: object) -> TraceError:
    msg = f"infer_shapes: expected a lazyfuse.Graph, got {type(obj).__name__}"
    if isinstance(obj, Module):
        msg += "; trace the model first: lf.infer_shapes(lf.trace(model, spec))"
    return TraceError(msg)


@register_pass("materialize_lazy")
def _materialize_lazy_pass(graph: Graph, ctx: PassContext) -> Graph:
    """The frontend's ``materialize_lazy`` step as a pass: materialize the lazy modules of
    ``ctx.model`` (else ``graph.model``) with the inferred sizes; a no-op without a model."""
    model = ctx.model if ctx.model is not None else graph.model
    if isinstance(model, Module):
        materialize_lazy(graph, model)
    elif model is not None and hasattr(type(model), "materialize_lazy"):  # a frontend's model view
        model.materialize_lazy(graph)
    return graph


# What every compile runs first, whatever the backend: resolve the lazy dims from the specs, then
# materialize the lazy modules (a frontend step on the model, before any pass may drop a node).
INFER_PASSES = ("infer_shapes", "materialize_lazy")


def pipeline(backend: Backend) -> list[str]:
    """The passes ``compile`` runs for ``backend``: :data:`INFER_PASSES`, then the backend's own."""
    return [*INFER_PASSES, *backend.pipeline]


def infer_shapes(graph: Graph, ctx: PassContext | None = None) -> Graph:
    """Resolve every lazy ``?`` dim of a traced graph and materialize the model's lazy modules.

    Runs the ``infer_shapes`` pass, then the ``materialize_lazy`` step (the frontend's
    :func:`lazyfuse.frontends.materialize.materialize_lazy`, run as the pass of that name).
    Returns a new graph (the argument is left as traced).  Uses ``graph.model``; without a model
    only the shapes are inferred.  On an :class:`InferenceError` the model is unchanged.
    """
    if not isinstance(graph, Graph):
        raise _not_a_graph(graph)
    ctx = PassContext(model=graph.model) if ctx is None else ctx
    return run_passes(graph.copy(), list(INFER_PASSES), ctx)


def compile(model: Any, *specs: TensorSpec | tuple, backend: str = "cpu",
            ctx: PassContext | None = None) -> CompiledModule:
    """Trace ``model`` (a ``lazyfuse.nn.Module``, or a ``torch.nn.Module`` through the PyTorch
    frontend) on ``specs``, run :func:`pipeline` (inference, materialization, the backend's passes)
    and build a callable.

    ``backend`` is ``"cpu"`` (Numba), ``"reference"`` (NumPy interpreter) or ``"cuda"``.  Lazy
    modules are materialized from the specs alone (no data); the compiled module shares the model's
    parameters and buffers and follows ``model.training`` at call time.
    """
    be = get_backend(backend)  # unknown names fail before any work
    if not specs and getattr(model, "input_specs", None):  # an imported ONNX model declares them
        specs = tuple(model.input_specs)
    if is_torch_module(model):
        return _compile_torch(model, specs, be, ctx)
    if not isinstance(model, Module):
        raise CompileError(f"compile: expected a lazyfuse.nn.Module or a torch.nn.Module, got "
                           f"{type(model).__name__}")
    tspecs = [as_spec(s) for s in specs]
    graph = trace(model, *tspecs)
    ctx = PassContext(model=model) if ctx is None else ctx
    if ctx.model is None:
        ctx.model = model
    optimized = run_passes(graph, pipeline(be), ctx)
    optimized.model = model
    return CompiledModule(model, optimized, be.build(optimized), tspecs, backend=be.name, rebuild=compile)


def _compile_torch(module: Any, specs: tuple, be: Backend, ctx: PassContext | None) -> CompiledModule:
    """``compile`` for a ``torch.nn.Module``: the same pipeline on the PyTorch frontend's graph; its
    lazy modules materialize in the torch model, and calls share the torch tensors' memory."""
    from lazyfuse.runtime.torch_compiled import TorchCompiledModule

    tspecs = [as_spec(s) for s in specs]
    graph = trace(module, *tspecs)
    model = graph.model  # the frontend's TorchModel view (kept alive by the compiled module)
    ctx = PassContext(model=model) if ctx is None else ctx
    if ctx.model is None:
        ctx.model = model
    optimized = run_passes(graph, pipeline(be), ctx)
    optimized.model = model
    return TorchCompiledModule(module, model, optimized, be.build(optimized), tspecs, backend=be.name,
                               rebuild=compile)


def summary(model: Any, *specs: TensorSpec | tuple) -> str:
    """Per-layer output shapes and parameter counts, computed from the specs alone.

    Nothing is allocated: lazy modules stay lazy (shape inference runs on the traced graph without
    materializing).
    """
    graph = trace(model, *specs)
    inferred = run_passes(graph.copy(), ["infer_shapes"], PassContext(model=None))
    return inferred.summary()


def _export_specs(spec: Any) -> list[TensorSpec]:
    """One spec, or a tuple / list of them (one per input); a tuple of dims is one spec."""
    several = isinstance(spec, (tuple, list)) and spec
    if several and all(isinstance(s, (TensorSpec, tuple, list)) for s in spec):
        return [as_spec(s) for s in spec]
    return [as_spec(spec)]


def _model_arrays(graph: Graph) -> dict[str, Any]:
    """Each param/buffer target of ``graph`` -> the model's array now (zero-copy views)."""
    import numpy as np

    model = graph.model
    read = local_state_reader(model)
    arrays = {}
    for node in graph.params():
        path, _, name = node.attrs["target"].rpartition(".")
        owner = model.get_submodule(path)
        kind = "parameter" if node.op == "param" else "buffer"
        local = read(owner, kind)
        arrays[node.attrs["target"]] = np.asarray(local[name])
    return arrays


def export_onnx(model: Any, spec: Any, path: Any, *, opset: int = 18) -> Any:
    """Write ``model`` (a ``lazyfuse.nn.Module`` or a ``torch.nn.Module``) as an ONNX file at ``path``
    and return the ``onnx.ModelProto``.

    ``spec`` is a TensorSpec (or shape tuple), or a tuple of them for several inputs.  Lazy modules
    are resolved from the spec and materialized, as :func:`compile` does, so a model that never saw
    data exports; symbolic dims become ONNX ``dim_param``s.  Inference semantics: BatchNorm uses the
    running statistics the model holds now.  The file passes ``onnx.checker.check_model(...,
    full_check=True)``.
    """
    from lazyfuse import __version__
    from lazyfuse.frontends.onnx.export import to_onnx

    specs = _export_specs(spec)
    graph = trace(model, *specs)
    ctx = PassContext(model=graph.model)
    inferred = run_passes(graph, list(INFER_PASSES), ctx)
    inferred.model = graph.model
    proto = to_onnx(inferred, _model_arrays(inferred), opset=opset, producer_version=__version__)
    import onnx

    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:  # a lazyfuse bug, not the user's: say so plainly
        raise CompileError(f"export_onnx: the exported model fails onnx.checker: {exc}") from None
    try:
        onnx.save(proto, path)
    except OSError as exc:
        raise CompileError(f"export_onnx: cannot write {path}: {exc}") from None
    return proto
