"""Where the user's code is: source locations for nodes and the ``file:line: `code``` of errors.

Frames inside lazyfuse are machinery, never "the user's line"; only frames below the active
``trace()`` call are searched.
"""

from __future__ import annotations

import contextvars
import linecache
import os
import sys
from types import FrameType
from typing import Any

from lazyfuse.errors import TraceError
from lazyfuse.ir.graph import Loc

_PKG_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_INTERNAL_PREFIXES = tuple(
    os.path.join(_PKG_ROOT, d) + os.sep for d in ("frontends", "ir", "passes", "backends")
) + (os.path.join(_PKG_ROOT, "api.py"),)

SPEC_HINT = "give one TensorSpec (or shape tuple) per forward() input"

CONTROL_FLOW_HINT = (
    "the value depends on the input data or on a symbolic dim, so Python control flow on it cannot be "
    "traced; write forward() without branching on tensor values (or give the dim a concrete size "
    "in the spec)"
)

# The Tracer of the trace() in progress (its ``entry_frame`` bounds the search).
ACTIVE: contextvars.ContextVar[Any] = contextvars.ContextVar("lazyfuse_tracer", default=None)


def is_internal(filename: str) -> bool:
    """A file of lazyfuse's machinery (never "the user's line"), or frozen import code."""
    return os.path.abspath(filename).startswith(_INTERNAL_PREFIXES) or filename.startswith("<frozen")


def user_frame() -> FrameType | None:
    """The innermost frame of user code below the active ``trace()`` call."""
    active = ACTIVE.get()
    stop = active.entry_frame if active is not None else None
    f = sys._getframe(1)
    while f is not None and f is not stop:
        if not is_internal(f.f_code.co_filename):
            return f
        f = f.f_back
    return None


def user_loc() -> Loc | None:
    """The user's ``file:line`` for a node being recorded."""
    f = user_frame()
    return None if f is None else Loc(os.path.basename(f.f_code.co_filename), f.f_lineno)


def where() -> str:
    """``'model.py:12: `if x.sum() > 0:`'`` for error messages (``while tracing`` when unknown)."""
    f = user_frame()
    if f is None:
        return "while tracing"
    code = linecache.getline(f.f_code.co_filename, f.f_lineno).strip()
    loc = f"{os.path.basename(f.f_code.co_filename)}:{f.f_lineno}"
    return f"{loc}: `{code}`" if code else loc


def trace_error(what: str, hint: str = "") -> TraceError:
    """A :class:`TraceError` prefixed with the user's line."""
    msg = f"{where()}: {what}"
    return TraceError(msg + (f"; {hint}" if hint else ""))
