"""The cpu backend's GEMM: NumPy's own CBLAS through ``gemm_nt``/``gemm_nn``, and the loop GEMM used
when NumPy's BLAS exports none."""

from __future__ import annotations

import numpy as np
import pytest
from numba.core.errors import TypingError

import lazyfuse as lf
from lazyfuse import nn
from lazyfuse.backends import module_cache as cache
from lazyfuse.backends.numba_cpu import codegen, intrinsics

# (M, N, K); an output of one row or one column goes to cblas_?gemv (intrinsics.py)
SHAPES = [(1, 1, 1), (7, 5, 1), (33, 70, 17), (2, 3, 0), (0, 4, 3), (4, 0, 3), (1, 9, 6), (8, 1, 6),
          (1, 1, 6)]


def _check_gemm(lib, dtype) -> None:
    rng = np.random.default_rng(0)
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-12}
    for m, n, k in SHAPES:
        x = rng.standard_normal((m, k)).astype(dtype)
        w = rng.standard_normal((n, k)).astype(dtype)
        out = np.full((m, n), 7.0, dtype)  # K = 0 must give zeros, not the old contents
        lib.k_gemm(x, w, out, True)
        np.testing.assert_allclose(out, x @ w.T, **tol, err_msg=f"M,N,K={m, n, k}")
        out_t = np.full((n, m), 7.0, dtype)
        lib.k_gemm(w, x, out_t, True)  # the serial drivers' orientation
        np.testing.assert_allclose(out_t, (x @ w.T).T, **tol, err_msg=f"M,N,K={m, n, k}")
        out_nn = np.full((n, m), 7.0, dtype)
        lib.k_gemm(w, np.ascontiguousarray(x.T), out_nn, False)  # a channel-major input (K, M)
        np.testing.assert_allclose(out_nn, (x @ w.T).T, **tol, err_msg=f"M,N,K={m, n, k}")
    x = np.ones((3, 4), dtype)
    x[1, 2] = np.nan
    out = np.empty((3, 2), dtype)
    lib.k_gemm(x, np.ones((2, 4), dtype), out, True)
    assert np.isnan(out[1]).all() and np.isfinite(out[[0, 2]]).all()
    out = np.empty((3, 2), dtype)
    lib.k_gemm(x, np.ones((4, 2), dtype), out, False)
    assert np.isnan(out[1]).all() and np.isfinite(out[[0, 2]]).all()
    for b, bt in ((np.ones((2, 4), dtype), True), (np.ones((4, 2), dtype), False)):  # GEMV: one row
        row = np.empty((1, 2), dtype)
        lib.k_gemm(x[1:2], b, row, bt)
        assert np.isnan(row).all()
    column = np.empty((3, 1), dtype)
    lib.k_gemm(x, np.ones((1, 4), dtype), column, True)  # GEMV: one column
    assert np.isnan(column[1, 0]) and np.isfinite(column[[0, 2]]).all()


@pytest.fixture(scope="module")
def lib():
    return cache.load_module(codegen.library_source(), "cpu")[0]


def test_numpy_cblas_is_found_and_named_in_the_source():
    if intrinsics.CBLAS is None:
        pytest.skip("this NumPy's BLAS exports no CBLAS gemm (the loop-GEMM tests below cover it)")
    assert intrinsics.CBLAS.int_bits in (32, 64)
    assert intrinsics.CBLAS.gemv and intrinsics.CBLAS.tag.endswith("/gemv")  # OpenBLAS exports both
    assert f"BLAS {intrinsics.CBLAS.tag}" in codegen.library_source()
    assert "def gemm_nt(" not in codegen.library_source()  # the intrinsics, not loops
    assert "def gemm_nn(" not in codegen.library_source()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm_matches_numpy(lib, dtype):
    _check_gemm(lib, dtype)


def test_gemm_copies_strided_operands_and_rejects_mixed_dtypes(lib):
    rng = np.random.default_rng(2)
    x = np.asfortranarray(rng.standard_normal((4, 3)).astype(np.float32))
    w = rng.standard_normal((3, 2)).astype(np.float32).T  # a transposed view, as a weight may be
    out = np.empty((4, 2), np.float32)
    lib.k_gemm(x, w, out, True)
    np.testing.assert_allclose(out, x @ w.T, rtol=1e-6)
    lib.k_gemm(x, w.T, out, False)  # a Fortran-ordered (K, N) operand
    np.testing.assert_allclose(out, x @ w.T, rtol=1e-6)
    with pytest.raises(TypingError):
        lib.k_gemm(x, np.ones((2, 3), np.float64), out, True)


def test_model_with_a_transposed_weight_view():
    lf.manual_seed(4)
    model = nn.Sequential(nn.Linear(5, 3), nn.ReLU())
    cm = lf.compile(model, lf.TensorSpec(("N", 5)), backend="cpu")
    model[0].weight = nn.Parameter(np.ascontiguousarray(model[0].weight.T).T)
    assert not model[0].weight.flags.c_contiguous
    x = np.random.default_rng(0).standard_normal((6, 5)).astype(np.float32)
    np.testing.assert_allclose(cm(x), model(x), rtol=1e-5, atol=1e-6)


@pytest.fixture
def no_cblas(monkeypatch):
    """Code generation as on a NumPy whose BLAS exports no CBLAS gemm."""
    monkeypatch.setattr(intrinsics, "CBLAS", None)
    codegen._library_source.cache_clear()  # its one warning per process is checked below


def test_loop_gemm_without_cblas(no_cblas):
    with pytest.warns(RuntimeWarning, match="no CBLAS gemm .* loop GEMM, correct but far slower"):
        src = codegen.library_source()
    assert "loop GEMM" in src and "def gemm_nt(" in src and "def gemm_nn(" in src and "import madvise " in src
    lib = cache.load_module(src, "cpu")[0]
    for dtype in (np.float32, np.float64):
        _check_gemm(lib, dtype)


@pytest.mark.filterwarnings("ignore:lazyfuse cpu backend. NumPy's BLAS exports no CBLAS gemm")
def test_model_without_cblas_matches_reference(no_cblas):
    lf.manual_seed(3)
    model = nn.Sequential(nn.Linear(6, 5), nn.LazyBatchNorm1d(), nn.ReLU(), nn.LazyLinear(3))
    twin = nn.Sequential(nn.Linear(6, 5), nn.LazyBatchNorm1d(), nn.ReLU(), nn.LazyLinear(3))
    spec = lf.TensorSpec(("N", 6))
    cm = lf.compile(model, spec, backend="cpu")
    assert "loop GEMM" in cm.source
    ref = lf.compile(twin, spec, backend="reference")
    twin.load_state_dict(model.state_dict())
    rng = np.random.default_rng(1)
    for step in range(3):
        x = rng.standard_normal((8, 6)).astype(np.float32)
        np.testing.assert_allclose(cm(x), ref(x), rtol=1e-5, atol=1e-5, err_msg=f"train step {step}")
    for name, value in model.state_dict().items():
        np.testing.assert_allclose(value, twin.state_dict()[name], rtol=1e-6, atol=1e-6, err_msg=name)
    model.eval()
    twin.eval()
    x = rng.standard_normal((1, 6)).astype(np.float32)
    np.testing.assert_allclose(cm(x), ref(x), rtol=1e-5, atol=1e-5)


def test_lp64_cblas_guards_dimensions_beyond_int32(monkeypatch):
    """With a 32-bit-int CBLAS a dimension >= 2**31 raises instead of being truncated (checked
    before any BLAS call, so the made-up ABI below is never called)."""
    if intrinsics.CBLAS is None:
        pytest.skip("no CBLAS: the loop GEMM has no integer limit")
    monkeypatch.setattr(intrinsics, "CBLAS", intrinsics.Cblas("lp64_sgemm", "lp64_dgemm", 32))
    src = codegen.library_source()
    assert f"BLAS_INT_MAX = {2**31 - 1}" in src
    lib = cache.load_module(src, "cpu")[0]
    rows = np.lib.stride_tricks.as_strided(np.zeros(3, np.float32), shape=(2**31, 3), strides=(0, 4))
    with pytest.raises(ValueError, match="exceeds the BLAS integer range"):
        lib.k_gemm(rows, np.ones((2, 3), np.float32), np.empty((1, 2), np.float32), True)
