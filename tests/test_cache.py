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
    assert os.path.basename(cold["file"]) == f"lf_{cache.module_key(cold['source'], 'cpu')}.py"
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
    assert len(ours) == 1 and issubclass(ours[0].category, cache.CacheWarning)
    assert issubclass(cache.CacheWarning, RuntimeWarning)
    message = str(ours[0].message)  # what it costs and what to do
    assert "every new process compiles each model again" in message and "Set LAZYFUSE_CACHE_DIR" in message
    assert str(blocker) in message and ours[0].filename == __file__  # points at the caller's line
    x = np.ones((4, 3), np.float32)
    for m, cm in zip(models, cms):
        assert not cm.runner.cached and cm.runner.file is None
        np.testing.assert_allclose(cm(x), m(x), rtol=1e-6)


def test_key_depends_on_source_and_numba_version(monkeypatch):
    k1 = cache.module_key("def run(): pass\n", "cpu")
    assert k1 != cache.module_key("def run(): return 1\n", "cpu")
    monkeypatch.setattr(cache.numba, "__version__", "0.0.0")
    assert cache.module_key("def run(): pass\n", "cpu") != k1


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


# Two processes compiling one model at once, then a third loading it: tests/test_faults.py.


_SERIAL_SCRIPT = """
import json, numpy as np
import lazyfuse as lf
from lazyfuse import nn
lf.manual_seed(0)
class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.bn0 = nn.BatchNorm1d(4)       # fused_bn_relu on (N, C): op_bn2_s
        self.act0 = nn.ReLU()
        self.fc = nn.Linear(4, 4)          # fused_linear_bn: op_linear_bn_s
        self.bn1 = nn.BatchNorm1d(4)
        self.act = nn.ReLU()               # unfused (after a reshape): op_relu_s
        self.bn3 = nn.BatchNorm1d(2)       # unfused, on (N, 2, 2): op_bn3_s
    def forward(self, x):
        y = self.bn1(self.fc(self.act0(self.bn0(x))))
        return self.bn3(self.act(y.reshape(y.shape[0], 2, 2)))
cm = lf.compile(Model(), lf.TensorSpec(("N", 4)), backend="cpu")
cm(np.arange(12, dtype=np.float32).reshape(3, 4))
mod = cm.runner.module
parallel = {name: len(f.signatures) for name, f in vars(mod).items()
            if (name == "run" or name.endswith("_p") or name.startswith("op_") and not name.endswith("_s"))
            and hasattr(f, "signatures")}
print(json.dumps({"ops": sorted({n.op for n in cm.graph.nodes}), "parallel": parallel,
                  "serial": len(mod.run_s.signatures)}))
"""


def test_a_small_call_compiles_no_parallel_code(tmp_path):
    # run_s and the serial drivers must never reach a parallel kernel or a driver of run's flavour:
    # a first small call (train mode: statistics too) compiles serial code only.
    env = dict(os.environ, LAZYFUSE_CACHE_DIR=str(tmp_path / "lf"), NUMBA_CACHE_DIR=str(tmp_path / "nb"))
    out = subprocess.run([sys.executable, "-c", _SERIAL_SCRIPT], env=env, capture_output=True, text=True,
                         check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert {"fused_bn_relu", "fused_linear_bn", "batch_norm", "relu"} <= set(result["ops"])
    assert result["serial"] == 1
    assert len(result["parallel"]) >= 8 and not any(result["parallel"].values()), result["parallel"]


_KIND_SCRIPT = """
import json, sys
from lazyfuse.backends import module_cache
src = "from numba import njit\\n\\n@njit(cache=True)\\ndef twice(x):\\n    return 2 * x\\n"
mod, path = module_cache.load_module(src, "testkind")
with module_cache.first_call(path):
    y = mod.twice(21)
st = mod.twice.stats
print(json.dumps({"file": str(path), "y": y, "hits": sum(st.cache_hits.values()),
                  "misses": sum(st.cache_misses.values())}))
"""


def test_another_backend_kind_keeps_its_numba_cache_across_processes(tmp_path):
    env = dict(os.environ, LAZYFUSE_CACHE_DIR=str(tmp_path / "lf"), NUMBA_CACHE_DIR=str(tmp_path / "nb"))

    def run():
        out = subprocess.run([sys.executable, "-c", _KIND_SCRIPT], env=env, capture_output=True, text=True,
                             check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    cold = run()
    assert cold["file"].startswith(str(tmp_path / "lf" / "testkind")) and cold["y"] == 42
    assert cold["misses"] == 1 and cold["hits"] == 0
    warm = run()
    assert warm["hits"] == 1 and warm["misses"] == 0  # the .ok mark kept Numba's entries


def test_key_depends_on_the_backend_kind():
    assert cache.module_key("def run(): pass\n", "cpu") != cache.module_key("def run(): pass\n", "cuda")
