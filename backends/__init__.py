"""Backend registry (see docs/contracts.md, "Backend protocol").

A backend has ``name``, ``pipeline`` (pass names run after tracing) and ``build(graph)`` returning
an executable with ``.source``, ``run(inputs, state, training)`` and optionally ``bind(inputs,
state, training)`` (``run`` with state and flags fixed, for inputs like these: see
``CompiledModule.__call__``).  The built-in backends live in their own modules and register
themselves when imported; ``get_backend`` imports them on demand so that Numba loads only when a
model is compiled for it.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from lazyfuse.errors import CompileError


class Executable(Protocol):
    source: str

    def run(self, inputs: Sequence[np.ndarray], state: Mapping[str, np.ndarray],
            training: Mapping[str, bool]) -> np.ndarray | tuple[np.ndarray, ...]: ...


class Backend(Protocol):
    name: str
    pipeline: list[str]

    def build(self, graph: Any) -> Executable: ...


BACKENDS: dict[str, Backend] = {}

_BUILTIN_MODULES = {
    "reference": "lazyfuse.backends.reference",
    "cpu": "lazyfuse.backends.numba_cpu",
    "cuda": "lazyfuse.backends.numba_cuda",
}


def register_backend(backend: Backend) -> Backend:
    """Make ``backend`` available to ``lazyfuse.compile(..., backend=backend.name)``."""
    BACKENDS[backend.name] = backend
    return backend


def available_backends() -> list[str]:
    """Names ``get_backend`` accepts (registered plus built-in)."""
    return sorted(set(BACKENDS) | set(_BUILTIN_MODULES))


def get_backend(name: str) -> Backend:
    """The backend called ``name``; raises :class:`CompileError` listing the available ones."""
    if not isinstance(name, str):
        raise CompileError(f"backend must be a name, got {type(name).__name__}; "
                           f"available: {', '.join(available_backends())}")
    if name not in BACKENDS and name in _BUILTIN_MODULES:
        try:
            importlib.import_module(_BUILTIN_MODULES[name])
        except ImportError as exc:
            raise CompileError(f"backend {name!r} is not available here: {exc}") from exc
    backend = BACKENDS.get(name)
    if backend is None:
        if name in _BUILTIN_MODULES:
            raise CompileError(f"backend {name!r} did not register itself (is it implemented yet?); "
                               f"registered: {', '.join(sorted(BACKENDS)) or 'none'}")
        raise CompileError(f"unknown backend {name!r}; available: {', '.join(available_backends())}")
    return backend


__all__ = ["BACKENDS", "Backend", "Executable", "register_backend", "get_backend", "available_backends"]
