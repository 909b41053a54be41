"""``lf.trace``: run a model's ``forward`` on :class:`Proxy` values and record a :class:`Graph`.

Leaf modules (Linear, BatchNorm1d, their lazy forms, ReLU, Flatten, Identity) are intercepted
through ``nn.module.CALL_INTERCEPTOR`` and emitted as single ops; every other module (containers,
user models) runs its own ``forward`` so nested modules are traced through.  ``nn.functional``
calls reach the tracer via ``Proxy.__lazyfuse_function__``.

Node types are computed with the op table's shape rules while tracing (``x.shape`` must be known to
user code), but leniently: a module whose configured size disagrees with its input is recorded
anyway and reported by the ``infer_shapes`` pass, which owns the checks.  Lazy sizes stay ``?``.
"""

from __future__ import annotations

import contextvars
import inspect
import linecache
import os
import sys
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

import numpy as np

from lazyfuse.errors import InferenceError, TraceError
from lazyfuse.frontends import nn
from lazyfuse.frontends.nn import functional as F
from lazyfuse.frontends.nn._checks import check_dim, check_eps, check_momentum
from lazyfuse.frontends.nn.module import CALL_INTERCEPTOR, Module, describe, raised_binding_arguments
from lazyfuse.ir.graph import Graph, Loc, Node
from lazyfuse.ir.ops import infer_node as ops_infer_node
from lazyfuse.ir.types import UNKNOWN, Sym, TensorType, dtype_from

from .spec import TensorSpec, as_spec

__all__ = ["trace", "Proxy", "SymInt", "Tracer"]

_PKG_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Frames in these places are lazyfuse machinery, never "the user's line".
_INTERNAL_PREFIXES = tuple(
    os.path.join(_PKG_ROOT, d) + os.sep for d in ("frontends", "ir", "passes", "backends")
) + (os.path.join(_PKG_ROOT, "api.py"),)


def _is_internal(filename: str) -> bool:
    return os.path.abspath(filename).startswith(_INTERNAL_PREFIXES) or filename.startswith("<frozen")


# ------------------------------------------------------------------------------------- locations
# The trace() in progress: locations are searched only in frames below its call.
_ACTIVE: contextvars.ContextVar[Tracer | None] = contextvars.ContextVar("lazyfuse_tracer", default=None)


def _user_frame() -> FrameType | None:
    """The innermost frame of user code below the active ``trace()`` call."""
    active = _ACTIVE.get()
    stop = active.entry_frame if active is not None else None
    f = sys._getframe(1)
    while f is not None and f is not stop:
        if not _is_internal(f.f_code.co_filename):
            return f
        f = f.f_back
    return None


def _user_loc() -> Loc | None:
    f = _user_frame()
    return None if f is None else Loc(os.path.basename(f.f_code.co_filename), f.f_lineno)


def _where() -> str:
    """``'model.py:12: `if x.sum() > 0:`'`` for error messages (empty when unknown)."""
    f = _user_frame()
    if f is None:
        return "while tracing"
    code = linecache.getline(f.f_code.co_filename, f.f_lineno).strip()
    where = f"{os.path.basename(f.f_code.co_filename)}:{f.f_lineno}"
    return f"{where}: `{code}`" if code else where


def _trace_error(what: str, hint: str = "") -> TraceError:
    msg = f"{_where()}: {what}"
    return TraceError(msg + (f"; {hint}" if hint else ""))


_SPEC_HINT = "give one TensorSpec (or shape tuple) per forward() input"

_CONTROL_FLOW_HINT = (
    "the value depends on the input data or on a symbolic dim, so Python control flow on it cannot be "
    "traced; write forward() without branching on tensor values (or give the dim a concrete size "
    "in the spec)"
)


# ------------------------------------------------------------------------------------- symbolic dims
class SymInt:
    """A symbolic dim as user code sees it (``x.shape[0]`` for a spec dim ``"N"``).

    Products and exact division work and can be passed to ``reshape``/``view``; anything that needs
    its value (``int()``, comparisons, ``range()``, ``bool()``) raises :class:`TraceError`.
    """

    __slots__ = ("sym",)

    def __init__(self, sym: Any) -> None:
        self.sym = sym

    def __repr__(self) -> str:
        return str(self.sym)

    def _value_error(self, what: str) -> TraceError:
        return _trace_error(f"{what} of the symbolic dim {self.sym}", _CONTROL_FLOW_HINT)

    def __mul__(self, other: Any) -> Any:
        o = _unwrap_dim(other)
        if not isinstance(o, (int, Sym)) or isinstance(o, bool):
            return NotImplemented
        return _wrap_dim(self.sym * o)

    __rmul__ = __mul__

    def __floordiv__(self, other: Any) -> Any:
        o = _unwrap_dim(other)
        try:
            return _wrap_dim(self.sym // o)
        except Exception as exc:  # Sym raises for inexact division
            raise _trace_error(f"cannot divide the symbolic dim {self.sym} by {o}: {exc}") from None

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (SymInt, Sym)):
            return self.sym == _unwrap_dim(other)
        raise self._value_error(f"comparison with {other!r}")

    def __hash__(self) -> int:
        return hash(self.sym)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __bool__(self) -> bool:
        raise self._value_error("truth value")

    def __int__(self) -> int:
        raise self._value_error("int()")

    def __index__(self) -> int:
        raise self._value_error("integer value (used as an index or size)")

    def __float__(self) -> float:
        raise self._value_error("float()")

    def _arith(self, other: Any) -> Any:
        raise _trace_error(
            f"only products and exact division of symbolic dims are supported, not '+'/'-' on {self.sym}"
        )

    __add__ = __radd__ = __sub__ = __rsub__ = _arith

    def _compare(self, other: Any) -> bool:
        raise self._value_error(f"comparison with {other!r}")

    __lt__ = __le__ = __gt__ = __ge__ = _compare


def _wrap_dim(d: Any) -> Any:
    if isinstance(d, Sym) or d is UNKNOWN:
        return SymInt(d)
    return int(d)


def _unwrap_dim(d: Any) -> Any:
    if isinstance(d, SymInt):
        return d.sym
    if isinstance(d, (np.integer,)):
        return int(d)
    return d


# ------------------------------------------------------------------------------------- proxies
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
        raise _trace_error(f"control flow on a traced value (truth value of {self.what})", _CONTROL_FLOW_HINT)

    def _value(self, *args: Any) -> Any:
        raise _trace_error(f"the value of {self.what} is needed", _CONTROL_FLOW_HINT)

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
        return tuple(_wrap_dim(d) for d in self.node.type.shape)

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
            raise _trace_error("len() of a 0-d traced value")
        first = self.node.type.shape[0]
        if not isinstance(first, int):
            raise _trace_error(f"len() of a traced value whose first dim is symbolic ({first})",
                               _CONTROL_FLOW_HINT)
        return first

    # --- recorded operations -------------------------------------------------------------------
    def reshape(self, *shape: Any) -> Proxy:
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        dims = []
        for d in shape:
            d = _unwrap_dim(d)
            if isinstance(d, bool) or not isinstance(d, (int, Sym)):
                raise _trace_error(f"reshape/view dims must be ints or dims of x.shape, got {d!r}")
            dims.append(d)
        return self.tracer.call("reshape", [self.node], {"shape": tuple(dims)})

    view = reshape

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> Proxy:
        attrs = {"start_dim": int(start_dim), "end_dim": int(end_dim)}
        return self.tracer.call("flatten", [self.node], attrs)

    def relu(self) -> Proxy:
        return self.tracer.call("relu", [self.node], {})

    def __add__(self, other: Any) -> Proxy:
        return self.tracer.call("add", [self.node, self.tracer.as_node(other, "'+'")], {})

    def __radd__(self, other: Any) -> Proxy:
        return self.tracer.call("add", [self.tracer.as_node(other, "'+'"), self.node], {})

    def __lazyfuse_function__(self, func: Callable, args: tuple, kwargs: dict) -> Any:
        return self.tracer.call_function(func, args, kwargs)

    # --- things a traced value cannot do -----------------------------------------------------
    def __bool__(self) -> bool:
        raise _trace_error(f"control flow on a traced value (truth value of %{self.node.name})",
                           _CONTROL_FLOW_HINT)

    def _untraceable(self, what: str) -> Callable[..., _Untraceable]:
        return lambda *args, **kwargs: _Untraceable(f"%{self.node.name}.{what}()")

    def __getattr__(self, name: str) -> Any:
        if name in _REDUCTIONS:
            return self._untraceable(name)
        raise _trace_error(f"'{name}' on a traced value is not supported by the tracer "
                           "(supported: shape, size, dim, reshape, view, flatten, relu, +)")

    def _compare(self, other: Any) -> _Untraceable:
        return _Untraceable(f"a comparison of %{self.node.name}")

    __lt__ = __le__ = __gt__ = __ge__ = __eq__ = __ne__ = _compare  # type: ignore[assignment]
    __hash__ = object.__hash__

    def __iter__(self) -> Any:
        raise _trace_error("iterating over a traced value", _CONTROL_FLOW_HINT)

    def __int__(self) -> int:
        raise _trace_error("int() of a traced value", _CONTROL_FLOW_HINT)

    __index__ = __float__ = __int__  # type: ignore[assignment]

    def __getitem__(self, key: Any) -> Any:
        raise _trace_error("indexing/slicing a traced value is not supported by the tracer")

    def __array__(self, *args: Any, **kwargs: Any) -> Any:
        raise _trace_error("a traced value cannot be converted to a NumPy array",
                           "use lazyfuse.nn.functional instead of NumPy functions in forward()")

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        raise _trace_error(f"NumPy function {ufunc.__name__} on a traced value is not supported",
                           "use lazyfuse.nn.functional (relu, linear, batch_norm, flatten)")

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        raise _trace_error(f"NumPy function {func.__name__} on a traced value is not supported",
                           "use lazyfuse.nn.functional (relu, linear, batch_norm, flatten)")

    def _unsupported_op(self, other: Any = None) -> Any:
        raise _trace_error("this arithmetic on a traced value is not supported (only '+' between values)")

    __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = __rtruediv__ = __matmul__ = _unsupported_op
    __rmatmul__ = __neg__ = __pow__ = _unsupported_op


# ------------------------------------------------------------------------------------- lazy layouts
# Shape of each array of a lazy leaf module, from its known attributes; None = the unknown size.
def _linear_layout(m: Any) -> dict[str, tuple]:
    return {"weight": (m.out_features, None), "bias": (m.out_features,)}


def _bn_layout(m: Any) -> dict[str, tuple]:
    return {name: (None,) for name in ("weight", "bias", "running_mean", "running_var")} | {
        "num_batches_tracked": ()
    }


_LAYOUTS: dict[type, Callable[[Any], dict[str, tuple]]] = {
    nn.LazyLinear: _linear_layout,
    nn.LazyBatchNorm1d: _bn_layout,
}

# A module whose configuration disagrees with its input (or whose lazy size would be symbolic) is
# recorded with its nominal result type; the infer_shapes pass reports the problem with the IR line.
_NOMINAL_TYPES: dict[str, Callable[[dict, TensorType], TensorType]] = {
    "linear": lambda attrs, x: x.with_shape(x.shape[:-1] + (attrs["out_features"],)),
    "batch_norm": lambda attrs, x: x,
}


# ------------------------------------------------------------------------------------- tracer
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
        if isinstance(value, Proxy):
            if value.tracer is not self:
                raise _trace_error("a traced value from another trace() call was used")
            return value.node
        if isinstance(value, _Untraceable):
            raise _trace_error(f"{value.what} cannot be used as a value in {what}: the IR has no such op")
        if isinstance(value, np.ndarray) or nn.is_uninitialized(value):
            return self.array_node(value, what)
        raise _trace_error(f"{what} got a {type(value).__name__} where a traced value was expected "
                           "(constants are not supported by the tracer)")

    def array_node(self, value: Any, what: str) -> Node:
        """The param/buffer node of a model array (referenced by target, never copied)."""
        entry = self.array_targets.get(id(value))
        if entry is None:
            raise _trace_error(f"{what} got an array that is not a parameter or buffer of the model "
                               "(constant arrays are not supported by the tracer)")
        kind, target, mod, name = entry
        if nn.is_uninitialized(value):
            layout = _LAYOUTS.get(type(mod))
            if layout is None or name not in layout(mod):
                raise _trace_error(f"{kind} '{target}' of {type(mod).__name__} is uninitialized and its "
                                   "layout is unknown to the tracer")
            shape = tuple(UNKNOWN if d is None else d for d in layout(mod)[name])
            dtype = np.int64 if name == "num_batches_tracked" else value.dtype
            ttype = TensorType(dtype_from(np.dtype(dtype)), shape)
        else:
            ttype = TensorType(dtype_from(value.dtype), tuple(int(d) for d in value.shape))
        return self.graph.get_attr(kind, target, ttype)

    def module_node(self, module: Module, name: str) -> Node | None:
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
             name: str | None = None) -> Proxy:
        """Record ``op`` (its type from the op's shape rule) and return a Proxy of the result."""
        ins = tuple(n for n in inputs if n is not None)
        owner = module if module is not None else self._enclosing()
        path = self.module_paths.get(id(owner)) if owner is not None else None
        if name is None:
            name = op
            if module is not None and path:
                name = path.replace(".", "_")
                if name[0].isdigit():
                    name = f"{op}_{name}"
        ttype = self._result_type(op, attrs, ins)
        node = self.graph.create_node(
            op, ins, dict(attrs), ttype, name=name, loc=_user_loc(),
            module=path if path else None,
            module_type=type(owner).__name__ if owner is not None and path else None,
        )
        return Proxy(node, self)

    def _result_type(self, op: str, attrs: dict, ins: tuple[Node, ...]) -> TensorType:
        try:
            return ops_infer_node(op, dict(attrs), [n.type for n in ins]).out
        except InferenceError as exc:
            nominal = _NOMINAL_TYPES.get(op)
            if nominal is None:
                raise _trace_error(str(exc)) from None
            return nominal(attrs, ins[0].type)

    # --- module calls ---------------------------------------------------------------------------
    def intercept(self, module: Module, args: tuple, kwargs: dict) -> Any:
        emitter = _leaf_emitter(module)
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
                        f"({exc}); {_SPEC_HINT}") from None
                raise _trace_error(f"{describe(module)}: forward: {exc}") from None
            finally:
                self.stack.pop()
        if id(module) not in self.module_paths:
            raise _trace_error(f"{type(module).__name__} is called in forward() but is not a submodule of "
                               "the model (assign it as an attribute in __init__)")
        if kwargs or len(args) != 1:
            raise _trace_error(f"{type(module).__name__} takes exactly one positional input while tracing")
        if not isinstance(args[0], Proxy):
            self.as_node(args[0], type(module).__name__)  # raises with the right message
            raise _trace_error(f"{type(module).__name__} input must be a traced value")
        return emitter(self, module, args[0])

    def call_function(self, func: Callable, args: tuple, kwargs: dict) -> Any:
        emitter = _FUNCTIONS.get(getattr(func, "__name__", ""))
        if emitter is None or getattr(F, func.__name__, None) is not func:
            raise _trace_error(f"function {getattr(func, '__name__', func)!r} is not supported by the tracer")
        try:
            bound = inspect.signature(func).bind(*args, **kwargs)
        except TypeError as exc:
            raise _trace_error(f"{func.__name__}(): {exc}") from None
        bound.apply_defaults()
        return emitter(self, bound.arguments)


# ------------------------------------------------------------------------------------- emitters
def _emit_linear(tr: Tracer, m: Any, x: Proxy) -> Proxy:
    lazy = nn.is_uninitialized(m.weight)
    w = tr.module_node(m, "weight")
    b = tr.module_node(m, "bias")
    attrs = {"in_features": UNKNOWN if lazy else m.in_features, "out_features": m.out_features,
             "bias": b is not None}
    return tr.call("linear", [x.node, w, b], attrs, module=m)


def _emit_batch_norm(tr: Tracer, m: Any, x: Proxy) -> Proxy:
    # eps and momentum may have been reassigned since construction: the constructor's checks
    where = f"{nn.describe(m)}: batch_norm"
    eps, momentum = check_eps(where, m.eps), check_momentum(where, m.momentum)
    lazy = isinstance(m, nn.LazyModuleMixin)  # also with no arrays to size (affine=False, no stats)
    names = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    ins = [tr.module_node(m, n) for n in names]
    attrs = {
        "num_features": UNKNOWN if lazy else m.num_features,
        "eps": eps,
        "momentum": momentum,
        "affine": bool(m.affine),
        "track_running_stats": bool(m.track_running_stats),
    }
    return tr.call("batch_norm", [x.node, *ins], attrs, module=m)


def _emit_relu(tr: Tracer, m: Any, x: Proxy) -> Proxy:
    return tr.call("relu", [x.node], {}, module=m)


def _emit_flatten(tr: Tracer, m: Any, x: Proxy) -> Proxy:
    start, end = m.dims(f"{nn.describe(m)}: flatten")
    return tr.call("flatten", [x.node], {"start_dim": start, "end_dim": end}, module=m)


def _emit_identity(tr: Tracer, m: Any, x: Proxy) -> Proxy:
    return x


_LEAVES: dict[type, Callable[[Tracer, Any, Proxy], Proxy]] = {
    nn.Linear: _emit_linear,
    nn.LazyLinear: _emit_linear,
    nn.BatchNorm1d: _emit_batch_norm,
    nn.LazyBatchNorm1d: _emit_batch_norm,
    nn.ReLU: _emit_relu,
    nn.Flatten: _emit_flatten,
    nn.Identity: _emit_identity,
}


def _leaf_emitter(module: Module) -> Callable | None:
    """The emitter of the nearest leaf class in the MRO, unless a subclass overrides ``forward``."""
    for cls in type(module).__mro__:
        emitter = _LEAVES.get(cls)
        if emitter is not None:
            return emitter if type(module).forward is cls.forward else None
    return None


def _fn_linear(tr: Tracer, a: dict) -> Proxy:
    x = tr.as_node(a["input"], "linear()")
    w = tr.as_node(a["weight"], "linear() weight")
    b = None if a["bias"] is None else tr.as_node(a["bias"], "linear() bias")
    wshape = w.type.shape
    if len(wshape) != 2:
        raise _trace_error(f"linear(): expected a 2D weight, got {w.type}")
    attrs = {"in_features": wshape[1], "out_features": wshape[0], "bias": b is not None}
    return tr.call("linear", [x, w, b], attrs)


def _fn_relu(tr: Tracer, a: dict) -> Proxy:
    return tr.call("relu", [tr.as_node(a["input"], "relu()")], {})


def _fn_flatten(tr: Tracer, a: dict) -> Proxy:
    x = tr.as_node(a["input"], "flatten()")
    start = check_dim("flatten", "start_dim", a["start_dim"])
    end = check_dim("flatten", "end_dim", a["end_dim"])
    return tr.call("flatten", [x], {"start_dim": start, "end_dim": end})


def _fn_batch_norm(tr: Tracer, a: dict) -> Proxy:
    x = tr.as_node(a["input"], "batch_norm()")
    if a["running_mean"] is not None or a["running_var"] is not None or a["training"] is not True:
        # The op's running-stat update needs num_batches_tracked, which the functional form lacks.
        raise _trace_error("functional batch_norm is traced only with training=True and no running "
                           "statistics; use nn.BatchNorm1d for running statistics")
    w = None if a["weight"] is None else tr.as_node(a["weight"], "batch_norm() weight")
    b = None if a["bias"] is None else tr.as_node(a["bias"], "batch_norm() bias")
    if (w is None) != (b is None):
        raise _trace_error("batch_norm(): pass both weight and bias or neither")
    c = x.type.shape[1] if x.type.rank >= 2 else UNKNOWN
    momentum, eps = F.check_bn_factors("batch_norm", a["momentum"], a["eps"])
    attrs = {"num_features": c, "eps": eps, "momentum": momentum,
             "affine": w is not None, "track_running_stats": False}
    return tr.call("batch_norm", [x, w, b], attrs)


_FUNCTIONS: dict[str, Callable[[Tracer, dict], Proxy]] = {
    "linear": _fn_linear,
    "relu": _fn_relu,
    "flatten": _fn_flatten,
    "batch_norm": _fn_batch_norm,
}


# ------------------------------------------------------------------------------------- entry point
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
                      f"spec(s); {_SPEC_HINT}")


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
    if not isinstance(model, Module):
        raise TraceError(f"trace: expected a lazyfuse.nn.Module, got {type(model).__name__}")
    _check_arity(model, len(specs))
    if not specs:
        raise TraceError(f"trace: {_SPEC_HINT}")
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
    active_token = _ACTIVE.set(tracer)
    token = CALL_INTERCEPTOR.set(tracer.intercept)
    try:
        result = model(*proxies)
    finally:
        CALL_INTERCEPTOR.reset(token)
        _ACTIVE.reset(active_token)
    graph.set_output(_collect_outputs(result, tracer))
    graph.model = model
    return graph
