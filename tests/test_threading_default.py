"""Which Numba threading layer a fresh process ends up with (threads.choose_layer), per setting."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from lazyfuse.backends.numba_cpu import threads
from lazyfuse.errors import ConfigError

# argv[1]: "config-omp" sets numba.config in code first, "user-prange" runs a parallel njit first.
_SCRIPT = """
import json, sys
import numpy as np
import numba
import lazyfuse as lf
from lazyfuse import nn
from lazyfuse.backends.numba_cpu import threads

if sys.argv[1] == "config-omp":
    numba.config.THREADING_LAYER = "omp"
if sys.argv[1] == "user-prange":
    @numba.njit(parallel=True)
    def total(a):
        s = 0.0
        for i in numba.prange(a.size):
            s += a[i]
        return s
    total(np.ones(8))
lf.manual_seed(0)
model = nn.Sequential(nn.Linear(64, 64), nn.BatchNorm1d(64), nn.ReLU())
cm = lf.compile(model, lf.TensorSpec(("N", 64)), backend="cpu")
cm(np.ones((4, 64), np.float32))  # serial kernels only: nothing chosen yet
before = threads.layer_choice()
config_before = str(numba.config.THREADING_LAYER)
cm(np.ones((16384, 64), np.float32))  # 2**20 elements: the parallel kernels
print(json.dumps({"before": before, "config_before": config_before, "after": threads.layer_choice(),
                  "numba": numba.threading_layer(), "config": str(numba.config.THREADING_LAYER)}))
"""

_CASES = {  # name: (argv[1], environment additions)
    "default": ("", {}),
    "numba-env-omp": ("", {"NUMBA_THREADING_LAYER": "omp"}),
    "config-omp": ("config-omp", {}),
    "keep": ("", {"LAZYFUSE_THREADING_LAYER": "keep"}),
    "lazyfuse-omp": ("", {"LAZYFUSE_THREADING_LAYER": "omp"}),
    "user-prange": ("user-prange", {}),
}


@pytest.fixture(scope="module")
def runs() -> dict[str, dict]:
    """One fresh process per case, started together (each mostly waits on imports and cache loads)."""
    base = {k: v for k, v in os.environ.items()
            if k not in ("NUMBA_THREADING_LAYER", "LAZYFUSE_THREADING_LAYER")}
    procs = {name: subprocess.Popen([sys.executable, "-c", _SCRIPT, arg], env={**base, **extra},
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name, (arg, extra) in _CASES.items()}
    out = {}
    for name, p in procs.items():
        stdout, stderr = p.communicate(timeout=300)
        assert p.returncode == 0, f"{name}: {stderr[-2000:]}"
        out[name] = json.loads(stdout.strip().splitlines()[-1])
    return out


def test_default_environment_gets_workqueue(runs):
    r = runs["default"]
    # small calls alone leave Numba untouched
    assert r["before"]["chosen_by"] is None and r["config_before"] == "default"
    assert r["numba"] == "workqueue" and r["config"] == "workqueue"
    assert r["after"] == {"chosen_by": "lazyfuse", "requested": "workqueue", "layer": "workqueue"}


@pytest.mark.parametrize("case", ["numba-env-omp", "config-omp"])
def test_a_layer_the_user_chose_stands(runs, case):
    r = runs[case]
    assert r["numba"] == "omp"
    assert r["after"] == {"chosen_by": "user", "requested": "omp", "layer": "omp"}


def test_keep_leaves_numbas_default(runs):
    r, plain = runs["keep"], runs["user-prange"]  # the latter's pool started before lazyfuse ran
    assert r["numba"] == plain["numba"] and r["config"] == "default"
    assert r["after"]["chosen_by"] == "opt-out"
    if plain["numba"] == "omp":  # where Numba's default picks omp, keep is not workqueue
        assert r["numba"] != "workqueue"


def test_an_explicit_lazyfuse_layer_is_what_lazyfuse_sets(runs):
    r = runs["lazyfuse-omp"]
    assert r["numba"] == "omp"
    assert r["after"] == {"chosen_by": "lazyfuse", "requested": "omp", "layer": "omp"}


def test_a_pool_started_before_lazyfuse_is_left_alone(runs):
    r = runs["user-prange"]
    assert r["before"]["layer"] == r["numba"] and r["config"] == "default"
    assert r["after"] == {"chosen_by": "numba-already-started", "requested": "default", "layer": r["numba"]}


def test_an_unknown_layer_name_is_a_config_error(monkeypatch):
    monkeypatch.setattr(threads, "_choice", None)
    monkeypatch.setenv("LAZYFUSE_THREADING_LAYER", "openmp")
    with pytest.raises(ConfigError, match="LAZYFUSE_THREADING_LAYER='openmp'"):
        threads.choose_layer()
