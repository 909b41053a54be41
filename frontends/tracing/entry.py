"""``trace(model, *specs)``: run ``model.forward`` on :class:`Proxy` inputs and return the Graph."""

from __future__ import annotations

import inspect
import sys
from typing import Any

from lazyfuse.errors import TraceError
from lazyfuse.frontends.nn.module import CALL_INTERCEPTOR, Module
from lazyfuse.frontends.spec import TensorSpec, as_spec
from lazyfuse.ir.graph import Graph, Node

from .locations import ACTIVE, SPEC_HINT
from .proxy import Proxy
from .tracer import Tracer


def _input_names(model: Module, count: int) -> list[str]:
    try:
        params = [p for p in inspect.signature(model.forward).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    names = [p.name for p in params[:count]]
    names += [f"input{i}" for i in range(len(names), count)]
    return names


def _arity(sig: inspect.Signature) -> str:
    """How many positional inputs ``sig`` takes: ``'1'``, ``'1 to 3'`` or ``'at least 2'``."""
    params = list(sig.parameters.values())
    pos = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    least = sum(p.default is p.empty for p in pos)
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return f"at least {least}"
    return str(least) if least == len(pos) else f"{least} to {len(pos)}"


def _arity_error(model: Module, takes: str, count: int) -> TraceError:
    return TraceError(f"model {type(model).__name__}'s forward takes {takes} input(s), got {count} "
                      f"spec(s); {SPEC_HINT}")


def _check_arity(model: Module, count: int) -> None:
    """Raise :class:`TraceError` unless ``model.forward`` takes ``count`` positional inputs."""
    try:
        sig = inspect.signature(model.forward)
    except (TypeError, ValueError):  # no signature: Tracer.intercept checks the call itself
        return
    required = [p.name for p in sig.parameters.values()
                if p.kind is p.KEYWORD_ONLY and p.default is p.empty]
    if required:
        raise TraceError(f"model {type(model).__name__}'s forward has required keyword-only "
                         f"argument(s) {', '.join(required)}; trace passes the specs positionally")
    try:
        sig.bind(*range(count))
    except TypeError:
        raise _arity_error(model, _arity(sig), count) from None


def _collect_outputs(result: Any, tracer: Tracer) -> list[Node]:
    items = result if isinstance(result, (tuple, list)) else (result,)
    if not items:
        raise TraceError(f"{type(tracer.model).__name__}.forward returned no values")
    nodes = []
    for item in items:
        if not isinstance(item, Proxy):
            raise TraceError(
                f"{type(tracer.model).__name__}.forward must return traced values (or a tuple of them), "
                f"got {type(item).__name__}"
            )
        nodes.append(item.node)
    return nodes


def trace(model: Module, *specs: TensorSpec | tuple) -> Graph:
    """Record ``model.forward`` on symbolic inputs described by ``specs`` into a :class:`Graph`.

    No data is touched and the model is not modified; lazy sizes appear as ``?`` until
    ``lazyfuse.infer_shapes`` resolves them.
    """
    from lazyfuse.frontends.torch import is_torch_module, trace_torch

    if is_torch_module(model):
        return trace_torch(model, *specs)
    if not isinstance(model, Module):
        raise TraceError(f"trace: expected a lazyfuse.nn.Module or a torch.nn.Module, got "
                         f"{type(model).__name__}")
    _check_arity(model, len(specs))
    if not specs:
        raise TraceError(f"trace: {SPEC_HINT}")
    tspecs = [as_spec(s) for s in specs]
    types = [s.to_type() for s in tspecs]
    symbols: list[str] = []
    for t in types:
        for s in t.symbols:
            if s not in symbols:
                symbols.append(s)
    graph = Graph(type(model).__name__, symbols=symbols)
    tracer = Tracer(model, graph, sys._getframe())
    names = _input_names(model, len(types))
    proxies = [Proxy(graph.add_input(name, t), tracer) for name, t in zip(names, types)]
    active_token = ACTIVE.set(tracer)
    token = CALL_INTERCEPTOR.set(tracer.intercept)
    try:
        result = model(*proxies)
    finally:
        CALL_INTERCEPTOR.reset(token)
        ACTIVE.reset(active_token)
    graph.set_output(_collect_outputs(result, tracer))
    graph.model = model
    return graph
