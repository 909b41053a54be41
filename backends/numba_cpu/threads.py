"""Thread pools of the ``cpu`` backend, and concurrent calls.

A compiled call runs two pools back to back: the BLAS's (the GEMM, through NumPy's own BLAS, see
:mod:`.intrinsics`) and Numba's (the ``prange`` epilogues and statistics).  With Numba's default
``omp`` layer (GNU OpenMP) its workers spin after each parallel region while OpenBLAS's workers
spin after each GEMM; on a 2-core machine the spinners steal the cores the other pool needs
(bench/RESULTS.md has the measurements).

Numba's threading layer is the one global setting lazyfuse may choose (:func:`choose_layer`).  Just
before the process's first parallel lazyfuse call, if nobody chose a layer (no
``NUMBA_THREADING_LAYER`` in the environment, ``numba.config.THREADING_LAYER`` still ``"default"``)
and Numba's pool has not started, lazyfuse sets ``numba.config.THREADING_LAYER = "workqueue"``:
Numba's own pool, whose workers sleep instead of spinning, so the fused calls run close to the bare
GEMM's time.  It leaves PyTorch's and OpenBLAS's pools alone and the environment unchanged (child
processes choose again).  A layer the user chose always stands, and so does a pool already started
(then lazyfuse changes nothing).  ``LAZYFUSE_THREADING_LAYER`` opts out or picks another layer:

- ``keep``: leave Numba's choice alone (its own default is ``omp`` where available);
- ``workqueue``, ``omp`` or ``tbb``: the layer lazyfuse sets, under the same conditions.

:func:`layer_choice` reports what happened.  ``workqueue`` is not thread-safe: lazyfuse serializes
its own calls on it (:func:`call_guard`), but a program that runs its own ``parallel=True``
functions in other threads at the same time should pick ``omp`` or ``tbb`` (Numba aborts the
process on concurrent use of ``workqueue``).  ``OMP_WAIT_POLICY=PASSIVE`` also stops GNU OpenMP's spinning,
but every OpenMP runtime in the process reads it, PyTorch's included; lazyfuse never sets it, nor
any thread count.

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

from lazyfuse.errors import ConfigError

_LOCK = threading.Lock()
_CHOICE_LOCK = threading.Lock()
_LAYERS = ("workqueue", "omp", "tbb")
_choice: dict[str, str | None] | None = None  # set once per process by choose_layer()


def threading_layer() -> str | None:
    """Numba's threading layer once a parallel kernel has run (None before)."""
    import numba

    try:
        return numba.threading_layer()
    except ValueError:
        return None


def choose_layer() -> None:
    """Set Numba's threading layer as described above; once per process, before the first
    parallel kernel (the cpu backend calls it just before an executable's first ``run``)."""
    global _choice
    if _choice is not None:
        return
    import numba

    want = os.environ.get("LAZYFUSE_THREADING_LAYER", "").strip().lower() or "workqueue"
    if want != "keep" and want not in _LAYERS:
        raise ConfigError(f"LAZYFUSE_THREADING_LAYER={want!r}: expected keep, " + ", ".join(_LAYERS))
    with _CHOICE_LOCK:
        if _choice is not None:
            return
        # Apply NUMBA_* variables set since Numba's last read now: a later reload (each compile
        # does one when they changed) would otherwise reset the layer set here.
        numba.core.config.reload_config()
        if want == "keep":
            by = "opt-out"
        elif threading_layer() is not None:
            by = "numba-already-started"
        elif "NUMBA_THREADING_LAYER" in os.environ or str(numba.config.THREADING_LAYER) != "default":
            by = "user"
        else:
            numba.config.THREADING_LAYER = want
            by = "lazyfuse"
        _choice = {"chosen_by": by, "requested": str(numba.config.THREADING_LAYER)}


def layer_choice() -> dict[str, str | None]:
    """``chosen_by``: ``"lazyfuse"``, ``"user"``, ``"numba-already-started"``, ``"opt-out"``, or None
    before the first parallel call; ``requested``: ``numba.config.THREADING_LAYER`` at that moment;
    ``layer``: the layer Numba runs (None while its pool has not started)."""
    choice = _choice or {"chosen_by": None, "requested": None}
    return {**choice, "layer": threading_layer()}


def settings() -> dict[str, str | None]:
    """The environment settings discussed above, as currently set (for reports)."""
    keys = ("LAZYFUSE_THREADING_LAYER", "NUMBA_THREADING_LAYER", "NUMBA_NUM_THREADS", "OMP_WAIT_POLICY",
            "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE", "OPENBLAS_THREAD_TIMEOUT")
    return {k: os.environ.get(k) for k in keys}


@contextlib.contextmanager
def call_guard() -> Iterator[None]:
    """Serialize calls while the layer is unknown or ``workqueue`` (not thread-safe)."""
    if threading_layer() in (None, "workqueue"):
        with _LOCK:
            yield
    else:
        yield
