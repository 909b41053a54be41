"""The ``cuda`` backend against the reference backend (and torch): every BatchNorm option, lazy
models resolved from a spec, (N, C) and (N, C, L), f32 and f64, three train steps then eval with
the running stats compared after each, batch 1 in eval, shapes that are not tile multiples."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from state_checks import assert_same_state

import lazyfuse as lf
from lazyfuse import nn

TOL = {"float32": dict(rtol=2e-5, atol=2e-5), "float64": dict(rtol=1e-11, atol=1e-11)}


def _pair(model: nn.Module, *specs: lf.TensorSpec):
    """The model compiled for cuda, and a deep copy compiled for the reference backend."""
    twin = copy.deepcopy(model)
    return lf.compile(model, *specs, backend="cuda"), lf.compile(twin, *specs, backend="reference")


def _batch(rng, shape, dtype, offset=0.0, scale=1.0):
    return (rng.standard_normal(shape) * scale + offset).astype(dtype)


def _same_state(a: nn.Module, b: nn.Module, dtype: str) -> None:
    assert_same_state(a, b, **TOL[dtype])


def _steps(cm, ref, shape_of, dtype, batches=(33, 7, 65), eval_batches=(1, 7), offset=0.0, scale=1.0):
    """Train steps at ``batches`` then eval at ``eval_batches``; outputs and state compared each time."""
    rng = np.random.default_rng(0)
    cm.train(), ref.train()
    for n in batches:
        x = _batch(rng, shape_of(n), dtype, offset, scale)
        np.testing.assert_allclose(cm(x), ref(x), **TOL[dtype])
        _same_state(cm.model, ref.model, dtype)
    cm.eval(), ref.eval()
    for n in eval_batches:
        x = _batch(rng, shape_of(n), dtype, offset, scale)
        np.testing.assert_allclose(cm(x), ref(x), **TOL[dtype])
    _same_state(cm.model, ref.model, dtype)


def _mlp(k: int, c: int, out: int, **bn):
    return nn.Sequential(nn.Linear(k, c), nn.BatchNorm1d(c, **bn), nn.ReLU(), nn.Linear(c, out))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fused_linear_bn_relu_mlp(dtype):
    model = _mlp(33, 65, 7)
    if dtype == "float64":
        model = model.double()
    cm, ref = _pair(model, lf.TensorSpec(("N", 33), dtype))
    assert "fused_linear_bn_relu" in cm.source
    _steps(cm, ref, lambda n: (n, 33), dtype)


@pytest.mark.parametrize("bn", [
    dict(momentum=None),
    dict(affine=False),
    dict(track_running_stats=False),
    dict(eps=1e-3, momentum=0.5),
], ids=lambda d: ",".join(f"{k}={v}" for k, v in d.items()))
def test_batchnorm_options_after_a_linear(bn):
    cm, ref = _pair(_mlp(7, 9, 5, **bn), lf.TensorSpec(("N", 7), "float32"))
    # Without running stats eval uses batch statistics too: more than one row then.
    evals = (2, 7) if bn.get("track_running_stats") is False else (1, 7)
    _steps(cm, ref, lambda n: (n, 7), "float32", batches=(8, 3, 5), eval_batches=evals)


def test_linear_without_bias_then_batchnorm_without_relu():
    model = nn.Sequential(nn.Linear(7, 9, bias=False), nn.BatchNorm1d(9))
    cm, ref = _pair(model, lf.TensorSpec(("N", 7), "float32"))
    assert "fused_linear_bn[" in cm.source.replace("fused_linear_bn_relu", "")
    _steps(cm, ref, lambda n: (n, 7), "float32", batches=(8, 3))


def test_the_batch_mean_may_dwarf_the_spread():
    """|mean| / std = 1e3 per channel: the per-tile statistics are merged in float64 (Chan)."""
    cm, ref = _pair(_mlp(7, 9, 5).double(), lf.TensorSpec(("N", 7), "float64"))
    _steps(cm, ref, lambda n: (n, 7), "float64", batches=(65, 9), offset=1e3)


def test_lazy_model_resolved_from_the_spec():
    model = nn.Sequential(nn.LazyLinear(9), nn.LazyBatchNorm1d(), nn.ReLU(), nn.LazyLinear(3))
    cm = lf.compile(model, lf.TensorSpec(("N", 7), "float32"), backend="cuda")
    assert model[0].weight.shape == (9, 7)
    ref = lf.compile(copy.deepcopy(model), lf.TensorSpec(("N", 7), "float32"), backend="reference")
    _steps(cm, ref, lambda n: (n, 7), "float32", batches=(5, 4))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_batchnorm_over_n_c_l(dtype):
    """(N, C, L) BatchNorm1d: statistics over N and L; the ReLU fused into the normalize kernel."""
    model = nn.Sequential(nn.BatchNorm1d(5), nn.ReLU())
    if dtype == "float64":
        model = model.double()
    cm, ref = _pair(model, lf.TensorSpec(("N", 5, "L"), dtype))
    assert "bn_partials3" in cm.source
    _steps(cm, ref, lambda n: (n, 5, 9), dtype, batches=(3, 2, 4), eval_batches=(1, 2))


@pytest.mark.parametrize("bn", [dict(), dict(affine=False, momentum=None), dict(track_running_stats=False)],
                         ids=["default", "affine=False,momentum=None", "track=False"])
def test_standalone_batchnorm_over_n_c(bn):
    """A BatchNorm after a ReLU does not fuse: the (N, C) statistics kernel and the unfused ReLU."""
    model = nn.Sequential(nn.ReLU(), nn.BatchNorm1d(7, **bn))
    cm, ref = _pair(model, lf.TensorSpec(("N", 7), "float32"))
    assert "bn_partials2" in cm.source and "relu_flat" in cm.source
    evals = (2, 3) if bn.get("track_running_stats") is False else (1, 3)
    _steps(cm, ref, lambda n: (n, 7), "float32", batches=(9, 2), eval_batches=evals)


class FlattenAddTranspose(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(12, 4)
        self.skip = nn.Linear(12, 4, bias=False)

    def forward(self, x):
        h = nn.functional.flatten(x, 1)
        y = nn.functional.relu(self.fc(h)) + self.skip(h)
        return y.t()


def test_flatten_add_transpose_and_unfused_ops():
    cm, ref = _pair(FlattenAddTranspose(), lf.TensorSpec(("N", 3, 4), "float32"))
    for op in ("add4", "transpose2", "gemm_f32"):
        assert op in cm.source
    rng = np.random.default_rng(1)
    for n in (1, 5):
        x = _batch(rng, (n, 3, 4), np.float32)
        np.testing.assert_allclose(cm(x), ref(x), **TOL["float32"])


def test_linear_over_a_rank_3_input_and_broadcast_add():
    class Broadcast(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 6)

        def forward(self, x, row):
            return self.fc(x) + row

    cm, ref = _pair(Broadcast(), lf.TensorSpec(("N", 2, 4), "float32"), lf.TensorSpec((6,), "float32"))
    rng = np.random.default_rng(2)
    x, row = _batch(rng, (3, 2, 4), np.float32), _batch(rng, (6,), np.float32)
    np.testing.assert_allclose(cm(x, row), ref(x, row), **TOL["float32"])


@pytest.mark.parametrize("n,k,m", [(1, 1, 1), (7, 33, 65), (65, 7, 33), (33, 65, 7)])
def test_linear_shapes_that_are_not_tile_multiples(n, k, m):
    model = nn.Sequential(nn.Linear(k, m), nn.ReLU())
    cm, ref = _pair(model, lf.TensorSpec(("N", k), "float32"))
    x = _batch(np.random.default_rng(n + k + m), (n, k), np.float32)
    np.testing.assert_allclose(cm(x), ref(x), rtol=1e-5, atol=1e-5)


def test_nan_propagates_through_relu_and_batchnorm():
    model = _mlp(4, 6, 3)
    model.eval()
    cm, ref = _pair(model, lf.TensorSpec(("N", 4), "float32"))
    x = np.ones((3, 4), np.float32)
    x[1, 2] = np.nan
    y, want = cm(x), ref(x)
    assert np.array_equal(np.isnan(y), np.isnan(want)) and np.isnan(y[1]).all()
    np.testing.assert_allclose(y[[0, 2]], want[[0, 2]], rtol=1e-5, atol=1e-6)


def test_unsupported_op_is_a_compile_error_naming_it():
    model = nn.Sequential(nn.Conv2d(1, 2, 3))
    with pytest.raises(lf.CompileError, match="cuda backend: op 'conv2d'.*not supported"):
        lf.compile(model, lf.TensorSpec(("N", 1, 5, 5), "float32"), backend="cuda")


def test_matches_torch_train_then_eval():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    tm = torch.nn.Sequential(torch.nn.Linear(7, 9), torch.nn.BatchNorm1d(9), torch.nn.ReLU())
    cm = lf.compile(copy.deepcopy(tm), lf.TensorSpec(("N", 7), "float32"), backend="cuda")
    rng = np.random.default_rng(3)
    for train, n in ((True, 6), (True, 5), (False, 2)):
        tm.train(train)
        cm.train(train)
        x = _batch(rng, (n, 7), np.float32, offset=2.0)
        with torch.no_grad():
            want = tm(torch.from_numpy(x)).numpy()
            got = cm(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)
    theirs = cm.torch_module.state_dict()
    for k, v in tm.state_dict().items():
        np.testing.assert_allclose(theirs[k].numpy(), v.numpy(), rtol=2e-5, atol=1e-6, err_msg=k)


@pytest.mark.parametrize("bn", [dict(), dict(track_running_stats=False), dict(affine=False, momentum=None)],
                         ids=["default", "track=False", "affine=False,momentum=None"])
def test_split_gemm_then_epilogue_kernels(monkeypatch, bn):
    """The cuBLAS path's split (bare GEMM, then bias / statistics / normalize kernels), run with the
    Numba GEMM as the bare GEMM: what the simulator can check of it."""
    monkeypatch.setenv("LAZYFUSE_CUDA_GEMM", "numba-split")
    model = nn.Sequential(nn.Linear(7, 9), nn.BatchNorm1d(9, **bn), nn.ReLU(), nn.Linear(9, 5, bias=False),
                          nn.ReLU(), nn.Linear(5, 3))
    cm, ref = _pair(model, lf.TensorSpec(("N", 7), "float32"))
    run = cm.source.split("def run(")[1]
    assert "GEMM = 'numba-split'" in cm.source and cm.runner.gemm == "numba-split"
    assert "bias_relu2" in run and "bn_partials2" in run
    assert "EPI_STATS" not in run and "EPI_EVAL_BN" not in run
    evals = (2, 7) if bn.get("track_running_stats") is False else (1, 7)
    _steps(cm, ref, lambda n: (n, 7), "float32", batches=(8, 3), eval_batches=evals)


def test_cublas_split_matches_the_reference(monkeypatch):
    """The default GEMM where CuPy is installed on a GPU: cuBLAS, then the epilogue kernels."""
    import importlib.util

    import numba

    if numba.config.ENABLE_CUDASIM or importlib.util.find_spec("cupy") is None:
        pytest.skip("cuBLAS needs CuPy and a GPU")
    monkeypatch.setenv("LAZYFUSE_CUDA_GEMM", "cublas")
    cm, ref = _pair(_mlp(33, 65, 7), lf.TensorSpec(("N", 33), "float32"))
    assert "cublas_gemm(" in cm.source.split("def run(")[1]
    _steps(cm, ref, lambda n: (n, 33), "float32")


def test_gemm_mode_choice(monkeypatch):
    import importlib.util

    import numba

    spec = lf.TensorSpec(("N", 2), "float32")
    monkeypatch.delenv("LAZYFUSE_CUDA_GEMM", raising=False)
    cublas = importlib.util.find_spec("cupy") is not None and not numba.config.ENABLE_CUDASIM
    assert lf.compile(nn.Linear(2, 2), spec, backend="cuda").runner.gemm == ("cublas" if cublas else "numba")
    monkeypatch.setenv("LAZYFUSE_CUDA_GEMM", "cublas")
    if numba.config.ENABLE_CUDASIM:
        with pytest.raises(lf.CompileError, match="LAZYFUSE_CUDA_GEMM=cublas, but the CUDA simulator"):
            lf.compile(nn.Linear(2, 2), spec, backend="cuda")
    monkeypatch.setenv("LAZYFUSE_CUDA_GEMM", "magma")
    with pytest.raises(lf.CompileError, match="LAZYFUSE_CUDA_GEMM must be one of numba, cublas, numba-split"):
        lf.compile(nn.Linear(2, 2), spec, backend="cuda")


def test_generated_host_driver_is_golden():
    """The host driver of Linear -> BatchNorm1d -> ReLU, line for line (tests/cuda/golden_*.txt): the
    launches per mode, the buffers, the operands in each kernel's argument order."""
    from pathlib import Path

    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.ReLU())
    cm = lf.compile(model, lf.TensorSpec(("N", 4), "float32"), backend="cuda")
    got = "def run(" + cm.source.split("def run(")[1]
    want = (Path(__file__).parent / "golden_linear_bn_relu_run.txt").read_text()
    assert got == want
