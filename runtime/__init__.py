"""lazyfuse.runtime: what a compiled model is at call time (``CompiledModule``, its call cache).

It sits above the backends and the frontends: it calls a backend's executable with the arrays of
the live model it was compiled from, read through ``nn.Module``'s public state interface.
"""

from .compiled import CompiledModule

__all__ = ["CompiledModule"]
