"""The CUDA backend's tests: in Numba's CUDA simulator (``make test`` runs this folder in its own
process with ``NUMBA_ENABLE_CUDASIM=1``) or on a GPU (``LAZYFUSE_CUDA_TESTS=gpu``, ``make test-gpu``).

Elsewhere (a plain ``pytest tests``) the folder is not collected: the simulator has to be switched on
before anything imports ``numba.cuda``, which the other tests' process may already have done.
"""

import os
import sys

SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
ON_GPU = os.environ.get("LAZYFUSE_CUDA_TESTS") == "gpu"

if not (SIMULATOR or ON_GPU):
    collect_ignore_glob = ["test_*.py"]
else:
    # The tests pick the GEMM themselves: the Numba one unless a test says otherwise (on a GPU with
    # CuPy the backend's default is cuBLAS; tests/cuda/test_numba_cuda.py checks that default too).
    os.environ.setdefault("LAZYFUSE_CUDA_GEMM", "numba")
    # The simulator runs each CUDA thread as a Python thread and polls them from the launching one;
    # with the default 5 ms GIL switch interval a block waits on that polling far more than it computes.
    sys.setswitchinterval(2e-4)

if SIMULATOR:
    import traceback

    import numpy as np
    from numba.cuda.simulator import kernelapi

    def _shared_array(self, shape, dtype, alignment=None):
        """numba-cuda 0.30's simulator finds a block's shared array by the calling line with a
        check-then-insert that two of the block's threads can both pass, and the loser then works on
        a private array of its own (uninitialized values, NaN results, at random).  The same lookup
        with an atomic ``dict.setdefault``; dynamic shared memory and alignment go to the original."""
        if shape == 0 or alignment is not None:
            return _original(self, shape, dtype, alignment)
        if isinstance(dtype, kernelapi.types.Type):
            dtype = kernelapi.numpy_support.as_dtype(dtype)
        caller = traceback.extract_stack(sys._getframe())[-2][0:2]
        found = self._allocations.get(caller)
        return found if found is not None else self._allocations.setdefault(caller, np.empty(shape, dtype))

    _original = kernelapi.FakeCUDAShared.array
    kernelapi.FakeCUDAShared.array = _shared_array
