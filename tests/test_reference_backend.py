"""The reference backend against eager lazyfuse.nn and PyTorch, train and eval, several steps."""

from __future__ import annotations

import copy

import models_for_tests as M
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_trace import sequentials

import lazyfuse as lf
from lazyfuse import nn
from lazyfuse.backends import get_backend
from lazyfuse.backends.reference import ReferenceExecutable

torch = pytest.importorskip("torch")
tnn = torch.nn


class TorchMLPWithBN(tnn.Module):
    def __init__(self):
        super().__init__()
        self.flatten = tnn.Flatten()
        self.fc1, self.bn1, self.relu1 = tnn.Linear(784, 256), tnn.BatchNorm1d(256), tnn.ReLU()
        self.fc2, self.bn2, self.relu2 = tnn.Linear(256, 128), tnn.BatchNorm1d(128), tnn.ReLU()
        self.fc3 = tnn.Linear(128, 10)

    def forward(self, x):
        x = self.flatten(x)
        x = self.relu1(self.bn1(self.fc1(x)))
        x = self.relu2(self.bn2(self.fc2(x)))
        return self.fc3(x)


class TorchConvLikeBN(tnn.Module):
    def __init__(self):
        super().__init__()
        self.bn, self.act = tnn.BatchNorm1d(3), tnn.ReLU()

    def forward(self, x):
        return self.act(self.bn(x))


class TorchBlock(tnn.Module):
    def __init__(self):
        super().__init__()
        self.fc, self.bn = tnn.Linear(6, 6), tnn.BatchNorm1d(6)

    def forward(self, x):
        return torch.relu(self.bn(self.fc(x)))


class TorchResidual(tnn.Module):
    def __init__(self):
        super().__init__()
        self.inp = tnn.Linear(5, 6)
        self.blocks = tnn.ModuleList([TorchBlock(), TorchBlock()])
        self.skip = tnn.Identity()
        self.head = tnn.Sequential(tnn.BatchNorm1d(6, momentum=None), tnn.ReLU(), tnn.Linear(6, 2))

    def forward(self, x):
        h = torch.relu(self.inp(x))
        for block in self.blocks:
            h = block(h) + self.skip(h)
        return self.head(h)


def _mlp():
    from lazyfuse.examples.mlp import MLPWithBN

    return MLPWithBN()


CASES = {
    "mlp": (_mlp, TorchMLPWithBN, ("N", 28, 28), (8, 28, 28)),
    "ncl": (M.ConvLikeBN, TorchConvLikeBN, ("N", 3, "L"), (4, 3, 5)),
    "residual": (M.Residual, TorchResidual, ("N", 5), (6, 5)),
}


def to_torch_state(model):
    return {k: torch.from_numpy(np.array(v)) for k, v in model.state_dict().items()}


def assert_states_match(lf_model, other, torch_model, rtol=2e-5, atol=2e-6):
    mine, theirs = lf_model.state_dict(), other.state_dict()
    tstate = torch_model.state_dict()
    assert mine.keys() == theirs.keys() == tstate.keys()
    for k in mine:
        np.testing.assert_allclose(mine[k], theirs[k], rtol=rtol, atol=atol, err_msg=k)
        np.testing.assert_allclose(mine[k], tstate[k].numpy(), rtol=rtol, atol=atol, err_msg=k)
        assert np.asarray(mine[k]).dtype == np.asarray(theirs[k]).dtype, k


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_eager_and_torch_in_train_and_eval(case):
    make, make_torch, spec, shape = CASES[case]
    lf.manual_seed(0)
    model = make()
    cm = lf.compile(model, spec, backend="reference")
    assert not model.has_uninitialized_params()
    eager = make()
    eager.load_state_dict(model.state_dict())  # resolves the eager model's lazy modules
    tmodel = make_torch()
    tmodel.load_state_dict(to_torch_state(model))
    rng = np.random.default_rng(1)
    for _step in range(3):
        x = rng.standard_normal(shape).astype(np.float32)
        y = cm(x)
        np.testing.assert_allclose(y, eager(x), rtol=2e-5, atol=2e-6)
        np.testing.assert_allclose(y, tmodel(torch.from_numpy(x)).detach().numpy(), rtol=1e-4, atol=1e-5)
    assert_states_match(model, eager, tmodel)
    bn_counts = [int(b) for k, b in model.state_dict().items() if k.endswith("num_batches_tracked")]
    assert bn_counts and set(bn_counts) == {3}
    for m in (model, eager, tmodel):
        m.eval()
    for _step in range(2):
        x = rng.standard_normal(shape).astype(np.float32)
        y = cm(x)
        np.testing.assert_allclose(y, eager(x), rtol=2e-5, atol=2e-6)
        np.testing.assert_allclose(y, tmodel(torch.from_numpy(x)).detach().numpy(), rtol=1e-4, atol=1e-5)
    assert_states_match(model, eager, tmodel)  # eval calls changed nothing


def test_compiled_module_sees_load_state_dict_and_mode_changes():
    lf.manual_seed(3)
    model = M.Residual()
    cm = lf.compile(model, ("N", 5), backend="reference")
    other = M.Residual()
    lf.manual_seed(4)
    other(np.ones((2, 5), np.float32))  # materialize with different weights
    other.eval()
    x = np.random.default_rng(2).standard_normal((4, 5)).astype(np.float32)
    model.load_state_dict(other.state_dict())
    model.eval()
    np.testing.assert_allclose(cm(x), other(x), rtol=2e-5, atol=2e-6)
    # Only one BatchNorm back in train mode: the others keep using their running stats.
    model.blocks[1].bn.train()
    other.blocks[1].bn.train()
    np.testing.assert_allclose(cm(x), other(x), rtol=2e-5, atol=2e-6)
    # `other` ran one train step while materializing; the train-mode call added one more.
    assert int(model.blocks[1].bn.num_batches_tracked) == int(other.blocks[1].bn.num_batches_tracked) == 2
    assert int(model.blocks[0].bn.num_batches_tracked) == 1
    np.testing.assert_allclose(model.blocks[1].bn.running_mean, other.blocks[1].bn.running_mean, rtol=1e-6)


def test_float64_model():
    model = nn.Sequential(nn.LazyLinear(4, dtype=np.float64), nn.LazyBatchNorm1d(dtype=np.float64), nn.ReLU())
    cm = lf.compile(model, lf.TensorSpec(("N", 3), dtype="float64"), backend="reference")
    x = np.random.default_rng(0).standard_normal((5, 3))
    twin = nn.Sequential(nn.LazyLinear(4, dtype=np.float64), nn.LazyBatchNorm1d(dtype=np.float64), nn.ReLU())
    twin.load_state_dict(model.state_dict())
    y = cm(x)
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, twin(x), rtol=1e-12)


def test_backend_protocol():
    be = get_backend("reference")
    assert be.name == "reference" and be.pipeline == ["dce"]
    model = M.ConvLikeBN()
    g = lf.infer_shapes(lf.trace(model, ("N", 3, "L")))
    exe = be.build(g)
    assert isinstance(exe, ReferenceExecutable) and exe.source == str(g)
    state = {n.name: np.asarray(model.get_parameter(n.name) if n.op == "param" else model.get_buffer(n.name))
             for n in g.params()}
    x = np.ones((2, 3, 4), np.float32)
    y = exe.run([x], state, {"bn": False})
    np.testing.assert_allclose(y, np.maximum(x / np.sqrt(1 + 1e-5), 0), rtol=1e-6)
    assert int(model.bn.num_batches_tracked) == 0
    exe.run([x], state, {"bn": True})
    assert int(model.bn.num_batches_tracked) == 1  # state arrays are updated in place


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sequentials(), st.integers(2, 5), st.booleans())
def test_random_sequentials_match_eager(case, batch, train):
    model, spec = case
    lf.manual_seed(0)
    cm = lf.compile(model, spec, backend="reference")
    eager = copy.deepcopy(model)
    model.train(train)
    eager.train(train)
    n = spec[0] if isinstance(spec[0], int) else batch
    x = np.random.default_rng(batch).standard_normal((n, spec[1])).astype(np.float32)
    np.testing.assert_allclose(cm(x), eager(x), rtol=1e-4, atol=1e-5)
    for k, v in model.state_dict().items():
        np.testing.assert_allclose(v, eager.state_dict()[k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_symbolic_reshape_runs_with_the_call_sizes():
    """reshape[shape=(N, -1)] needs N from the input at call time (two free entries in the attr)."""
    model = M.Reshapes()
    cm = lf.compile(model, lf.TensorSpec(("N", 4, 6)), backend="reference")
    assert any(n.op == "reshape" and -1 in n.attrs["shape"] for n in cm.graph.nodes)
    x = np.random.default_rng(1).standard_normal((5, 4, 6)).astype(np.float32)
    expected = model.fc(np.maximum(x.reshape(5, -1), 0))  # the forward's math, eagerly
    np.testing.assert_allclose(cm(x), expected, rtol=1e-6, atol=1e-6)
    assert cm(x[:2]).shape == (2, 4)


@pytest.mark.parametrize("name", ["num_batches_tracked", "running_mean", "running_var"])
def test_bn_impl_checks_everything_before_counting_the_batch(name):
    """A read-only running array fails the train step before num_batches_tracked is incremented."""
    from lazyfuse.errors import StateError

    model = M.ConvLikeBN()
    g = lf.infer_shapes(lf.trace(model, ("N", 3, "L")))
    exe = get_backend("reference").build(g)
    state = {n.name: np.array(model.get_buffer(n.name) if n.op == "buffer" else model.get_parameter(n.name))
             for n in g.params()}
    state[f"bn.{name}"].setflags(write=False)
    before = {k: v.copy() for k, v in state.items()}
    x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
    with pytest.raises(StateError, match=f"^batch_norm: expected a writable {name} .*got a read-only array"):
        exe.run([x], state, {"bn": True})
    for k, v in state.items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)
    exe.run([x], state, {"bn": False})  # eval writes nothing


def test_bn_impl_counts_the_batch_after_the_update():
    from lazyfuse.ir.ops import OPS

    attrs = {"num_features": 2, "eps": 1e-5, "momentum": None, "affine": False, "track_running_stats": True}
    mean, var, count = np.zeros(2, np.float32), np.ones(2, np.float32), np.array(4, np.int64)
    x = np.random.default_rng(0).standard_normal((6, 2)).astype(np.float32)
    bad_var = np.ones(3, np.float32)
    with pytest.raises(ValueError, match="running_var of shape"):
        OPS["batch_norm"].impl(attrs, x, mean, bad_var, count, training=True)
    assert int(count) == 4 and mean.tolist() == [0, 0]
    OPS["batch_norm"].impl(attrs, x, mean, var, count, training=True)
    assert int(count) == 5  # momentum None: a cumulative average with factor 1/5
    np.testing.assert_allclose(mean, x.astype(np.float64).mean(0) / 5, rtol=1e-6)
