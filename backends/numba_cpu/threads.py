"""Threading (placeholder until measured)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

_LOCK = threading.Lock()


@contextlib.contextmanager
def call_guard() -> Iterator[None]:
    yield
