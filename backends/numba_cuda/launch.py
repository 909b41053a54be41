"""Host-side helpers the generated ``run`` uses: launch geometry, stand-ins for absent operands, and
the cuBLAS GEMM (through CuPy) of ``LAZYFUSE_CUDA_GEMM=cublas``."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
from numba import cuda

# Grid-stride kernels need no more blocks than the GPU keeps busy (16384 x 256 threads is plenty).
MAX_FLAT_BLOCKS = 16384

_DUMMIES: dict[tuple[Any, int], Any] = {}
_LOCK = threading.Lock()


def blocks(n: int, per: int) -> int:
    """Blocks of ``per`` for ``n`` items; at least 1 (a launch of 0 blocks is an error, and a kernel
    of an empty tensor masks every store)."""
    return max(1, -(-n // per))


def flat_grid(total: int, threads: int) -> int:
    """Blocks of ``threads`` for a grid-stride loop over ``total`` items."""
    return min(blocks(total, threads), MAX_FLAT_BLOCKS)


def dummy(dtype: Any, rank: int = 1) -> Any:
    """A device array of one element (shape (1,) or (1, 1)) passed where an operand is absent (no
    bias, ``affine=False``, no running stats): the kernel's flag says it is never read.  One per
    dtype and rank, reused, so every call passes the same argument types."""
    key = (np.dtype(dtype), rank)
    arr = _DUMMIES.get(key)
    if arr is None:
        with _LOCK:
            arr = _DUMMIES.get(key)
            if arr is None:
                arr = _DUMMIES[key] = cuda.to_device(np.zeros((1,) * rank, key[0]))
    return arr


def cublas_gemm(x: Any, w: Any, out: Any, stream: Any) -> None:
    """out (M, C) = x (M, K) @ w (C, K).T by cuBLAS through CuPy, on ``stream``: CuPy wraps the
    Numba device arrays through ``__cuda_array_interface__`` (no copies) and runs on the stream
    Numba launches the epilogue kernels on, so their order holds without a synchronization."""
    import cupy

    with cupy.cuda.ExternalStream(stream_pointer(stream)):
        cupy.matmul(cupy.asarray(x), cupy.asarray(w).T, out=cupy.asarray(out))


def stream_pointer(stream: Any) -> int:
    """The CUstream address of a Numba stream (a ctypes handle in some numba-cuda versions, a
    cuda-bindings object in others)."""
    handle = stream.handle
    try:
        return int(handle)
    except TypeError:  # ctypes.c_void_p
        return int(handle.value or 0)
