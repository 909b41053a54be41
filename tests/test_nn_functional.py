"""nn.functional against torch.nn.functional, argument checks, and the __lazyfuse_function__ hook."""

import numpy as np
import pytest

from lazyfuse import nn
from lazyfuse.errors import ConfigError, DTypeError, ShapeError, StateError

F = nn.functional
torch = pytest.importorskip("torch")
torch.set_num_threads(2)
TF = torch.nn.functional


def rand(*shape, dtype=np.float32, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("dtype,tol", [(np.float32, 1e-5), (np.float64, 1e-12)])
def test_linear(dtype, tol):
    x, w, b = rand(2, 3, 5, dtype=dtype), rand(4, 5, dtype=dtype, seed=1), rand(4, dtype=dtype, seed=2)
    t = [torch.from_numpy(a) for a in (x, w, b)]
    np.testing.assert_allclose(F.linear(x, w, b), TF.linear(*t).numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(F.linear(x, w), TF.linear(t[0], t[1]).numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(
        F.linear(x[0, 0], w, b), TF.linear(t[0][0, 0], t[1], t[2]).numpy(), rtol=tol, atol=tol
    )


def test_linear_errors():
    w = rand(4, 5)
    with pytest.raises(ShapeError, match=r"linear: expected input with last dimension 5.*\(2, 6\)"):
        F.linear(rand(2, 6), w)
    with pytest.raises(ShapeError, match="bias of shape"):
        F.linear(rand(2, 5), w, rand(3))
    with pytest.raises(ShapeError, match="2D weight"):
        F.linear(rand(2, 5), rand(5))
    with pytest.raises(DTypeError, match="expected float32 .*got float64"):
        F.linear(rand(2, 5, dtype=np.float64), w)
    with pytest.raises(DTypeError, match="int64"):
        F.linear(np.ones((2, 5), np.int64), w)


def test_relu():
    x = np.array([-1.0, 0.0, 2.0, np.nan], np.float32)
    np.testing.assert_array_equal(F.relu(x), TF.relu(torch.from_numpy(x)).numpy())
    assert F.relu(np.array([-2, 3])).tolist() == [0, 3]
    y = x.copy()
    assert F.relu(y, inplace=True) is y and y[0] == 0
    assert x[0] == -1  # not inplace by default
    with pytest.raises(DTypeError, match="relu"):
        F.relu(np.array([True]))
    with pytest.raises(DTypeError, match=r"'0' \(ReLU\): relu"):
        nn.Sequential(nn.ReLU())(np.array([1j]))


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (6,), ()])
@pytest.mark.parametrize("dims", [(0, -1), (1, -1), (1, 2), (-2, -1), (0, 0)])
def test_flatten(shape, dims):
    x = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)
    try:
        expected = torch.flatten(torch.from_numpy(x), *dims).numpy()
    except (IndexError, RuntimeError):
        with pytest.raises(ShapeError, match="flatten"):
            F.flatten(x, *dims)
        return
    np.testing.assert_array_equal(F.flatten(x, *dims), expected)


def test_flatten_module_and_errors():
    x = rand(2, 28, 28)
    y = nn.Flatten()(x)
    assert y.shape == (2, 784) and np.shares_memory(x, y)
    assert F.flatten(x).shape == (2 * 784,)  # the functional's start_dim default is 0
    with pytest.raises(ShapeError, match=r"'0' \(Flatten\).*out of range"):
        nn.Sequential(nn.Flatten())(np.ones(3))
    with pytest.raises(ShapeError, match="cannot come after"):
        F.flatten(x, 2, 1)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(5, 3), (4, 3, 2), (4, 3, 2, 2)])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_matches_torch(training, shape, affine):
    x = rand(*shape, dtype=np.float64)
    rm, rv = rand(3, dtype=np.float64, seed=1), np.abs(rand(3, dtype=np.float64, seed=2)) + 0.5
    w, b = (rand(3, dtype=np.float64, seed=3), rand(3, dtype=np.float64, seed=4)) if affine else (None, None)
    trm, trv = torch.from_numpy(rm.copy()), torch.from_numpy(rv.copy())
    tw, tb = (torch.from_numpy(w), torch.from_numpy(b)) if affine else (None, None)
    y = F.batch_norm(x, rm, rv, w, b, training=training, momentum=0.3, eps=1e-3)
    ty = TF.batch_norm(torch.from_numpy(x), trm, trv, tw, tb, training=training, momentum=0.3, eps=1e-3)
    np.testing.assert_allclose(y, ty.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(rm, trm.numpy(), rtol=1e-12)
    np.testing.assert_allclose(rv, trv.numpy(), rtol=1e-12)


def test_batch_norm_training_without_running_stats():
    x = rand(6, 2)
    y = F.batch_norm(x, None, None, training=True)
    np.testing.assert_allclose(
        y, TF.batch_norm(torch.from_numpy(x), None, None, training=True).numpy(), atol=1e-5
    )


def test_batch_norm_of_an_empty_batch_is_empty_and_keeps_running_stats():
    rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    for shape in ((0, 3), (4, 3, 0)):
        y = F.batch_norm(np.empty(shape, np.float32), rm, rv, training=True)
        assert y.shape == shape and y.dtype == np.float32
    assert F.batch_norm(np.empty((0, 3), np.float32), None, None, training=True).shape == (0, 3)
    assert rm.tolist() == [0, 0, 0] and rv.tolist() == [1, 1, 1]


def test_batch_norm_errors_do_not_touch_running_stats():
    rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    cases = [
        (dict(input=np.ones((1, 3), np.float32), training=True), ShapeError, r"more than 1 value.*\(1, 3\)"),
        (dict(input=rand(4, 3), weight=np.ones(2, np.float32), training=True), ShapeError, "weight of shape"),
        (dict(input=rand(4, 3), weight=np.ones(3), training=True), DTypeError, "weight of dtype float32"),
        (dict(input=rand(4, 3), training=True, momentum=None), ConfigError, "momentum"),
        (dict(input=rand(4), training=True), ShapeError, r"\(N, C, \*\)"),
        (dict(input=np.ones((4, 3), np.int32), training=True), DTypeError, "int32"),
    ]
    for kwargs, error, pattern in cases:
        with pytest.raises(error, match=pattern):
            F.batch_norm(running_mean=rm, running_var=rv, **kwargs)
        assert rm.tolist() == [0, 0, 0] and rv.tolist() == [1, 1, 1]
    with pytest.raises(ConfigError, match="required when training=False"):
        F.batch_norm(rand(4, 3), None, None)
    with pytest.raises(ConfigError, match="both"):
        F.batch_norm(rand(4, 3), rm, None, training=True)


class Recorder:
    """Stands in for the tracer's Proxy."""

    def __init__(self):
        self.calls = []

    def __lazyfuse_function__(self, func, args, kwargs):
        self.calls.append((func, args, kwargs))
        return "recorded"


@pytest.mark.parametrize(
    "name,args,kwargs",
    [
        ("relu", (), {}),
        ("flatten", (1,), {}),
        ("linear", (np.ones((2, 2), np.float32),), {}),
        ("batch_norm", (None, None), {"training": True}),
    ],
)
def test_functional_dispatch_hook(name, args, kwargs):
    r = Recorder()
    fn = getattr(F, name)
    assert fn(r, *args, **kwargs) == "recorded"
    func, got_args, got_kwargs = r.calls[0]
    assert func is fn and got_args[0] is r and got_kwargs == kwargs


def test_dispatch_hook_on_a_non_first_argument():
    r = Recorder()
    assert F.linear(np.ones((1, 2), np.float32), r) == "recorded"
    assert F.batch_norm(np.ones((2, 2), np.float32), None, None, weight=r, training=True) == "recorded"


@pytest.mark.parametrize("eps", ["a", -1, 0, 0.0, float("inf"), float("nan"), True, None])
def test_batch_norm_rejects_bad_eps_before_touching_running_stats(eps):
    rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    with pytest.raises(ConfigError) as info:
        F.batch_norm(rand(4, 3), rm, rv, training=True, eps=eps)
    assert str(info.value) == f"batch_norm: eps must be a finite float > 0, got {eps!r}"
    assert rm.tolist() == [0, 0, 0] and rv.tolist() == [1, 1, 1]


@pytest.mark.parametrize("name", ["running_mean", "running_var"])
def test_batch_norm_read_only_running_stats_fail_only_when_training(name):
    stats = {"running_mean": np.zeros(3, np.float32), "running_var": np.ones(3, np.float32)}
    stats[name].setflags(write=False)
    with pytest.raises(StateError, match=f"^batch_norm: expected a writable {name} .*got a read-only array"):
        F.batch_norm(rand(4, 3), **stats, training=True)
    assert stats["running_mean"].tolist() == [0, 0, 0] and stats["running_var"].tolist() == [1, 1, 1]
    F.batch_norm(rand(4, 3), **stats, training=False)


@pytest.mark.parametrize("dims", [("a",), (1.5,), (True,), (0, "b"), (0, None)])
def test_flatten_dims_must_be_ints(dims):
    x = rand(2, 3, 4)
    name = "start_dim" if not isinstance(dims[0], int) or isinstance(dims[0], bool) else "end_dim"
    with pytest.raises(ConfigError, match=f"^flatten: {name} must be an int, got "):
        F.flatten(x, *dims)
    with pytest.raises(ConfigError, match=f"^Flatten: {name} must be an int, got "):
        nn.Flatten(*dims)


def test_reassigned_flatten_dims_are_checked_at_call():
    model = nn.Sequential(nn.Flatten())
    model[0].start_dim = "a"
    with pytest.raises(ConfigError) as info:
        model(rand(2, 3, 4))
    assert str(info.value) == "module '0' (Flatten): flatten: start_dim must be an int, got str 'a'"
