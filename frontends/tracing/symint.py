"""``SymInt``: a symbolic dim as user code sees it while tracing."""

from __future__ import annotations

from typing import Any

import numpy as np

from lazyfuse.errors import TraceError
from lazyfuse.ir.types import UNKNOWN, Sym

from .locations import CONTROL_FLOW_HINT, trace_error


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
        return trace_error(f"{what} of the symbolic dim {self.sym}", CONTROL_FLOW_HINT)

    def __mul__(self, other: Any) -> Any:
        o = unwrap_dim(other)
        if not isinstance(o, (int, Sym)) or isinstance(o, bool):
            return NotImplemented
        return wrap_dim(self.sym * o)

    __rmul__ = __mul__

    def __floordiv__(self, other: Any) -> Any:
        o = unwrap_dim(other)
        try:
            return wrap_dim(self.sym // o)
        except Exception as exc:  # Sym raises for inexact division
            raise trace_error(f"cannot divide the symbolic dim {self.sym} by {o}: {exc}") from None

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (SymInt, Sym)):
            return self.sym == unwrap_dim(other)
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
        raise trace_error(
            f"only products and exact division of symbolic dims are supported, not '+'/'-' on {self.sym}"
        )

    __add__ = __radd__ = __sub__ = __rsub__ = _arith

    def _compare(self, other: Any) -> bool:
        raise self._value_error(f"comparison with {other!r}")

    __lt__ = __le__ = __gt__ = __ge__ = _compare


def wrap_dim(d: Any) -> Any:
    """A dim as user code sees it: an int, or a :class:`SymInt`."""
    if isinstance(d, Sym) or d is UNKNOWN:
        return SymInt(d)
    return int(d)


def unwrap_dim(d: Any) -> Any:
    """A dim from user code as the IR holds it: an int or a ``Sym``."""
    if isinstance(d, SymInt):
        return d.sym
    if isinstance(d, (np.integer,)):
        return int(d)
    return d
