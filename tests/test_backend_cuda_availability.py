"""``backend="cuda"`` where it cannot run (this test process: no simulator, and here no GPU): clean
``CompileError``s that say what to install or set.  tests/cuda/ runs the backend itself."""

from __future__ import annotations

import importlib.util
import sys

import pytest

import lazyfuse as lf
from lazyfuse import nn
from lazyfuse.backends import BACKENDS, get_backend

MODULE = "lazyfuse.backends.numba_cuda"


@pytest.fixture
def fresh_registry(monkeypatch):
    """No cuda backend registered or imported yet; whatever the test does is undone after it."""
    monkeypatch.delitem(BACKENDS, "cuda", raising=False)
    for name in [m for m in sys.modules if m == MODULE or m.startswith(MODULE + ".")]:
        monkeypatch.delitem(sys.modules, name)
    yield
    for name in [m for m in sys.modules if m == MODULE or m.startswith(MODULE + ".")]:
        del sys.modules[name]
    BACKENDS.pop("cuda", None)


def test_without_numba_cuda_the_error_names_the_extra(fresh_registry, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "numba_cuda" else
                        real(name, *a))
    with pytest.raises(lf.CompileError, match=r"backend 'cuda' is not available here: .*numba-cuda.*"
                                              r"pip install 'lazyfuse\[cuda\]'"):
        lf.compile(nn.Linear(2, 2), lf.TensorSpec(("N", 2), "float32"), backend="cuda")


def test_without_a_gpu_the_error_points_at_the_simulator(fresh_registry):
    if importlib.util.find_spec("numba_cuda") is None:
        pytest.skip("numba-cuda is not installed here")
    import numba

    if numba.config.ENABLE_CUDASIM:
        pytest.skip("this process runs the CUDA simulator")
    get_backend("cuda")
    from numba import cuda

    if cuda.is_available():
        pytest.skip("a GPU is available here")
    with pytest.raises(lf.CompileError, match="no usable CUDA GPU here.*NUMBA_ENABLE_CUDASIM=1"):
        lf.compile(nn.Linear(2, 2), lf.TensorSpec(("N", 2), "float32"), backend="cuda")
