"""``Tracer``: records the graph of one ``trace()`` call.

Module calls reach it through ``nn.module.CALL_INTERCEPTOR``: a registered module class is recorded
as its op (see :mod:`.registry`), every other module runs its own ``forward`` so nested modules are
traced through.  ``nn.functional`` calls and traced-value methods arrive as their emitters.

Node types come from the op table's shape rules while tracing (user code reads ``x.shape``), but
leniently: an op with a nominal type whose configured size disagrees with its input is recorded
anyway and reported by the ``infer_shapes`` pass, which owns the checks.  Lazy sizes stay ``?``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

import numpy as np

from lazyfuse.errors import DTypeError, InferenceError, TraceError
from lazyfuse.frontends import nn
from lazyfuse.frontends.nn.module import Module, describe, raised_binding_arguments
from lazyfuse.ir.graph import Graph, Node
from lazyfuse.ir.ops import infer_node as ops_infer_node
from lazyfuse.ir.types import UNKNOWN, TensorType, dtype_from

from .locations import SPEC_HINT, trace_error, user_loc
from .proxy import Proxy, _Untraceable
from .registry import Emitter, Nominal, function_emitter, module_emitter


class Tracer:
    """Records the graph of one ``trace()`` call."""

    def __init__(self, model: Module, graph: Graph, entry_frame: FrameType | None) -> None:
        self.model = model
        self.graph = graph
        self.entry_frame = entry_frame
        self.module_paths: dict[int, str] = {id(m): p for p, m in model.named_modules()}
        self.array_targets: dict[int, tuple[str, str, Module, str]] = {}
        for path, mod in model.named_modules():
            for kind, store in (("param", mod._parameters), ("buffer", mod._buffers)):
                for name, value in store.items():
                    if value is not None and id(value) not in self.array_targets:
                        target = f"{path}.{name}" if path else name
                        self.array_targets[id(value)] = (kind, target, mod, name)
        self.stack: list[Module] = []

    # --- values ---------------------------------------------------------------------------------
    def as_node(self, value: Any, what: str) -> Node:
        """The node of a traced value or model array used as an operand (``what`` names the use)."""
        if isinstance(value, Proxy):
            if value.tracer is not self:
                raise trace_error("a traced value from another trace() call was used")
            return value.node
        if isinstance(value, _Untraceable):
            raise trace_error(f"{value.what} cannot be used as a value in {what}: the IR has no such op")
        if isinstance(value, np.ndarray) or nn.is_uninitialized(value):
            return self.array_node(value, what)
        raise trace_error(f"{what} got a {type(value).__name__} where a traced value was expected "
                          "(constants are not supported by the tracer)")

    def array_node(self, value: Any, what: str) -> Node:
        """The param/buffer node of a model array (referenced by target, never copied)."""
        entry = self.array_targets.get(id(value))
        if entry is None:
            raise trace_error(f"{what} got an array that is not a parameter or buffer of the model "
                              "(constant arrays are not supported by the tracer)")
        kind, target, mod, name = entry
        if nn.is_uninitialized(value):
            # The lazy class's declaration gives the known dims; the lazy ones are ``?``.
            shapes = mod.placeholder_shapes() if isinstance(mod, nn.LazyModuleMixin) else {}
            if name not in shapes:
                raise trace_error(f"{kind} '{target}' of {type(mod).__name__} is uninitialized and its "
                                  "layout is unknown to the tracer")
            shape = tuple(UNKNOWN if d is None else d for d in shapes[name])
            ttype = TensorType(dtype_from(np.dtype(value.dtype)), shape)
        else:
            ttype = TensorType(dtype_from(value.dtype), tuple(int(d) for d in value.shape))
        return self.graph.get_attr(kind, target, ttype)

    def module_node(self, module: Module, name: str) -> Node | None:
        """The node of ``module``'s parameter or buffer ``name`` (``None`` when it is unset)."""
        value = getattr(module, name, None)
        if value is None:
            return None
        return self.array_node(value, f"{type(module).__name__}.{name}")

    # --- recording ------------------------------------------------------------------------------
    def _enclosing(self) -> Module | None:
        for m in reversed(self.stack):
            if m is not self.model:
                return m
        return None

    def call(self, op: str, inputs: Sequence[Node | None], attrs: dict, module: Module | None = None,
             name: str | None = None, nominal: Nominal | None = None) -> Proxy:
        """Record ``op`` (its type from the op's shape rule, else ``nominal``) and return its Proxy."""
        ins = tuple(n for n in inputs if n is not None)
        owner = module if module is not None else self._enclosing()
        path = self.module_paths.get(id(owner)) if owner is not None else None
        if name is None:
            name = op
            if module is not None and path:
                name = path.replace(".", "_")
                if name[0].isdigit():
                    name = f"{op}_{name}"
        ttype = self._result_type(op, attrs, ins, nominal)
        node = self.graph.create_node(
            op, ins, dict(attrs), ttype, name=name, loc=user_loc(),
            # A module's call is that module (``fc1:Linear``); a function called inside a module's
            # forward only records where it was called (``fc1``, no type).
            module=path if path else None,
            module_type=type(owner).__name__ if module is not None and path else None,
        )
        return Proxy(node, self)

    def _result_type(self, op: str, attrs: dict, ins: tuple[Node, ...],
                     nominal: Nominal | None) -> TensorType:
        try:
            return ops_infer_node(op, dict(attrs), [n.type for n in ins]).out
        except (InferenceError, DTypeError) as exc:  # shape rules raise DTypeError for dtypes
            # A module whose configuration disagrees with its input (or whose lazy size would be
            # symbolic) gets its nominal type; infer_shapes reports the problem with the IR line.
            if nominal is None:
                raise trace_error(str(exc)) from None
            return nominal(attrs, ins[0].type)

    def emit(self, emitter: Emitter, args: tuple, kwargs: dict | None = None,
             module: Module | None = None) -> Proxy:
        """Record ``emitter``'s op with the operands and attrs its build returns for ``args``."""
        operands, attrs = emitter.build(self, *args, **(kwargs or {}))
        return self.call(emitter.op, operands, attrs, module=module, nominal=emitter.nominal)

    # --- module calls ---------------------------------------------------------------------------
    def intercept(self, module: Module, args: tuple, kwargs: dict) -> Any:
        """``Module.__call__`` while tracing: record a registered module, else trace its forward."""
        emitter = module_emitter(module)
        if emitter is None:
            self.stack.append(module)
            try:
                return module.forward(*args, **kwargs)
            except TypeError as exc:
                if not raised_binding_arguments(exc, (Tracer.intercept.__code__,)):
                    raise
                if module is self.model:
                    raise TraceError(
                        f"model {type(module).__name__}'s forward does not take {len(args)} input(s) "
                        f"({exc}); {SPEC_HINT}") from None
                raise trace_error(f"{describe(module)}: forward: {exc}") from None
            finally:
                self.stack.pop()
        if id(module) not in self.module_paths:
            raise trace_error(f"{type(module).__name__} is called in forward() but is not a submodule of "
                              "the model (assign it as an attribute in __init__)")
        if kwargs or len(args) != 1:
            raise trace_error(f"{type(module).__name__} takes exactly one positional input while tracing")
        if not isinstance(args[0], Proxy):
            self.as_node(args[0], type(module).__name__)  # raises with the right message
            raise trace_error(f"{type(module).__name__} input must be a traced value")
        if emitter.op is None:
            return args[0]
        return self.emit(emitter, (module, args[0]), module=module)

    def call_function(self, func: Callable, args: tuple, kwargs: dict) -> Any:
        """A registered function called on traced values (``nn.functional.relu(x)``)."""
        emitter = function_emitter(func)
        if emitter is None:
            raise trace_error(f"function {getattr(func, '__name__', func)!r} is not supported by the tracer")
        try:
            bound = inspect.signature(func).bind(*args, **kwargs)
        except TypeError as exc:
            raise trace_error(f"{func.__name__}(): {exc}") from None
        bound.apply_defaults()
        return self.emit(emitter, (bound.arguments,))

    def call_method(self, name: str, emitter: Emitter, x: Proxy, args: tuple, kwargs: dict) -> Proxy:
        """A registered method of a traced value (``x.reshape(...)``); arguments its build does not
        take are a :class:`TraceError` naming the method, not the build function."""
        params = list(inspect.signature(emitter.build).parameters.values())[2:]  # after tracer, x
        try:
            inspect.Signature(params).bind(*args, **kwargs)
        except TypeError as exc:
            raise trace_error(f"Proxy.{name}(): {exc}") from None
        return self.emit(emitter, (x, *args), kwargs)
