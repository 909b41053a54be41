"""Thread pools of the ``cpu`` backend, and concurrent calls.

A compiled call runs two pools back to back: the BLAS's (the GEMM, through NumPy's own BLAS, see
:mod:`.intrinsics`) and Numba's (the ``prange`` epilogues and statistics).  With Numba's default
``omp`` layer (GNU OpenMP) its workers spin after each parallel region while OpenBLAS's workers
spin after each GEMM; on a 2-core machine the spinners steal the cores the other pool needs
(measured on the 2-core Zen 4 box: fused Linear+BN+ReLU train 1.39-1.42x plain GEMM time, eval 1.23x;
see bench/RESULTS.md).

Recommended configuration (opt-in, set by the user before Numba starts a pool; lazyfuse never
changes a global thread setting itself):

- ``NUMBA_THREADING_LAYER=workqueue``: Numba's own pool, whose workers sleep instead of spinning.
  Measured train 1.02-1.05x / eval 1.01-1.05x plain GEMM.  It does not touch PyTorch's or OpenBLAS's pools,
  so it is the least surprising choice for programs that also use PyTorch.  ``workqueue`` is not
  thread-safe, so calls are serialized by :func:`call_guard` on that layer.
- or ``OMP_WAIT_POLICY=PASSIVE``: also makes GNU OpenMP stop spinning,
  but it is read by every OpenMP runtime in the process, including PyTorch's, whose small-op
  latency can grow; prefer it only when PyTorch is not in the same process.

Between calls: lazyfuse and ``np.matmul`` share NumPy's OpenBLAS and its one pool, so alternating
them costs no more than the sum (an earlier version bound SciPy's second OpenBLAS through Numba's
``np.dot``, and each then ran against the other's spinning workers: ~1.9x).  PyTorch's OpenMP pool
is separate and has the same kind of spin tail after its ops.

Parallel regions are only worth it on big tensors: on ``workqueue`` waking the sleeping workers costs
~100 us per region on this VM (``omp``: ~2 us, but the spin tail above), so kernels go parallel
from ``PAR_MIN`` = 2**20 elements (see :mod:`.kernels`).  With the earlier 2**15 the ``omp`` layer
made MLPWithBN at batch 128-2048 4-30x slower (eval, batch 256: 17.0 ms, now 1.2 ms): each short
GEMM ran against the workers still spinning from the epilogue before it.

Thread counts are left alone (all cores for both pools).  Concurrency: every call allocates its
own intermediates (no shared scratch); train-mode calls of one compiled graph are serialized by
the executable (they update running stats in place); on ``omp``/``tbb`` eval calls run
concurrently (the kernels release the GIL).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

_LOCK = threading.Lock()


def threading_layer() -> str | None:
    """Numba's threading layer once a parallel kernel has run (None before)."""
    import numba

    try:
        return numba.threading_layer()
    except ValueError:
        return None


def settings() -> dict[str, str | None]:
    """The environment settings discussed above, as currently set (for reports)."""
    keys = ("NUMBA_THREADING_LAYER", "NUMBA_NUM_THREADS", "OMP_WAIT_POLICY", "OMP_NUM_THREADS",
            "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE", "OPENBLAS_THREAD_TIMEOUT")
    return {k: os.environ.get(k) for k in keys}


@contextlib.contextmanager
def call_guard() -> Iterator[None]:
    """Serialize calls while the layer is unknown or ``workqueue`` (not thread-safe)."""
    if threading_layer() in (None, "workqueue"):
        with _LOCK:
            yield
    else:
        yield
