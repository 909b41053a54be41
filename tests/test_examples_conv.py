"""The convolutional example models (examples/convnets.py): lazy sizes from a spec, eager and compiled
(reference and cpu) against the same models written in torch, train steps then eval."""

from __future__ import annotations

import numpy as np
import pytest
from test_examples import check_against_torch

import lazyfuse as lf
from lazyfuse import nn
from lazyfuse.examples.convnets import ConvBNNet, FeatureExtractor, SimpleNet

torch = pytest.importorskip("torch")
torch.set_num_threads(2)
tnn = torch.nn


class TorchSimpleNet(tnn.Module):
    def __init__(self):
        super().__init__()
        self.conv = tnn.Conv2d(3, 64, 5)
        self.fc = tnn.LazyLinear(10)

    def forward(self, x):
        x = self.conv(x)
        return self.fc(x.reshape(x.shape[0], -1))


class TorchFeatureExtractor(tnn.Module):
    def __init__(self):
        super().__init__()
        self.features = tnn.Sequential(tnn.Conv2d(3, 32, 3), tnn.ReLU(), tnn.Conv2d(32, 64, 3), tnn.ReLU())
        self.fc = tnn.LazyLinear(10)

    def forward(self, x):
        x = self.features(x)
        return self.fc(x.view(x.size(0), -1))


class TorchConvBNNet(tnn.Module):
    def __init__(self, channels=16):
        super().__init__()
        self.conv = tnn.LazyConv2d(channels, 3, padding=1)
        self.bn = tnn.LazyBatchNorm2d()
        self.relu = tnn.ReLU()
        self.pool = tnn.MaxPool2d(2)
        self.fc = tnn.LazyLinear(10)

    def forward(self, x):
        x = self.pool(self.relu(self.bn(self.conv(x))))
        return self.fc(x.flatten(1))


MODELS = {
    "SimpleNet": (SimpleNet, TorchSimpleNet, (3, 32, 32)),
    "FeatureExtractor": (FeatureExtractor, TorchFeatureExtractor, (3, 32, 32)),
    "ConvBNNet": (ConvBNNet, TorchConvBNNet, (3, 12, 10)),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_eager_matches_torch(name):
    ours, theirs, chw = MODELS[name]
    check_against_torch(ours(), theirs(), (3, *chw), steps=2)


@pytest.mark.parametrize("name, in_features", [("SimpleNet", 50176), ("FeatureExtractor", 50176)])
def test_lazy_linear_after_the_convs_resolves_from_the_spec(name, in_features):
    model = MODELS[name][0]()
    assert model.fc.in_features == 0
    graph = lf.infer_shapes(lf.trace(model, ("N", 3, 32, 32)))
    assert model.fc.in_features == in_features and type(model.fc) is nn.Linear
    assert str(graph).splitlines()[0] == f"graph @{name}[N](%x: f32[N,3,32,32]) -> (f32[N,10]) {{"


def _paired(name: str):
    """Our model resolved and materialized by lf.compile from a spec (no data), torch's resolved by a
    forward, then given our state."""
    ours_cls, theirs_cls, chw = MODELS[name]
    lf.manual_seed(0)
    ours = ours_cls()
    theirs = theirs_cls()
    theirs(torch.zeros((2, *chw)))
    return ours, theirs, chw


def check_compiled(name: str, backend: str, batch: int = 3) -> None:
    ours, theirs, chw = _paired(name)
    cm = lf.compile(ours, lf.TensorSpec(("N", *chw)), backend=backend)
    assert not ours.has_uninitialized_params()
    theirs.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in ours.state_dict().items()})
    rng = np.random.default_rng(1)
    for train in (True, True, False):
        ours.train(train)
        theirs.train(train)
        x = rng.standard_normal((batch, *chw)).astype(np.float32)
        want = theirs(torch.from_numpy(x)).detach().numpy()
        np.testing.assert_allclose(cm(x), want, rtol=2e-4, atol=2e-4)
        for k, v in theirs.state_dict().items():
            np.testing.assert_allclose(ours.state_dict()[k], v.numpy(), rtol=1e-4, atol=1e-5, err_msg=k)


@pytest.mark.parametrize("name", list(MODELS))
def test_compiled_reference_matches_torch(name):
    check_compiled(name, "reference")


@pytest.mark.parametrize("name", list(MODELS))
def test_compiled_cpu_matches_torch(name):
    check_compiled(name, "cpu")


def test_convbnnet_fuses_conv_bn_relu():
    ours, _, chw = _paired("ConvBNNet")
    cm = lf.compile(ours, lf.TensorSpec(("N", *chw)), backend="reference")
    ops = [n.op for n in cm.graph.nodes if n.op not in ("input", "param", "buffer", "output")]
    assert ops == ["conv2d", "batch_norm", "relu", "max_pool2d", "flatten", "linear"]  # reference: no fuse
    fused = lf.compile(ours, lf.TensorSpec(("N", *chw)), backend="cpu").graph
    ops = [n.op for n in fused.nodes if n.op not in ("input", "param", "buffer", "output")]
    assert ops == ["fused_conv_bn_relu", "max_pool2d", "flatten", "linear"]
