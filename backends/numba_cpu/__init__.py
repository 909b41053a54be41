"""lazyfuse.backends.numba_cpu: the ``cpu`` backend (Numba ``@njit`` + BLAS), registered on import."""

from lazyfuse.backends import register_backend

from .backend import NumbaCPUBackend, NumbaCPUExecutable

BACKEND = register_backend(NumbaCPUBackend())

__all__ = ["BACKEND", "NumbaCPUBackend", "NumbaCPUExecutable"]
