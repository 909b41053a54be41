"""``lf.trace``: run a model's ``forward`` on :class:`Proxy` values and record a :class:`Graph`.

The implementation is the :mod:`lazyfuse.frontends.tracing` package; this module keeps the public
names where they have always been.
"""

from lazyfuse.frontends.tracing import Proxy, SymInt, Tracer, trace

__all__ = ["trace", "Proxy", "SymInt", "Tracer"]
