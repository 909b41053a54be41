"""lazyfuse.backends.numba_cuda: the ``cuda`` backend (NVIDIA's ``numba-cuda``), registered on import.

It needs the ``numba-cuda`` package (``pip install 'lazyfuse[cuda]'``), not the CUDA target that
older Numba releases carry inside ``numba``; with ``NUMBA_ENABLE_CUDASIM=1`` set before the first
``numba.cuda`` import, the same kernels run in Numba's CUDA simulator (no GPU needed, slow).
"""

import importlib.util

if importlib.util.find_spec("numba_cuda") is None:
    raise ImportError("it needs NVIDIA's numba-cuda package: pip install 'lazyfuse[cuda]' "
                      "(or pip install numba-cuda)")

from lazyfuse.backends import register_backend  # noqa: E402

from .backend import NumbaCUDABackend, NumbaCUDAExecutable  # noqa: E402

BACKEND = register_backend(NumbaCUDABackend())

__all__ = ["BACKEND", "NumbaCUDABackend", "NumbaCUDAExecutable"]
