"""The ``cpu`` backend against the reference backend and PyTorch (train steps, then eval).

One "zoo" model per dtype covers every lowering (fused_linear_bn_relu with lazy modules,
fused_linear_bn with momentum=None, fused_linear_relu without bias, fused_bn_relu over (N,C,L)
with affine=False, unfused batch_norm 2-D/3-D with track_running_stats=False, linear on a rank-3
input, add, relu, flatten, and a value read by two Linear layers, which small calls keep
channel-major), so each dtype compiles once (module-scoped fixtures, disk cache).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
from state_checks import assert_same_state

import lazyfuse as lf
from lazyfuse import nn
from lazyfuse.backends.numba_cpu import codegen
from lazyfuse.frontends.nn import functional as F

torch = pytest.importorskip("torch")
tnn = torch.nn

L = 4
BIG = 350_000  # rows: every (N, 3) tensor and wider reaches PAR_MIN (1 << 20) elements


class Zoo(nn.Module):
    def __init__(self, dtype=np.float32):
        super().__init__()
        d = {"dtype": dtype}
        self.a = nn.Sequential(nn.LazyLinear(6, **d), nn.LazyBatchNorm1d(**d), nn.ReLU())
        self.f = nn.BatchNorm1d(6, eps=1e-3, **d)
        self.b = nn.Sequential(nn.Linear(5, 4, **d), nn.BatchNorm1d(4, momentum=None, **d))
        self.g = nn.Linear(4, 2, **d)
        self.k = nn.Sequential(nn.Linear(4, 3, bias=False, **d), nn.LazyBatchNorm1d(**d))
        self.c = nn.Sequential(nn.Linear(5, 3, bias=False, **d), nn.ReLU())
        self.d = nn.Sequential(nn.BatchNorm1d(3, affine=False, **d), nn.ReLU())
        self.e = nn.BatchNorm1d(3, track_running_stats=False, **d)
        self.flat = nn.Flatten()
        self.h = nn.Linear(L, 2, **d)

    def forward(self, x, z):
        y1 = self.f(self.a(x))
        h = self.b(x)  # read by two Linear layers only: channel-major in run_s
        y2 = self.g(h)
        y7 = self.k(h)
        y3 = F.relu(self.c(x) + self.c(x))
        y4 = self.d(z)
        y5 = self.flat(self.e(z))
        y6 = self.h(z)
        return y1, y2, y3, y4, y5, y6, y7


class TorchZoo(tnn.Module):
    def __init__(self, dtype):
        super().__init__()
        d = {"dtype": dtype}
        self.a = tnn.Sequential(tnn.Linear(5, 6, **d), tnn.BatchNorm1d(6, **d), tnn.ReLU())
        self.f = tnn.BatchNorm1d(6, eps=1e-3, **d)
        self.b = tnn.Sequential(tnn.Linear(5, 4, **d), tnn.BatchNorm1d(4, momentum=None, **d))
        self.g = tnn.Linear(4, 2, **d)
        self.k = tnn.Sequential(tnn.Linear(4, 3, bias=False, **d), tnn.BatchNorm1d(3, **d))
        self.c = tnn.Sequential(tnn.Linear(5, 3, bias=False, **d), tnn.ReLU())
        self.d = tnn.Sequential(tnn.BatchNorm1d(3, affine=False, **d), tnn.ReLU())
        self.e = tnn.BatchNorm1d(3, track_running_stats=False, **d)
        self.h = tnn.Linear(L, 2, **d)

    def forward(self, x, z):
        h = self.b(x)
        return (self.f(self.a(x)), self.g(h), torch.relu(self.c(x) + self.c(x)), self.d(z),
                self.e(z).flatten(1), self.h(z), self.k(h))


SPECS = {np.float32: "float32", np.float64: "float64"}
TOL = {np.float32: {"rtol": 2e-4, "atol": 2e-5}, np.float64: {"rtol": 1e-9, "atol": 1e-10}}


def _compiled(dtype):
    lf.manual_seed(0)
    model = Zoo(dtype)
    specs = (lf.TensorSpec(("N", 5), SPECS[dtype]), lf.TensorSpec(("N", 3, L), SPECS[dtype]))
    cm = lf.compile(model, *specs, backend="cpu")
    ref_model = Zoo(dtype)
    ref_model.load_state_dict(model.state_dict())
    ref = lf.compile(ref_model, *specs, backend="reference")
    return model, cm, ref_model, ref


@pytest.fixture(scope="module", params=[np.float32, np.float64], ids=["f32", "f64"])
def zoo(request):
    return (request.param, *_compiled(request.param))


def _inputs(rng, n, dtype, scale=1.0, offset=0.0):
    x = (rng.standard_normal((n, 5)) * scale + offset).astype(dtype)
    z = (rng.standard_normal((n, 3, L)) * scale + offset).astype(dtype)
    return x, z


def _assert_outputs(got, want, dtype, **kw):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.dtype == np.dtype(dtype) and g.shape == w.shape
        np.testing.assert_allclose(g, w, **(kw or TOL[dtype]))


def _assert_state(a, b, dtype):
    assert_same_state(a, b, **TOL[dtype])


def test_source_is_one_module_with_one_run(zoo):
    dtype, model, cm, _, _ = zoo
    src = cm.source
    assert src.count("\ndef run(") == 1 and src.count("\ndef run_s(") == 1
    run, run_s = src.split("\ndef run(")[1].split("\ndef run_s(")
    for call in ("op_linear_bn(", "op_linear(", "op_bn2(", "op_bn3(", "op_relu(", "np.add("):
        assert call in run, call
        assert call.replace("(", "_s(").replace("np.add_s(", "np.add(") in run_s, call
    # the serial flavour never reaches a parallel kernel
    serial = src.split("# Serial flavour of the drivers")[1]
    assert "_p(" not in serial and "prange" not in serial.split("def small(")[0]
    assert "advise_huge(" in run and "advise_huge(" not in run_s  # small buffers: no huge-page hint
    ops = {n.op for n in cm.graph.nodes}
    assert {"fused_linear_bn_relu", "fused_linear_bn", "fused_linear_relu", "fused_bn_relu"} <= ops
    assert cm.runner.cached and cm.runner.file.read_text() == src


def test_serial_flavour_keeps_values_between_linear_layers_channel_major(zoo):
    _, _, cm, _, _ = zoo
    # b's output is read only by the Linear layers g and k; a's goes to BatchNorm f, c's to add.
    assert {n.name for n in codegen.channel_major_values(cm.graph)} == {"b_0_b_1"}
    run, run_s = cm.source.split("\ndef run(")[1].split("\ndef run_s(")
    assert "v_b_0_b_1 = np.empty((4, sym_N), " in run_s and "v_b_0_b_1 = np.empty((sym_N, 4), " in run
    assert run_s.count(", v_b_0_b_1, False, True)") == 1  # written channel-major ...
    assert ", v_g, True, False)" in run_s and ", v_k_0_k_1, True, False)" in run_s  # ... read so


def test_mlp_hidden_layers_are_channel_major():
    from lazyfuse.examples.mlp import MLPWithBN

    cm = lf.compile(MLPWithBN(), lf.TensorSpec(("N", 784)), backend="cpu")
    assert {n.name for n in codegen.channel_major_values(cm.graph)} == {"fc1_bn1_relu1", "fc2_bn2_relu2"}


def test_a_flatten_that_changes_no_shape_is_an_alias():
    """Flatten of an (N, C) input is the input itself (as torch.flatten returns it): no Numba
    reshape to compile; one of (N, C, L) still reshapes."""
    lf.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(6, 3))
    model.eval()
    flat = lf.compile(model, lf.TensorSpec(("N", 6)), backend="cpu")
    assert "v_flatten_0 = a_input  # no-op" in flat.source
    assert ".reshape(" not in flat.source.split("def run(")[1]
    x = np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32)
    np.testing.assert_allclose(flat(x), model(x), rtol=1e-6, atol=1e-6)
    alone = lf.compile(nn.Flatten(), lf.TensorSpec(("N", 6)), backend="cpu")
    np.testing.assert_array_equal(alone(x), x)
    lazy = nn.Sequential(nn.Flatten(), nn.LazyLinear(3))
    cm3 = lf.compile(lazy, lf.TensorSpec(("N", 2, 3)), backend="cpu")
    assert "v_flatten_0 = a_input.reshape((sym_N, 6))" in cm3.source
    lazy.eval()
    np.testing.assert_allclose(cm3(x.reshape(4, 2, 3)), lazy(x.reshape(4, 2, 3)), rtol=1e-6, atol=1e-6)


def test_small_calls_take_the_serial_flavour(zoo):
    dtype, model, cm, _, _ = zoo
    rng = np.random.default_rng(5)
    small, big = _inputs(rng, 3, dtype, 1.0, 0.0), _inputs(rng, 9000, dtype, 1.0, 0.0)
    assert cm.runner.entry(small) == "run_s"
    assert cm.runner.entry(big) == "run"


def test_train_steps_then_eval_match_reference(zoo):
    dtype, model, cm, ref_model, ref = zoo
    model.train()
    ref_model.train()
    rng = np.random.default_rng(1)
    # 7 rows take run_s, 9000 rows run with serial kernels, BIG rows run's parallel ones.
    for n in (7, 9000, BIG, 2, 0, 7):  # 0: an empty batch only counts (num_batches_tracked)
        x, z = _inputs(rng, n, dtype, scale=2.0, offset=0.5)
        _assert_outputs(cm(x, z), ref(x, z), dtype)
        _assert_state(model, ref_model, dtype)
    model.eval()
    ref_model.eval()
    for n in (1, 5, 9000, BIG, 0):
        x, z = _inputs(rng, n, dtype)
        _assert_outputs(cm(x, z), ref(x, z), dtype)
    _assert_state(model, ref_model, dtype)
    model.train()
    ref_model.train()


def test_matches_torch_train_and_eval(zoo):
    dtype, model, cm, _, _ = zoo
    tdtype = torch.float32 if dtype == np.float32 else torch.float64
    tmodel = TorchZoo(tdtype)
    tmodel.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in model.state_dict().items()})
    rng = np.random.default_rng(2)
    for train, n in ((True, 16), (True, 3), (True, 0), (False, 1), (False, 9), (False, 0)):
        model.train(train)
        tmodel.train(train)
        x, z = _inputs(rng, n, dtype, scale=3.0, offset=-1.0)
        got = cm(x, z)
        with torch.no_grad():
            want = [t.numpy() for t in tmodel(torch.from_numpy(x), torch.from_numpy(z))]
        _assert_outputs(got, want, dtype)
        for k, v in tmodel.state_dict().items():
            np.testing.assert_allclose(np.asarray(model.state_dict()[k]), v.numpy(), err_msg=k, **TOL[dtype])
    model.train()


def test_eval_uses_current_running_stats_after_load_state_dict(zoo):
    dtype, model, cm, ref_model, ref = zoo
    model.eval()
    ref_model.eval()
    x, z = _inputs(np.random.default_rng(3), 6, dtype)
    before = cm(x, z)[0]
    state = copy.deepcopy(model.state_dict())
    state["a.1.running_mean"] = state["a.1.running_mean"] + 1.5
    state["f.running_var"] = state["f.running_var"] * 4
    model.load_state_dict(state)
    ref_model.load_state_dict(state)
    after = cm(x, z)
    assert not np.allclose(before, after[0])
    _assert_outputs(after, ref(x, z), dtype)
    model.train()
    ref_model.train()


@pytest.mark.parametrize("backend", ["cpu", "reference"])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_empty_batches_in_train_only_count_like_torch(backend, momentum):
    bn = nn.BatchNorm1d(3, momentum=momentum, dtype=np.float64)
    bn.running_mean[:] = [1.0, 2.0, 3.0]
    tbn = tnn.BatchNorm1d(3, momentum=momentum, dtype=torch.float64)
    tbn.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in bn.state_dict().items()})
    cm = lf.compile(bn, lf.TensorSpec(("N", 3, "L"), "float64"), backend=backend)
    for shape in ((0, 3, 5), (2, 3, 0), (1, 3, 0)):  # no values per channel: N == 0 or L == 0
        x = np.empty(shape)
        with torch.no_grad():
            want = tbn(torch.from_numpy(x))
        assert cm(x).shape == tuple(want.shape) == shape
    for k, v in tbn.state_dict().items():
        np.testing.assert_array_equal(np.asarray(bn.state_dict()[k]), v.numpy(), err_msg=k)
    assert int(bn.num_batches_tracked) == 3


def test_extreme_values_match_reference(zoo):
    dtype, model, cm, ref_model, ref = zoo
    rng = np.random.default_rng(4)
    # |mean| / std = 1e3 on the BatchNorm inputs of z (d, e) and after the Linear layers of x.
    x, z = _inputs(rng, 64, dtype, scale=1.0, offset=1e3)
    for train in (True, False):
        model.train(train)
        ref_model.train(train)
        tol = {"rtol": 2e-3, "atol": 2e-3} if dtype == np.float32 else {}
        _assert_outputs(cm(x, z), ref(x, z), dtype, **tol)
        _assert_state(model, ref_model, dtype) if dtype == np.float64 else None
    # NaN and +-inf propagate like the reference (and torch.relu): NaN stays NaN.
    x, z = _inputs(rng, 8, dtype)
    x[2, 1] = np.nan
    z[1, 0, 2] = np.inf
    z[3, 1, 0] = -np.inf
    z[5, 2, 1] = np.nan
    for train in (True, False):
        model.train(train)
        ref_model.train(train)
        got, want = cm(x, z), ref(x, z)
        for g, w in zip(got, want):
            np.testing.assert_array_equal(np.isnan(g), np.isnan(w))
            np.testing.assert_array_equal(np.isinf(g), np.isinf(w))
            fin = np.isfinite(w)
            np.testing.assert_allclose(g[fin], w[fin], **TOL[dtype])
        _assert_state_nan(model, ref_model)
    model.train()
    ref_model.train()


def _assert_state_nan(a, b):
    for k, v in a.state_dict().items():
        w = b.state_dict()[k]
        np.testing.assert_array_equal(np.isnan(v), np.isnan(w), err_msg=k)
        np.testing.assert_array_equal(np.isinf(v), np.isinf(w), err_msg=k)


def _error(fn):
    with pytest.raises(Exception) as info:
        fn()
    return type(info.value), str(info.value)


@pytest.mark.parametrize("case", ["dtype", "rank", "features", "symbols", "batch1-train"])
def test_bad_inputs_raise_like_reference_and_leave_state_untouched(zoo, case):
    dtype, model, cm, ref_model, ref = zoo
    model.train()
    ref_model.train()
    x, z = _inputs(np.random.default_rng(5), 4, dtype)
    other = np.float64 if dtype == np.float32 else np.float32
    bad = {"dtype": (x.astype(other), z), "rank": (x[None], z), "features": (x[:, :4], z),
           "symbols": (x, z[:3]), "batch1-train": (x[:1], z[:1])}[case]
    before = copy.deepcopy(model.state_dict())
    got, want = _error(lambda: cm(*bad)), _error(lambda: ref(*bad))
    assert got == want
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)
