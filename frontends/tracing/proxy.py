"""``Proxy``: a traced value standing for the array a node will compute.

What it can do is what the IR can express: shape queries, the registered methods (``reshape``,
``flatten``, ...: :mod:`.registry`), ``+`` and ``nn.functional`` calls.  Everything else raises a
:class:`TraceError` at the user's line; a reduction or comparison yields an :class:`_Untraceable`,
so that ``if x.sum() > 0:`` fails at the ``if`` with a control-flow message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from lazyfuse.ir.graph import Node

from .locations import CONTROL_FLOW_HINT, trace_error
from .registry import method_emitter, supported_functions, supported_methods
from .symint import wrap_dim

if TYPE_CHECKING:
    from .tracer import Tracer

# What the hint for an unsupported attribute lists besides the registered methods.
_QUERIES = ("shape", "size", "dim")
_OPERATORS = ("+",)


def _functional_hint() -> str:
    return f"use lazyfuse.nn.functional ({supported_functions()})"


class _Untraceable:
    """Result of an operation the IR cannot express (``x.sum()``, ``x > 0``).

    It exists so ``if x.sum() > 0:`` fails at the ``if`` with a control-flow message; using it as a
    value in the model raises too.
    """

    def __init__(self, what: str) -> None:
        self.what = what

    def __repr__(self) -> str:
        return f"<untraceable {self.what}>"

    def _chain(self, *args: Any, **kwargs: Any) -> _Untraceable:
        return _Untraceable(self.what)

    __lt__ = __le__ = __gt__ = __ge__ = __eq__ = __ne__ = _chain  # type: ignore[assignment]
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = __neg__ = _chain
    __hash__ = None  # type: ignore[assignment]

    def __bool__(self) -> bool:
        raise trace_error(f"control flow on a traced value (truth value of {self.what})", CONTROL_FLOW_HINT)

    def _value(self, *args: Any) -> Any:
        raise trace_error(f"the value of {self.what} is needed", CONTROL_FLOW_HINT)

    __int__ = __float__ = __index__ = item = _value  # type: ignore[assignment]


_REDUCTIONS = ("sum", "mean", "max", "min", "std", "var", "norm", "any", "all", "prod", "argmax", "argmin")


class Proxy:
    """A traced value: stands for the array a node will compute."""

    __slots__ = ("node", "tracer")

    def __init__(self, node: Node, tracer: Tracer) -> None:
        self.node = node
        self.tracer = tracer

    def __repr__(self) -> str:
        return f"Proxy(%{self.node.name}: {self.node.type})"

    # --- shape queries ---------------------------------------------------------------------
    @property
    def shape(self) -> tuple[Any, ...]:
        """Dims: ints, or :class:`SymInt` for symbolic ones (usable in ``reshape``)."""
        return tuple(wrap_dim(d) for d in self.node.type.shape)

    def size(self, dim: int | None = None) -> Any:
        shape = self.shape
        return shape if dim is None else shape[dim]

    def dim(self) -> int:
        return self.node.type.rank

    @property
    def ndim(self) -> int:
        return self.node.type.rank

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.node.type.dtype.numpy)

    def __len__(self) -> int:
        if self.node.type.rank == 0:
            raise trace_error("len() of a 0-d traced value")
        first = self.node.type.shape[0]
        if not isinstance(first, int):
            # Python's len() must return an int, so a symbolic dim cannot pass through it.
            raise trace_error(f"len() of a traced value whose first dim is symbolic ({first})",
                              "use x.shape[0] or x.size(0) instead: they stay symbolic in the graph "
                              "and run eagerly too")
        return first

    # --- recorded operations (methods: see the registry) -------------------------------------
    def __add__(self, other: Any) -> Proxy:
        return self.tracer.call("add", [self.node, self.tracer.as_node(other, "'+'")], {})

    def __radd__(self, other: Any) -> Proxy:
        return self.tracer.call("add", [self.tracer.as_node(other, "'+'"), self.node], {})

    def __lazyfuse_function__(self, func: Callable, args: tuple, kwargs: dict) -> Any:
        return self.tracer.call_function(func, args, kwargs)

    # --- things a traced value cannot do -----------------------------------------------------
    def __bool__(self) -> bool:
        raise trace_error(f"control flow on a traced value (truth value of %{self.node.name})",
                          CONTROL_FLOW_HINT)

    def _untraceable(self, what: str) -> Callable[..., _Untraceable]:
        return lambda *args, **kwargs: _Untraceable(f"%{self.node.name}.{what}()")

    def __getattr__(self, name: str) -> Any:
        emitter = method_emitter(name)
        if emitter is not None:
            return lambda *args, **kwargs: self.tracer.call_method(name, emitter, self, args, kwargs)
        if name in _REDUCTIONS:
            return self._untraceable(name)
        supported = ", ".join([*_QUERIES, *supported_methods(), *_OPERATORS])
        raise trace_error(f"'{name}' on a traced value is not supported by the tracer "
                          f"(supported: {supported})")

    def _compare(self, other: Any) -> _Untraceable:
        return _Untraceable(f"a comparison of %{self.node.name}")

    __lt__ = __le__ = __gt__ = __ge__ = __eq__ = __ne__ = _compare  # type: ignore[assignment]
    __hash__ = object.__hash__

    def __iter__(self) -> Any:
        raise trace_error("iterating over a traced value", CONTROL_FLOW_HINT)

    def __int__(self) -> int:
        raise trace_error("int() of a traced value", CONTROL_FLOW_HINT)

    __index__ = __float__ = __int__  # type: ignore[assignment]

    def __getitem__(self, key: Any) -> Any:
        raise trace_error("indexing/slicing a traced value is not supported by the tracer")

    def __array__(self, *args: Any, **kwargs: Any) -> Any:
        raise trace_error("a traced value cannot be converted to a NumPy array",
                          "use lazyfuse.nn.functional instead of NumPy functions in forward()")

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        raise trace_error(f"NumPy function {ufunc.__name__} on a traced value is not supported",
                          _functional_hint())

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        if func is np.reshape and args and args[0] is self:
            return self._np_reshape(*args[1:], **kwargs)
        raise trace_error(f"NumPy function {func.__name__} on a traced value is not supported",
                          _functional_hint() + "; of NumPy's own functions the tracer takes np.reshape")

    def _np_reshape(self, shape: Any = None, order: str = "C", *, newshape: Any = None,
                    copy: Any = None) -> Proxy:
        """``np.reshape(x, shape)``, as eager NumPy runs it (C order only)."""
        if order != "C":
            raise trace_error(f"np.reshape with order={order!r}: only order='C' is traced")
        shape = newshape if shape is None else shape
        if shape is None:
            raise trace_error("np.reshape needs a shape")
        shape = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
        return self.tracer.call_method("reshape", method_emitter("reshape"), self, shape, {})

    def _unsupported_op(self, other: Any = None) -> Any:
        raise trace_error("this arithmetic on a traced value is not supported (only '+' between values)")

    __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = __rtruediv__ = __matmul__ = _unsupported_op
    __rmatmul__ = __neg__ = __pow__ = _unsupported_op
