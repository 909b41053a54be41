"""Faults: corrupt and unwritable caches, processes compiling at once, threads calling at once.

Each kind of damaged cache file must cost one warning and a rebuild of what it held, never a wrong
number or a crash, and leave a cache the next process loads warm without a warning.  The
end-to-end cases run fresh processes on one small model whose warm cache is built once per file
(and restored before each test); the rest runs in this process on tiny generated modules (they
compile in a fraction of a second).  An unwritable directory is made as a path below a regular
file, which cannot be created even by root; the chmod variant runs only where permissions bind.
"""

from __future__ import annotations

import copy
import json
import os
import pickle
import shutil
import stat
import subprocess
import sys
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numba
import numpy as np
import pytest

import lazyfuse as lf
from lazyfuse import CacheWarning, nn
from lazyfuse.backends import module_cache
from lazyfuse.errors import CompileError

# ------------------------------------------------------------------------------ in new processes
_SCRIPT = """
import json, warnings
import numpy as np
caught = []
warnings.simplefilter("always")
warnings.showwarning = lambda message, category, *rest: caught.append([category.__name__, str(message)])
import lazyfuse as lf
from lazyfuse import nn
lf.manual_seed(0)
model = nn.Sequential(nn.Linear(3, 2), nn.ReLU())
spec = lf.TensorSpec(("N", 3))
x = np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)
out = {"ref": lf.compile(model, spec, backend="reference")(x).tolist()}
try:
    cm = lf.compile(model, spec, backend="cpu")
    out["y"] = cm(x).tolist()
    out["file"] = str(cm.runner.file)
    out["stats"] = {name: [sum(f.stats.cache_hits.values()), sum(f.stats.cache_misses.values())]
                    for name, f in vars(cm.runner.module).items()
                    if hasattr(f, "stats") and (f.stats.cache_hits or f.stats.cache_misses)}
except Exception as exc:
    out["error"] = [type(exc).__name__, str(exc)]
out["warnings"] = caught
print(json.dumps(out))
"""


def _env(base: Path) -> dict[str, str]:
    return dict(os.environ, LAZYFUSE_CACHE_DIR=str(base / "lf"), NUMBA_CACHE_DIR=str(base / "nb"))


def _result(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def _run(base: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", _SCRIPT], env=_env(base), capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return _result(out.stdout)


def _ours(result: dict) -> list[str]:
    """The lazyfuse cache warnings a process showed."""
    return [message for category, message in result["warnings"] if category == "CacheWarning"]


def _check_numbers(result: dict, cold: dict) -> None:
    assert result["y"] == cold["y"]  # the same machine code, rebuilt or loaded
    np.testing.assert_allclose(result["y"], result["ref"], rtol=1e-6, atol=1e-7)


def _assert_warm(base: Path, cold: dict) -> None:
    warm = _run(base)
    _check_numbers(warm, cold)
    assert _ours(warm) == [], warm["warnings"]
    assert warm["stats"] == {"run_s": [1, 0]}, warm["stats"]  # everything from disk, nothing compiled


@pytest.fixture(scope="module")
def warm_cache(tmp_path_factory):
    """A cache dir pair filled by one cold process, and a pristine copy to restore it from."""
    base = tmp_path_factory.mktemp("faults")
    cold = _run(base)
    assert _ours(cold) == [] and cold["stats"]["run_s"] == [0, 1]
    np.testing.assert_allclose(cold["y"], cold["ref"], rtol=1e-6, atol=1e-7)
    for part in ("lf", "nb"):
        shutil.copytree(base / part, base / "pristine" / part)
    return base, cold


def _restore(base: Path) -> None:
    """The cache as the cold process left it (same paths: Numba's subdir names hash the module dir)."""
    for part in ("lf", "nb"):
        shutil.rmtree(base / part, ignore_errors=True)
        shutil.copytree(base / "pristine" / part, base / part)


def _numba_files(base: Path, function: str, suffix: str) -> list[Path]:
    files = sorted((base / "nb").rglob(f"lf_*.{function}-*{suffix}"))
    assert files, (function, suffix)
    return files


def _truncate_every_nbc(base: Path) -> None:
    for f in _numba_files(base, "*", ".nbc"):
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def _garbage_run_s_index(base: Path) -> None:
    for f in _numba_files(base, "run_s", ".nbi"):
        f.write_bytes(b"garbage\n")


def _empty_run_s_and_gemm_indexes(base: Path) -> None:
    for f in _numba_files(base, "run_s", ".nbi") + _numba_files(base, "gemm_cm", ".nbi"):
        f.write_bytes(b"")


def _garbage_module_file(base: Path) -> None:
    for f in (base / "lf" / "cpu").glob("lf_*.py"):
        f.write_text("this is not the generated module\nraise SystemExit(3)\n")


def _as_left_by_a_killed_compile(base: Path) -> None:
    """No ``.ok`` (the compile never finished) and the ``.compiling`` marker a first call leaves
    while it runs (unit-tested below), so Numba's entries cannot be trusted."""
    for f in (base / "lf" / "cpu").glob("lf_*.ok"):
        f.unlink()
        f.with_suffix(".compiling").touch()


# (damage, what the warning says, the functions that must compile again; None: all of them)
_DAMAGE = {
    "nbc-truncated": (_truncate_every_nbc, "could not be read (UnpicklingError", None),
    "nbi-garbage": (_garbage_run_s_index, "could not be read", {"run_s"}),
    "nbi-empty": (_empty_run_s_and_gemm_indexes, "could not be read (EOFError", {"run_s", "gemm_cm"}),
    "module-file": (_garbage_module_file, "did not match its content hash", None),
    "killed-compile": (_as_left_by_a_killed_compile, "compile that never finished", None),
}


@pytest.mark.parametrize("kind", list(_DAMAGE))
def test_a_damaged_cache_file_costs_one_warning_and_a_rebuild(warm_cache, kind):
    base, cold = warm_cache
    _restore(base)
    damage, says, rebuilt = _DAMAGE[kind]
    damage(base)
    healed = _run(base)
    _check_numbers(healed, cold)
    ours = _ours(healed)
    assert len(ours) == 1 and says in ours[0], healed["warnings"]
    compiled = {name for name, (hits, misses) in healed["stats"].items() if misses}
    if rebuilt is None:  # nothing on disk was trusted: everything compiled again
        assert all(hits == 0 for hits, _ in healed["stats"].values()), healed["stats"]
        assert {"run_s", "gemm_cm", "k_gemm"} <= compiled
    else:  # only the damaged entries were rebuilt; the callees they needed came from disk
        assert compiled == rebuilt, healed["stats"]
        loaded = {name: st for name, st in healed["stats"].items() if name not in rebuilt}
        assert loaded and all(st == [1, 0] for st in loaded.values()), healed["stats"]
    numba_entry = kind.startswith("nb")
    assert str(base / ("nb" if numba_entry or kind == "killed-compile" else "lf")) in ours[0]  # names the dir
    _assert_warm(base, cold)


def test_an_entry_that_cannot_be_dropped_raises_a_compile_error_with_a_hint(warm_cache):
    base, _ = warm_cache
    _restore(base)
    index = _numba_files(base, "run_s", ".nbi")[0]
    index.unlink()
    (index / "inside").mkdir(parents=True)  # unreadable as a file and not removable with unlink
    result = _run(base)
    assert result["error"][0] == "CompileError", result
    message = result["error"][1]
    assert "could not be read or rebuilt" in message and "IsADirectoryError" in message
    assert str(index.parent) in message and "delete" in message and "NUMBA_CACHE_DIR" in message


def test_two_processes_compiling_at_once_then_a_third_loads_warm(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", _SCRIPT], env=_env(tmp_path), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outs]
    first, second = (_result(out) for out, _ in outs)
    for r in (first, second):
        assert "error" not in r and _ours(r) == [], r
        np.testing.assert_allclose(r["y"], r["ref"], rtol=1e-6, atol=1e-7)
    assert first["y"] == second["y"]
    # one compiled, the other waited for it and loaded its entries (which one is up to the OS)
    assert sorted(r["stats"]["run_s"] for r in (first, second)) == [[0, 1], [1, 0]]
    _assert_warm(tmp_path, first)


def _permissions_bind(where: Path) -> bool:
    probe = where / "probe"
    probe.mkdir()
    probe.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        (probe / "x").touch()
    except PermissionError:
        return True
    finally:
        probe.chmod(stat.S_IRWXU)
    return False  # root (or CAP_DAC_OVERRIDE): a read-only mode does not stop writes


def test_a_populated_numba_cache_made_read_only_warns_and_stays_correct(warm_cache, tmp_path):
    if not _permissions_bind(tmp_path):
        pytest.skip("running with privileges that write through read-only modes (root); the same code "
                    "is exercised by test_an_unwritable_numba_cache_dir_warns_once_and_caches_elsewhere")
    base, cold = warm_cache
    _restore(base)
    dirs = [base / "nb", *[p for p in (base / "nb").rglob("*") if p.is_dir()]]
    for d in dirs:
        d.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        for _ in range(2):  # warns in every process; the second loads what the first cached elsewhere
            r = _run(base)
            _check_numbers(r, cold)
            ours = _ours(r)
            assert len(ours) == 1 and "cannot be written" in ours[0] and str(base / "nb") in ours[0]
    finally:
        for d in dirs:
            d.chmod(stat.S_IRWXU)
    assert r["stats"] == {"run_s": [1, 0]}


# --------------------------------------------------------------------------------- in this process
def _tiny_source() -> str:
    """A module of two cached functions, new to this process (and to every cache dir)."""
    return ("from numba import njit\n\n@njit(cache=True)\ndef inner(x):\n    return x + 1\n\n"
            f"@njit(cache=True)\ndef outer(x):\n    return 2 * inner(x)  # {uuid.uuid4().hex}\n")


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    """Fresh cache dirs for this test: LAZYFUSE_CACHE_DIR and Numba's (read when a module is loaded)."""
    monkeypatch.setenv("LAZYFUSE_CACHE_DIR", str(tmp_path / "lf"))
    monkeypatch.setattr(numba.config, "CACHE_DIR", str(tmp_path / "nb"))
    return tmp_path


def _load_tiny():
    mod, path = module_cache.load_module(_tiny_source(), "faults")
    return mod, path


def _call(mod, path):
    with module_cache.first_call(path):
        return mod.outer(20)


def _caught(fn):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fn()
    return result, [w for w in caught if issubclass(w.category, CacheWarning)]


def _index(dispatcher) -> Path:
    return Path(dispatcher._cache._cache_file._index_path)  # where Numba reads this function's index


def test_a_garbage_index_is_rebuilt_with_one_warning_per_dir(dirs):
    results = []
    for _ in range(2):  # two modules in one cache dir: the second heals silently
        mod, path = _load_tiny()
        index = _index(mod.outer)
        index.parent.mkdir(parents=True, exist_ok=True)
        index.write_bytes(b"\x80\x04garbage")
        y, ours = _caught(lambda: _call(mod, path))  # noqa: B023 - called at once
        results.append((y, ours))
        assert mod.outer.stats.cache_misses and not mod.outer.stats.cache_hits
        with open(index, "rb") as f:  # a whole index again, as Numba writes it
            assert pickle.load(f) == numba.__version__
    assert [y for y, _ in results] == [42, 42]
    first, second = (ours for _, ours in results)
    assert len(first) == 1 and "could not be read" in str(first[0].message) and second == []
    assert str(dirs / "nb") in str(first[0].message)
    assert issubclass(CacheWarning, RuntimeWarning)


def test_an_entry_that_cannot_be_saved_after_a_repair_raises(dirs, monkeypatch):
    mod, path = _load_tiny()
    index = _index(mod.outer)
    index.parent.mkdir(parents=True, exist_ok=True)
    index.write_bytes(b"")

    def refuse(self, overloads):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(numba.core.caching.IndexDataCacheFile, "_save_index", refuse)
    with pytest.raises(CompileError, match=r"could not be read \(EOFError.*could not be rebuilt .*No space"
                                           r".*NUMBA_CACHE_DIR"):
        _caught(lambda: _call(mod, path))


def test_a_cache_that_cannot_be_written_at_save_time_warns_and_computes(dirs, monkeypatch):
    mod, path = _load_tiny()

    def refuse(self, overloads):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(numba.core.caching.IndexDataCacheFile, "_save_index", refuse)
    y, ours = _caught(lambda: _call(mod, path))
    assert y == 42
    assert len(ours) == 1 and "cannot be written" in str(ours[0].message)
    assert "every new process compiles it again" in str(ours[0].message)


def test_an_unwritable_numba_cache_dir_warns_once_and_caches_elsewhere(dirs, monkeypatch):
    blocker = dirs / "a_file"
    blocker.write_text("not a directory")
    monkeypatch.setattr(numba.config, "CACHE_DIR", str(blocker / "numba"))
    lf.manual_seed(3)
    model = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 2)).eval()  # sizes no other test uses
    spec = lf.TensorSpec(("N", 5))

    def build():
        tiny = _load_tiny()
        return tiny, lf.compile(model, spec, backend="cpu")

    ((mod, path), cm), ours = _caught(build)
    assert len(ours) == 1, [str(w.message) for w in ours]
    message = str(ours[0].message)
    assert f"NUMBA_CACHE_DIR {blocker / 'numba'} cannot be written" in message
    assert "NotADirectoryError" in message and "point NUMBA_CACHE_DIR at a writable" in message
    x = np.linspace(-2, 2, 15, dtype=np.float32).reshape(3, 5)
    (y, tiny), later = _caught(lambda: (cm(x), _call(mod, path)))
    assert later == [] and tiny == 42
    np.testing.assert_allclose(y, lf.compile(model, spec, backend="reference")(x), rtol=1e-6, atol=1e-7)
    assert cm.runner.cached  # Numba fell back to the __pycache__ beside the module
    assert cm.runner.module.run_s.stats.cache_path == str(dirs / "lf" / "cpu" / "__pycache__")


def test_no_writable_place_for_numba_runs_from_memory_with_a_warning(dirs, monkeypatch):
    blocker = dirs / "a_file"
    blocker.write_text("not a directory")
    monkeypatch.setattr(numba.config, "CACHE_DIR", str(blocker / "numba"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker / "xdg"))  # Numba's user-wide cache dir
    (dirs / "lf" / "faults").mkdir(parents=True)
    (dirs / "lf" / "faults" / "__pycache__").write_text("in the way")  # the dir beside the module
    (mod, path), ours = _caught(_load_tiny)
    assert path is None and _call(mod, path) == 42
    assert len(ours) == 1 and "can write its cache nowhere" in str(ours[0].message)
    assert "every new process compiles each model again" in str(ours[0].message)
    (mod2, path2), again = _caught(_load_tiny)
    assert path2 is None and again == []


def test_a_first_call_marks_its_compile_while_it_runs(dirs):
    mod, path = _load_tiny()
    marker, ok = path.with_suffix(".compiling"), path.with_suffix(".ok")
    seen = []

    def spy(x):
        seen.append((marker.exists(), ok.exists()))
        return mod.outer(x)

    with module_cache.first_call(path):
        assert spy(20) == 42
    assert seen == [(True, False)] and ok.exists() and not marker.exists()
    with pytest.raises(ZeroDivisionError), module_cache.first_call(path):  # complete: no marker
        seen.append((marker.exists(), ok.exists()))
        raise ZeroDivisionError
    assert seen[-1] == (False, True)
    mod2, path2 = _load_tiny()
    with pytest.raises(ZeroDivisionError), module_cache.first_call(path2):  # a failed call leaves none
        raise ZeroDivisionError
    assert not path2.with_suffix(".compiling").exists() and not path2.with_suffix(".ok").exists()


# --------------------------------------------------------------------------------------- threads
@pytest.fixture(scope="module")
def bn_model():
    lf.manual_seed(7)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8, momentum=0.05), nn.ReLU(), nn.Linear(8, 3))
    spec = lf.TensorSpec(("N", 4))
    return model, spec, lf.compile(model, spec, backend="cpu")


def _xs(k: int) -> list[np.ndarray]:
    rng = np.random.default_rng(k)
    return [rng.standard_normal((n, 4)).astype(np.float32) for n in (5, 5, 3, 7, 5)]


def test_four_threads_in_eval_mode_match_serial_calls_and_the_reference(bn_model):
    model, spec, cm = bn_model
    model.eval()
    xs = [x for k in range(8) for x in _xs(k)]
    serial = [cm(x) for x in xs]
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(cm, xs * 4))
    for a, b in zip(serial * 4, threaded):
        np.testing.assert_array_equal(a, b)
    ref = lf.compile(model, spec, backend="reference")
    for x, y in zip(xs, serial):
        np.testing.assert_allclose(y, ref(x), rtol=1e-5, atol=1e-6)
    model.train()


@pytest.fixture(scope="module")
def wide_bn():
    """Train-mode race bait: one wide BatchNorm, so a call is mostly its running-stat update; slow
    momentum, so the stats are far from converged after thousands of updates (a lost one shows)."""
    model = nn.Sequential(nn.BatchNorm1d(2048, momentum=1e-3))
    return model, lf.TensorSpec(("N", 2048))


def _stats(model) -> list[np.ndarray]:
    bn = model[0]
    return [bn.running_mean.copy(), bn.running_var.copy(), np.array(bn.num_batches_tracked)]


@pytest.mark.parametrize("backend", ["cpu", "reference"])
@pytest.mark.parametrize("compiled_twice", [False, True], ids=["one-compiled-module", "two-of-one-model"])
def test_train_calls_from_four_threads_equal_the_same_calls_in_series(wide_bn, compiled_twice, backend):
    """In train mode a call's output depends on its input only (batch statistics), so every call
    must return what the same call returns alone.  The running stats depend on the order of the
    updates; with one input for all calls every order gives the same sequence, so k concurrent
    calls must leave exactly the stats of k serial calls (a lost or torn update would not).  With
    ``compiled_twice`` two compiled modules of the model (two ``lf.compile``) share its buffers:
    before their train calls shared one lock, this lost updates in most runs (and the reference
    backend, unlocked, lost them with one compiled module too)."""
    model, spec = wide_bn
    cm = lf.compile(model, spec, backend=backend)
    twin = copy.deepcopy(model)  # same start: running stats
    twin_cm = lf.compile(twin, spec, backend=backend)  # the same generated module: nothing compiles
    x = (np.random.default_rng(5).standard_normal((4, 2048)) * 2 + 3).astype(np.float32)
    k = 4000
    serial = twin_cm(x)
    for _ in range(k - 1):
        twin_cm(x)
    cms = [cm, lf.compile(model, spec, backend=backend)] if compiled_twice else [cm]
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(lambda i: cms[i % len(cms)](x), range(k)))
    for y in threaded[:: k // 50]:
        np.testing.assert_array_equal(y, serial)
    for got, want in zip(_stats(model), _stats(twin)):
        np.testing.assert_array_equal(got, want)
    ref_model = copy.deepcopy(model)
    np.testing.assert_allclose(serial, lf.compile(ref_model, spec, backend="reference")(x), rtol=1e-5,
                               atol=1e-5)
