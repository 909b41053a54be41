"""The disk cache of generated modules: cold, warm (new process), unwritable dir, corrupted file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import numpy as np

import lazyfuse as lf
from lazyfuse import nn
from lazyfuse.backends import module_cache as cache

_SCRIPT = """
import json, numpy as np
import lazyfuse as lf
from lazyfuse import nn
lf.manual_seed(0)
model = nn.Sequential(nn.Linear(3, 2), nn.ReLU())
cm = lf.compile(model, lf.TensorSpec(("N", 3)), backend="cpu")
y = cm(np.arange(6, dtype=np.float32).reshape(2, 3))
mod = cm.runner.module
st = mod.run_s.stats
print(json.dumps({"file": str(cm.runner.file), "y": y.tolist(), "hits": sum(st.cache_hits.values()),
                  "misses": sum(st.cache_misses.values()), "source": cm.source,
                  "parallel_compiled": len(mod.run.signatures) + len(mod.k_affine2d_p.signatures)}))
"""


def _run(tmp_path):
    env = dict(os.environ, LAZYFUSE_CACHE_DIR=str(tmp_path / "lf"), NUMBA_CACHE_DIR=str(tmp_path / "nb"))
    out = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_cold_then_warm_process_loads_from_disk(tmp_path):
    cold = _run(tmp_path)
    assert cold["file"].startswith(str(tmp_path / "lf" / "cpu"))
    assert os.path.basename(cold["file"]) == f"lf_{cache.module_key(cold['source'])}.py"
    assert cold["misses"] >= 1 and cold["hits"] == 0
    warm = _run(tmp_path)
    assert warm["file"] == cold["file"] and warm["y"] == cold["y"]
    assert warm["hits"] >= 1 and warm["misses"] == 0  # Numba loaded run_s() from its disk cache
    # a 2-row call only needs the serial flavour: run() and the parallel kernels stay uncompiled
    assert cold["parallel_compiled"] == 0 and warm["parallel_compiled"] == 0


def test_corrupted_cache_file_is_regenerated(tmp_path):
    first = _run(tmp_path)
    path = first["file"]
    with open(path, "w") as f:
        f.write("this is not the generated module\nraise SystemExit(3)\n")
    again = _run(tmp_path)
    assert again["y"] == first["y"]
    with open(path) as f:
        assert f.read() == first["source"]


def test_unwritable_cache_dir_warns_once_and_runs_uncached(tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("LAZYFUSE_CACHE_DIR", str(blocker / "cache"))
    lf.manual_seed(1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # Sizes no other test uses, so the modules are not already imported in this process.
        models = [nn.Sequential(nn.Linear(3, k), nn.ReLU()) for k in (11, 13)]
        cms = [lf.compile(m, lf.TensorSpec(("N", 3)), backend="cpu") for m in models]
    ours = [w for w in caught if "not writable" in str(w.message)]
    assert len(ours) == 1 and issubclass(ours[0].category, RuntimeWarning)
    x = np.ones((4, 3), np.float32)
    for m, cm in zip(models, cms):
        assert not cm.runner.cached and cm.runner.file is None
        np.testing.assert_allclose(cm(x), m(x), rtol=1e-6)


def test_key_depends_on_source_and_numba_version(monkeypatch):
    k1 = cache.module_key("def run(): pass\n")
    assert k1 != cache.module_key("def run(): return 1\n")
    monkeypatch.setattr(cache.numba, "__version__", "0.0.0")
    assert cache.module_key("def run(): pass\n") != k1


def test_cache_of_an_unfinished_compile_is_dropped(tmp_path):
    """Without the `.ok` marker (a compile that was killed or raced) Numba's entries are rebuilt."""
    cold = _run(tmp_path)
    marker = cold["file"][:-3] + ".ok"
    assert os.path.exists(marker)
    os.remove(marker)
    entries = [os.path.join(d, f) for d, _, fs in os.walk(tmp_path / "nb") for f in fs if f.endswith(".nbi")]
    assert entries
    for entry in entries:  # what a half-written cache could look like
        with open(entry, "wb") as f:
            f.write(b"garbage")
    again = _run(tmp_path)
    assert again["y"] == cold["y"] and again["misses"] >= 1 and again["hits"] == 0
    assert os.path.exists(marker)
    warm = _run(tmp_path)
    assert warm["hits"] >= 1 and warm["misses"] == 0


def test_two_processes_compiling_at_once_leave_a_loadable_cache(tmp_path):
    env = dict(os.environ, LAZYFUSE_CACHE_DIR=str(tmp_path / "lf"), NUMBA_CACHE_DIR=str(tmp_path / "nb"))
    procs = [subprocess.Popen([sys.executable, "-c", _SCRIPT], env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [json.loads(p.communicate(timeout=300)[0].strip().splitlines()[-1]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert outs[0]["y"] == outs[1]["y"]
    warm = _run(tmp_path)
    assert warm["y"] == outs[0]["y"] and warm["hits"] >= 1 and warm["misses"] == 0
