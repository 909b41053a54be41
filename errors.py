"""The lazyfuse exception hierarchy.

Every mistake a user can make raises a subclass of :class:`LazyFuseError` that also derives from the
builtin a Python user would expect (``ValueError`` or ``TypeError``), so ``except ValueError`` keeps
working.  Messages name the module path, the op, what was expected and what was given.
"""

from __future__ import annotations


class LazyFuseError(Exception):
    """Base class of every error lazyfuse raises on purpose."""


class ConfigError(LazyFuseError, ValueError):
    """A module or function was constructed with invalid arguments (``eps <= 0``, ...)."""


class ShapeError(LazyFuseError, ValueError):
    """An input or intermediate value has the wrong rank or size."""


class DTypeError(LazyFuseError, TypeError):
    """An input has a dtype the op cannot take (integer input, float64 into float32 params, ...)."""


class UninitializedParameterError(LazyFuseError, ValueError):
    """A lazy module's parameter or buffer was read before its size was known."""


class StateDictError(LazyFuseError, ValueError):
    """``load_state_dict`` found missing, unexpected or mis-shaped entries (nothing was loaded)."""


class TraceError(LazyFuseError, TypeError):
    """The tracer met Python it cannot record (control flow on a symbolic value, ...) or input specs
    it cannot use (a spec of the wrong kind, a count that does not match ``forward``)."""


class IRError(LazyFuseError, ValueError):
    """A graph is malformed: parse errors and verifier failures."""


class IRParseError(IRError):
    """The IR text could not be parsed."""


class VerifierError(IRError):
    """A graph broke an IR invariant (the verifier's finding)."""


class IRTypeError(IRError, TypeError):
    """An IR object got a value of the wrong Python type: a dim that is not an int, Sym or ``?``,
    an attribute value the text or JSON form cannot hold.  Also a ``TypeError``."""


class UnknownNodeError(IRError, KeyError):
    """A graph has no node of the given name.  Also a ``KeyError``."""

    __str__ = Exception.__str__  # KeyError's str() would quote the message


class InferenceError(ShapeError):
    """Shape inference could not resolve or reconcile a dim."""


class CompileError(LazyFuseError, ValueError):
    """A backend could not compile a graph."""


class InputError(LazyFuseError, TypeError):
    """A call got arguments it cannot take: a compiled model the wrong number of inputs, or a
    module's ``forward`` arguments Python refused (wrong count or keyword)."""


class StateError(LazyFuseError, ValueError):
    """A compiled model's modules, parameters or buffers no longer fit the call: a module was
    removed, replaced by another kind or given other settings since compile, a parameter or buffer
    is gone, or a buffer the call updates in place is read-only."""


class CacheWarning(RuntimeWarning):
    """An on-disk cache lazyfuse uses could not be used as it was: a cache dir that cannot be
    written (compiled code is not kept for the next process) or a corrupt entry (dropped and
    rebuilt).  lazyfuse still runs correctly, perhaps slower to start."""


class GradientWarning(UserWarning):
    """A compiled call of a torch model ran with grad mode on while a parameter or an input requires
    grad: lazyfuse calls are forward only, so no gradient flows through them."""


__all__ = [
    "CacheWarning",
    "GradientWarning",
    "LazyFuseError",
    "ConfigError",
    "ShapeError",
    "DTypeError",
    "UninitializedParameterError",
    "StateDictError",
    "TraceError",
    "IRError",
    "IRParseError",
    "VerifierError",
    "IRTypeError",
    "UnknownNodeError",
    "InferenceError",
    "CompileError",
    "InputError",
    "StateError",
]
