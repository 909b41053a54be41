"""Thread pools of the ``cpu`` backend, and concurrent calls.

A compiled call runs two pools back to back: the BLAS's (the GEMM, through NumPy's own BLAS, see
:mod:`.intrinsics`) and Numba's (the ``prange`` epilogues and statistics).  With Numba's default
``omp`` layer (GNU OpenMP) its workers spin after each parallel region while OpenBLAS's workers
spin after each GEMM; on a 2-core machine the spinners steal the cores the other pool needs
(bench/RESULTS.md has the measurements).

Recommended configuration (opt-in, set by the user before Numba starts a pool; lazyfuse never
changes a global thread setting itself):

- ``NUMBA_THREADING_LAYER=workqueue``: Numba's own pool, whose workers sleep instead of spinning.
  With it the fused calls run close to the bare GEMM's time.  It does not touch PyTorch's or
  OpenBLAS's pools, so it is the least surprising choice for programs that also use PyTorch.
  ``workqueue`` is not thread-safe, so calls are serialized by :func:`call_guard` on that layer.
- or ``OMP_WAIT_POLICY=PASSIVE``: also makes GNU OpenMP stop spinning,
  but it is read by every OpenMP runtime in the process, including PyTorch's, whose small-op
  latency can grow; prefer it only when PyTorch is not in the same process.

Between calls: lazyfuse and ``np.matmul`` share NumPy's OpenBLAS and its one pool, so alternating
them costs no more than the sum (an earlier version bound SciPy's second OpenBLAS through Numba's
``np.dot``, and each then ran against the other's spinning workers).  PyTorch's OpenMP pool
is separate and has the same kind of spin tail after its ops.

Parallel regions are only worth it on big tensors: on ``workqueue`` waking the sleeping workers is
slow (on ``omp`` it is fast, but the spin tail above follows), so kernels go parallel from
``PAR_MIN`` = 2**20 elements (see :mod:`.kernels`).  With a lower threshold the ``omp`` layer made
mid-size MLPWithBN calls many times slower: each short GEMM ran against the workers still spinning
from the epilogue before it.

Thread counts are left alone (all cores for both pools).  Concurrency: every call allocates its
own intermediates (no shared scratch); train-mode calls are serialized by ``CompiledModule``, with
one lock for the process (they update running stats in place, and two compiled modules of one
model update the same arrays); on ``omp``/``tbb`` eval calls run concurrently (the kernels release
the GIL).
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
