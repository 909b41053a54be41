"""Linear against torch: numerics, initialization bounds, reproducibility, errors."""

import numpy as np
import pytest

import lazyfuse as lf
from lazyfuse import nn
from lazyfuse.errors import ConfigError, DTypeError, ShapeError

torch = pytest.importorskip("torch")
torch.set_num_threads(2)


def torch_copy(ours, dtype=torch.float32):
    theirs = torch.nn.Linear(ours.in_features, ours.out_features, bias=ours.bias is not None, dtype=dtype)
    with torch.no_grad():
        theirs.weight.copy_(torch.from_numpy(np.asarray(ours.weight)))
        if ours.bias is not None:
            theirs.bias.copy_(torch.from_numpy(np.asarray(ours.bias)))
    return theirs


@pytest.mark.parametrize("dtype,tol", [(np.float32, 1e-5), (np.float64, 1e-12)])
@pytest.mark.parametrize("shape", [(7,), (5, 7), (2, 3, 7), (2, 1, 3, 7), (0, 7)])
@pytest.mark.parametrize("bias", [True, False])
def test_matches_torch(dtype, tol, shape, bias):
    lf.manual_seed(1)
    ours = nn.Linear(7, 4, bias=bias, dtype=dtype)
    theirs = torch_copy(ours, torch.float32 if dtype == np.float32 else torch.float64)
    x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    y = ours(x)
    assert type(y) is np.ndarray and y.dtype == dtype and y.shape == shape[:-1] + (4,)
    np.testing.assert_allclose(y, theirs(torch.from_numpy(x)).detach().numpy(), rtol=tol, atol=tol)


def test_init_bounds_like_torch():
    lf.manual_seed(0)
    fan_in = 400
    m = nn.Linear(fan_in, 300)
    bound = 1 / np.sqrt(fan_in)
    t = torch.nn.Linear(fan_in, 300)
    for ours, theirs in ((m.weight, t.weight), (m.bias, t.bias)):
        assert ours.min() >= -bound and ours.max() <= bound
        assert ours.min() < -0.95 * bound and ours.max() > 0.95 * bound
        tmin, tmax = float(theirs.detach().min()), float(theirs.detach().max())
        assert abs(float(ours.min()) - tmin) < 0.05 * bound and abs(float(ours.max()) - tmax) < 0.05 * bound
    # uniform: the mean is ~0 and the std is bound/sqrt(3)
    assert abs(float(m.weight.mean())) < 0.01 * bound
    assert abs(float(m.weight.std()) - bound / np.sqrt(3)) < 0.01 * bound


def test_manual_seed_makes_init_reproducible():
    lf.manual_seed(123)
    a = nn.Linear(5, 3)
    b1 = nn.LazyLinear(2)
    b1(np.ones((1, 3), np.float32))
    lf.manual_seed(123)
    c = nn.Linear(5, 3)
    b2 = nn.LazyLinear(2)
    b2.materialize(in_features=3)  # the same draws as the eager first forward
    np.testing.assert_array_equal(a.weight, c.weight)
    np.testing.assert_array_equal(a.bias, c.bias)
    np.testing.assert_array_equal(b1.weight, b2.weight)
    np.testing.assert_array_equal(b1.bias, b2.bias)
    lf.manual_seed(124)
    assert not np.array_equal(nn.Linear(5, 3).weight, a.weight)


def test_parameters_are_parameter_views_and_outputs_plain_arrays():
    m = nn.Linear(3, 2)
    assert isinstance(m.weight, nn.Parameter) and isinstance(m.weight, np.ndarray)
    assert m.weight.dtype == np.float32
    assert type(m.weight * 2) is np.ndarray
    w = m.weight
    w -= 1.0  # in-place update keeps the very same object registered
    assert m.weight is w and type(m(np.ones((1, 3), np.float32))) is np.ndarray


def test_repr_matches_torch():
    assert repr(nn.Linear(784, 256)) == repr(torch.nn.Linear(784, 256))
    assert repr(nn.Linear(3, 2, bias=False)) == repr(torch.nn.Linear(3, 2, bias=False))
    assert repr(nn.LazyLinear(10)) == repr(torch.nn.LazyLinear(10))


def test_no_bias():
    m = nn.Linear(3, 2, bias=False)
    assert m.bias is None and list(m.state_dict()) == ["weight"]


def model_with_fc1():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(4, 3)

        def forward(self, x):
            return self.fc1(x)

    return Net()


def test_feature_mismatch_message():
    net = model_with_fc1()
    w = net.fc1.weight.copy()
    with pytest.raises(ShapeError) as info:
        net(np.zeros((2, 5), np.float32))
    msg = str(info.value)
    assert "'fc1' (Linear)" in msg and "linear" in msg and "last dimension 4" in msg and "(2, 5)" in msg
    np.testing.assert_array_equal(net.fc1.weight, w)


def test_root_module_is_named_by_class():
    with pytest.raises(ShapeError, match=r"^module Linear: linear: .*last dimension 4"):
        nn.Linear(4, 3)(np.zeros(5, np.float32))


@pytest.mark.parametrize(
    "x,needles",
    [
        (np.ones((2, 4), np.int32), ["float32 or float64", "int32"]),
        (np.ones((2, 4), bool), ["bool"]),
        (np.ones((2, 4), np.complex128), ["complex128"]),
        (np.ones((2, 4), np.float64), ["expected float32", "got float64"]),
    ],
)
def test_dtype_errors(x, needles):
    net = model_with_fc1()
    with pytest.raises(DTypeError) as info:
        net(x)
    for needle in ("'fc1' (Linear)", *needles):
        assert needle in str(info.value)


def test_zero_dim_input_is_a_shape_error():
    with pytest.raises(ShapeError, match="0-d"):
        nn.Linear(4, 3)(np.float32(1.0))


@pytest.mark.parametrize("args", [(-1, 3), (3, -2), (2.5, 3), (True, 3)])
def test_bad_sizes(args):
    with pytest.raises(ConfigError, match="Linear"):
        nn.Linear(*args)


def test_bad_dtype_config():
    with pytest.raises(ConfigError, match="float32 or float64"):
        nn.Linear(3, 2, dtype=np.int64)


def test_double_float_to():
    m = nn.Linear(3, 2)
    w32 = np.asarray(m.weight).copy()
    m.double()
    assert m.weight.dtype == np.float64 and m.bias.dtype == np.float64 and isinstance(m.weight, nn.Parameter)
    np.testing.assert_array_equal(m.weight, w32.astype(np.float64))
    assert m(np.ones((1, 3))).dtype == np.float64
    m.to(np.float32)
    assert m.weight.dtype == np.float32
    with pytest.raises(ConfigError):
        m.to(np.int8)


# ------------------------------------------------------------------------------------------ reassigned params
P = nn.Parameter


def bn_then_linear():
    """BatchNorm1d(4) in train mode first: its update must be undone when the Linear fails."""
    lf.manual_seed(0)
    return nn.Sequential(nn.BatchNorm1d(4), nn.Linear(4, 3))


def state(model):
    return {k: (v.dtype.str, np.array(v).tolist()) for k, v in model.state_dict().items()}


@pytest.mark.parametrize(
    "attr,value,error,needle",
    [
        ("weight", P(np.zeros((3, 5), np.float32)), ShapeError,
         "expected weight of shape (3, 4) (out_features, in_features), got (3, 5)"),
        ("weight", P(np.zeros((2, 4), np.float32)), ShapeError, "expected weight of shape (3, 4)"),
        ("weight", P(np.zeros(4, np.float32)), ShapeError, "got (4,)"),
        ("weight", P(np.zeros((3, 4), np.float16)), DTypeError,
         "expected weight of dtype float32 or float64, got float16"),
        ("weight", P(np.zeros((3, 4), ">f4")), DTypeError,
         "expected weight of dtype float32 or float64, got >f4"),
        ("weight", None, ConfigError, "expected a weight of shape (3, in_features), got None"),
        ("bias", P(np.zeros(4, np.float32)), ShapeError,
         "expected bias of shape (3,) (out_features), got (4,)"),
        ("bias", P(np.zeros(1, np.float32)), ShapeError,
         "expected bias of shape (3,) (out_features), got (1,)"),
        ("bias", P(np.zeros(3)), DTypeError,
         "expected bias of dtype float32 (like weight), got float64"),
        ("bias", P(np.zeros(3, ">f4")), DTypeError, "expected bias of dtype '<f4' (like weight), got '>f4'"),
    ],
)
def test_reassigned_params_are_checked_before_anything_changes(attr, value, error, needle):
    model = bn_then_linear()
    setattr(model[1], attr, value)
    before = state(model)
    with pytest.raises(error) as info:
        model(np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32))
    assert str(info.value).startswith("module '1' (Linear): linear: ")
    assert needle in str(info.value)
    assert state(model) == before


def test_deleted_weight_is_a_config_error():
    model = bn_then_linear()
    del model[1].weight
    with pytest.raises(ConfigError, match=r"^module '1' \(Linear\): linear: expected parameter 'weight'"):
        model(np.ones((2, 4), np.float32))


def test_dtype_mismatch_message_tells_byte_orders_apart():
    with pytest.raises(DTypeError) as info:
        nn.functional.as_float_input(np.ones(2, np.float32), "here", np.dtype(">f4"))
    assert "expected '>f4' input to match the module's '>f4' parameters, got '<f4' input" in str(info.value)
