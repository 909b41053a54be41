"""lf.trace: graph structure, locations, symbolic shapes, errors, round trips; the model is untouched."""

from __future__ import annotations

import inspect

import models_for_tests as M
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lazyfuse as lf
from lazyfuse import nn
from lazyfuse.errors import TraceError
from lazyfuse.frontends.nn import functional as F
from lazyfuse.ir.types import UNKNOWN, Sym


def snapshot(model):
    """Everything tracing could change: classes, sizes, training flags, array identities and values."""
    mods = [(p, type(m), m.training, dict(vars(m)).get("in_features"), dict(vars(m)).get("num_features"))
            for p, m in model.named_modules()]
    arrays = {}
    for p, m in model.named_modules():
        for store in (m._parameters, m._buffers):
            for k, v in store.items():
                value = None if v is None or nn.is_uninitialized(v) else v.copy()
                arrays[f"{p}.{k}"] = (id(v), type(v), value)
    return mods, arrays


def assert_same(a, b):
    assert a[0] == b[0]
    assert a[1].keys() == b[1].keys()
    for k in a[1]:
        ida, ta, va = a[1][k]
        idb, tb, vb = b[1][k]
        assert (ida, ta) == (idb, tb), k
        if va is None:
            assert vb is None
        else:
            np.testing.assert_array_equal(va, vb)


def line_of(obj, snippet: str) -> int:
    lines, start = inspect.getsourcelines(obj)
    for i, text in enumerate(lines):
        if snippet in text:
            return start + i
    raise AssertionError(f"{snippet!r} not in source of {obj}")


CONV_TRACED = """\
graph @ConvLikeBN[N,L](%x: f32[N,3,L]) -> (f32[N,3,L]) {
  @bn.weight: f32[?] = param
  @bn.bias: f32[?] = param
  @bn.running_mean: f32[?] = buffer
  @bn.running_var: f32[?] = buffer
  @bn.num_batches_tracked: i64[] = buffer
  %bn: f32[N,3,L] = batch_norm[affine=true, eps=1e-05, momentum=0.1, num_features=?, track_running_stats=true](%x, @bn.weight, @bn.bias, @bn.running_mean, @bn.running_var, @bn.num_batches_tracked)  # models_for_tests.py:18 bn:LazyBatchNorm1d
  %act: f32[N,3,L] = relu(%bn)  # models_for_tests.py:19 act:ReLU
  return (%act)
}"""  # noqa: E501


def test_golden_nclbn_traced():
    model = M.ConvLikeBN()
    g = lf.trace(model, lf.TensorSpec(("N", 3, "L")))
    assert str(g).strip() == CONV_TRACED
    assert g.name == "ConvLikeBN" and g.model is model
    assert g.symbols == ["N", "L"]


def test_trace_leaves_model_untouched():
    for model, spec in [(M.Residual(), ("N", 5)), (M.ConvLikeBN(), ("N", 3, "L")),
                        (M.FlattenIntoLazy(), ("N", 3, "L")), (M.Mismatch(), ("N", 512))]:
        before = snapshot(model)
        lazy = model.has_uninitialized_params()
        lf.trace(model, spec)
        assert_same(before, snapshot(model))
        assert model.has_uninitialized_params() == lazy


def test_lazy_params_and_attrs_are_unknown():
    g = lf.trace(nn.Sequential(nn.LazyLinear(10)), ("N", 7))
    w = g.node("0.weight")
    assert w.op == "param" and w.type.shape == (10, UNKNOWN)
    assert str(w.type) == "f32[10,?]"
    lin = g.node("linear_0")
    assert lin.attrs["in_features"] is UNKNOWN
    assert "linear[bias=true, in_features=?, out_features=10]" in str(g)
    assert lin.module == "0" and lin.module_type == "LazyLinear"


def test_nested_modules_modulelist_add_identity_and_locations():
    model = M.Residual()
    g = lf.trace(model, lf.TensorSpec(("N", 5)))
    ops = [n.op for n in g.nodes if n.op not in ("input", "param", "buffer", "output")]
    block = ["linear", "batch_norm", "relu", "add"]
    assert ops == ["linear", "relu", *block, *block, "batch_norm", "relu", "linear"]
    fc = g.node("blocks_1_fc")
    assert (fc.module, fc.module_type) == ("blocks.1.fc", "Linear")
    # The location is the line in the user's forward that made the call, as a basename.
    assert str(fc.loc) == f"models_for_tests.py:{line_of(M.Block.forward, 'F.relu(self.bn(self.fc(x)))')}"
    add = g.node("add")
    assert add.loc.line == line_of(M.Residual.forward, "block(h) + self.skip(h)")
    assert add.module is None
    # Identity emits nothing: the skip input is the relu itself.
    assert add.inputs[1] is g.node("relu")
    head = g.node("head_0")
    assert head.attrs["momentum"] is None and head.module_type == "LazyBatchNorm1d"
    assert head.loc.line == line_of(M.Residual.forward, "return self.head(h)")


def test_sequential_alone_has_no_user_location():
    g = lf.trace(nn.Sequential(nn.Linear(3, 2), nn.ReLU()), (4, 3))
    assert all(n.loc is None for n in g.nodes)
    assert [n.name for n in g.nodes if n.op in ("linear", "relu")] == ["linear_0", "relu_1"]


def test_symbolic_shape_and_reshape():
    seen = {}

    class Probe(nn.Module):
        def forward(self, x):
            seen["shape"] = x.shape
            seen["size1"] = x.size(1)
            seen["ndim"] = (x.dim(), x.ndim)
            seen["dtype"] = x.dtype
            return x.view(x.shape[0] * x.shape[1], -1)

    g = lf.trace(Probe(), lf.TensorSpec(("N", "T", 4), dtype="float64"))
    n, t, four = seen["shape"]
    assert isinstance(n, lf.frontends.trace.SymInt) and n.sym == Sym("N") and four == 4
    assert seen["size1"].sym == Sym("T") and seen["ndim"] == (3, 3) and seen["dtype"] == np.float64
    node = g.output.inputs[0]
    assert node.op == "reshape" and node.attrs["shape"] == (Sym("N") * Sym("T"), -1)
    assert str(node.type) == "f64[N*T,4]"


def test_reshapes_model_types():
    g = lf.trace(M.Reshapes(), ("N", 4, 6))
    types = [str(n.type) for n in g.nodes if n.op in ("reshape", "flatten")]
    assert types == ["f32[N,24]", "f32[N,2,12]", "f32[N,24]"]


def test_two_inputs_and_tuple_output():
    g = lf.trace(M.TwoInputs(), ("N", 3), ("N", 2))
    assert [n.name for n in g.inputs] == ["x", "y"]
    assert len(g.output.inputs) == 2
    assert "-> (f32[N,4], f32[N,4])" in str(g)


def test_functional_calls_reference_module_arrays():
    g = lf.trace(M.Functional(), ("N", 5))
    lin = g.node("linear")
    assert [i.ref for i in lin.inputs] == ["%x", "@fc.weight", "@fc.bias"]
    assert lin.attrs["in_features"] == 5


def test_subclass_with_own_forward_is_traced_through():
    class Doubled(nn.Linear):
        def forward(self, x):
            return F.linear(x, self.weight, self.bias) + F.linear(x, self.weight, self.bias)

    model = nn.Sequential(Doubled(3, 2))
    g = lf.trace(model, ("N", 3))
    assert [n.op for n in g.nodes if n.op not in ("input", "param", "output")] == ["linear", "linear", "add"]


@pytest.mark.parametrize("cls, snippet, what", [
    (M.Branchy, "if x.sum() > 0:", "control flow on a traced value"),
    (M.UsesInt, "n = int(x.shape[0])", "int() of the symbolic dim N"),
    (M.UsesLen, "x.reshape(len(x), -1)", "len() of a traced value whose first dim is symbolic"),
    (M.UsesBool, "return x if x else x", "truth value of %x"),
])
def test_control_flow_errors_name_the_user_line(cls, snippet, what):
    model = cls()
    before = snapshot(model)
    with pytest.raises(TraceError) as info:
        lf.trace(model, lf.TensorSpec(("N", 3)))
    msg = str(info.value)
    assert f"models_for_tests.py:{line_of(cls.forward, snippet)}" in msg
    assert what in msg and snippet in msg
    assert_same(before, snapshot(model))


def test_len_of_concrete_dim_is_fine():
    class L(nn.Module):
        def forward(self, x):
            return x.reshape(len(x), -1)

    g = lf.trace(L(), (4, 2, 3))
    assert str(g.output.inputs[0].type) == "f32[4,6]"


def test_comparisons_of_symbolic_dims_raise():
    class C(nn.Module):
        def forward(self, x):
            if x.shape[0] > 1:
                return x
            return x

    with pytest.raises(TraceError, match="symbolic dim N"):
        lf.trace(C(), ("N", 2))


@pytest.mark.parametrize("body, match", [
    (lambda self, x: np.maximum(x, 0), "NumPy function maximum"),
    (lambda self, x: x * 2, "only '\\+' between values"),
    (lambda self, x: x + np.ones(3, np.float32), "not a parameter or buffer"),
    (lambda self, x: x[0], "indexing"),
    (lambda self, x: x.exp(), "'exp' on a traced value"),
    (lambda self, x: nn.ReLU()(x), "not a submodule"),
    (lambda self, x: 3, "must return traced values"),
])
def test_unsupported_python_raises_trace_error(body, match):
    model = type("Bad", (nn.Module,), {"forward": body})()
    with pytest.raises(TraceError, match=match):
        lf.trace(model, ("N", 3))


def test_trace_rejects_bad_arguments():
    with pytest.raises(TraceError):
        lf.trace(object(), ("N", 3))
    with pytest.raises(TraceError):
        lf.trace(nn.ReLU())
    with pytest.raises(TraceError):
        lf.trace(nn.ReLU(), "N")


@pytest.mark.parametrize("model, specs, match", [
    (nn.Sequential(nn.Linear(4, 3)), [("N", 4), ("N", 4)],
     "model Sequential's forward takes 1 input\\(s\\), got 2 spec\\(s\\)"),
    (nn.Sequential(nn.Linear(4, 3)), [], "model Sequential's forward takes 1 input\\(s\\), got 0 spec"),
    (nn.Linear(4, 3), [("N", 4), ("N", 4)], "model Linear's forward takes 1 input"),
    (M.TwoInputs(), [("N", 3)], "model TwoInputs's forward takes 2 input\\(s\\), got 1 spec"),
])
def test_wrong_number_of_specs_is_a_trace_error(model, specs, match):
    with pytest.raises(TraceError, match=match):
        lf.trace(model, *specs)
    with pytest.raises(TraceError, match=match):
        lf.summary(model, *specs)


def test_arity_message_counts_defaults_varargs_and_keyword_only():
    class Opt(nn.Module):
        def forward(self, x, y=None, z=None):
            return x

    class Var(nn.Module):
        def forward(self, x, *rest):
            return x

    class Kw(nn.Module):
        def forward(self, x, *, scale):
            return x

    assert lf.trace(Opt(), ("N", 2), ("N", 2)).inputs[1].name == "y"
    with pytest.raises(TraceError, match="takes 1 to 3 input"):
        lf.trace(Opt(), *[("N", 2)] * 4)
    assert len(lf.trace(Var(), *[("N", 2)] * 3).inputs) == 3
    with pytest.raises(TraceError, match="takes at least 1 input\\(s\\), got 0"):
        lf.trace(Var())
    with pytest.raises(TraceError, match="required keyword-only argument\\(s\\) scale"):
        lf.trace(Kw(), ("N", 2))


def test_type_errors_raised_inside_forward_are_not_arity_errors():
    class Inner(nn.Module):
        def forward(self, x):
            raise TypeError("user bug")

    def wrapper(self, *args):  # no functools.wraps: its signature binds any count
        return Inner.forward(self, *args)

    for model in (Inner(), type("Wrapped", (nn.Module,), {"forward": wrapper})()):
        with pytest.raises(TypeError, match="user bug") as info:
            lf.trace(model, ("N", 2))
        assert not isinstance(info.value, TraceError)
    with pytest.raises(TypeError, match="takes 2 positional arguments") as info:
        lf.trace(type("Wrapped", (nn.Module,), {"forward": wrapper})(), ("N", 2), ("N", 2))
    assert not isinstance(info.value, TraceError)  # raised by the user's wrapper, not by trace


class _NoSignature:
    """A forward that ``inspect.signature`` cannot read (its ``__signature__`` is not a Signature)."""

    __signature__ = "unreadable"

    def __init__(self, body):
        self.body = body

    def __call__(self, x):
        return self.body(x)


def test_arity_is_checked_at_the_call_when_forward_has_no_signature():
    ok = type("NoSig", (nn.Module,), {"forward": _NoSignature(lambda x: x)})()
    with pytest.raises(TypeError):
        inspect.signature(ok.forward)
    assert len(lf.trace(ok, ("N", 2)).inputs) == 1
    with pytest.raises(TraceError, match="model NoSig's forward does not take 2 input\\(s\\)"):
        lf.trace(ok, ("N", 2), ("N", 2))
    bad = type("NoSig", (nn.Module,), {"forward": _NoSignature(lambda x: int(x, 2, 3))})()
    with pytest.raises(TypeError, match="int\\(\\) takes at most 2 arguments") as info:
        lf.trace(bad, ("N", 2))
    assert not isinstance(info.value, TraceError)


def test_a_container_called_with_wrong_arguments_is_named():
    class CallsBlockWrongly(nn.Module):
        def __init__(self):
            super().__init__()
            self.block = nn.Sequential(nn.ReLU())

        def forward(self, x):
            return self.block(x, x)

    with pytest.raises(TraceError, match=r"module 'block' \(Sequential\): forward: .*takes 2 positional "
                                         r"arguments but 3 were given"):
        lf.trace(CallsBlockWrongly(), ("N", 2))


def test_interceptor_is_reset_after_errors():
    with pytest.raises(TraceError):
        lf.trace(M.Branchy(), ("N", 3))
    model = nn.Linear(3, 2)
    assert model(np.ones((2, 3), np.float32)).shape == (2, 2)


@pytest.mark.parametrize("model, specs", [
    (M.Residual(), [("N", 5)]), (M.ConvLikeBN(), [("N", 3, "L")]), (M.Reshapes(), [("N", 4, 6)]),
    (M.TwoInputs(), [("N", 3), ("N", 2)]), (M.FlattenIntoLazy(), [("N", 3, "L")]),
])
def test_text_and_json_round_trips(model, specs):
    g = lf.trace(model, *specs)
    assert lf.Graph.parse(str(g)) == g
    assert str(lf.Graph.from_json(g.to_json())) == str(g)


# ------------------------------------------------------------------------------ random Sequentials
def _layer(kind: str, width: int):
    return {
        "linear": lambda: nn.Linear(width, width),
        "lazylinear": lambda: nn.LazyLinear(width),
        "bn": lambda: nn.BatchNorm1d(width),
        "lazybn": lambda: nn.LazyBatchNorm1d(momentum=None),
        "relu": nn.ReLU,
        "identity": nn.Identity,
    }[kind]()


@st.composite
def sequentials(draw):
    in_features = draw(st.integers(1, 6))
    width = draw(st.integers(1, 6))
    kinds = draw(st.lists(st.sampled_from(["linear", "lazylinear", "bn", "lazybn", "relu", "identity"]),
                          min_size=0, max_size=5))
    layers = [nn.LazyLinear(width) if draw(st.booleans()) else nn.Linear(in_features, width)]
    layers += [_layer(k, width) for k in kinds]
    batch = draw(st.sampled_from(["N", 3]))
    return nn.Sequential(*layers), (batch, in_features)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sequentials())
def test_random_sequentials_round_trip_before_and_after_inference(case):
    model, spec = case
    before = snapshot(model)
    g = lf.trace(model, spec)
    assert_same(before, snapshot(model))
    for graph in (g, lf.infer_shapes(g)):
        assert lf.Graph.parse(str(graph)) == graph
        assert str(lf.Graph.from_json(graph.to_json())) == str(graph)
    assert not model.has_uninitialized_params()


def test_relu_method_and_flatten_method():
    class TorchStyle(nn.Module):
        def forward(self, x):
            return x.flatten(1).relu()

    g = lf.trace(TorchStyle(), ("N", 2, 3))
    assert [n.op for n in g.nodes][1:3] == ["flatten", "relu"]
    assert g.node("flatten").attrs == {"start_dim": 1, "end_dim": -1}
    assert str(g.node("relu").type) == "f32[N,6]"


def example_lines():
    """Source lines of the example forwards that the golden IR's locations point at."""
    from lazyfuse.examples.mlp import DynamicMLP, MLPWithBN

    f, d = MLPWithBN.forward, DynamicMLP.forward
    return {
        "flatten": line_of(f, "x = self.flatten(x)"),
        "block1": line_of(f, "self.relu1(self.bn1(self.fc1(x)))"),
        "block2": line_of(f, "self.relu2(self.bn2(self.fc2(x)))"),
        "head": line_of(f, "return self.fc3(x)"),
        "call": line_of(d, 'getattr(self, f"fc{i}")(x)'),
        "relu": line_of(d, "nn.functional.relu(x)"),
    }


def test_golden_examples_traced():
    import golden_ir

    from lazyfuse.examples.mlp import DynamicMLP, MLPWithBN

    lines = example_lines()
    model = MLPWithBN()
    before = snapshot(model)
    g = lf.trace(model, lf.TensorSpec(("N", 28, 28)))
    assert str(g).strip() == golden_ir.MLP_TRACED.substitute(lines)
    assert_same(before, snapshot(model))
    g = lf.trace(DynamicMLP(), lf.TensorSpec(("N", 20)))
    assert str(g).strip() == golden_ir.DYNAMIC_MLP_TRACED.substitute(lines)


def test_equality_of_traced_values_is_control_flow():
    class Eq(nn.Module):
        def forward(self, x, y):
            return x if x == y else y

    with pytest.raises(TraceError, match="control flow on a traced value"):
        lf.trace(Eq(), ("N", 2), ("N", 2))


@pytest.mark.parametrize("attr, value, needle", [
    ("momentum", "x", "momentum must be a float in [0, 1] or None, got 'x'"),
    ("momentum", 2.0, "momentum must be a float in [0, 1] or None, got 2.0"),
    ("eps", -1.0, "eps must be a finite float > 0, got -1.0"),
    ("eps", "a", "eps must be a finite float > 0, got 'a'"),
    ("eps", float("inf"), "eps must be a finite float > 0, got inf"),
])
def test_reassigned_batchnorm_settings_are_checked_like_the_constructor(attr, value, needle):
    from lazyfuse.errors import ConfigError

    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    setattr(model[1], attr, value)
    before = snapshot(model)
    for run in (lambda: lf.trace(model, ("N", 4)), lambda: lf.compile(model, ("N", 4), backend="reference")):
        with pytest.raises(ConfigError) as info:
            run()
        assert str(info.value) == f"module '1' (BatchNorm1d): batch_norm: {needle}"
    assert_same(before, snapshot(model))


def test_flatten_dims_are_checked_while_tracing():
    from lazyfuse.errors import ConfigError

    model = nn.Sequential(nn.Flatten())
    model[0].end_dim = 1.5
    with pytest.raises(ConfigError, match=r"^module '0' \(Flatten\): flatten: end_dim must be an int, got"):
        lf.trace(model, ("N", 2, 3))

    class Functional(nn.Module):
        def forward(self, x):
            return F.flatten(x, "a")

    with pytest.raises(ConfigError, match="^flatten: start_dim must be an int, got str 'a'"):
        lf.trace(Functional(), ("N", 2, 3))


@pytest.mark.parametrize("kwargs, needle", [
    ({"eps": "a"}, "batch_norm: eps must be a finite float > 0, got 'a'"),
    ({"eps": -1}, "batch_norm: eps must be a finite float > 0, got -1"),
    ({"momentum": "m"}, "batch_norm: momentum must be a float factor, got 'm'"),
])
def test_functional_batch_norm_arguments_are_checked_while_tracing(kwargs, needle):
    from lazyfuse.errors import ConfigError

    class Functional(nn.Module):
        def forward(self, x):
            return F.batch_norm(x, None, None, training=True, **kwargs)

    with pytest.raises(ConfigError) as info:
        lf.trace(Functional(), ("N", 3))
    assert str(info.value) == needle


def test_wrong_arguments_to_a_traced_method_name_the_method():
    class Bad(nn.Module):
        def forward(self, x):
            return x.flatten(1, 2, 3)

    with pytest.raises(TraceError, match=r"Proxy\.flatten\(\): too many positional arguments"):
        lf.trace(Bad(), ("N", 2, 2))


def test_a_lazy_module_without_a_layout_is_a_trace_error():
    from lazyfuse.frontends.nn import LazyModuleMixin, UninitializedParameter

    class LazyScale(LazyModuleMixin, nn.Module):  # no _array_shapes(): the tracer cannot size it
        def __init__(self):
            super().__init__()
            self.w = UninitializedParameter()

        def forward(self, x):
            return nn.functional.linear(x, self.w)

    with pytest.raises(TraceError, match="param 'w' of LazyScale is uninitialized and its layout is unknown"):
        lf.trace(LazyScale(), ("N", 3))


def test_a_function_called_inside_a_module_records_where_not_what():
    """``path:Type`` marks a module's own call; a function in its forward carries the path only."""
    import models_for_tests as M

    graph = lf.trace(M.StemNet(), ("N", 3))
    by_name = {n.name: n for n in graph.nodes}
    assert (by_name["stem_fc"].module, by_name["stem_fc"].module_type) == ("stem.fc", "LazyLinear")
    relu = by_name["relu"]
    assert (relu.module, relu.module_type) == ("stem", None)
    line = next(ln for ln in str(graph).splitlines() if "= relu(%stem_bn)" in ln)
    assert line.endswith(" stem") and ":Stem" not in line
    from lazyfuse.passes.manager import PassContext, run_passes

    model = M.StemNet()
    fused = run_passes(lf.infer_shapes(lf.trace(model, ("N", 3))), ["fuse"], PassContext(model=model))
    (node,) = [n for n in fused.nodes if n.op == "fused_linear_bn_relu"]
    assert node.module_type == "LazyLinear+LazyBatchNorm1d+relu"
    assert node.attrs["modules"] == ("stem.fc", "stem.bn", "stem")
