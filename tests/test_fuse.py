"""The ``fuse`` pass: golden IR, each pattern, legality, round trips and numerics vs unfused."""
# ruff: noqa: E501  (golden IR lines are long by nature)

from __future__ import annotations

import copy

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_trace import sequentials

import lazyfuse as lf
from lazyfuse import nn
from lazyfuse.backends.reference import ReferenceExecutable
from lazyfuse.examples.mlp import MLPWithBN
from lazyfuse.ir import verify
from lazyfuse.passes.manager import PassContext, run_passes

F = nn.functional
UNFUSED = ["infer_shapes", "materialize_lazy", "dce"]


def optimize(model: nn.Module, *shape, fuse: bool = True) -> lf.Graph:
    graph = lf.trace(model, lf.TensorSpec(shape))
    return run_passes(graph, UNFUSED + (["fuse"] if fuse else []), PassContext(model=model, verify=True))


def compute_ops(graph: lf.Graph) -> list[str]:
    return [n.op for n in graph.nodes if n.op not in ("input", "param", "buffer", "output")]


MLP_FUSED = """\
graph @MLPWithBN[N](%x: f32[N,784]) -> (f32[N,10]) {
  @fc1.weight: f32[256,784] = param
  @fc1.bias: f32[256] = param
  @bn1.weight: f32[256] = param
  @bn1.bias: f32[256] = param
  @bn1.running_mean: f32[256] = buffer
  @bn1.running_var: f32[256] = buffer
  @bn1.num_batches_tracked: i64[] = buffer
  @fc2.weight: f32[128,256] = param
  @fc2.bias: f32[128] = param
  @bn2.weight: f32[128] = param
  @bn2.bias: f32[128] = param
  @bn2.running_mean: f32[128] = buffer
  @bn2.running_var: f32[128] = buffer
  @bn2.num_batches_tracked: i64[] = buffer
  @fc3.weight: f32[10,128] = param
  @fc3.bias: f32[10] = param
  %flatten: f32[N,784] = flatten[end_dim=-1, start_dim=1](%x)  # mlp.py:30 flatten:Flatten
  %fc1_bn1_relu1: f32[N,256] = fused_linear_bn_relu[affine=true, bias=true, bn_module="bn1", eps=1e-05, in_features=784, modules=("fc1", "bn1", "relu1"), momentum=0.1, num_features=256, out_features=256, track_running_stats=true](%flatten, @fc1.weight, @fc1.bias, @bn1.weight, @bn1.bias, @bn1.running_mean, @bn1.running_var, @bn1.num_batches_tracked)  # mlp.py:31 fc1:"Linear+LazyBatchNorm1d+ReLU"
  %fc2_bn2_relu2: f32[N,128] = fused_linear_bn_relu[affine=true, bias=true, bn_module="bn2", eps=1e-05, in_features=256, modules=("fc2", "bn2", "relu2"), momentum=0.1, num_features=128, out_features=128, track_running_stats=true](%fc1_bn1_relu1, @fc2.weight, @fc2.bias, @bn2.weight, @bn2.bias, @bn2.running_mean, @bn2.running_var, @bn2.num_batches_tracked)  # mlp.py:32 fc2:"LazyLinear+LazyBatchNorm1d+ReLU"
  %fc3: f32[N,10] = linear[bias=true, in_features=128, out_features=10](%fc2_bn2_relu2, @fc3.weight, @fc3.bias)  # mlp.py:33 fc3:LazyLinear
  return (%fc3)
}"""


def test_mlp_golden_before_and_after():
    before = optimize(MLPWithBN(), "N", 784, fuse=False)
    assert compute_ops(before) == ["flatten", "linear", "batch_norm", "relu", "linear", "batch_norm", "relu",
                                   "linear"]
    after = optimize(MLPWithBN(), "N", 784)
    assert str(after).strip() == MLP_FUSED
    verify(after)
    assert lf.Graph.parse(str(after)) == after
    assert lf.Graph.from_json(after.to_json()) == after


class Chain(nn.Module):
    """Linear / BN / ReLU in a configurable order; ``tap`` also returns an intermediate."""

    def __init__(self, layers: list[nn.Module], tap: int | None = None):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.tap = tap

    def forward(self, x):
        taps = []
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i == self.tap:
                taps.append(x)
        return (x, *taps) if taps else x


@pytest.mark.parametrize("layers, expected", [
    (lambda: [nn.Linear(6, 5), nn.BatchNorm1d(5), nn.ReLU()], ["fused_linear_bn_relu"]),
    (lambda: [nn.Linear(6, 5), nn.BatchNorm1d(5)], ["fused_linear_bn"]),
    (lambda: [nn.Linear(6, 5), nn.ReLU()], ["fused_linear_relu"]),
    (lambda: [nn.BatchNorm1d(6), nn.ReLU()], ["fused_bn_relu"]),
    (lambda: [nn.LazyLinear(5, bias=False), nn.LazyBatchNorm1d(affine=False), nn.ReLU()], ["fused_linear_bn_relu"]),
    (lambda: [nn.Linear(6, 5), nn.BatchNorm1d(5, track_running_stats=False, momentum=None)], ["fused_linear_bn"]),
    (lambda: [nn.Linear(6, 5), nn.ReLU(), nn.BatchNorm1d(5), nn.ReLU()], ["fused_linear_relu", "fused_bn_relu"]),
])
def test_each_pattern(layers, expected):
    graph = optimize(Chain(layers()), "N", 6)
    assert compute_ops(graph) == expected
    verify(graph)
    assert lf.Graph.parse(str(graph)) == graph


def test_fused_node_records_its_modules():
    graph = optimize(Chain([nn.Linear(6, 5), nn.LazyBatchNorm1d(), nn.ReLU()]), "N", 6)
    (fused,) = [n for n in graph.nodes if n.op.startswith("fused_")]
    assert fused.attrs["modules"] == ("layers.0", "layers.1", "layers.2")
    assert fused.attrs["bn_module"] == "layers.1"
    assert fused.module_type == "Linear+LazyBatchNorm1d+ReLU"


def test_intermediate_with_two_users_is_not_fused():
    class TwoUsers(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.bn = nn.Linear(6, 5), nn.BatchNorm1d(5)

        def forward(self, x):
            h = self.fc(x)
            return self.bn(h) + h

    assert compute_ops(optimize(TwoUsers(), "N", 6)) == ["linear", "batch_norm", "add"]


def test_intermediate_graph_output_is_not_fused():
    # the BN output is also returned: Linear+BN may fuse, BN+ReLU may not
    graph = optimize(Chain([nn.Linear(6, 5), nn.BatchNorm1d(5), nn.ReLU()], tap=1), "N", 6)
    assert compute_ops(graph) == ["fused_linear_bn", "relu"]


def test_three_d_batchnorm_after_linear_is_not_fused():
    # Linear on (N, C, L) acts on L; the BN channel axis (dim 1) is not the Linear's output axis
    graph = optimize(Chain([nn.Linear(4, 4), nn.BatchNorm1d(3), nn.ReLU()]), "N", 3, 4)
    assert compute_ops(graph) == ["linear", "fused_bn_relu"]


def test_three_d_bn_relu_fuses():
    graph = optimize(Chain([nn.BatchNorm1d(3), nn.ReLU()]), "N", 3, "L")
    assert compute_ops(graph) == ["fused_bn_relu"]


def _state(model: nn.Module) -> dict[str, np.ndarray]:
    return {k: np.array(v) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_matches_unfused_and_eager(momentum, dtype):
    """Reference backend on fused vs unfused graphs vs eager: train steps (running stats), then eval."""
    lf.manual_seed(5)
    layers = [nn.Linear(6, 8, dtype=dtype), nn.LazyBatchNorm1d(momentum=momentum, dtype=dtype), nn.ReLU(),
              nn.LazyLinear(4, dtype=dtype), nn.LazyBatchNorm1d(dtype=dtype), nn.ReLU(),
              nn.BatchNorm1d(4, affine=False, dtype=dtype), nn.ReLU()]
    eager = Chain(layers)
    fused_model, plain_model = copy.deepcopy(eager), copy.deepcopy(eager)
    spec = lf.TensorSpec(("N", 6), dtype=np.dtype(dtype).name)
    fused_graph = run_passes(lf.trace(fused_model, spec), UNFUSED + ["fuse"],
                             PassContext(model=fused_model, verify=True))
    plain_graph = run_passes(lf.trace(plain_model, spec), UNFUSED, PassContext(model=plain_model, verify=True))
    assert compute_ops(fused_graph) == ["fused_linear_bn_relu", "fused_linear_bn_relu", "fused_bn_relu"]
    eager.load_state_dict(fused_model.state_dict())
    plain_model.load_state_dict(fused_model.state_dict())
    runs = [(ReferenceExecutable(fused_graph), fused_model), (ReferenceExecutable(plain_graph), plain_model)]

    rng = np.random.default_rng(0)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    for step in range(4):
        training = step < 3
        x = (3 * rng.standard_normal((7, 6)) + 2).astype(dtype)
        eager.train(training)
        want = eager(x)
        for exe, model in runs:
            state = {k: v for k, v in model.state_dict().items()}
            flags = {name: training for name, m in model.named_modules() if isinstance(m, nn.BatchNorm1d)}
            got = exe.run([x], state, flags)
            np.testing.assert_allclose(got, want, **tol)
        for _, model in runs:
            for key, value in _state(eager).items():
                np.testing.assert_allclose(_state(model)[key], value, **tol)


# ------------------------------------------------------------------ hand-built graphs (edit API)
T = lf.ir.TensorType
N = lf.ir.Sym("N")


def _bn_operands(g: lf.Graph, path: str, c: int, dtype=lf.ir.f32) -> list:
    params = [g.get_attr("param", f"{path}.{k}", T(dtype, (c,))) for k in ("weight", "bias")]
    bufs = [g.get_attr("buffer", f"{path}.{k}", T(dtype, (c,))) for k in ("running_mean", "running_var")]
    return params + bufs + [g.get_attr("buffer", f"{path}.num_batches_tracked", T(lf.ir.i64, ()))]


BN_ATTRS = dict(num_features=4, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True)


def _linear_bn_graph(bn_module: str | None = "bn", weight_from_relu: bool = False) -> lf.Graph:
    """x -> linear(fc) -> batch_norm(bn) -> relu(act); optionally BN's weight is relu(@bn.weight)."""
    g = lf.Graph("hand", symbols=["N"])
    x = g.add_input("x", T(lf.ir.f32, (N, 3)))
    w, b = g.get_attr("param", "fc.weight", T(lf.ir.f32, (4, 3))), g.get_attr("param", "fc.bias", T(lf.ir.f32, (4,)))
    bn_ops = _bn_operands(g, "bn", 4)
    fc = g.create_node("linear", [x, w, b], dict(in_features=3, out_features=4, bias=True), T(lf.ir.f32, (N, 4)),
                       name="fc", loc=lf.ir.Loc("m.py", 3), module="fc", module_type="Linear")
    if weight_from_relu:  # a computed BN operand defined between the Linear and the BN
        bn_ops[0] = g.create_node("relu", [bn_ops[0]], {}, bn_ops[0].type, name="pos_weight")
    bn = g.create_node("batch_norm", [fc, *bn_ops], BN_ATTRS, fc.type, name="bn", module=bn_module,
                       module_type="BatchNorm1d" if bn_module else None)
    act = g.create_node("relu", [bn], {}, bn.type, name="act", module="act", module_type="ReLU")
    g.set_output(act)
    verify(g)
    return g


def run_fuse(graph: lf.Graph) -> lf.Graph:
    return run_passes(graph, ["fuse"], PassContext(verify=True))


def test_hand_built_chain_fuses_with_operands_in_order_and_first_loc():
    g = run_fuse(_linear_bn_graph())
    (fused,) = [n for n in g.nodes if n.op.startswith("fused_")]
    assert fused.op == "fused_linear_bn_relu" and fused.name == "fc_bn_act"
    assert [i.name for i in fused.inputs] == ["x", "fc.weight", "fc.bias", "bn.weight", "bn.bias",
                                              "bn.running_mean", "bn.running_var", "bn.num_batches_tracked"]
    assert fused.loc == lf.ir.Loc("m.py", 3) and fused.module == "fc"
    assert fused.attrs == dict(BN_ATTRS, in_features=3, out_features=4, bias=True, modules=("fc", "bn", "act"),
                               bn_module="bn")
    assert lf.ir.bn_module(fused) == "bn"
    assert g.output.inputs == (fused,)


def test_computed_bn_operand_defined_after_the_linear_stays_before_its_use():
    g = run_fuse(_linear_bn_graph(weight_from_relu=True))
    assert compute_ops(g) == ["relu", "fused_linear_bn_relu"]
    verify(g)


def test_batch_norm_without_module_is_not_fused():
    # the runtime reads the training flag of bn_module; a BN with no module path has none to read
    g = run_fuse(_linear_bn_graph(bn_module=None))
    assert compute_ops(g) == ["linear", "batch_norm", "relu"]


def test_intermediate_used_twice_by_one_user_is_not_fused():
    g = lf.Graph("twice", symbols=["N"])
    x = g.add_input("x", T(lf.ir.f32, (N, 4)))
    r = g.create_node("linear", [x, g.get_attr("param", "w", T(lf.ir.f32, (4, 4)))],
                      dict(in_features=4, out_features=4, bias=False), T(lf.ir.f32, (N, 4)), module="fc")
    s = g.create_node("add", [r, r], {}, r.type)
    g.set_output(g.create_node("relu", [s], {}, s.type))
    assert compute_ops(run_fuse(g)) == ["linear", "add", "relu"]


def test_verifier_rejects_a_fused_linear_bn_on_a_3d_value():
    g = lf.Graph("bad", symbols=["N"])
    x = g.add_input("x", T(lf.ir.f32, (N, 4, 3)))
    w = g.get_attr("param", "fc.weight", T(lf.ir.f32, (4, 3)))
    attrs = dict(BN_ATTRS, in_features=3, out_features=4, bias=False, modules=("fc", "bn"), bn_module="bn")
    g.set_output(g.create_node("fused_linear_bn", [x, w, *_bn_operands(g, "bn", 4)], attrs, T(lf.ir.f32, (N, 4, 4))))
    with pytest.raises(lf.errors.VerifierError, match="channel axis"):
        verify(g)


def test_fused_shape_rule_resolves_lazy_dims_and_maps_refined_operands():
    from lazyfuse.ir.ops import infer_node

    lazy = T(lf.ir.f32, (lf.ir.UNKNOWN,))
    ts = [T(lf.ir.f32, (N, 784)), T(lf.ir.f32, (256, lf.ir.UNKNOWN)), T(lf.ir.f32, (256,)), lazy, lazy, lazy, lazy,
          T(lf.ir.i64, ())]
    attrs = dict(BN_ATTRS, num_features=lf.ir.UNKNOWN, in_features=lf.ir.UNKNOWN, out_features=256, bias=True,
                 modules=("fc1", "bn1", "relu1"), bn_module="bn1")
    res = infer_node("fused_linear_bn_relu", attrs, ts)
    assert str(res.out) == "f32[N,256]"
    assert res.attrs["in_features"] == 784 and res.attrs["num_features"] == 256
    assert {i: str(t) for i, t in res.inputs.items()} == {1: "f32[256,784]", 3: "f32[256]", 4: "f32[256]",
                                                          5: "f32[256]", 6: "f32[256]"}


def test_fuse_before_infer_shapes_gives_the_same_graph():
    model = MLPWithBN()
    spec = lf.TensorSpec(("N", 784))
    early = run_passes(lf.trace(model, spec), ["fuse", "infer_shapes"], PassContext(verify=True))
    late = run_passes(lf.trace(model, spec), ["infer_shapes", "fuse"], PassContext(verify=True))
    assert early == late


def test_functional_relu_and_dynamic_mlp():
    from lazyfuse.examples.mlp import DynamicMLP

    graph = optimize(DynamicMLP(), "N", 20)
    assert compute_ops(graph) == ["fused_linear_relu", "fused_linear_relu", "linear"]
    first = graph.node("fc0_relu")
    assert first.attrs["modules"] == ("fc0", "") and "bn_module" not in first.attrs
    assert first.module == "fc0" and first.module_type == "LazyLinear+relu"
    assert lf.ir.bn_module(first) is None
    assert lf.Graph.parse(str(graph)) == graph


def test_dynamic_network_fuses_both_blocks_and_is_idempotent():
    from lazyfuse.examples.mlp import DynamicNetwork

    graph = optimize(DynamicNetwork(), "N", 20)
    assert compute_ops(graph) == ["fused_linear_bn_relu", "fused_linear_bn_relu"]
    assert [n.attrs["bn_module"] for n in graph.nodes if n.op.startswith("fused")] == ["layers.1", "layers.4"]
    text = str(graph)
    assert str(run_fuse(graph)) == text


def test_pattern_table_is_longest_first_and_pass_is_registered():
    from lazyfuse.passes.fuse import fuse
    from lazyfuse.passes.manager import get_pass
    from lazyfuse.passes.patterns import PATTERNS

    assert get_pass("fuse") is fuse
    lengths = [len(p.ops) for p in PATTERNS]
    assert lengths == sorted(lengths, reverse=True)
    for p in PATTERNS:
        assert lf.ir.OPS[p.fused_op].kind == "fused"


# ----------------------------------------------------------- runtime: CompiledModule on fused graphs
def _compiled(model: nn.Module, spec: lf.TensorSpec, fuse: bool):
    from lazyfuse.runtime import CompiledModule

    graph = run_passes(lf.trace(model, spec), UNFUSED + (["fuse"] if fuse else []),
                       PassContext(model=model, verify=True))
    return CompiledModule(model, graph, ReferenceExecutable(graph), [spec])


def test_fusion_does_not_touch_parameters_or_fold_eval_batchnorm():
    """Eval BN uses the running stats as they are at call time, also after they change."""
    lf.manual_seed(1)
    model = MLPWithBN()
    spec = lf.TensorSpec(("N", 784))
    run_passes(lf.trace(model, spec), ["infer_shapes", "materialize_lazy"], PassContext(model=model))
    before = _state(model)
    cm = _compiled(model, spec, fuse=True)
    for key, value in before.items():
        np.testing.assert_array_equal(_state(model)[key], value)
    model.eval()
    x = np.random.default_rng(1).standard_normal((5, 784)).astype(np.float32)
    np.testing.assert_allclose(cm(x), model(x), rtol=1e-5, atol=1e-5)
    model.bn1.running_mean += 0.5  # in place: the compiled module shares the arrays
    model.bn2.running_var *= 3.0
    np.testing.assert_allclose(cm(x), model(x), rtol=1e-5, atol=1e-5)


def test_compiled_fused_graph_follows_each_bn_modules_training_flag():
    lf.manual_seed(2)
    eager = MLPWithBN()
    spec = lf.TensorSpec(("N", 784))
    fused_model, plain_model = copy.deepcopy(eager), copy.deepcopy(eager)
    fused, plain = _compiled(fused_model, spec, True), _compiled(plain_model, spec, False)
    eager.load_state_dict(fused_model.state_dict())
    plain_model.load_state_dict(fused_model.state_dict())
    rng = np.random.default_rng(2)
    for step, bn1_training in enumerate([True, True, False, True]):
        for m in (eager, fused_model, plain_model):
            m.train()
            m.bn1.train(bn1_training)  # bn2 stays in train mode: flags are per BN module
        x = rng.standard_normal((6, 784)).astype(np.float32)
        want = eager(x)
        np.testing.assert_allclose(fused(x), want, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(plain(x), want, rtol=1e-4, atol=1e-5)
        for key, value in _state(eager).items():
            np.testing.assert_allclose(_state(fused_model)[key], value, rtol=1e-5, atol=1e-6, err_msg=key)
    assert int(fused_model.bn1.num_batches_tracked) == 3 and int(fused_model.bn2.num_batches_tracked) == 4


def test_compiled_fused_graph_rejects_one_value_per_channel_in_train_mode():
    model = MLPWithBN()
    cm = _compiled(model, lf.TensorSpec(("N", 784)), fuse=True)
    before = _state(model)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        cm(np.zeros((1, 784), np.float32))
    for key, value in before.items():
        np.testing.assert_array_equal(_state(model)[key], value)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sequentials(), st.integers(2, 5))
def test_random_sequentials_fused_match_eager_over_train_and_eval_steps(case, batch):
    model, spec = case
    lf.manual_seed(0)
    spec = lf.TensorSpec(spec)
    cm = _compiled(model, spec, fuse=True)
    verify(cm.graph)
    eager = copy.deepcopy(model)
    n = spec.shape[0] if isinstance(spec.shape[0], int) else batch
    rng = np.random.default_rng(batch)
    for train in (True, True, False):
        model.train(train)
        eager.train(train)
        x = rng.standard_normal((n, spec.shape[1])).astype(np.float32)
        np.testing.assert_allclose(cm(x), eager(x), rtol=1e-4, atol=1e-5)
        for k, v in model.state_dict().items():
            np.testing.assert_allclose(v, eager.state_dict()[k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_fused_graph_parses_and_verifies_in_a_fresh_process():
    """The fused ops are part of the op table as soon as lazyfuse.ir is imported."""
    import subprocess
    import sys

    code = ("import sys\nfrom lazyfuse.ir import Graph, verify\n"
            "g = Graph.parse(sys.stdin.read())\nverify(g)\nprint(sorted({n.op for n in g.nodes}))")
    result = subprocess.run([sys.executable, "-c", code], input=MLP_FUSED, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "fused_linear_bn_relu" in result.stdout


def test_fused_op_definitions_live_in_ir_and_compose_their_parts():
    from lazyfuse.errors import IRError
    from lazyfuse.ir import fused_ops
    from lazyfuse.passes import patterns

    lengths = [len(p.ops) for p in patterns.PATTERNS]
    assert lengths == sorted(lengths, reverse=True) and len(lengths) == len(fused_ops.FUSED_OPS)
    opdef = lf.ir.OPS["fused_linear_bn_relu"]
    assert opdef.parts == ("linear", "batch_norm", "relu") and opdef.uses_training
    assert opdef.operand_names({"bias": False, "affine": False}) == (
        "linear.input", "linear.weight", "batch_norm.running_mean", "batch_norm.running_var",
        "batch_norm.num_batches_tracked")
    assert lf.ir.OPS["fused_linear_relu"].effects == () and not lf.ir.OPS["fused_linear_relu"].uses_training
    assert not hasattr(patterns, "part_attrs")  # the pass keeps only the matching rules
    with pytest.raises(IRError, match="appear in more than one fused op"):
        fused_ops.fused_opdef("fused_linear_linear", ("linear", "linear"))
    moded = lf.ir.register_op(lf.ir.OpDef("test_fuse_moded", {}, ("input",), None, None, uses_training=True))
    try:
        with pytest.raises(IRError, match="at most one part"):
            fused_ops.fused_opdef("fused_bn_moded", ("batch_norm", moded.name))
    finally:
        del lf.ir.OPS[moded.name]


def test_fused_node_updates_the_batch_norm_state_operands():
    g = run_fuse(_linear_bn_graph())
    fused = next(n for n in g.nodes if n.op.startswith("fused"))
    assert [n.name for n in lf.ir.updated_operands(fused)] == [
        "bn.running_mean", "bn.running_var", "bn.num_batches_tracked"]
    assert lf.ir.has_effects(fused) and lf.ir.mode_module(fused) == "bn"


def test_fused_shape_rule_keeps_the_dtype_error_class():
    g = run_fuse(_linear_bn_graph())
    g.node("bn.weight").type = T(lf.ir.f64, (4,))
    with pytest.raises(lf.errors.VerifierError, match="shape rule fails: fused_linear_bn_relu: batch_norm: dtype"):
        verify(g)
    with pytest.raises(lf.errors.DTypeError, match=r"(?s)fused_linear_bn_relu: batch_norm: dtype.*IR: .*"
                                                   r"in pass 'infer_shapes'"):
        lf.infer_shapes(g)
