"""ir.ops: shape rules on symbolic and lazy dims, their errors, and the NumPy reference impls."""

import numpy as np
import pytest

from lazyfuse.errors import DTypeError, InferenceError, ShapeError
from lazyfuse.ir import OPS, UNKNOWN, OpDef, Sym, TensorType, f32, f64, i64, register_op
from lazyfuse.ir.ops import AttrSpec, ShapeResult, check_attrs, infer_node

N, L = Sym("N"), Sym("L")
Q = UNKNOWN


def t(*shape, dtype=f32):
    return TensorType(dtype, shape)


def lin(in_f, out_f, bias=True):
    return {"in_features": in_f, "out_features": out_f, "bias": bias}


def bn(c, affine=True, track=True, momentum=0.1):
    return {"num_features": c, "eps": 1e-5, "momentum": momentum, "affine": affine,
            "track_running_stats": track}


def bn_operands(c, affine=True, track=True):
    ops = [t(c), t(c)] if affine else []
    return ops + ([t(c), t(c), t(dtype=i64)] if track else [])


def test_op_table_has_the_contract_ops():
    assert {"input", "param", "buffer", "linear", "batch_norm", "relu", "flatten", "reshape", "add",
            "output"} <= set(OPS)
    assert OPS["linear"].arity_range({"bias": False}) == (2, 2)
    assert OPS["batch_norm"].arity_range({"affine": False, "track_running_stats": True}) == (4, 4)
    assert OPS["batch_norm"].arity_range({"affine": True, "track_running_stats": False}) == (3, 3)


def test_linear_resolves_lazy_in_features_and_refines_weight():
    res = infer_node("linear", lin(Q, 10), [t(N, 256), t(10, Q), t(10)])
    assert res.out == t(N, 10)
    assert res.attrs["in_features"] == 256
    assert res.inputs == {1: t(10, 256)}


def test_linear_keeps_leading_dims_and_unknown_input():
    assert infer_node("linear", lin(4, 3, False), [t(N, 7, 4), t(3, 4)]).out == t(N, 7, 3)
    res = infer_node("linear", lin(Q, 3, False), [t(N, Q), t(3, Q)])
    assert res.out == t(N, 3) and res.attrs["in_features"] is Q and res.inputs == {}


def test_linear_lazy_dim_cannot_equal_a_symbol():
    with pytest.raises(InferenceError, match=r"symbolic dim 3\*L .*symbol L"):
        infer_node("linear", lin(Q, 10), [t(N, 3 * L), t(10, Q), t(10)])


@pytest.mark.parametrize("attrs, types, msg", [
    (lin(784, 10), [t(N, 785), t(10, 784), t(10)], "expected 784 .*got 785"),
    (lin(Q, 10), [t(N, 5), t(10, 4), t(10)], "expected 4 .*got 5"),
    (lin(4, 10), [t(N, 4), t(10, 4), t(9)], r"bias has type f32\[9\], expected f32\[10\]"),
    (lin(784, 10), [t(N, 3 * L), t(10, 784), t(10)], r"expected 784 .*got 3\*L"),
    (lin(4, 10, False), [t(), t(10, 4)], "expected an input of shape"),
])
def test_linear_errors(attrs, types, msg):
    with pytest.raises(InferenceError, match=msg):
        infer_node("linear", attrs, types)


def test_dtype_mismatches_are_dtype_errors():
    # was one of test_linear_errors' InferenceError cases; the issue makes dtype problems DTypeError
    with pytest.raises(DTypeError, match="dtype mismatch"):
        infer_node("linear", lin(4, 10), [t(N, 4), t(10, 4, dtype=f64), t(10)])
    with pytest.raises(DTypeError, match="dtype mismatch: weight is f64"):
        infer_node("batch_norm", bn(3), [t(N, 3), t(3, dtype=f64), t(3), t(3), t(3), t(dtype=i64)])
    with pytest.raises(DTypeError, match=r"num_batches_tracked has type f32\[\], expected i64"):
        infer_node("batch_norm", bn(3), [t(N, 3), t(3), t(3), t(3), t(3), t()])


@pytest.mark.parametrize("affine, track", [(True, True), (False, True), (True, False), (False, False)])
def test_batch_norm_resolves_num_features(affine, track):
    res = infer_node("batch_norm", bn(Q, affine, track), [t(N, 64, L)] + bn_operands(Q, affine, track))
    assert res.out == t(N, 64, L) and res.attrs["num_features"] == 64
    n_state = 2 * affine + 2 * track
    assert res.inputs == {i: t(64) for i in range(1, n_state + 1)}


def test_batch_norm_lazy_dim_from_symbol_and_bad_rank():
    with pytest.raises(InferenceError, match="symbol C"):
        infer_node("batch_norm", bn(Q), [t(N, Sym("C"))] + bn_operands(Q))
    with pytest.raises(InferenceError, match=r"\(N,C\), \(N,C,L\) or \(N,C,H,W\)"):
        infer_node("batch_norm", bn(3), [t(N, 3, 4, 5, 6)] + bn_operands(3))
    with pytest.raises(InferenceError, match="expected 3 .*got 4"):
        infer_node("batch_norm", bn(3), [t(N, 4)] + bn_operands(3))
    with pytest.raises(InferenceError, match="num_batches_tracked"):
        infer_node("batch_norm", bn(3, affine=False), [t(N, 3), t(3), t(3), t(3)])
    with pytest.raises(InferenceError, match="expected 6 operands, got 2"):
        infer_node("batch_norm", bn(3), [t(N, 3), t(3)])


def test_batch_norm_unknown_channel_resolved_from_attr():
    res = infer_node("batch_norm", bn(8), [t(N, Q)] + bn_operands(Q))
    assert res.out == t(N, 8)


@pytest.mark.parametrize("attrs, x, want", [
    ({"start_dim": 1, "end_dim": -1}, t(N, 28, 28), t(N, 784)),
    ({"start_dim": 1, "end_dim": -1}, t(N, 3, L), t(N, 3 * L)),
    ({"start_dim": 0, "end_dim": -1}, t(N, L), t(N * L)),
    ({"start_dim": 1, "end_dim": 2}, t(N, 4, 5, 6), t(N, 20, 6)),
    ({"start_dim": 1, "end_dim": -1}, t(N, Q, 4), t(N, Q)),
    ({"start_dim": 0, "end_dim": -1}, t(), t(1)),
])
def test_flatten(attrs, x, want):
    assert infer_node("flatten", attrs, [x]).out == want


def test_flatten_errors():
    with pytest.raises(InferenceError, match="out of range"):
        infer_node("flatten", {"start_dim": 3, "end_dim": -1}, [t(N, 3)])
    with pytest.raises(InferenceError, match="comes after"):
        infer_node("flatten", {"start_dim": 1, "end_dim": 0}, [t(N, 3)])


@pytest.mark.parametrize("shape, x, want", [
    ((N, -1), t(N, 28, 28), t(N, 784)),
    ((N, -1), t(N, 3, L), t(N, 3 * L)),
    ((-1, 4), t(2, 8), t(4, 4)),
    ((N, 3, L), t(N, 3 * L), t(N, 3, L)),
    ((N, -1), t(N, Q), t(N, Q)),
])
def test_reshape(shape, x, want):
    assert infer_node("reshape", {"shape": shape}, [x]).out == want


def test_reshape_errors():
    with pytest.raises(InferenceError, match="not divisible by N"):
        infer_node("reshape", {"shape": (N, -1)}, [t(12)])
    with pytest.raises(InferenceError, match="only one dim can be -1"):
        infer_node("reshape", {"shape": (-1, -1)}, [t(12)])
    with pytest.raises(InferenceError, match="has 10 elements, input f32\\[12\\] has 12"):
        infer_node("reshape", {"shape": (2, 5)}, [t(12)])


@pytest.mark.parametrize("a, b, want", [
    (t(N, 4), t(N, 4), t(N, 4)),
    (t(N, 4), t(4), t(N, 4)),
    (t(N, 1), t(1, 4), t(N, 4)),
    (t(N, Q), t(N, 4), t(N, 4)),
])
def test_add_broadcasting(a, b, want):
    assert infer_node("add", {}, [a, b]).out == want


def test_add_errors():
    with pytest.raises(InferenceError, match=r"do not broadcast: f32\[N,4\] and f32\[N,5\]"):
        infer_node("add", {}, [t(N, 4), t(N, 5)])
    with pytest.raises(DTypeError, match="dtype mismatch"):  # was InferenceError
        infer_node("add", {}, [t(N, 4), t(N, 4, dtype=f64)])


def test_relu_and_attr_checks():
    assert infer_node("relu", {}, [t(N, Q)]).out == t(N, Q)
    assert check_attrs(OPS["linear"], lin(4, 3)) == []
    problems = check_attrs(OPS["linear"], {"in_features": 2.5, "bias": 1, "extra": 0})
    assert any("in_features" in p for p in problems)
    assert any("missing attr 'out_features'" in p for p in problems)
    assert any("unexpected attr 'extra'" in p for p in problems)


def test_register_op():
    name = "test_ir_ops_double"
    op = OpDef(name, {}, 1, lambda a, ts: ShapeResult(ts[0], dict(a)), lambda a, x, training=False: 2 * x)
    register_op(op)
    try:
        assert OPS[name] is op
        with pytest.raises(ValueError, match="already registered"):
            register_op(op)
        assert infer_node(name, {}, [t(N)]).out == t(N)
        assert AttrSpec("int").required and not AttrSpec("int", 0).required
    finally:
        del OPS[name]


# -------------------------------------------------------------------------------- reference impls
def test_simple_impls():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3, 5)).astype(np.float32)
    w = rng.standard_normal((6, 15)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    flat = OPS["flatten"].impl({"start_dim": 1, "end_dim": -1}, x, training=False)
    assert flat.shape == (4, 15)
    y = OPS["linear"].impl(lin(15, 6), flat, w, b, training=False)
    np.testing.assert_allclose(y, flat @ w.T + b, rtol=1e-5)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(OPS["relu"].impl({}, y, training=False), np.maximum(y, 0))
    np.testing.assert_array_equal(OPS["add"].impl({}, y, b, training=False), y + b)
    reshape = OPS["reshape"].impl
    assert reshape({"shape": (N, -1)}, x, training=False, bindings={"N": 4}).shape == (4, 15)
    assert reshape({"shape": (N, 3 * L)}, x, training=False, bindings={"N": 4, "L": 5}).shape == (4, 15)
    assert reshape({"shape": (-1, 3, 5)}, flat, training=False).shape == (4, 3, 5)
    assert reshape({"shape": (N, 15)}, x, training=False).shape == (4, 15)
    with pytest.raises(ShapeError, match="pass bindings="):
        reshape({"shape": (N, -1)}, x, training=False)
    with pytest.raises(ShapeError, match="symbol L"):
        reshape({"shape": (N, L)}, x, training=False, bindings={"N": 4})


def _bn_state(c, rng):
    w = rng.standard_normal(c).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32)
    rm = rng.standard_normal(c).astype(np.float32)
    rv = rng.uniform(0.5, 2.0, c).astype(np.float32)
    return w, b, rm, rv


@pytest.mark.parametrize("shape", [(8, 4), (5, 4, 3)])
@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_matches_torch(shape, momentum, affine):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    c = shape[1]
    w, b, rm, rv = _bn_state(c, rng)
    m = torch.nn.BatchNorm1d(c, momentum=momentum, affine=affine)
    with torch.no_grad():
        if affine:
            m.weight.copy_(torch.from_numpy(w))
            m.bias.copy_(torch.from_numpy(b))
        m.running_mean.copy_(torch.from_numpy(rm))
        m.running_var.copy_(torch.from_numpy(rv))
    nbt = np.zeros((), np.int64)
    state = ([w, b] if affine else []) + [rm.copy(), rv.copy(), nbt]
    attrs = bn(c, affine=affine, momentum=momentum)
    for step in range(3):
        training = step < 2
        m.train(training)
        x = rng.standard_normal(shape).astype(np.float32)
        want = m(torch.from_numpy(x)).detach().numpy()
        got = OPS["batch_norm"].impl(attrs, x, *state, training=training)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
        assert got.dtype == np.float32
        np.testing.assert_allclose(state[-3], m.running_mean.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(state[-2], m.running_var.numpy(), rtol=1e-5, atol=1e-6)
        assert int(nbt) == int(m.num_batches_tracked)
    assert state[-1] is nbt  # updated in place


def test_batch_norm_without_running_stats_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    x = rng.standard_normal((6, 3)).astype(np.float64)
    m = torch.nn.BatchNorm1d(3, affine=False, track_running_stats=False).double().eval()
    want = m(torch.from_numpy(x)).numpy()
    got = OPS["batch_norm"].impl(bn(3, affine=False, track=False), x, training=False)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_batch_norm_train_needs_more_than_one_value_and_leaves_state():
    w, b, rm, rv = _bn_state(3, np.random.default_rng(3))
    nbt = np.zeros((), np.int64)
    rm0 = rm.copy()
    with pytest.raises(ShapeError, match="more than 1 value per channel"):
        OPS["batch_norm"].impl(bn(3), np.ones((1, 3), np.float32), w, b, rm, rv, nbt, training=True)
    assert int(nbt) == 0 and np.array_equal(rm, rm0)
