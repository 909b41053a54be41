"""Conv2d / LazyConv2d / F.conv2d against torch: every option, init, lazy resolution, errors, tracing."""

import copy

import numpy as np
import pytest

import lazyfuse as lf
from lazyfuse import nn
from lazyfuse.errors import ConfigError, DTypeError, InferenceError, ShapeError, StateDictError, TraceError
from lazyfuse.ir import UNKNOWN
from lazyfuse.nn import functional as F

torch = pytest.importorskip("torch")
torch.set_num_threads(2)
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")

TOL = {np.float32: dict(rtol=1e-4, atol=1e-5), np.float64: dict(rtol=1e-10, atol=1e-12)}
TORCH_DTYPE = {np.float32: torch.float32, np.float64: torch.float64}


def rand(*shape, dtype=np.float32, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def torch_copy(ours, dtype=np.float32):
    theirs = torch.nn.Conv2d(ours.in_channels, ours.out_channels, ours.kernel_size, ours.stride, ours.padding,
                             ours.dilation, ours.groups, bias=ours.bias is not None, dtype=TORCH_DTYPE[dtype])
    with torch.no_grad():
        theirs.weight.copy_(torch.from_numpy(np.asarray(ours.weight)))
        if ours.bias is not None:
            theirs.bias.copy_(torch.from_numpy(np.asarray(ours.bias)))
    return theirs


# (in_channels, out_channels, kernel_size, options, input shape)
CASES = [
    (4, 6, 3, {}, (2, 4, 7, 6)),
    (4, 6, (3, 2), {"stride": 2}, (2, 4, 9, 8)),
    (3, 5, 3, {"stride": (2, 1), "padding": (1, 2)}, (1, 3, 6, 5)),
    (3, 5, 3, {"padding": 1}, (2, 3, 5, 5)),
    (3, 4, 3, {"padding": "same"}, (2, 3, 5, 6)),
    (3, 4, 4, {"padding": "same"}, (2, 3, 5, 6)),  # even kernel: one more at the bottom / right
    (3, 4, (2, 3), {"padding": "same", "dilation": (2, 1)}, (1, 3, 6, 5)),
    (3, 4, 3, {"padding": "valid"}, (2, 3, 5, 5)),
    (3, 4, 3, {"dilation": 2}, (2, 3, 7, 8)),
    (3, 4, 2, {"dilation": (1, 3), "padding": (0, 1), "stride": (1, 2)}, (1, 3, 5, 9)),
    (4, 6, 3, {"groups": 2}, (2, 4, 5, 5)),
    (4, 8, 3, {"groups": 4, "padding": 1}, (2, 4, 5, 5)),  # depthwise, multiplier 2
    (4, 4, 3, {"groups": 4, "bias": False}, (1, 4, 5, 7)),
    (3, 4, 3, {"bias": False, "stride": 3}, (1, 3, 10, 11)),
    (2, 3, 1, {}, (3, 2, 1, 1)),
    (3, 4, 3, {}, (0, 3, 5, 5)),  # empty batch
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_module_matches_torch(case, dtype):
    cin, cout, k, kw, shape = CASES[case]
    lf.manual_seed(case)
    ours = nn.Conv2d(cin, cout, k, dtype=dtype, **kw)
    theirs = torch_copy(ours, dtype)
    assert ours.kernel_size == theirs.kernel_size and ours.stride == theirs.stride
    assert ours.padding == theirs.padding and ours.dilation == theirs.dilation
    assert ours.weight.shape == tuple(theirs.weight.shape)
    x = rand(*shape, dtype=dtype, seed=case)
    y = ours(x)
    want = theirs(torch.from_numpy(x)).detach().numpy()
    assert type(y) is np.ndarray and y.dtype == dtype and y.shape == want.shape
    np.testing.assert_allclose(y, want, **TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_functional_matches_torch(case, dtype):
    cin, cout, k, kw, shape = CASES[case]
    kw = dict(kw)
    bias = kw.pop("bias", True)
    groups = kw.get("groups", 1)
    kh, kwid = (k, k) if isinstance(k, int) else k
    w = rand(cout, cin // groups, kh, kwid, dtype=dtype, seed=1)
    b = rand(cout, dtype=dtype, seed=2) if bias else None
    x = rand(*shape, dtype=dtype, seed=3)
    y = F.conv2d(x, w, b, **kw)
    want = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w),
                                      None if b is None else torch.from_numpy(b), **kw).numpy()
    assert y.dtype == dtype and y.shape == want.shape
    np.testing.assert_allclose(y, want, **TOL[dtype])


def test_settings_and_repr_like_torch():
    cases = [
        ((3, 64, 5), {}),
        ((4, 6, (3, 2)), dict(stride=2, padding=(1, 0), dilation=2, groups=2, bias=False)),
        ((4, 6, 3), dict(padding="same")),
        ((4, 6, 3), dict(padding="valid")),
        ((4, 6, [3, 2]), dict(stride=[1, 2])),
    ]
    for args, kw in cases:
        ours, theirs = nn.Conv2d(*args, **kw), torch.nn.Conv2d(*args, **kw)
        assert repr(ours) == repr(theirs)
        for name in ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups",
                     "padding_mode"):
            assert getattr(ours, name) == getattr(theirs, name), name
    assert repr(nn.LazyConv2d(6, 3)) == repr(torch.nn.LazyConv2d(6, 3))
    assert list(nn.Conv2d(2, 3, 2).state_dict()) == ["weight", "bias"]
    assert list(nn.Conv2d(2, 3, 2, bias=False).state_dict()) == ["weight"]


# ------------------------------------------------------------------------------------------ init
def test_init_bounds_like_torch():
    lf.manual_seed(0)
    torch.manual_seed(0)  # both sides' draws fixed: the max/min comparisons below are deterministic
    ours = nn.Conv2d(8, 64, 3, groups=2)
    theirs = torch.nn.Conv2d(8, 64, 3, groups=2)
    bound = 1 / np.sqrt(4 * 3 * 3)  # fan_in = in_channels / groups * kh * kw
    for a, b in ((ours.weight, theirs.weight), (ours.bias, theirs.bias)):
        assert a.min() >= -bound and a.max() <= bound
        assert abs(float(a.max()) - float(b.detach().max())) < 0.1 * bound
        assert abs(float(a.min()) - float(b.detach().min())) < 0.1 * bound
    assert abs(float(ours.weight.std()) - bound / np.sqrt(3)) < 0.05 * bound


@pytest.mark.parametrize("bias", [True, False])
def test_draws_weight_then_bias_from_the_seeded_generator(bias):
    lf.manual_seed(7)
    m = nn.Conv2d(4, 6, (2, 3), groups=2, bias=bias)
    gen = np.random.default_rng(7)
    bound = 1 / np.sqrt(2 * 2 * 3)
    np.testing.assert_array_equal(m.weight, gen.uniform(-bound, bound, (6, 2, 2, 3)).astype(np.float32))
    if bias:
        np.testing.assert_array_equal(m.bias, gen.uniform(-bound, bound, 6).astype(np.float32))
    lf.manual_seed(7)
    lazy = nn.LazyConv2d(6, (2, 3), groups=2, bias=bias)
    lazy(rand(1, 4, 3, 3))
    lf.manual_seed(7)
    static = nn.LazyConv2d(6, (2, 3), groups=2, bias=bias).materialize(in_channels=4)
    for other in (lazy, static):
        for a, b in zip(m.parameters(), other.parameters()):
            np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------------------------ lazy
def test_lazy_resolves_on_first_forward_with_groups_and_matches_torch():
    lf.manual_seed(0)
    m = nn.LazyConv2d(6, 3, padding=1, groups=2)
    assert m.in_channels == 0 and m.has_uninitialized_params()
    assert m.placeholder_shapes() == {"weight": (6, None, 3, 3), "bias": (6,)}
    assert m.placeholder_shapes({"in_channels": 4}) == {"weight": (6, 2, 3, 3), "bias": (6,)}
    assert m.dims_from_shapes("weight", (6, 2, 3, 3)) == {"in_channels": 4}
    x = rand(2, 4, 5, 5)
    y = m(x)
    assert type(m) is nn.Conv2d and m.in_channels == 4 and m.weight.shape == (6, 2, 3, 3)
    np.testing.assert_allclose(y, torch_copy(m)(torch.from_numpy(x)).detach().numpy(), **TOL[np.float32])


def frozen(model):
    items = [(k, repr(v) if nn.is_uninitialized(v) else np.array(v).tolist())
             for k, v in model.state_dict().items()]
    return items, [(n, type(m).__name__, getattr(m, "in_channels", None)) for n, m in model.named_modules()]


@pytest.mark.parametrize("x,error,needle", [
    (rand(2, 4, 5), ShapeError, "expected a 4D input (N, C, H, W), got input of shape (2, 4, 5); unbatched"),
    (rand(2, 3, 5, 5), ShapeError,
     "expected input channels divisible by groups=2 (in_channels), got input of shape (2, 3, 5, 5)"),
    (rand(2, 0, 5, 5), ShapeError, "cannot infer in_channels from an input of shape (2, 0, 5, 5)"),
    (rand(2, 4, 2, 5), ShapeError, "kernel size (3, 3) (dilated: (3, 3)) can't be greater than the padded "
                                   "input size (2, 5)"),
    (rand(2, 4, 5, 5, dtype=np.float64), DTypeError, "expected float32 input"),
    (np.ones((2, 4, 5, 5), np.int32), DTypeError, "float32 or float64"),
])
def test_failing_first_forward_leaves_lazy_conv_lazy(x, error, needle):
    lf.manual_seed(9)
    model = nn.Sequential(nn.LazyConv2d(6, 3, groups=2))
    before = frozen(model)
    with pytest.raises(error) as info:
        model(x)
    assert str(info.value).startswith("module '0' (LazyConv2d): conv2d: ") and needle in str(info.value)
    assert frozen(model) == before and type(model[0]) is nn.LazyConv2d
    model[0].materialize(in_channels=4)  # the generator was not consumed
    lf.manual_seed(9)
    np.testing.assert_array_equal(model[0].weight, nn.Conv2d(4, 6, 3, groups=2).weight)


def test_materialize_rejects_channels_not_divisible_by_groups():
    m = nn.LazyConv2d(6, 3, groups=2)
    with pytest.raises(ConfigError, match="in_channels must be divisible by groups, got in_channels=5"):
        m.materialize(in_channels=5)
    assert type(m) is nn.LazyConv2d and m.has_uninitialized_params()


def test_lazy_resolves_from_a_spec_with_eager_draws_in_first_use_order():
    from lazyfuse.frontends.materialize import plan
    from lazyfuse.passes.manager import PassContext, run_passes

    def make():
        return nn.Sequential(nn.LazyConv2d(6, 3, groups=2), nn.LazyBatchNorm2d(), nn.ReLU(),
                             nn.LazyConv2d(4, 1), nn.Flatten(), nn.LazyLinear(3))

    lf.manual_seed(4)
    eager = make()
    eager(rand(2, 4, 6, 6))
    lf.manual_seed(4)
    static = make()
    g = lf.trace(static, ("N", 4, 6, 6))
    assert "@0.weight: f32[6,?,3,3] = param" in str(g)
    inferred = run_passes(g.copy(), ["infer_shapes"], PassContext(model=None))
    assert [(p, s) for p, _, s in plan(inferred, static)] == [
        ("0", {"in_channels": 4}), ("1", {"num_features": 6}), ("3", {"in_channels": 6}),
        ("5", {"in_features": 64})]
    lf.infer_shapes(g)
    assert [type(m) for m in static] == [type(m) for m in eager]
    assert static[0].weight.shape == (6, 2, 3, 3) and static[3].weight.shape == (4, 6, 1, 1)
    for (ka, va), (kb, vb) in zip(eager.state_dict().items(), static.state_dict().items()):
        assert ka == kb
        if "running" not in ka and "num_batches" not in ka:  # the eager one trained a step
            np.testing.assert_array_equal(va, vb, err_msg=ka)


def test_load_torch_state_dict_resolves_lazy_conv_with_groups():
    t = torch.nn.Conv2d(4, 6, 3, groups=2, padding=1)
    ours = nn.Sequential(nn.LazyConv2d(6, 3, groups=2, padding=1))
    ours.load_state_dict({"0." + k: v for k, v in t.state_dict().items()})
    assert type(ours[0]) is nn.Conv2d and ours[0].in_channels == 4
    x = rand(2, 4, 5, 5)
    np.testing.assert_allclose(ours(x), t(torch.from_numpy(x)).detach().numpy(), **TOL[np.float32])


@pytest.mark.parametrize("mutate,needles", [
    (lambda sd: sd.update(weight=np.zeros((6, 2, 2, 2), np.float32)),
     ["size mismatch for weight", "(6, in_channels/groups, 3, 3)", "(6, 2, 2, 2)"]),
    (lambda sd: sd.update(weight=np.zeros((5, 2, 3, 3), np.float32)), ["(5, 2, 3, 3)"]),
    (lambda sd: sd.update(weight=np.zeros((6, 2, 3), np.float32)), ["(6, 2, 3)"]),
    (lambda sd: sd.update(bias=np.zeros(5, np.float32)), ["size mismatch for bias", "(5,)", "(6,)"]),
    (lambda sd: sd.update(weight=nn.UninitializedParameter()), ["'weight' is missing or uninitialized"]),
])
def test_mismatched_load_into_lazy_conv_changes_nothing(mutate, needles):
    sd = {k: v.numpy() for k, v in torch.nn.Conv2d(4, 6, 3, groups=2).state_dict().items()}
    mutate(sd)
    m = nn.LazyConv2d(6, 3, groups=2)
    with pytest.raises(StateDictError) as info:
        m.load_state_dict(sd)
    for needle in needles:
        assert needle in str(info.value)
    assert type(m) is nn.LazyConv2d and m.has_uninitialized_params()


# ------------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize("args,kw,needle", [
    ((3, 4, 3), dict(groups=2),
     "Conv2d: in_channels must be divisible by groups, got in_channels=3 and groups=2"),
    ((4, 3, 3), dict(groups=2), "Conv2d: out_channels must be divisible by groups, got out_channels=3"),
    ((4, 4, 3), dict(groups=0), "Conv2d: groups must be a positive int, got 0"),
    ((4, 4, 3), dict(groups=True), "groups must be a positive int, got True"),
    ((4, 4, 3), dict(padding="foo"),
     "Conv2d: invalid padding string 'foo', should be one of 'same', 'valid'"),
    ((4, 4, 3), dict(stride=2, padding="same"), "padding='same' is not supported for strided convolutions"),
    ((4, 4, 3), dict(stride=(1, 2), padding="same"), "got stride=(1, 2)"),
    ((4, 4, 3), dict(padding_mode="reflect"),
     "Conv2d: padding_mode='reflect' is not supported yet (only 'zeros')"),
    ((4, 4, 3), dict(padding_mode="replicate"), "padding_mode='replicate' is not supported yet"),
    ((4, 4, 3), dict(padding_mode="circular"), "padding_mode='circular' is not supported yet"),
    ((4, 4, 3), dict(padding_mode="bad"),
     "padding_mode must be one of 'zeros', 'reflect', 'replicate', 'circular', got 'bad'"),
    ((4, 4, 0), {}, "Conv2d: kernel_size must be an int >= 1 or a pair of them, got 0"),
    ((4, 4, -1), {}, "kernel_size must be an int >= 1"),
    ((4, 4, True), {}, "kernel_size must be an int >= 1 or a pair of them, got True"),
    ((4, 4, (3,)), {}, "got (3,)"),
    ((4, 4, (3, 3, 3)), {}, "got (3, 3, 3)"),
    ((4, 4, 2.5), {}, "got 2.5"),
    ((4, 4, 3), dict(stride=0), "stride must be an int >= 1 or a pair of them, got 0"),
    ((4, 4, 3), dict(dilation=(1, 0)), "dilation must be an int >= 1 or a pair of them, got (1, 0)"),
    ((4, 4, 3), dict(padding=-1), "padding must be an int >= 0 or a pair of them, got -1"),
    ((0, 4, 3), {}, "Conv2d: in_channels must be an int >= 1, got 0"),
    ((True, 4, 3), {}, "in_channels must be an int >= 1, got True"),
    ((4, 0, 3), {}, "out_channels must be an int >= 1, got 0"),
    ((4, -2, 3), {}, "out_channels must be an int >= 1, got -2"),
    ((4, 4, 3), dict(dtype=np.int32), "Conv2d: dtype must be float32 or float64"),
])
def test_bad_configuration(args, kw, needle):
    with pytest.raises(ConfigError) as info:
        nn.Conv2d(*args, **kw)
    assert needle in str(info.value)
    with pytest.raises(ConfigError) as info:
        nn.LazyConv2d(*args[1:], **kw) if args[0] == 4 else nn.Conv2d(*args, **kw)
    assert needle.replace("Conv2d:", "LazyConv2d:" if args[0] == 4 else "Conv2d:") in str(info.value)


def state(model):
    return {k: (v.dtype.str, np.array(v).tolist()) for k, v in model.state_dict().items()}


def bn_then_conv():
    """BatchNorm2d(4) in train mode first: its update must be undone when the conv fails."""
    lf.manual_seed(0)
    return nn.Sequential(nn.BatchNorm2d(4), nn.Conv2d(4, 6, 3))


P = nn.Parameter


@pytest.mark.parametrize("x,error,needle", [
    (rand(4, 6, 6), ShapeError, "expected a 4D input (N, C, H, W), got input of shape (4, 6, 6); unbatched "
                                "(C, H, W) inputs are not supported: add the batch dim (x[None])"),
    (rand(2, 4), ShapeError, "expected a 4D input (N, C, H, W), got input of shape (2, 4)"),
    (rand(4), ShapeError, "got input of shape (4,)"),
    (rand(2, 5, 6, 6), ShapeError, "expected input with 4 channels at dim 1 (weight of shape (6, 4, 3, 3), "
                                   "groups=1), got input of shape (2, 5, 6, 6)"),
    (rand(2, 4, 2, 6), ShapeError, "kernel size (3, 3) (dilated: (3, 3)) can't be greater than the padded "
                                   "input size (2, 6), got input of shape (2, 4, 2, 6)"),
    (rand(2, 4, 6, 6, dtype=np.float64), DTypeError, "expected float32 input to match the module's float32"),
    (np.ones((2, 4, 6, 6), np.int64), DTypeError,
     "expected a float32 or float64 input array, got dtype int64"),
])
def test_bad_inputs_name_the_module_and_change_nothing(x, error, needle):
    model = nn.Sequential(nn.Identity(), nn.Conv2d(4, 6, 3))
    before = state(model)
    with pytest.raises(error) as info:
        model(x)
    assert str(info.value).startswith("module '1' (Conv2d): conv2d: ")
    assert needle in str(info.value)
    assert state(model) == before


@pytest.mark.parametrize("attr,value,error,needle", [
    ("weight", P(np.zeros((6, 4, 2, 2), np.float32)), ShapeError,
     "expected weight of shape (6, 4, 3, 3) (out_channels, in_channels/groups, kh, kw), got (6, 4, 2, 2)"),
    ("weight", P(np.zeros((6, 4, 3), np.float32)), ShapeError, "got (6, 4, 3)"),
    ("weight", P(np.zeros((6, 4, 3, 3), np.float16)), DTypeError,
     "expected weight of dtype float32 or float64, got float16"),
    ("weight", None, ConfigError,
     "expected a weight of shape (out_channels, in_channels/groups, kh, kw), got None"),
    ("bias", P(np.zeros(5, np.float32)), ShapeError, "expected bias of shape (6,) (out_channels), got (5,)"),
    ("bias", P(np.zeros(6)), DTypeError, "expected bias of dtype float32 (like weight), got float64"),
    ("stride", 0, ConfigError, "stride must be an int >= 1 or a pair of them, got 0"),
    ("padding", "full", ConfigError, "invalid padding string 'full'"),
    ("padding_mode", "circular", ConfigError, "padding_mode='circular' is not supported yet"),
    ("groups", 4, ConfigError, "out_channels must be divisible by groups, got out_channels=6 and groups=4"),
    ("kernel_size", (5, 5), ShapeError, "expected weight of shape (6, 4, 5, 5)"),
])
def test_reassigned_state_is_checked_before_anything_changes(attr, value, error, needle):
    model = bn_then_conv()
    setattr(model[1], attr, value)
    before = state(model)
    with pytest.raises(error) as info:
        model(rand(2, 4, 5, 5))
    assert str(info.value).startswith("module '1' (Conv2d): conv2d: ")
    assert needle in str(info.value)
    assert state(model) == before


def test_kernel_larger_than_input_after_a_train_step_changes_nothing():
    model = bn_then_conv()
    before = state(model)
    with pytest.raises(ShapeError, match="can't be greater than the padded input size"):
        model(rand(3, 4, 2, 2))
    assert state(model) == before


@pytest.mark.parametrize("call,error,needle", [
    (lambda: F.conv2d(rand(1, 3, 5, 5), np.ones((2, 3, 3, 3), np.int64)), DTypeError,
     "conv2d: expected a float32 or float64 weight, got dtype int64"),
    (lambda: F.conv2d(rand(1, 3, 5, 5), rand(2, 3, 3)), ShapeError, "conv2d: expected a 4D weight"),
    (lambda: F.conv2d(rand(1, 3, 5, 5, dtype=np.float64), rand(2, 3, 3, 3)), DTypeError,
     "expected float32 input to match the weight's float32"),
    (lambda: F.conv2d(rand(3, 5, 5), rand(2, 3, 3, 3)), ShapeError, "add the batch dim (x[None])"),
    (lambda: F.conv2d(rand(1, 4, 5, 5), rand(2, 3, 3, 3)), ShapeError,
     "conv2d: expected input with 3 channels at dim 1 (weight of shape (2, 3, 3, 3), groups=1)"),
    (lambda: F.conv2d(rand(1, 4, 5, 5), rand(3, 2, 3, 3), groups=2), ConfigError,
     "conv2d: out_channels must be divisible by groups, got out_channels=3 and groups=2"),
    (lambda: F.conv2d(rand(1, 4, 5, 5), rand(4, 2, 3, 3), rand(3), groups=2), ShapeError,
     "conv2d: expected bias of shape (4,) (out_channels), got (3,)"),
    (lambda: F.conv2d(rand(1, 4, 5, 5), rand(4, 4, 3, 3), rand(4, dtype=np.float64)), DTypeError,
     "expected bias of dtype float32 (like weight), got float64"),
    (lambda: F.conv2d(rand(1, 3, 5, 5), rand(2, 3, 3, 3), stride=2, padding="same"), ConfigError,
     "conv2d: padding='same' is not supported for strided convolutions"),
    (lambda: F.conv2d(rand(1, 3, 5, 5), rand(2, 3, 3, 3), padding="half"), ConfigError,
     "conv2d: invalid padding string 'half'"),
    (lambda: F.conv2d(rand(1, 3, 2, 5), rand(2, 3, 3, 3), dilation=(1, 3)), ShapeError,
     "kernel size (3, 3) (dilated: (3, 7)) can't be greater than the padded input size (2, 5)"),
])
def test_functional_errors(call, error, needle):
    with pytest.raises(error) as info:
        call()
    assert needle in str(info.value)


def test_double_and_deepcopy():
    m = nn.Conv2d(2, 3, 2).double()
    assert m.weight.dtype == np.float64 and isinstance(m.weight, nn.Parameter)
    assert m(rand(1, 2, 3, 3, dtype=np.float64)).dtype == np.float64
    clone = copy.deepcopy(nn.LazyConv2d(3, 2))
    clone(rand(1, 5, 3, 3))
    assert clone.in_channels == 5


# ------------------------------------------------------------------------------------------ tracing
class SimpleNet(nn.Module):
    def __init__(self, flatten="reshape"):
        super().__init__()
        self.conv = nn.Conv2d(3, 64, 5)
        self.fc = nn.LazyLinear(10)
        self.flatten = flatten

    def forward(self, x):
        x = self.conv(x)
        if self.flatten == "reshape":
            x = x.reshape(x.shape[0], -1)
        elif self.flatten == "view":
            x = x.view(x.size(0), -1)
        else:
            x = x.flatten(1)
        return self.fc(x)


class FeatureExtractor(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.relu2 = nn.ReLU()
        self.fc = nn.LazyLinear(10)

    def forward(self, x):
        x = self.relu2(self.conv2(self.relu1(self.conv1(x))))
        return self.fc(x.reshape(x.shape[0], -1))


def torch_twin(model):
    """A torch model with ``model``'s (materialized) weights and the same layout."""
    layers = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            layers.append(torch_copy(m))
        elif isinstance(m, nn.ReLU):
            layers.append(torch.nn.ReLU())
        elif isinstance(m, nn.Linear):
            lin = torch.nn.Linear(m.in_features, m.out_features)
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(np.asarray(m.weight)))
                lin.bias.copy_(torch.from_numpy(np.asarray(m.bias)))
            layers += [torch.nn.Flatten(), lin]
    return torch.nn.Sequential(*layers)


@pytest.mark.parametrize("make", [lambda: SimpleNet("reshape"), lambda: SimpleNet("view"),
                                  lambda: SimpleNet("flatten"), FeatureExtractor])
def test_seed_models_trace_resolve_and_compile(make):
    lf.manual_seed(0)
    model = make()
    spec = ("N", 3, 32, 32)
    g = lf.infer_shapes(lf.trace(model, spec))
    assert model.fc.in_features == 50176 and type(model.fc) is nn.Linear
    assert "conv2d[" in str(g)
    compiled = lf.compile(model, spec, backend="reference")
    x = rand(2, 3, 32, 32)
    want = torch_twin(model)(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(compiled(x), want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(model(x), want, rtol=1e-4, atol=1e-4)


def test_conv_attrs_in_the_ir():
    model = nn.Sequential(nn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 0),
                                    dilation=2, groups=2, bias=False))
    node = next(n for n in lf.trace(model, ("N", 4, 9, 8)).nodes if n.op == "conv2d")
    assert node.attrs == {"in_channels": 4, "out_channels": 6, "kernel_size": (3, 2), "stride": (2, 1),
                          "padding": (1, 1, 0, 0), "dilation": (2, 2), "groups": 2, "bias": False}
    same = nn.Sequential(nn.LazyConv2d(3, 4, padding="same"))
    node = next(n for n in lf.trace(same, ("N", 2, 6, 6)).nodes if n.op == "conv2d")
    assert node.attrs["padding"] == (1, 2, 1, 2) and node.attrs["in_channels"] is UNKNOWN
    assert str(node.type) == "f32[N,3,6,6]"


class FunctionalConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(rand(6, 2, 3, 3, seed=5))
        self.b = nn.Parameter(rand(6, seed=6))

    def forward(self, x):
        y = F.conv2d(x, self.w, self.b, padding="same", groups=2)
        return F.conv2d(y, self.w, None, stride=2, dilation=(1, 2), groups=3)


def test_functional_conv_traces_and_compiles():
    model = FunctionalConv()
    x = rand(2, 4, 7, 9)
    want = model(x)
    compiled = lf.compile(model, ("N", 4, 7, 9), backend="reference")
    np.testing.assert_allclose(compiled(x), want, rtol=1e-5, atol=1e-5)
    tw = torch.from_numpy(np.asarray(model.w))
    ref = torch.nn.functional.conv2d(torch.from_numpy(x), tw, torch.from_numpy(np.asarray(model.b)),
                                     padding="same", groups=2)
    ref = torch.nn.functional.conv2d(ref, tw, None, stride=2, dilation=(1, 2), groups=3)
    np.testing.assert_allclose(want, ref.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("model,spec,error,needle", [
    (nn.Sequential(nn.Conv2d(3, 4, 3)), ("N", 3, 8), TraceError,
     "module '0' (Conv2d): conv2d: expected a 4D input (N, C, H, W), got input of shape (N, 3, 8); "
     "unbatched"),
    (nn.Sequential(nn.Conv2d(3, 4, 3, padding_mode="zeros")), ("N", 3, 2, 2), InferenceError,
     "larger than the padded input"),
    (nn.Sequential(nn.Conv2d(3, 4, 3)), ("N", 5, 8, 8), InferenceError, "in_channels mismatch"),
    (nn.Sequential(nn.Conv2d(3, 4, 3)), ("N", 3, "H", 8), InferenceError, "spatial dims must be concrete"),
])
def test_trace_and_inference_errors(model, spec, error, needle):
    with pytest.raises(error) as info:
        lf.infer_shapes(lf.trace(model, spec))
    assert needle in str(info.value)


def test_reassigned_settings_are_checked_when_tracing():
    model = nn.Sequential(nn.Conv2d(3, 4, 3))
    model[0].padding_mode = "reflect"
    with pytest.raises(ConfigError, match=r"^module '0' \(Conv2d\): conv2d: padding_mode='reflect' is not "
                                          r"supported yet"):
        lf.trace(model, ("N", 3, 8, 8))
