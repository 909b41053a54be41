"""The on-disk home of generated modules, shared by the backends that generate Python source for
Numba (``cpu`` today; each backend gets its own subdirectory, its ``kind``).

A generated module is written to ``<cache dir>/<kind>/lf_<key>.py`` with ``key`` = SHA-256 of the
Numba version, the kind and the source, and imported from there, so Numba's ``cache=True`` (which keys its
``__pycache__`` entries on the file) reuses compiled machine code across processes.  The cache dir
is ``$LAZYFUSE_CACHE_DIR`` or ``~/.cache/lazyfuse``.

- A file whose content does not hash to its name (truncated write, disk error, tampering) is
  detected when loading and rewritten, with one :class:`CacheWarning`; writes go through a temp
  file + ``os.replace`` so a reader never sees half a file.
- Processes never compile the same module at once: a backend runs the first call of each function
  (where Numba compiles and writes its cache) inside :func:`first_call`, under an exclusive
  ``flock`` on ``lf_<key>.lock``, and ``lf_<key>.ok`` is written once it succeeded.  Numba's cache
  entries of a module without ``.ok`` are dropped before import (with a :class:`CacheWarning` when
  ``lf_<key>.compiling`` shows that a killed compile left them).  Two processes compiling one file
  concurrently can leave caller and callee entries whose internal symbol names disagree, which
  segfaults on the next load (numba/numba#10128, #8578) — this protocol keeps that from happening
  and heals a cache left half-written by a killed process.
- Numba's own entries (``<NUMBA_CACHE_DIR>/<subdir>/lf_<key>.<function>-<line>.pyXY.nbi`` the
  index, ``.N.nbc`` the data) are read when a function is first called in a process.  Numba raises
  whatever the unpickler raises on a damaged one, in every process, forever.  :func:`load_module`
  therefore gives each ``cache=True`` function of the module a :class:`_HealingCache` (a subclass
  of ``numba.core.caching.FunctionCache``): a failed load drops that function's entries and returns
  "not cached", so Numba compiles that function (only it: callees whose entries are fine still load)
  and saves fresh entries; one :class:`CacheWarning` per cache dir and process says so.  An entry
  that cannot be dropped or saved again raises :class:`~lazyfuse.errors.CompileError` with what to
  do.  Nothing of this runs on a call: Numba consults its cache only while compiling.
- An unwritable cache dir gives one :class:`CacheWarning` per dir and process.  Unwritable
  ``LAZYFUSE_CACHE_DIR``: the module is executed from memory with ``cache=False`` (compiled on every
  process start).  Unwritable ``NUMBA_CACHE_DIR``: Numba ignores it (it reads a cache dir only if it
  can write a file there) and caches beside the module, in ``<cache dir>/<kind>/__pycache__``, or in
  the user cache dir; where it can write nowhere, the module runs from memory, uncached.
"""

from __future__ import annotations

import contextlib
import glob
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
from numba.core import caching
from numba.core.dispatcher import Dispatcher

from lazyfuse.errors import CacheWarning, CompileError

_LOCK = threading.Lock()
_WARN_LOCK = threading.Lock()
_WARNED: set[object] = set()
_MEMORY: dict[tuple[str, str], types.ModuleType] = {}


def _warn_once(key: object, message: str) -> None:
    """One :class:`CacheWarning` per ``key`` and process, attributed to the caller's code."""
    with _WARN_LOCK:
        if key in _WARNED:
            return
        _WARNED.add(key)
    warnings.warn(message, CacheWarning, stacklevel=_outside_stacklevel())


def _outside_stacklevel() -> int:
    """The ``stacklevel`` of the first frame outside lazyfuse's library code and Numba (so the
    warning points at the user's line, not at Numba's dispatcher)."""
    root = str(Path(__file__).resolve().parent.parent)  # the package root
    numba_dir = os.path.dirname(numba.__file__)
    own = (os.path.join(root, ""), os.path.join(numba_dir, ""), "<frozen ")
    user = (os.path.join(root, "tests", ""), os.path.join(root, "examples", ""))
    frame = sys._getframe(1)
    level = 1
    while frame is not None:
        name = frame.f_code.co_filename
        if not name.startswith(own) or name.startswith(user):
            return level
        frame = frame.f_back
        level += 1
    return 1


def cache_dir() -> Path:
    """``$LAZYFUSE_CACHE_DIR`` or ``~/.cache/lazyfuse``."""
    env = os.environ.get("LAZYFUSE_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "lazyfuse"


def module_key(source: str, kind: str) -> str:
    """Content hash naming a generated module: Numba version, backend kind and source text (so two
    backends never share a module, in the cache dir or in ``sys.modules``)."""
    h = hashlib.sha256()
    for part in (numba.__version__, kind, source):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:32]


def module_path(source: str, kind: str) -> Path:
    """Where ``source``, generated by backend ``kind``, lives in the current cache dir."""
    return cache_dir() / kind / f"lf_{module_key(source, kind)}.py"


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


def _drop_numba_cache(path: Path) -> int:
    """Remove Numba's cache entries of a module file (beside it, or under ``NUMBA_CACHE_DIR``);
    returns how many files were removed."""
    places = [path.parent / "__pycache__"]
    if numba.config.CACHE_DIR:
        places.append(Path(numba.config.CACHE_DIR))
    removed = 0
    for place in places:
        if place.is_dir():
            for f in place.rglob(f"{path.stem}.*"):
                try:
                    f.unlink()
                except FileNotFoundError:
                    continue
                removed += 1
    return removed


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


@contextlib.contextmanager
def first_call(path: Path | None) -> Iterator[None]:
    """Wrap the first call of each function of the module loaded from ``path`` (the call in which
    Numba compiles it, or loads it from its disk cache): no other process compiles the module
    meanwhile, and the module is marked whole (``.ok``) once the call succeeded, so the next process
    keeps its Numba cache.  While a module without ``.ok`` compiles, ``lf_<key>.compiling`` exists:
    left behind, it tells the next process that a compile was killed.  A module run from memory
    (``path`` None) needs none of this."""
    if path is None:
        yield
        return
    with compile_lock(path):
        if is_complete(path):
            yield
            return
        marker = path.with_suffix(".compiling")
        with contextlib.suppress(OSError):
            marker.touch()
        try:
            yield
            mark_complete(path)
        finally:
            with contextlib.suppress(OSError):
                marker.unlink()


def is_complete(path: Path) -> bool:
    """True once a first call of ``path``'s module succeeded (its Numba cache is whole)."""
    return path.with_suffix(".ok").exists()


def mark_complete(path: Path) -> None:
    """Record that ``path``'s Numba cache entries were written by one finished compile."""
    with contextlib.suppress(OSError):
        path.with_suffix(".ok").touch()


# ------------------------------------------------------------------------ Numba's own entries
class _HealingCache(caching.FunctionCache):
    """Numba's per-function disk cache (``numba.core.caching.FunctionCache``, Numba 0.60-0.68) with
    damaged entries repaired: an entry that fails to load (truncated or garbage ``.nbc`` data,
    garbage or empty ``.nbi`` index, unreadable file, machine code Numba cannot rebuild) is dropped,
    the load answers "not cached" and the dispatcher compiles the function and saves new entries.

    Instances are Numba's own, re-classed by :func:`_adopt_numba_caches` when a generated module is
    imported; ``Dispatcher.compile`` calls ``load_overload`` only when a signature is not compiled
    in this process yet (under Numba's compiler lock), so a call never gets here."""

    _lf_healed: BaseException | None = None  # the load error this process repaired

    def load_overload(self, sig, target_context):
        try:
            return super().load_overload(sig, target_context)
        except MemoryError:
            raise
        except Exception as exc:  # any failure to load the entry: damaged, unreadable, unusable
            if self._lf_healed is not None:  # rebuilt once in this process, and broken again
                raise self._not_rebuilt(exc) from exc
            self._heal(exc)
            return None

    def save_overload(self, sig, data):
        try:
            super().save_overload(sig, data)
        except Exception as exc:
            if self._lf_healed is not None:
                raise self._not_rebuilt(exc) from exc
            if isinstance(exc, OSError):  # could not write: the function stays compiled in memory
                _warn_once(("numba-unwritable", self.cache_path),
                           f"lazyfuse: Numba's cache dir {self.cache_path} cannot be written "
                           f"({_describe(exc)}); the compiled code is not saved, so every new process "
                           "compiles it again; "
                           "make that directory writable or point NUMBA_CACHE_DIR at a writable one")
                return
            self._heal(exc)  # the index was readable when loading, damaged now: repair it once
            try:
                super().save_overload(sig, data)
            except Exception as again:
                raise self._not_rebuilt(again) from again

    def _entry_files(self) -> list[str]:
        """This function's index and data files (all signatures)."""
        base = os.path.join(self.cache_path, self._impl.filename_base)
        return [base + ".nbi", *glob.glob(glob.escape(base) + ".*.nbc")]

    def _heal(self, exc: BaseException) -> None:
        name = self._impl.filename_base
        for f in self._entry_files():
            try:
                os.unlink(f)
            except FileNotFoundError:
                continue
            except OSError as err:
                self._lf_healed = exc
                raise self._not_rebuilt(err) from exc
        self._lf_healed = exc
        _warn_once(("numba-corrupt", self.cache_path),
                   f"lazyfuse: Numba's cache entry {name} in {self.cache_path} could not be read "
                   f"({_describe(exc)}); dropped it and compiled that function again (other bad entries "
                   f"in this directory are rebuilt without another warning). If this keeps happening, "
                   f"delete {self.cache_path}")

    def _not_rebuilt(self, err: BaseException) -> CompileError:
        read, again = _describe(self._lf_healed), _describe(err)
        what = f"could not be read ({read}) and could not be rebuilt ({again})" if read != again else \
            f"could not be read or rebuilt ({read})"
        return CompileError(
            f"lazyfuse: the Numba cache entry {self._impl.filename_base} in {self.cache_path} {what}; "
            f"delete {self.cache_path} (or the whole cache dir), or set NUMBA_CACHE_DIR to another "
            "writable directory")


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "no error"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _adopt_numba_caches(mod: types.ModuleType) -> None:
    """Give every ``cache=True`` function of the generated module ``mod`` a :class:`_HealingCache`,
    and warn once when Numba could not use ``NUMBA_CACHE_DIR`` (it then caches elsewhere)."""
    caches = []
    for value in vars(mod).values():
        if (isinstance(value, Dispatcher) and getattr(value, "py_func", None) is not None
                and value.py_func.__globals__ is mod.__dict__):
            cache = getattr(value, "_cache", None)
            if type(cache) is caching.FunctionCache:
                cache.__class__ = _HealingCache
                caches.append(cache)
    wanted = numba.config.CACHE_DIR
    if (caches and wanted and not numba.config.CACHE_LOCATOR_CLASSES
            and not isinstance(caches[0]._impl.locator, caching.UserProvidedCacheLocator)):
        _warn_once(("numba-dir", wanted),
                   f"lazyfuse: NUMBA_CACHE_DIR {wanted} cannot be written ({_why_unwritable(wanted)}), "
                   "and Numba only uses a cache dir it can write to: code cached there is not loaded. "
                   f"Numba caches in {caches[0].cache_path} instead (each model is compiled once more, "
                   f"into that directory). Make {wanted} writable, or point NUMBA_CACHE_DIR at a writable "
                   "directory")


def _why_unwritable(where: str) -> str:
    """Numba's own test of a cache dir (``_CacheLocator.ensure_cache_path``), as a reason."""
    try:
        os.makedirs(where, exist_ok=True)
        tempfile.TemporaryFile(dir=where).close()
    except OSError as exc:
        return _describe(exc)
    return "a subdirectory could not be created"


# ------------------------------------------------------------------------------------ loading
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


_UNCACHED = ("compiled code is not cached on disk: every new process compiles each model again "
             "(seconds per model, instead of a fraction of a second)")


def _check_files(path: Path, source: str) -> None:
    """Under the compile lock: rewrite a module file that does not match its source, and drop the
    Numba entries of a module whose last compile never finished; one warning if something was
    damaged (not for a module that is simply new)."""
    good = _file_ok(path, source)
    if good and is_complete(path):  # the usual case: nothing more to read
        return
    existed = good or path.exists()
    killed = path.with_suffix(".compiling").exists()
    dropped = _drop_numba_cache(path)
    path.with_suffix(".ok").unlink(missing_ok=True)
    path.with_suffix(".compiling").unlink(missing_ok=True)
    if not good:
        _write(path, source)
        if existed:
            _warn_once(("file", str(path)),
                       f"lazyfuse: cached module {path} did not match its content hash (a truncated "
                       "write, disk error or edit); rewrote it and dropped its Numba cache entries, so "
                       "this process compiles it again")
    elif dropped and killed:  # (entries without .ok but no marker: functions called outside first_call)
        where = numba.config.CACHE_DIR or path.parent
        _warn_once(("unfinished", str(path)),
                   f"lazyfuse: the Numba cache entries of {path.name} (in {where}) were left by a compile "
                   "that never finished (a killed process); dropped them, so this process compiles it again")


def load_module(source: str, kind: str) -> tuple[types.ModuleType, Path | None]:
    """Import the ``source`` backend ``kind`` generated: from the disk cache when possible (written
    if missing or corrupted), else from memory after one warning.  Returns the module and its file
    (or None)."""
    key = module_key(source, kind)
    name = f"lazyfuse_gen_{key}"
    with _LOCK:
        mod = sys.modules.get(name) or _MEMORY.get((kind, key))
        if mod is not None:  # already imported in this process
            return mod, Path(mod.__file__) if mod.__name__ in sys.modules else None
        path = module_path(source, kind)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with compile_lock(path):
                _check_files(path, source)
        except OSError as exc:
            _warn_once(("dir", str(path.parent)),
                       f"lazyfuse: cache dir {path.parent} is not writable ({_describe(exc)}); {_UNCACHED}. "
                       "Set LAZYFUSE_CACHE_DIR to a writable directory")
            return _memory_module(kind, key, name, source), None
        try:
            mod = _import_file(name, path)
        except RuntimeError as exc:  # numba: "cannot cache function ...: no locator available ..."
            if "no locator" not in str(exc):
                raise
            _warn_once(("nowhere", str(path.parent)),
                       f"lazyfuse: Numba can write its cache nowhere (NUMBA_CACHE_DIR "
                       f"{numba.config.CACHE_DIR or '(unset)'}, {path.parent / '__pycache__'} and the user "
                       f"cache dir cannot be written); {_UNCACHED}. Point NUMBA_CACHE_DIR at a writable "
                       "directory")
            return _memory_module(kind, key, name, source), None
        _adopt_numba_caches(mod)
        return mod, path


def _memory_module(kind: str, key: str, name: str, source: str) -> types.ModuleType:
    mod = _from_memory(name, source)
    _MEMORY[kind, key] = mod
    return mod
