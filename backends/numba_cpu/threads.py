"""Thread pools and concurrent calls (placeholder doc; see the final version)."""

from __future__ import annotations

import contextlib
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


@contextlib.contextmanager
def call_guard() -> Iterator[None]:
    """Serialize calls when Numba runs on its ``workqueue`` layer, which is not thread-safe."""
    layer = threading_layer()
    if layer in (None, "workqueue"):
        with _LOCK:
            yield
    else:
        yield
