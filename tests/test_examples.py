"""The example models: lazy resolution, has_uninitialized_params, eager equivalence with torch, demo."""

import numpy as np
import pytest

import lazyfuse as lf
from lazyfuse import nn
from lazyfuse.examples import demo
from lazyfuse.examples.mlp import DynamicMLP, DynamicNetwork, MLPWithBN, SimpleNet

torch = pytest.importorskip("torch")
torch.set_num_threads(2)
tnn = torch.nn


class TorchMLPWithBN(tnn.Module):
    def __init__(self):
        super().__init__()
        self.flatten = tnn.Flatten()
        self.fc1 = tnn.Linear(784, 256)
        self.bn1 = tnn.LazyBatchNorm1d()
        self.relu1 = tnn.ReLU()
        self.fc2 = tnn.LazyLinear(128)
        self.bn2 = tnn.LazyBatchNorm1d()
        self.relu2 = tnn.ReLU()
        self.fc3 = tnn.LazyLinear(10)

    def forward(self, x):
        x = self.flatten(x)
        x = self.relu1(self.bn1(self.fc1(x)))
        x = self.relu2(self.bn2(self.fc2(x)))
        return self.fc3(x)


class TorchDynamicNetwork(tnn.Module):
    def __init__(self):
        super().__init__()
        self.layers = tnn.Sequential(
            tnn.Linear(20, 64),
            tnn.LazyBatchNorm1d(),
            tnn.ReLU(),
            tnn.Linear(64, 32),
            tnn.LazyBatchNorm1d(),
            tnn.ReLU(),
        )

    def forward(self, x):
        return self.layers(x)


class TorchDynamicMLP(tnn.Module):
    def __init__(self, hidden_sizes=(128, 64), num_classes=10):
        super().__init__()
        sizes = [*hidden_sizes, num_classes]
        self.num_layers = len(sizes)
        for i, size in enumerate(sizes):
            setattr(self, f"fc{i}", tnn.LazyLinear(size))

    def forward(self, x):
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
            if i < self.num_layers - 1:
                x = tnn.functional.relu(x)
        return x


def torch_simple_net():
    return tnn.Sequential(tnn.LazyLinear(32), tnn.ReLU(), tnn.LazyLinear(1))


def check_against_torch(ours, theirs, shape, steps=3):
    """Resolve both with one train step, copy our state into torch, then compare train and eval steps."""
    rng = np.random.default_rng(0)
    batch = lambda: rng.standard_normal(shape).astype(np.float32)  # noqa: E731
    assert ours.has_uninitialized_params()
    x = batch()
    ours(x)
    theirs(torch.from_numpy(x))
    assert not ours.has_uninitialized_params()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    theirs.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in ours.state_dict().items()})
    assert repr(ours) == repr(theirs).replace("Torch", "")
    for _ in range(steps):
        x = batch()
        np.testing.assert_allclose(
            ours(x), theirs(torch.from_numpy(x)).detach().numpy(), rtol=1e-4, atol=1e-5
        )
    ours.eval()
    theirs.eval()
    x = batch()
    np.testing.assert_allclose(ours(x), theirs(torch.from_numpy(x)).detach().numpy(), rtol=1e-4, atol=1e-5)
    for k, v in theirs.state_dict().items():
        np.testing.assert_allclose(ours.state_dict()[k], v.numpy(), rtol=1e-4, atol=1e-5, err_msg=k)


def test_mlp_with_bn_resolves_from_28x28_input():
    lf.manual_seed(0)
    model = MLPWithBN()
    assert model.has_uninitialized_params()
    assert model.fc2.in_features == 0 and model.bn1.num_features == 0 and model.fc1.in_features == 784
    y = model(np.zeros((4, 28, 28), np.float32) + np.arange(4, dtype=np.float32)[:, None, None])
    assert y.shape == (4, 10) and not model.has_uninitialized_params()
    assert (model.bn1.num_features, model.fc2.in_features, model.bn2.num_features, model.fc3.in_features) == (
        256,
        256,
        128,
        128,
    )
    assert type(model.fc2) is nn.Linear and type(model.bn2) is nn.BatchNorm1d
    assert model(np.ones((3, 784), np.float32)).shape == (3, 10)


def test_mlp_with_bn_matches_torch():
    check_against_torch(MLPWithBN(), TorchMLPWithBN(), (8, 28, 28), steps=2)


def test_dynamic_network_matches_torch():
    check_against_torch(DynamicNetwork(), TorchDynamicNetwork(), (6, 20))


@pytest.mark.parametrize("hidden", [(128, 64), (16,), ()])
def test_dynamic_mlp_matches_torch(hidden):
    ours = DynamicMLP(hidden_sizes=hidden, num_classes=5)
    assert [n for n, _ in ours.named_children()] == [f"fc{i}" for i in range(len(hidden) + 1)]
    check_against_torch(ours, TorchDynamicMLP(hidden, 5), (4, 12))


def test_simple_net_matches_torch():
    net = SimpleNet()
    assert type(net) is nn.Sequential and len(net) == 3
    check_against_torch(net, torch_simple_net(), (5, 7))


def test_lazy_batchnorm_64_features_then_16_rows():
    ours, theirs = nn.LazyBatchNorm1d(), tnn.LazyBatchNorm1d()
    assert ours.has_uninitialized_params() and ours.num_features == 0
    rng = np.random.default_rng(0)
    x1 = rng.standard_normal((32, 64)).astype(np.float32)
    y1 = ours(x1)
    assert ours.num_features == 64 and not ours.has_uninitialized_params() and type(ours) is nn.BatchNorm1d
    x2 = rng.standard_normal((16, 64)).astype(np.float32)
    y2 = ours(x2)
    assert y1.shape == (32, 64) and y2.shape == (16, 64) and int(ours.num_batches_tracked) == 2
    for x, y in ((x1, y1), (x2, y2)):
        np.testing.assert_allclose(y, theirs(torch.from_numpy(x)).detach().numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ours.running_var, theirs.running_var.numpy(), rtol=1e-5)
    with pytest.raises(lf.ShapeError, match=r"64 channels.*\(16, 32\)"):
        ours(x2[:, :32])


def test_dynamic_network_error_names_layer():
    model = DynamicNetwork()
    with pytest.raises(lf.ShapeError, match=r"module 'layers.0' \(Linear\).*last dimension 20.*\(4, 21\)"):
        model(np.zeros((4, 21), np.float32))
    assert model.has_uninitialized_params()


def test_demo_runs(capsys, tmp_path):
    demo.main(tmp_path)
    assert (tmp_path / "mlp_optimized.svg").read_text().lstrip().startswith(("<?xml", "<svg"))
    out = capsys.readouterr().out
    assert "has_uninitialized_params(): True" in out and "has_uninitialized_params(): False" in out
    assert "output (32, 10) float32" in out
    assert "fc2  Linear           in_features=256, out_features=128" in out
    assert "bn2  BatchNorm1d      num_features=128" in out
    assert "MLPWithBN(\n  (flatten): Flatten(start_dim=1, end_dim=-1)" in out
    assert "graph @MLPWithBN[N](%x: f32[N,28,28])" in out and "fused_linear_bn_relu" in out
    diffs = [float(line.rsplit("=", 1)[1]) for line in out.splitlines() if "max |compiled - eager|" in line]
    assert len(diffs) == 4 and max(diffs) < 1e-4
    assert "fc      LazyLinear  f32[N,10]        501,770  in_features=50176" in out
    assert "after lf.compile: Linear, fc.in_features = 50176" in out
