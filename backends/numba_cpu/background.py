"""Compiling the parallel entry ``run`` in a background thread.

A generated module has two entries (see :mod:`.codegen`): ``run_s`` (serial kernels) and ``run``
(parallel kernels from ``PAR_MIN`` elements).  Numba compiles each on its first use, and ``run``'s
parallel kernels are most of the compile time (MLPWithBN: ~2.6 s of ~4.3 s here).  So by default
the first call that wants ``run`` is answered by ``run_s`` -- compiled already, or compiled now, in
a fraction of ``run``'s time -- and ``run`` compiles in a background thread; large calls keep
going to ``run_s`` until it is ready, then to ``run``.  Both compute the same ops; their results
agree to float rounding (their GEMM orientation and summation order differ), as results at
different batch sizes already do.

``LAZYFUSE_BACKGROUND_COMPILE=0`` turns this off: a large call then waits for ``run`` to compile,
so every large call runs the parallel kernels.  ``CompiledModule.wait_compiled()`` blocks until a
background compile finished (benchmarks call it before timing).  The thread is not a daemon: a
process that ends meanwhile waits for it, and the finished entry lands in the disk cache.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from lazyfuse.errors import ConfigError

ENV = "LAZYFUSE_BACKGROUND_COMPILE"
_ON = ("", "1", "true", "yes", "on")
_OFF = ("0", "false", "no", "off")


def enabled() -> bool:
    """Whether ``run`` may compile in the background (``LAZYFUSE_BACKGROUND_COMPILE``, default on)."""
    value = os.environ.get(ENV, "").strip().lower()
    if value in _ON:
        return True
    if value in _OFF:
        return False
    raise ConfigError(f"{ENV}={value!r}: expected 1 (compile run in the background, the default) or 0")


class BackgroundCompile:
    """One ``work()`` call in its own thread; ``error`` is what it raised (None: none, or running)."""

    def __init__(self, work: Callable[[], None], name: str) -> None:
        self.error: BaseException | None = None
        self._work = work
        self._thread = threading.Thread(target=self._run, name=name, daemon=False)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._work()
        except BaseException as exc:  # kept for the foreground: the next large call recompiles and raises
            self.error = exc

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the work finished (or ``timeout`` seconds passed); True when it finished."""
        self._thread.join(timeout)
        return not self._thread.is_alive()
