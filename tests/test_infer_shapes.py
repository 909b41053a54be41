"""The infer_shapes and materialize_lazy passes (and lf.infer_shapes, which runs both)."""

from __future__ import annotations

import models_for_tests as M
import numpy as np
import pytest
from test_trace import assert_same, line_of, snapshot

import lazyfuse as lf
from lazyfuse import nn
from lazyfuse.errors import DTypeError, InferenceError, ShapeError
from lazyfuse.ir.types import UNKNOWN
from lazyfuse.passes.manager import PassContext, run_passes

CONV_INFERRED = """\
graph @ConvLikeBN[N,L](%x: f32[N,3,L]) -> (f32[N,3,L]) {
  @bn.weight: f32[3] = param
  @bn.bias: f32[3] = param
  @bn.running_mean: f32[3] = buffer
  @bn.running_var: f32[3] = buffer
  @bn.num_batches_tracked: i64[] = buffer
  %bn: f32[N,3,L] = batch_norm[affine=true, eps=1e-05, momentum=0.1, num_features=3, track_running_stats=true](%x, @bn.weight, @bn.bias, @bn.running_mean, @bn.running_var, @bn.num_batches_tracked)  # models_for_tests.py:18 bn:LazyBatchNorm1d
  %act: f32[N,3,L] = relu(%bn)  # models_for_tests.py:19 act:ReLU
  return (%act)
}"""  # noqa: E501


def test_golden_nclbn_inferred_and_materialized():
    model = M.ConvLikeBN()
    traced = lf.trace(model, lf.TensorSpec(("N", 3, "L")))
    traced_text = str(traced)
    g = lf.infer_shapes(traced)
    assert str(g).strip() == CONV_INFERRED
    assert str(traced) == traced_text  # the traced graph is left as it was
    assert type(model.bn) is nn.BatchNorm1d and model.bn.num_features == 3
    assert model.bn.running_mean.shape == (3,) and not model.has_uninitialized_params()
    assert g.model is model


def test_materialize_matches_an_eager_first_forward():
    def build():
        lf.manual_seed(7)
        return M.Residual()

    eager = build()
    eager.eval()  # eval so the forward itself does not change running stats
    lf.manual_seed(123)
    eager(np.ones((4, 5), np.float32))
    static = build()
    static.eval()
    lf.manual_seed(123)
    lf.infer_shapes(lf.trace(static, ("N", 5)))
    assert type(static.inp) is nn.Linear and type(static.head[0]) is nn.BatchNorm1d
    assert type(static.head[2]) is nn.Linear and static.head[2].in_features == 6
    e, s = eager.state_dict(), static.state_dict()
    assert e.keys() == s.keys()
    for k in e:
        np.testing.assert_array_equal(e[k], s[k], err_msg=k)


def test_flatten_over_symbolic_dim_into_lazy_linear_names_module_and_symbol():
    model = M.FlattenIntoLazy()
    before = snapshot(model)
    g = lf.trace(model, lf.TensorSpec(("N", 3, "L")))
    with pytest.raises(InferenceError) as info:
        lf.infer_shapes(g)
    msg = str(info.value)
    assert "module 'fc' (LazyLinear)" in msg and "3*L" in msg and "symbol L" in msg
    assert f"models_for_tests.py:{line_of(M.FlattenIntoLazy.forward, 'return self.fc(self.flat(x))')}" in msg
    assert "in pass 'infer_shapes'" in msg
    assert_same(before, snapshot(model))
    assert type(model.fc) is nn.LazyLinear and model.has_uninitialized_params()
    # With a concrete L the same model resolves.
    lf.infer_shapes(lf.trace(model, ("N", 3, 5)))
    assert type(model.fc) is nn.Linear and model.fc.in_features == 15


def test_mismatch_shows_ir_line_source_line_and_pass():
    model = M.Mismatch()
    before = snapshot(model)
    g = lf.trace(model, lf.TensorSpec(("N", 512)))  # tracing records it; inference reports it
    with pytest.raises(InferenceError) as info:
        lf.infer_shapes(g)
    msg = str(info.value)
    assert isinstance(info.value, ShapeError)
    assert "module 'fc1' (Linear)" in msg
    assert "expected 784 (in_features), got 512 (input last dim)" in msg
    assert g.node("fc1").format() in msg  # the offending IR line
    assert "%x: f32[N,512]" in msg
    assert f"source:   models_for_tests.py:{line_of(M.Mismatch.forward, 'return self.fc1(x)')}" in msg
    assert "in pass 'infer_shapes'" in msg
    assert_same(before, snapshot(model))


def test_failed_inference_leaves_earlier_lazy_modules_unmaterialized():
    model = nn.Sequential(nn.LazyLinear(4), nn.LazyBatchNorm1d(), nn.Linear(5, 2))
    before = snapshot(model)
    with pytest.raises(InferenceError, match="module '2' \\(Linear\\)"):
        lf.infer_shapes(lf.trace(model, ("N", 3)))
    assert_same(before, snapshot(model))
    assert type(model[0]) is nn.LazyLinear and type(model[1]) is nn.LazyBatchNorm1d


def test_shared_lazy_module_with_two_sizes_is_rejected():
    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.LazyLinear(2)

        def forward(self, x, y):
            return self.fc(x) + self.fc(y)

    model = Shared()
    with pytest.raises(InferenceError, match="in_features mismatch"):
        lf.infer_shapes(lf.trace(model, ("N", 3), ("N", 4)))
    assert type(model.fc) is nn.LazyLinear
    lf.infer_shapes(lf.trace(model, ("N", 3), ("N", 3)))
    assert model.fc.weight.shape == (2, 3)


def test_inference_without_a_model_only_types_the_graph():
    g = lf.Graph.parse(str(lf.trace(M.Residual(), ("N", 5))))
    assert g.model is None
    out = lf.infer_shapes(g)
    assert out.node("inp.weight").type.shape == (6, 5)
    assert out.node("head_2").attrs["in_features"] == 6


def test_pass_alone_does_not_materialize():
    model = M.Residual()
    g = lf.trace(model, ("N", 5))
    run_passes(g, ["infer_shapes"], PassContext(model=model, verify=True))
    assert g.node("inp").attrs["in_features"] == 5  # edits the graph in place
    assert model.has_uninitialized_params()
    run_passes(g, ["materialize_lazy"], PassContext(model=model, verify=True))
    assert not model.has_uninitialized_params()


def test_materialize_refuses_unresolved_sizes():
    model = M.Residual()
    g = lf.trace(model, ("N", 5))
    with pytest.raises(InferenceError, match="run infer_shapes first"):
        run_passes(g, ["materialize_lazy"], PassContext(model=model))
    assert model.has_uninitialized_params() and type(model.inp) is nn.LazyLinear


def test_already_materialized_model_is_left_alone():
    model = M.Residual()
    lf.infer_shapes(lf.trace(model, ("N", 5)))
    sd = {k: v.copy() for k, v in model.state_dict().items()}
    g = lf.infer_shapes(lf.trace(model, ("N", 5)))
    assert g.node("inp").attrs["in_features"] == 5
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, sd[k])
    with pytest.raises(InferenceError, match="in_features mismatch"):
        lf.infer_shapes(lf.trace(model, ("N", 6)))


def test_concrete_batch_and_double_precision():
    model = nn.Sequential(nn.LazyLinear(3, dtype=np.float64), nn.LazyBatchNorm1d(dtype=np.float64))
    g = lf.infer_shapes(lf.trace(model, lf.TensorSpec((8, 4), dtype="float64")))
    assert str(g.output.inputs[0].type) == "f64[8,3]"
    assert model[0].weight.dtype == np.float64 and model[1].running_var.shape == (3,)


def test_dtype_mismatch_is_a_dtype_error():
    model = nn.Sequential(nn.Linear(4, 3))
    with pytest.raises(DTypeError, match="dtype"):  # was InferenceError
        lf.infer_shapes(lf.trace(model, lf.TensorSpec(("N", 4), dtype="float64")))


def test_batch_norm_channel_mismatch():
    model = nn.Sequential(nn.BatchNorm1d(4))
    with pytest.raises(InferenceError, match="num_features mismatch"):
        lf.infer_shapes(lf.trace(model, ("N", 3, "L")))


def test_traced_types_of_lazy_params_are_unknown_until_inferred():
    g = lf.trace(M.ConvLikeBN(), ("N", 3, "L"))
    assert g.node("bn.weight").type.shape == (UNKNOWN,)
    assert g.node("bn").attrs["num_features"] is UNKNOWN


def test_golden_examples_inferred():
    import golden_ir
    from test_trace import example_lines

    from lazyfuse.examples.mlp import DynamicMLP, MLPWithBN

    lines = example_lines()
    model = MLPWithBN()
    g = lf.infer_shapes(lf.trace(model, lf.TensorSpec(("N", 28, 28))))
    assert str(g).strip() == golden_ir.MLP_INFERRED.substitute(lines)
    assert type(model.fc3) is nn.Linear and model.fc3.weight.shape == (10, 128)
    assert model.bn2.running_var.shape == (128,)
    model = DynamicMLP()
    g = lf.infer_shapes(lf.trace(model, lf.TensorSpec(("N", 20))))
    assert str(g).strip() == golden_ir.DYNAMIC_MLP_INFERRED.substitute(lines)
    assert [model.get_submodule(f"fc{i}").in_features for i in range(3)] == [20, 128, 64]


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_lazy_batchnorm_without_arrays_is_sized_from_its_input(backend):
    """LazyBatchNorm1d(affine=False, track_running_stats=False) has no parameter or buffer to size:
    inference reads num_features from the input and materializes it, as an eager first call does."""
    x = np.random.default_rng(0).standard_normal((8, 5)).astype(np.float32)
    eager = nn.Sequential(nn.LazyBatchNorm1d(affine=False, track_running_stats=False), nn.ReLU())
    model = nn.Sequential(nn.LazyBatchNorm1d(affine=False, track_running_stats=False), nn.ReLU())
    graph = lf.infer_shapes(lf.trace(model, ("N", 5)))
    assert "num_features=5" in str(graph)
    assert type(model[0]) is nn.BatchNorm1d and model[0].num_features == 5
    cm = lf.compile(model, ("N", 5), backend=backend)
    np.testing.assert_allclose(cm(x), eager(x), rtol=1e-6, atol=1e-6)
    assert type(eager[0]) is nn.BatchNorm1d and eager[0].num_features == 5
