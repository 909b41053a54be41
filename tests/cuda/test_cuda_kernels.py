"""Kernel-level tests of the ``cuda`` backend's library: GEMM tile edges and epilogues, the per-tile
and per-chunk statistics and their Chan merge (|mean| / std = 1e3), in both launch geometries."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from numba import cuda

import lazyfuse as lf
from lazyfuse import nn
from lazyfuse.backends.module_cache import load_module
from lazyfuse.backends.numba_cuda import codegen, kernels


@pytest.fixture(scope="module", params=["FULL", "SMALL"])
def lib(request):
    geometry = getattr(kernels, request.param)
    module, _ = load_module(codegen.library_source(("float32", "float64"), geometry), "cuda")
    return module


def _gemm(lib, x, w, mode=kernels.EPI_BIAS, relu=False, bias=None, bn=None, eps=1e-5):
    """Launch the GEMM as the generated ``run`` does; returns (out, p_mean, p_m2) on the host."""
    m, c = x.shape[0], w.shape[0]
    dt = x.dtype
    one = cuda.to_device(np.zeros(1, dt))
    gamma, beta, rm, rv = (cuda.to_device(a) for a in bn) if bn is not None else (one,) * 4
    tiles = -(-m // lib.BM)
    p_mean, p_m2 = (cuda.to_device(np.full((max(tiles, 1), c), np.nan)) for _ in range(2))
    out = cuda.to_device(np.full((m, c), np.nan, dt))
    fn = lib.gemm_f32 if dt == np.float32 else lib.gemm_f64
    grid = (max(1, tiles), max(1, -(-c // lib.BN)))
    fn[grid, lib.GEMM_BLOCK](cuda.to_device(x), cuda.to_device(w), out, mode, relu,
                             one if bias is None else cuda.to_device(bias), bias is not None,
                             gamma, beta, bn is not None, rm, rv, eps, p_mean, p_m2)
    return out.copy_to_host(), p_mean.copy_to_host(), p_m2.copy_to_host()


@pytest.mark.parametrize("m,k,c", [(1, 1, 1), (7, 33, 65), (65, 7, 33), (33, 65, 7), (9, 17, 9)])
def test_gemm_tile_edges(lib, m, k, c):
    rng = np.random.default_rng(m * 100 + k * 10 + c)
    x, w = rng.standard_normal((m, k)).astype(np.float32), rng.standard_normal((c, k)).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32)
    out, _, _ = _gemm(lib, x, w, bias=b, relu=True)
    want = np.maximum(x.astype(np.float64) @ w.T.astype(np.float64) + b, 0)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)  # every element written (no NaN left)


def test_gemm_eval_batchnorm_epilogue_uses_the_arrays_as_they_are(lib):
    rng = np.random.default_rng(5)
    x, w = rng.standard_normal((9, 5)), rng.standard_normal((6, 5))
    b, gamma, beta = rng.standard_normal(6), rng.standard_normal(6), rng.standard_normal(6)
    rm, rv = rng.standard_normal(6), rng.random(6) + 0.5
    out, _, _ = _gemm(lib, x, w, kernels.EPI_EVAL_BN, True, b, (gamma, beta, rm, rv), eps=1e-3)
    want = np.maximum((x @ w.T + b - rm) / np.sqrt(rv + 1e-3) * gamma + beta, 0)
    np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-12)


def _merge(lib, p_mean, p_m2, chunk, count, pre=None):
    """bn_merge in train mode with momentum 1 (running stats := batch stats): (mean, unbiased var)."""
    c = p_mean.shape[1]
    rm, rv = cuda.to_device(np.zeros(c)), cuda.to_device(np.ones(c))
    one = cuda.to_device(np.zeros(1))
    scale, shift = cuda.to_device(np.zeros(c)), cuda.to_device(np.zeros(c))
    lib.bn_merge[-(-c // lib.RED), lib.RED](cuda.to_device(p_mean), cuda.to_device(p_m2), chunk, count, True,
                                           True, 1.0, 1e-5, one if pre is None else cuda.to_device(pre),
                                           pre is not None, one, one, False, rm, rv,
                                           cuda.to_device(np.zeros(1, np.int64)), scale, shift)
    return rm.copy_to_host(), rv.copy_to_host()


def test_tile_statistics_merge_when_the_mean_dwarfs_the_spread(lib):
    """f32 values 1e3 +- 1 per column over several row tiles: a one-pass sum of squares in f32
    would lose the variance entirely; per-tile two-pass partials merged in f64 keep it."""
    rng = np.random.default_rng(7)
    m = 2 * lib.BM + 5  # three row tiles, the last one partial
    x = (rng.standard_normal((m, 3)) + 1e3).astype(np.float32)
    eye = np.eye(3, dtype=np.float32)  # out = x @ I.T = x, so the statistics are x's
    out, p_mean, p_m2 = _gemm(lib, x, eye, kernels.EPI_STATS)
    np.testing.assert_array_equal(out, x)
    mean, var = _merge(lib, p_mean, p_m2, lib.BM, m)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(mean, x64.mean(0), rtol=1e-12)
    np.testing.assert_allclose(var, x64.var(0, ddof=1), rtol=1e-9)


def test_merge_adds_the_fused_bias_to_the_running_mean_only(lib):
    p_mean, p_m2 = np.array([[1.0, 2.0]]), np.array([[4.0, 8.0]])
    mean, var = _merge(lib, p_mean, p_m2, 5, 5, pre=np.array([10.0, -1.0]))
    np.testing.assert_allclose(mean, [11.0, 1.0])
    np.testing.assert_allclose(var, [1.0, 2.0])


@pytest.mark.parametrize("shape", [(3, 1, 40), (20, 2, 3), (1, 1, 1000)])
def test_chunk_statistics_over_n_and_l(lib, shape):
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal(shape) * 0.5 + 300.0
    n, c, length = shape
    chunks = -(-(n * length) // lib.CHUNK3)
    p_mean, p_m2 = cuda.to_device(np.zeros((chunks, c))), cuda.to_device(np.zeros((chunks, c)))
    lib.bn_partials3[(chunks, c), lib.RED](cuda.to_device(x), lib.CHUNK3, p_mean, p_m2)
    mean, var = _merge(lib, p_mean.copy_to_host(), p_m2.copy_to_host(), lib.CHUNK3, n * length)
    flat = x.transpose(1, 0, 2).reshape(c, -1)
    np.testing.assert_allclose(mean, flat.mean(1), rtol=1e-12)
    np.testing.assert_allclose(var, flat.var(1, ddof=1), rtol=1e-9)


@pytest.mark.parametrize("shape", [(2, 5), (19, 3), (40, 9)])
def test_chunk_statistics_over_rows(lib, shape):
    rng = np.random.default_rng(shape[0])
    x = rng.standard_normal(shape) - 500.0
    n, c = shape
    chunks = -(-n // lib.CHUNK2)
    p_mean, p_m2 = cuda.to_device(np.zeros((chunks, c))), cuda.to_device(np.zeros((chunks, c)))
    lib.bn_partials2[(chunks, -(-c // lib.COLS2)), (lib.COLS2, lib.ROWS2)](cuda.to_device(x), lib.CHUNK2,
                                                                          p_mean, p_m2)
    mean, var = _merge(lib, p_mean.copy_to_host(), p_m2.copy_to_host(), lib.CHUNK2, n)
    np.testing.assert_allclose(mean, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(var, x.var(0, ddof=1), rtol=1e-9)


def test_a_model_in_the_small_geometry_merges_many_partials(monkeypatch):
    """End to end with 8 x 8 tiles and 8-row chunks: every statistic crosses several partials."""
    monkeypatch.setenv("LAZYFUSE_CUDA_TILES", "small")
    model = nn.Sequential(nn.Linear(5, 9), nn.BatchNorm1d(9), nn.ReLU(), nn.BatchNorm1d(9, momentum=None))
    spec = lf.TensorSpec(("N", 5), "float64")
    cm = lf.compile(model.double(), spec, backend="cuda")
    assert "GEOMETRY = 'SMALL'" in cm.source
    ref = lf.compile(copy.deepcopy(model), spec, backend="reference")
    rng = np.random.default_rng(11)
    for train, n in ((True, 21), (True, 17), (False, 3)):
        cm.train(train), ref.train(train)
        x = rng.standard_normal((n, 5)) * 2 + 40
        np.testing.assert_allclose(cm(x), ref(x), rtol=1e-10, atol=1e-10)
    for k, v in ref.state_dict().items():
        np.testing.assert_allclose(cm.state_dict()[k], v, rtol=1e-10, atol=1e-12, err_msg=k)


def test_bad_tile_setting_is_a_compile_error(monkeypatch):
    monkeypatch.setenv("LAZYFUSE_CUDA_TILES", "huge")
    with pytest.raises(lf.CompileError, match="LAZYFUSE_CUDA_TILES must be 'full' or 'small'"):
        lf.compile(nn.Linear(2, 2), lf.TensorSpec(("N", 2), "float32"), backend="cuda")
