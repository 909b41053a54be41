"""The tracer: ``trace(model, *specs)`` records a model's ``forward`` into a :class:`Graph`.

- :mod:`.locations`: the user's source line for nodes and errors
- :mod:`.symint`: ``SymInt``, a symbolic dim as user code sees it
- :mod:`.proxy`: ``Proxy``, a traced value
- :mod:`.registry`: how module classes, functions and methods become ops (``traces_module``, ...)
- :mod:`.emitters`: the built-in entries of that registry
- :mod:`.tracer`: ``Tracer``, which records one trace
- :mod:`.entry`: ``trace`` itself
"""

from . import emitters as _emitters  # noqa: F401  (registers the built-in layers and functions)
from .entry import trace
from .proxy import Proxy
from .registry import (
    Emitter,
    register_module,
    traces_function,
    traces_method,
    traces_module,
    unregister,
)
from .symint import SymInt
from .tracer import Tracer

__all__ = [
    "trace",
    "Proxy",
    "SymInt",
    "Tracer",
    "Emitter",
    "register_module",
    "traces_module",
    "traces_function",
    "traces_method",
    "unregister",
]
