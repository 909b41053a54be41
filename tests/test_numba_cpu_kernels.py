"""The generated kernel library on its own: statistics accuracy, NaN/inf, serial == parallel."""

from __future__ import annotations

import numpy as np
import pytest

from lazyfuse.backends import module_cache as cache
from lazyfuse.backends.numba_cpu import codegen


@pytest.fixture(scope="module")
def lib():
    return cache.load_module(codegen.library_source(), "cpu")[0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("variant", ["_s", "_p"])
def test_stats2d_accurate_when_mean_dominates_std(lib, dtype, variant):
    rng = np.random.default_rng(0)
    x = (1e3 + rng.standard_normal((3001, 7))).astype(dtype)  # |mean| / std = 1e3
    mean, var = np.empty(7), np.empty(7)
    getattr(lib, "k_stats2d" + variant)(x, mean, var)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(mean, x64.mean(0), rtol=1e-9)
    np.testing.assert_allclose(var, x64.var(0), rtol=1e-4 if dtype == np.float32 else 1e-9)


def test_stats_serial_and_parallel_agree_exactly(lib):
    x = np.random.default_rng(1).standard_normal((5000, 33)).astype(np.float32)
    out = []
    for v in ("_s", "_p"):
        mean, var = np.empty(33), np.empty(33)
        getattr(lib, "k_stats2d" + v)(x, mean, var)
        out.append((mean, var))
    np.testing.assert_array_equal(out[0][0], out[1][0])  # fixed chunking: deterministic
    np.testing.assert_array_equal(out[0][1], out[1][1])


def test_stats2d_nonfinite_like_numpy(lib):
    x = np.ones((6, 4), np.float32)
    x[0, 0] = np.inf  # inf in the shift row
    x[3, 1] = np.inf
    x[2, 2] = np.nan
    x[1, 3], x[4, 3] = np.inf, -np.inf
    mean, var = np.empty(4), np.empty(4)
    lib.k_stats2d_s(x, mean, var)
    with np.errstate(invalid="ignore"):
        want_mean = x.astype(np.float64).mean(0)
        want_var = x.astype(np.float64).var(0)
    np.testing.assert_array_equal(mean, want_mean)  # inf, inf, nan, nan
    np.testing.assert_array_equal(var, want_var)  # all nan


@pytest.mark.parametrize("variant", ["_s", "_p"])
def test_affine_relu_keeps_nan(lib, variant):
    x = np.array([[np.nan, -1.0, 2.0, -np.inf]], np.float32)
    ones, zeros = np.ones(4, np.float32), np.zeros(4, np.float32)
    out = np.empty_like(x)
    getattr(lib, "k_affine2d" + variant)(x, out, zeros, ones, zeros, True)
    np.testing.assert_array_equal(out, [[np.nan, 0.0, 2.0, 0.0]])
    flat = np.array([np.nan, -3.0, 4.0], np.float64)
    res = np.empty_like(flat)
    lib.op_relu(flat, res)
    np.testing.assert_array_equal(res, [np.nan, 0.0, 4.0])


@pytest.mark.parametrize("shape", [(5, 3, 37), (1300, 4, 202), (3, 70, 64)])  # serial / parallel; L % LANES
def test_bn3d_stats_and_affine_match_numpy(lib, shape):
    rng = np.random.default_rng(2)
    x = (50 + rng.standard_normal(shape) * 0.1).astype(np.float64)
    c = shape[1]
    gamma, beta = rng.standard_normal(c), rng.standard_normal(c)
    out, mean, var = np.empty_like(x), np.empty(c), np.empty(c)
    variant = "_p" if x.size >= lib.PAR_MIN else "_s"
    getattr(lib, "k_stats3d" + variant)(x, mean, var)
    m, v = x.mean((0, 2)), x.var((0, 2))
    np.testing.assert_allclose(mean, m, rtol=1e-12)
    np.testing.assert_allclose(var, v, rtol=1e-9)
    sc = gamma / np.sqrt(var + 1e-5)
    getattr(lib, "k_affine3d" + variant)(x, out, mean, sc, beta, False)
    b = (None, slice(None), None)
    want = (x - m[b]) / np.sqrt(v[b] + 1e-5) * gamma[b] + beta[b]
    np.testing.assert_allclose(out, want, rtol=1e-9, atol=1e-9)


def test_update_running_momentum_and_cumulative(lib):
    rm, rv = np.zeros(2, np.float32), np.ones(2, np.float32)
    nbt = np.zeros((), np.int64)
    mean, var, pre = np.array([1.0, 2.0]), np.array([4.0, 8.0]), np.array([0.5, 0.0])
    lib.update_running(rm, rv, mean, var, pre, 5, 0.1, nbt)
    assert int(nbt) == 1
    np.testing.assert_allclose(rm, [0.15, 0.2], rtol=1e-6)
    np.testing.assert_allclose(rv, [0.9 + 0.1 * 5.0, 0.9 + 0.1 * 10.0], rtol=1e-6)
    lib.update_running(rm, rv, mean, var, pre, 5, -1.0, nbt)  # momentum=None: factor 1/2
    assert int(nbt) == 2
    np.testing.assert_allclose(rm, [0.5 * 0.15 + 0.5 * 1.5, 0.5 * 0.2 + 0.5 * 2.0], rtol=1e-6)


@pytest.mark.parametrize("variant", ["_s", "_p"])
def test_stats_of_an_empty_batch_are_nan_and_read_nothing(lib, variant):
    # An empty train batch is legal (like PyTorch); the kernels must not read the missing row 0.
    for kernel, x in (("k_stats2d", np.empty((0, 3))), ("k_stats3d", np.empty((0, 3, 4))),
                      ("k_stats3d", np.empty((2, 3, 0)))):
        mean, var = np.zeros(3), np.zeros(3)
        getattr(lib, kernel + variant)(x, mean, var)
        assert np.isnan(mean).all() and np.isnan(var).all()
    mean, var = np.zeros(3), np.zeros(3)
    lib.k_rowstats(np.empty((3, 0)), mean, var)
    assert np.isnan(mean).all() and np.isnan(var).all()


def test_update_running_after_an_empty_batch_only_counts(lib):
    rm, rv, nbt = np.full(2, 0.5), np.full(2, 2.0), np.zeros((), np.int64)
    nan = np.full(2, np.nan)
    for momentum in (0.1, -1.0):
        lib.update_running(rm, rv, nan, nan, np.empty(0), 0, momentum, nbt)
    assert int(nbt) == 2 and rm.tolist() == [0.5, 0.5] and rv.tolist() == [2.0, 2.0]


def test_linear_epilogue_and_gemm(lib):
    rng = np.random.default_rng(3)
    for m in (3, 12000):  # serial and parallel (>= PAR_MIN elements) epilogue
        x = rng.standard_normal((m, 70)).astype(np.float32)
        w = rng.standard_normal((90, 70)).astype(np.float32)
        b = rng.standard_normal(90).astype(np.float32)
        out = np.empty((m, 90), np.float32)
        lib.op_linear(x, w, b, True, True, out)
        np.testing.assert_allclose(out, np.maximum(x @ w.T + b, 0), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_small_call_transposed_gemm_stats_and_epilogue(lib, dtype):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((5, 9)).astype(dtype)
    w = rng.standard_normal((4, 9)).astype(dtype)
    yt = np.empty((4, 5), dtype)
    lib.k_gemm(w, x, yt, True)  # (x @ w.T).T, as the serial Linear drivers run it
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-12}
    np.testing.assert_allclose(yt, (x @ w.T).T, **tol)
    # |mean| / std = 1e3 per channel (row of yt), plus non-finite rows like NumPy
    y = (1e3 + rng.standard_normal((4, 5))).astype(dtype)
    y[2, 0], y[3, 3] = np.inf, np.nan
    mean, var = np.empty(4), np.empty(4)
    lib.k_rowstats(y, mean, var)
    with np.errstate(invalid="ignore"):
        y64 = y.astype(np.float64)
        np.testing.assert_allclose(mean, y64.mean(1), rtol=1e-12)
        np.testing.assert_allclose(var[:2], y64.var(1)[:2], rtol=1e-9)
        np.testing.assert_array_equal(var[2:], y64.var(1)[2:])  # nan, nan
    m, s, t = (rng.standard_normal(4).astype(dtype) for _ in range(3))
    yt[1, 2] = np.nan
    out = np.empty((5, 4), dtype)
    for relu in (False, True):
        lib.k_affine_cm(yt, out, m, s, t, relu, True)
        want = (yt.T - m) * s + t
        if relu:
            want = np.where(want < 0, 0, want)  # NaN stays NaN, like torch.relu
        np.testing.assert_allclose(out, want, **tol)
        assert np.isnan(out[2, 1])
        kept = yt.copy()
        lib.k_affine_cm(kept, np.empty((0, 0), dtype), m, s, t, relu, False)  # channel-major, in place
        np.testing.assert_allclose(kept, want.T, **tol)
        assert np.isnan(kept[1, 2])
