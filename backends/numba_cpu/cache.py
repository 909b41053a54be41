"""The on-disk home of generated modules.

A generated module is written to ``<cache dir>/cpu/lf_<key>.py`` with ``key`` = SHA-256 of the
source and the Numba version, and imported from there, so Numba's ``cache=True`` (which keys its
``__pycache__`` entries on the file) reuses compiled machine code across processes.  The cache dir
is ``$LAZYFUSE_CACHE_DIR`` or ``~/.cache/lazyfuse``.

- A file whose content does not hash to its name (truncated write, disk error, tampering) is
  detected when loading and rewritten; writes go through a temp file + ``os.replace`` so a reader
  never sees half a file.
- An unwritable cache dir gives one ``RuntimeWarning`` per dir and process; the module is then
  executed from memory with ``cache=False`` (compiled on every process start).
- Processes never compile the same module at once: the first call (where Numba compiles and writes
  its cache) runs under an exclusive ``flock`` on ``lf_<key>.lock``, and ``lf_<key>.ok`` is written
  once it succeeded.  Numba's cache entries of a module without ``.ok`` are dropped before import.
  Two processes compiling one file concurrently can leave caller and callee entries whose internal
  symbol names disagree, which segfaults on the next load (numba/numba#10128, #8578) — this
  protocol keeps that from happening and heals a cache left half-written by a killed process.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import sys
import tempfile
import threading
import types
import warnings
from collections.abc import Iterator
from pathlib import Path

import numba

_LOCK = threading.Lock()
_WARNED: set[str] = set()
_MEMORY: dict[str, types.ModuleType] = {}


def cache_dir() -> Path:
    """``$LAZYFUSE_CACHE_DIR`` or ``~/.cache/lazyfuse``."""
    env = os.environ.get("LAZYFUSE_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "lazyfuse"


def module_key(source: str) -> str:
    """Content hash naming a generated module: source text + Numba version."""
    h = hashlib.sha256()
    h.update(numba.__version__.encode())
    h.update(b"\0")
    h.update(source.encode())
    return h.hexdigest()[:32]


def module_path(source: str) -> Path:
    """Where ``source`` lives in the current cache dir."""
    return cache_dir() / "cpu" / f"lf_{module_key(source)}.py"


def _file_ok(path: Path, source: str) -> bool:
    try:
        return path.read_bytes() == source.encode()
    except OSError:
        return False


def _write(path: Path, source: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", suffix=".py", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(source.encode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _drop_numba_cache(path: Path) -> None:
    """Remove Numba's cache entries of a module file (beside it, or under ``NUMBA_CACHE_DIR``)."""
    places = [path.parent / "__pycache__"]
    if numba.config.CACHE_DIR:
        places.append(Path(numba.config.CACHE_DIR))
    for place in places:
        if place.is_dir():
            for f in place.rglob(f"{path.stem}.*"):
                f.unlink(missing_ok=True)


@contextlib.contextmanager
def compile_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path``'s ``.lock`` file (no-op where ``fcntl`` is missing)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no cross-process lock, behave as before
        yield
        return
    with open(path.with_suffix(".lock"), "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def is_complete(path: Path) -> bool:
    """True once a first call of ``path``'s module succeeded (its Numba cache is whole)."""
    return path.with_suffix(".ok").exists()


def mark_complete(path: Path) -> None:
    """Record that ``path``'s Numba cache entries were written by one finished compile."""
    with contextlib.suppress(OSError):
        path.with_suffix(".ok").touch()


def _import_file(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return mod


def _from_memory(name: str, source: str) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__file__ = f"<lazyfuse {name}>"
    code = compile(source.replace("cache=True", "cache=False"), mod.__file__, "exec")
    exec(code, mod.__dict__)  # noqa: S102 - our own generated code
    return mod


def load_module(source: str) -> tuple[types.ModuleType, Path | None]:
    """Import the generated ``source``: from the disk cache when possible (written if missing or
    corrupted), else from memory after one warning.  Returns the module and its file (or None)."""
    key = module_key(source)
    name = f"lazyfuse_gen_{key}"
    with _LOCK:
        mod = sys.modules.get(name) or _MEMORY.get(key)
        if mod is not None:  # already imported in this process
            return mod, Path(mod.__file__) if mod.__name__ in sys.modules else None
        path = cache_dir() / "cpu" / f"lf_{key}.py"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with compile_lock(path):
                if not _file_ok(path, source) or not is_complete(path):
                    # corrupted, or its last compile never finished: start its Numba cache afresh
                    _drop_numba_cache(path)
                    path.with_suffix(".ok").unlink(missing_ok=True)
                    if not _file_ok(path, source):
                        _write(path, source)
        except OSError as exc:
            where = str(path.parent)
            if where not in _WARNED:
                _WARNED.add(where)
                warnings.warn(f"lazyfuse: cache dir {where} is not writable ({exc}); compiled code is "
                              "not cached on disk (set LAZYFUSE_CACHE_DIR to a writable directory)",
                              RuntimeWarning, stacklevel=4)
            mod = _from_memory(name, source)
            _MEMORY[key] = mod
            return mod, None
        return _import_file(name, path), path
