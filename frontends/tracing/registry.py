"""The frontend registry: how module classes, ``nn.functional`` functions and traced-value methods
are recorded as ops.

Each entry is an :class:`Emitter`: the op it records, a ``build`` function that returns the op's
operands and attrs, and optionally the *nominal* result type used when the op's shape rule rejects
the operands at trace time (the node is recorded anyway; the ``infer_shapes`` pass reports the
problem with the IR line).  Register with the decorators, next to the build function::

    @traces_module(nn.Linear, nn.LazyLinear, op="linear", nominal=linear_nominal)
    def _linear(tracer, module, x): ...          # -> (operands, attrs)

    @traces_function(F.relu, op="relu")
    def _relu(tracer, args): ...                  # args: the bound arguments, defaults applied

    @traces_method("reshape", "view", op="reshape")
    def _reshape(tracer, x, *shape): ...          # x.reshape(*shape)

A module class whose subclass overrides ``forward`` is traced through; otherwise the nearest
registered class in the subclass's MRO records it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from lazyfuse.errors import ConfigError
from lazyfuse.ir.graph import Node
from lazyfuse.ir.types import TensorType

Operands = Sequence["Node | None"]
Build = Callable[..., tuple[Operands, dict[str, Any]]]
Nominal = Callable[[dict[str, Any], TensorType], TensorType]

_FUNCTIONAL_MODULE = "lazyfuse.frontends.nn.functional"


@dataclass(frozen=True)
class Emitter:
    """How one module class, function or method is recorded.

    ``op``: the op recorded (``None``: nothing is recorded, the result is the input, like
    ``Identity``).  ``build``: returns ``(operands, attrs)``; ``None`` operands are left out.
    ``nominal(attrs, input_type)``: the result type when the shape rule fails while tracing
    (``None``: the failure is a :class:`TraceError`).
    """

    op: str | None
    build: Build | None = None
    nominal: Nominal | None = None


PASS_THROUGH = Emitter(op=None)

MODULES: dict[type, Emitter] = {}
FUNCTIONS: dict[Callable, Emitter] = {}
METHODS: dict[str, Emitter] = {}


def _register(table: dict, keys: Sequence[Any], emitter: Emitter, replace: bool) -> None:
    taken = [k for k in keys if k in table and not replace]
    if taken:
        raise ConfigError(f"already registered with the tracer: {', '.join(map(_name, taken))}")
    for key in keys:
        table[key] = emitter


def register_module(*classes: type, emitter: Emitter, replace: bool = False) -> None:
    """Record calls of ``classes`` (and of subclasses that keep their ``forward``) with ``emitter``."""
    _register(MODULES, classes, emitter, replace)


def traces_module(*classes: type, op: str, nominal: Nominal | None = None,
                  replace: bool = False) -> Callable[[Build], Build]:
    """Decorator: ``build(tracer, module, x) -> (operands, attrs)`` records ``op`` for ``classes``."""
    def deco(build: Build) -> Build:
        register_module(*classes, emitter=Emitter(op, build, nominal), replace=replace)
        return build

    return deco


def traces_function(*functions: Callable, op: str, nominal: Nominal | None = None,
                    replace: bool = False) -> Callable[[Build], Build]:
    """Decorator: ``build(tracer, args) -> (operands, attrs)`` records ``op`` for ``functions``.

    A function reaches the tracer when a traced value is among its arguments and it dispatches
    on ``__lazyfuse_function__`` (as every ``nn.functional`` function does); ``args`` are its
    bound arguments by name, defaults applied.
    """
    def deco(build: Build) -> Build:
        _register(FUNCTIONS, functions, Emitter(op, build, nominal), replace)
        return build

    return deco


def traces_method(*names: str, op: str, nominal: Nominal | None = None,
                  replace: bool = False) -> Callable[[Build], Build]:
    """Decorator: ``build(tracer, x, *args, **kwargs) -> (operands, attrs)`` records ``op`` for
    the traced-value methods ``names`` (``x.reshape(...)``)."""
    def deco(build: Build) -> Build:
        _register(METHODS, names, Emitter(op, build, nominal), replace)
        return build

    return deco


def unregister(*targets: type | Callable | str) -> None:
    """Remove the entries of module classes, functions or method names (missing ones are ignored)."""
    for target in targets:
        if isinstance(target, type):
            MODULES.pop(target, None)
        elif isinstance(target, str):
            METHODS.pop(target, None)
        else:
            FUNCTIONS.pop(target, None)


def module_emitter(module: Any) -> Emitter | None:
    """The emitter of the nearest registered class in the MRO, unless a subclass overrides
    ``forward`` (then ``None``: the module's own ``forward`` is traced)."""
    for cls in type(module).__mro__:
        emitter = MODULES.get(cls)
        if emitter is not None:
            return emitter if type(module).forward is cls.forward else None
    return None


def function_emitter(func: Any) -> Emitter | None:
    try:
        return FUNCTIONS.get(func)
    except TypeError:  # an unhashable callable
        return None


def method_emitter(name: str) -> Emitter | None:
    return METHODS.get(name)


def _name(key: Any) -> str:
    if isinstance(key, str):
        return key
    if getattr(key, "__module__", None) == _FUNCTIONAL_MODULE:
        return key.__name__
    return f"{getattr(key, '__module__', '?')}.{getattr(key, '__qualname__', key)}"


def supported_functions() -> str:
    """The registered functions for hints: ``relu, linear, ...`` (others with their module)."""
    return ", ".join(_name(f) for f in FUNCTIONS)


def supported_methods() -> list[str]:
    """The registered traced-value method names, in registration order."""
    return list(METHODS)
