"""MaxPool2d / F.max_pool2d against torch: every option, NaN, errors, tracing."""

import numpy as np
import pytest

import lazyfuse as lf
from lazyfuse import nn
from lazyfuse.errors import ConfigError, DTypeError, ShapeError, TraceError
from lazyfuse.nn import functional as F

torch = pytest.importorskip("torch")
torch.set_num_threads(2)


def rand(*shape, dtype=np.float32, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


# (options, input shape)
CASES = [
    (dict(kernel_size=2), (2, 3, 6, 6)),
    (dict(kernel_size=2), (1, 2, 5, 7)),  # odd sizes: the last row / column is dropped
    (dict(kernel_size=3, stride=1), (1, 2, 5, 5)),
    (dict(kernel_size=(3, 2), stride=(2, 1)), (2, 2, 7, 5)),
    (dict(kernel_size=3, stride=2, padding=1), (1, 3, 6, 7)),
    (dict(kernel_size=(3, 4), padding=(1, 2)), (1, 1, 7, 9)),
    (dict(kernel_size=2, dilation=2), (1, 2, 7, 7)),
    (dict(kernel_size=3, stride=2, dilation=(1, 2), padding=1), (2, 1, 8, 9)),
    (dict(kernel_size=2, ceil_mode=True), (1, 2, 5, 5)),
    (dict(kernel_size=3, stride=2, padding=1, ceil_mode=True), (1, 2, 6, 6)),
    (dict(kernel_size=3, stride=3, ceil_mode=True), (1, 1, 7, 4)),
    (dict(kernel_size=1), (2, 2, 3, 3)),
    (dict(kernel_size=2), (0, 2, 4, 4)),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_matches_torch(case, dtype):
    kw, shape = CASES[case]
    x = rand(*shape, dtype=dtype, seed=case)
    want = torch.nn.MaxPool2d(**kw)(torch.from_numpy(x)).numpy()
    for y in (nn.MaxPool2d(**kw)(x), F.max_pool2d(x, **kw)):
        assert type(y) is np.ndarray and y.dtype == dtype and y.shape == want.shape
        np.testing.assert_array_equal(y, want)


def test_nan_propagates_and_padding_is_minus_infinity():
    x = -np.abs(rand(1, 1, 4, 4)) - 1  # all negative: a zero padding would win
    x[0, 0, 0, 1] = np.nan
    kw = dict(kernel_size=3, stride=2, padding=1)
    want = torch.nn.functional.max_pool2d(torch.from_numpy(x), **kw).numpy()
    got = F.max_pool2d(x, **kw)
    np.testing.assert_array_equal(got, want)
    assert np.isnan(got[0, 0, 0, 0]) and np.isnan(got[0, 0, 0, 1]) and (got[0, 0, 1] < 0).all()


def test_settings_and_repr_like_torch():
    for kw in (dict(kernel_size=2), dict(kernel_size=(2, 3), stride=1, padding=1, dilation=2, ceil_mode=True),
               dict(kernel_size=3, stride=(2, 1))):
        ours, theirs = nn.MaxPool2d(**kw), torch.nn.MaxPool2d(**kw)
        assert repr(ours) == repr(theirs)
        for name in ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"):
            assert getattr(ours, name) == getattr(theirs, name), name
    assert nn.MaxPool2d(3).stride == 3 and list(nn.MaxPool2d(2).state_dict()) == []


@pytest.mark.parametrize("kw,needle", [
    (dict(kernel_size=0), "kernel_size must be an int >= 1 or a pair of them, got 0"),
    (dict(kernel_size=(2, -1)), "kernel_size must be an int >= 1 or a pair of them, got (2, -1)"),
    (dict(kernel_size=True), "got True"),
    (dict(kernel_size=2.0), "got 2.0"),
    (dict(kernel_size=2, stride=0), "stride must be an int >= 1 or a pair of them, got 0"),
    (dict(kernel_size=2, dilation=0), "dilation must be an int >= 1"),
    (dict(kernel_size=3, padding=-1), "padding must be an int >= 0 or a pair of them, got -1"),
    (dict(kernel_size=3, padding=2), "pad should be at most half of kernel size, got padding=(2, 2) and "
                                     "kernel_size=(3, 3)"),
    (dict(kernel_size=(4, 2), padding=(2, 2)), "got padding=(2, 2) and kernel_size=(4, 2)"),
    (dict(kernel_size=2, return_indices=True), "return_indices=True is not supported"),
    (dict(kernel_size=2, ceil_mode="yes"), "ceil_mode must be a bool, got 'yes'"),
])
def test_bad_configuration(kw, needle):
    with pytest.raises(ConfigError) as info:
        nn.MaxPool2d(**kw)
    assert str(info.value).startswith("MaxPool2d: ") and needle in str(info.value)
    with pytest.raises(ConfigError) as info:
        F.max_pool2d(rand(1, 1, 6, 6), **kw)
    assert str(info.value).startswith("max_pool2d: ") and needle in str(info.value)


@pytest.mark.parametrize("x,error,needle", [
    (rand(2, 6, 6), ShapeError, "expected a 4D input (N, C, H, W), got input of shape (2, 6, 6); unbatched "
                                "(C, H, W) inputs are not supported: add the batch dim (x[None])"),
    (rand(6, 6), ShapeError, "got input of shape (6, 6)"),
    (rand(1, 2, 1, 4), ShapeError, "output size (0, 2) is too small, got input of shape (1, 2, 1, 4) "
                                   "(kernel_size=(2, 2), stride=(2, 2), padding=(0, 0), dilation=(1, 1))"),
    (np.ones((1, 1, 4, 4), np.int64), DTypeError,
     "expected a float32 or float64 input array, got dtype int64"),
])
def test_bad_inputs(x, error, needle):
    model = nn.Sequential(nn.MaxPool2d(2))
    with pytest.raises(error) as info:
        model(x)
    assert str(info.value).startswith("module '0' (MaxPool2d): max_pool2d: ") and needle in str(info.value)
    with pytest.raises(error) as info:
        F.max_pool2d(x, 2)
    assert str(info.value).startswith("max_pool2d: ") and needle in str(info.value)


def test_reassigned_settings_are_checked_at_call_time():
    model = nn.Sequential(nn.MaxPool2d(2))
    model[0].padding = 5
    with pytest.raises(ConfigError,
                       match=r"^module '0' \(MaxPool2d\): max_pool2d: pad should be at most half"):
        model(rand(1, 1, 4, 4))
    model[0].padding, model[0].return_indices = 0, True
    with pytest.raises(ConfigError, match="return_indices=True is not supported"):
        model(rand(1, 1, 4, 4))
    with pytest.raises(ConfigError, match="return_indices=True is not supported"):
        lf.trace(model, ("N", 1, 4, 4))


class Pools(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)

    def forward(self, x):
        return F.max_pool2d(self.pool(self.conv(x)), (2, 1), dilation=(1, 2))


def test_trace_and_compile_with_the_reference_backend():
    lf.manual_seed(0)
    model = Pools()
    g = lf.trace(model, ("N", 2, 9, 10))
    pools = [n for n in g.nodes if n.op == "max_pool2d"]
    assert [n.attrs for n in pools] == [
        {"kernel_size": (3, 3), "stride": (2, 2), "padding": (1, 1), "dilation": (1, 1), "ceil_mode": True},
        {"kernel_size": (2, 1), "stride": (2, 1), "padding": (0, 0), "dilation": (1, 2), "ceil_mode": False}]
    x = rand(3, 2, 9, 10)
    want = model(x)
    compiled = lf.compile(model, ("N", 2, 9, 10), backend="reference")
    np.testing.assert_array_equal(compiled(x), want)
    assert str(pools[-1].type) == f"f32[N,4,{want.shape[2]},{want.shape[3]}]"


def test_trace_rejects_non_4d_inputs_with_the_eager_message():
    with pytest.raises(TraceError, match=r"module '0' \(MaxPool2d\): max_pool2d: expected a 4D input "
                                         r"\(N, C, H, W\), got input of shape \(N, 4, 4\); unbatched"):
        lf.trace(nn.Sequential(nn.MaxPool2d(2)), ("N", 4, 4))


def test_output_too_small_is_reported_by_infer_shapes():
    with pytest.raises(lf.InferenceError, match="max_pool2d: output size"):
        lf.infer_shapes(lf.trace(nn.Sequential(nn.MaxPool2d(3)), ("N", 1, 2, 5)))
