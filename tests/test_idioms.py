"""Eager == traced: every torch-style idiom a ``forward`` may use runs eagerly and traced, with the
same numbers (one test per idiom, both modes); what neither accepts fails in both with a lazyfuse
error; inputs are ``lazyfuse.Tensor`` inside ``forward`` and results are plain ``np.ndarray``."""

from __future__ import annotations

import numpy as np
import pytest

import lazyfuse as lf
import lazyfuse.nn.functional as F
from lazyfuse import nn

# Each idiom: a forward body as a function of (module, x) on x of shape (N, 2, 3).
IDIOMS = {
    "flatten(1)": lambda m, x: m.fc(x.flatten(1)),
    "flatten(1, -1)": lambda m, x: m.fc(x.flatten(1, -1)),
    "flatten(start_dim=1)": lambda m, x: m.fc(x.flatten(start_dim=1)),
    "view(size(0), -1)": lambda m, x: m.fc(x.view(x.size(0), -1)),
    "view(shape[0], -1)": lambda m, x: m.fc(x.view(x.shape[0], -1)),
    "view((size(0), -1))": lambda m, x: m.fc(x.view((x.size(0), -1))),
    "reshape(size(0), -1)": lambda m, x: m.fc(x.reshape(x.size(0), -1)),
    "reshape(shape[0], -1)": lambda m, x: m.fc(x.reshape(x.shape[0], -1)),
    "reshape(size()[0], 6)": lambda m, x: m.fc(x.reshape(x.size()[0], 6)),
    "np.reshape(x, (shape[0], -1))": lambda m, x: m.fc(np.reshape(x, (x.shape[0], -1))),
    "relu()": lambda m, x: m.fc(x.flatten(1)).relu(),
    "F.relu(...).flatten": lambda m, x: m.fc(F.relu(x).flatten(1)),
    "+ residual": lambda m, x: m.fc(x.flatten(1)) + m.fc(x.flatten(1)).relu(),
    "dim() / size(-1)": lambda m, x: m.fc(x.reshape(x.size(0), x.size(-1) * 2 if x.dim() == 3 else -1)),
    "F.flatten(...).relu()": lambda m, x: m.fc(F.flatten(x, 1)).relu(),
    "Sequential output .relu()": lambda m, x: m.seq(x).relu(),
    "t().relu().t()": lambda m, x: m.fc(x.flatten(1)).t().relu().t(),  # (N, 4) -> (4, N) -> (N, 4)
}


class IdiomModel(nn.Module):
    def __init__(self, body):
        super().__init__()
        self.fc = nn.LazyLinear(4)
        self.seq = nn.Sequential(nn.Flatten(), nn.LazyLinear(4))
        self.body = body

    def forward(self, x):
        return self.body(self, x)


SPEC = lf.TensorSpec(("N", 2, 3))


def _x(n=5, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 2, 3)).astype(np.float32)


@pytest.mark.parametrize("name", list(IDIOMS))
def test_idiom_runs_eagerly_and_traced_with_the_same_numbers(name):
    lf.manual_seed(0)
    model = IdiomModel(IDIOMS[name])
    cm = lf.compile(model, SPEC, backend="reference")  # traces, resolves the lazy layers
    x = _x()
    eager = model(x)
    assert type(eager) is np.ndarray
    np.testing.assert_allclose(cm(x), eager, rtol=1e-6, atol=1e-6)


def test_idioms_on_the_cpu_backend():
    lf.manual_seed(0)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.LazyLinear(4)
            self.bn = nn.LazyBatchNorm1d()

        def forward(self, x):
            h = x.view(x.size(0), -1)
            h = self.bn(self.fc(h)).relu()
            return h + self.fc(np.reshape(x, (x.shape[0], -1))).relu()

    model = Net()
    cm = lf.compile(model, SPEC, backend="cpu")
    model.eval()
    x = _x(7)
    np.testing.assert_allclose(cm(x), model(x), rtol=1e-5, atol=1e-5)


def test_forward_sees_a_lazyfuse_tensor_and_the_caller_gets_an_ndarray():
    seen = []

    class Probe(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = nn.Identity()

        def forward(self, x, *, y):
            seen.append((type(x), type(y), type(self.inner(x))))
            return x.relu(), [y.flatten(0)]

    x = np.ones((2, 3), np.float32)
    out, (flat,) = Probe()(x, y=x)
    assert seen == [(lf.Tensor, lf.Tensor, lf.Tensor)]
    assert type(out) is np.ndarray and type(flat) is np.ndarray and flat.shape == (6,)


def test_identity_returns_the_input_object_itself():
    x = np.ones(3)
    assert nn.Identity()(x) is x and nn.Sequential()(x) is x


def test_tensor_keeps_numpy_meanings_where_torch_spells_the_same_name():
    t = np.arange(6.0).reshape(2, 3).view(lf.Tensor)
    assert t.size == 6 and t.size() == (2, 3) and t.size(0) == 2 and t.size(-1) == 3
    assert t.mean() == 2.5 and np.size(t) == 6 and t.numel() == 6 and t.dim() == 2
    assert t.flatten().shape == (6,) and t.flatten(order="F")[1] == 3.0 and t.flatten("F")[1] == 3.0
    assert t.view(np.ndarray).__class__ is np.ndarray and t.view(np.int64).dtype == np.int64
    assert t.view(3, 2).shape == (3, 2) and np.shares_memory(t.view(-1), t)
    assert repr(t[:1]) == "Tensor([[0., 1., 2.]])"


@pytest.mark.parametrize("call, message", [
    (lambda t: t.size(2), "size: dimension out of range"),
    (lambda t: t.view(4, -1), "view: shape [4, -1] is invalid for input of shape (2, 3)"),
    (lambda t: t.T.view(-1), "cannot be viewed as [-1] without a copy; use .reshape(...)"),
    (lambda t: t.flatten(3), "flatten: dimension out of range"),
    (lambda t: t.flatten(1.0), "flatten: start_dim must be an int"),
])
def test_tensor_mistakes_are_lazyfuse_errors(call, message):
    t = np.zeros((2, 3), np.float32).view(lf.Tensor)
    with pytest.raises(lf.LazyFuseError, match=message.replace("[", r"\[").replace("(", r"\(")
                       .replace(")", r"\)").replace("]", r"\]").replace(".", r"\.")):
        call(t)


def test_len_is_refused_by_the_tracer_with_a_hint_for_the_spelling_that_works_in_both():
    class UsesLen(nn.Module):
        def forward(self, x):
            return x.reshape(len(x), -1)

    x = _x()
    assert UsesLen()(x).shape == (5, 6)  # eagerly len() works
    with pytest.raises(lf.TraceError, match=r"len\(\) .* symbolic \(N\); use x.shape\[0\] or x.size\(0\)"):
        lf.trace(UsesLen(), SPEC)
    # With a concrete first dim the tracer can give len() its int.
    graph = lf.trace(UsesLen(), lf.TensorSpec((5, 2, 3)))
    assert "reshape[shape=(5, -1)]" in str(graph)


def test_np_reshape_with_another_order_is_refused_by_the_tracer():
    class FOrder(nn.Module):
        def forward(self, x):
            return np.reshape(x, (x.shape[0], -1), order="F")

    with pytest.raises(lf.TraceError, match="np.reshape with order='F': only order='C' is traced"):
        lf.trace(FOrder(), SPEC)


def test_other_numpy_functions_are_refused_with_the_supported_spelling():
    class Exp(nn.Module):
        def forward(self, x):
            return np.concatenate([x, x])

    with pytest.raises(lf.TraceError, match="np.reshape"):
        lf.trace(Exp(), SPEC)
