"""ir.types: dtypes, Sym arithmetic, TensorType, TensorSpec validation and unify."""

import numpy as np
import pytest

from lazyfuse.errors import ConfigError, DTypeError, InferenceError, LazyFuseError, ShapeError, TraceError
from lazyfuse.frontends.spec import TensorSpec, unify
from lazyfuse.ir import UNKNOWN, Sym, TensorType, dtype_from, f32, f64, i64
from lazyfuse.ir.types import parse_dim

N, L = Sym("N"), Sym("L")


@pytest.mark.parametrize("x, want", [("float32", f32), ("f32", f32), (np.float64, f64),
                                     (np.dtype("int64"), i64), (f64, f64), ("i64", i64)])
def test_dtype_lookup(x, want):
    assert dtype_from(x) is want


def test_dtype_fields_and_bad_lookup():
    assert (f32.name, f32.short, f32.numpy) == ("float32", "f32", np.dtype(np.float32))
    with pytest.raises(DTypeError, match="float16"):
        dtype_from("float16")


def test_sym_printing_and_normalization():
    assert str(N) == "N"
    assert str(3 * L) == "3*L"
    assert str(N * L) == "N*L"
    assert str(L * 64) == "64*L"
    assert str(2 * (3 * L)) == "6*L"
    prod = (3 * L) // L
    assert prod == 3 and type(prod) is int
    assert str(UNKNOWN) == "?"


def test_sym_equality_is_order_free_and_hashable():
    assert N * L == L * N
    assert hash(N * L) == hash(L * N)
    assert N != L and N != 1 and 3 * L != 4 * L
    assert len({N, Sym("N"), L}) == 2


def test_sym_exact_division():
    assert (64 * N * L) // N == 64 * L
    assert (6 * L) // 3 == 2 * L
    with pytest.raises(InferenceError, match="not divisible"):
        (3 * L) // N
    with pytest.raises(InferenceError, match="not divisible"):
        (3 * L) // 2
    with pytest.raises(InferenceError):
        12 // N


def test_sym_rejects_bad_names():
    with pytest.raises(ConfigError):
        Sym("")
    with pytest.raises(ConfigError):
        Sym("3x")


def test_parse_dim():
    assert parse_dim("?") is UNKNOWN
    assert parse_dim("784") == 784
    assert parse_dim("3*L") == 3 * L
    assert parse_dim("N*L") == N * L


def test_tensor_type_properties():
    t = TensorType(f32, (N, 784))
    assert str(t) == "f32[N,784]"
    assert t.rank == 2 and t.numel() == 784 * N and not t.is_concrete and t.symbols == ("N",)
    assert str(TensorType(i64, ())) == "i64[]"
    assert TensorType(i64, ()).numel() == 1
    c = TensorType("float64", (2, 3))
    assert c.is_concrete and c.numel() == 6 and c.dtype is f64
    lazy = TensorType(f32, (10, UNKNOWN))
    assert lazy.numel() is UNKNOWN and not lazy.is_resolved
    assert TensorType(f32, (N, 3 * L)).symbols == ("N", "L")
    assert TensorType(f32, (N, 3 * L)).evaluate({"N": 2, "L": 5}) == (2, 15)
    assert TensorType.parse("f32[N,3*L,?]") == TensorType(f32, (N, 3 * L, UNKNOWN))
    with pytest.raises(TypeError):
        TensorType(f32, (2.0,))


def test_tensor_spec_valid():
    s = TensorSpec(("N", 784))
    assert s.shape == ("N", 784) and s.dtype is f32 and s.symbols == ("N",)
    assert s.to_type() == TensorType(f32, (N, 784))
    assert TensorSpec([np.int64(3), "L"], dtype=np.float64).to_type() == TensorType(f64, (3, L))
    assert TensorSpec(("N", 4)) == TensorSpec(("N", 4), "f32")
    assert "TensorSpec(('N', 784)" in repr(s)


@pytest.mark.parametrize("shape, exc, msg", [
    ((0, 3), ConfigError, "dim 0 is 0"),
    (("N", -2), ConfigError, "dim 1 is -2"),
    (("N", 2**70), ConfigError, "dim 1 is 1180591620717411303424: larger than any array dimension"),
    (("N", 2.5), TraceError, "dim 1 is 2.5 \\(float\\): expected a positive int or a symbol name"),
    (("N", 4.0), TraceError, "dim 1 is 4.0 \\(float\\)"),
    (("N", None), TraceError, "dim 1 is None \\(NoneType\\)"),
    (("", 3), ConfigError, "non-empty identifier"),
    (("N x", 3), ConfigError, "identifier"),
    ((True, 3), TraceError, "dim 0 is True \\(bool\\)"),
    ("N,784", TraceError, "shape must be a tuple .* got 'N,784'"),
    (5, TraceError, "shape must be a tuple .* got 5"),
])
def test_tensor_spec_errors(shape, exc, msg):
    with pytest.raises(exc, match=msg) as info:
        TensorSpec(shape)
    assert isinstance(info.value, LazyFuseError)


def test_tensor_spec_type_mistakes_stay_type_errors():
    for shape in [("N", 4.0), ("N", None), (True, 3), "N,784", 5]:
        with pytest.raises(TypeError):
            TensorSpec(shape)


@pytest.mark.parametrize("dtype, got", [
    ("int64", "got int64"), (int, "got int64"), ("complex64", "got 'complex64'"),
    ("float16", "got 'float16'"), ("foo", "got 'foo'"), ([1], "got \\[1\\]"),
])
def test_tensor_spec_dtype_errors(dtype, got):
    with pytest.raises(DTypeError, match=f"TensorSpec dtype must be float32 or float64, {got}") as info:
        TensorSpec(("N",), dtype=dtype)
    assert "int64" not in str(info.value).split("got")[0]  # int64 is never offered as accepted


def test_tensor_spec_dtype_none_is_the_float32_default():
    assert TensorSpec(("N", 4), dtype=None).dtype is f32
    assert TensorSpec(("N", 4), dtype=None) == TensorSpec(("N", 4))
    assert TensorSpec(("N", 4), dtype="f64").dtype is f64


def test_unify_binds_symbols_consistently():
    t = TensorType(f32, (N, 784))
    b = unify(t, (32, 784))
    assert b == {"N": 32}
    b2 = unify(TensorType(f32, (N, 3 * L)), (32, 12), {"N": 32})
    assert b2 == {"N": 32, "L": 4}
    assert unify(TensorType(f32, (N, N * L)), (2, 10)) == {"N": 2, "L": 5}


@pytest.mark.parametrize("ttype, shape, bindings, msg", [
    (TensorType(f32, (N, 784)), (32, 785), {}, r"dim 1 is 785, expected 784"),
    (TensorType(f32, (N, 784)), (32,), {}, "expected rank 2, got rank 1"),
    (TensorType(f32, (N, N)), (3, 4), {}, "already bound to 3"),
    (TensorType(f32, (N, 784)), (5, 784), {"N": 4}, "already bound to 4"),
    (TensorType(f32, (N, 3 * L)), (2, 10), {}, "not a multiple of 3"),
])
def test_unify_errors_name_expected_and_got(ttype, shape, bindings, msg):
    with pytest.raises(ShapeError, match=msg) as info:
        unify(ttype, shape, dict(bindings))
    assert str(ttype) in str(info.value) and str(shape) in str(info.value)


def test_bad_dims_and_type_text_raise_ir_errors():
    from lazyfuse.errors import IRParseError
    from lazyfuse.ir import IRTypeError

    with pytest.raises(IRParseError, match="bad dim 'N x'"):
        parse_dim("N x")
    for text in ("f32(N)", "f99[N]", "f32[N,$]"):
        with pytest.raises(IRParseError, match="bad"):
            TensorType.parse(text)
    with pytest.raises(IRParseError, match="unknown dtype 'f99'"):
        TensorType.parse("f99[N]")
    with pytest.raises(IRTypeError, match="bad dim 2.0") as info:
        TensorType(f32, (2.0,))
    assert isinstance(info.value, TypeError) and isinstance(info.value, LazyFuseError)
    assert isinstance(IRParseError("x"), ValueError)
