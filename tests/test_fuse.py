"""The ``fuse`` pass: golden IR, each pattern, legality, round trips and numerics vs unfused."""
# ruff: noqa: E501  (golden IR lines are long by nature)

from __future__ import annotations

import copy

import numpy as np
import pytest

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
