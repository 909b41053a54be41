"""BatchNorm1d / LazyBatchNorm1d against torch, for every option combination, and their errors."""

import itertools

import numpy as np
import pytest

import lazyfuse as lf
from lazyfuse import nn
from lazyfuse.errors import ConfigError, DTypeError, ShapeError, StateError

torch = pytest.importorskip("torch")
torch.set_num_threads(2)

TOL = {np.float32: dict(rtol=1e-5, atol=1e-5), np.float64: dict(rtol=1e-12, atol=1e-12)}
TORCH_DTYPE = {np.float32: torch.float32, np.float64: torch.float64}

COMBOS = list(
    itertools.product(
        [True, False],  # affine
        [True, False],  # track_running_stats
        [0.1, None],  # momentum
        [False, True],  # lazy
        [2, 3],  # input rank
        [np.float32, np.float64],
    )
)


def snapshot(model):
    """Everything a failing call must leave alone: arrays (copied), placeholders, classes, sizes."""
    state = {}
    for k, v in model.state_dict().items():
        state[k] = repr(v) if nn.is_uninitialized(v) else np.array(v, copy=True)
    classes = [(name, type(m).__name__) for name, m in model.named_modules()]
    sizes = [(getattr(m, "num_features", None), getattr(m, "in_features", None)) for m in model.modules()]
    return state, classes, sizes


def assert_same_snapshot(a, b):
    assert a[1] == b[1] and a[2] == b[2]
    assert a[0].keys() == b[0].keys()
    for k in a[0]:
        if isinstance(a[0][k], str):
            assert a[0][k] == b[0][k]
        else:
            np.testing.assert_array_equal(a[0][k], b[0][k], err_msg=k)


def make_pair(affine, track, momentum, lazy, dtype, c):
    tdt = TORCH_DTYPE[dtype]
    kw = dict(eps=1e-5, momentum=momentum, affine=affine, track_running_stats=track)
    if lazy:
        return nn.LazyBatchNorm1d(dtype=dtype, **kw), torch.nn.LazyBatchNorm1d(dtype=tdt, **kw)
    return nn.BatchNorm1d(c, dtype=dtype, **kw), torch.nn.BatchNorm1d(c, dtype=tdt, **kw)


def compare_state(ours, theirs, tol):
    for name in ("running_mean", "running_var", "weight", "bias"):
        a, b = getattr(ours, name), getattr(theirs, name)
        assert (a is None) == (b is None), name
        if a is not None:
            np.testing.assert_allclose(a, b.detach().numpy(), **tol, err_msg=name)
    if theirs.num_batches_tracked is None:
        assert ours.num_batches_tracked is None
    else:
        assert ours.num_batches_tracked.dtype == np.int64 and ours.num_batches_tracked.shape == ()
        assert int(ours.num_batches_tracked) == int(theirs.num_batches_tracked)


@pytest.mark.parametrize("affine,track,momentum,lazy,rank,dtype", COMBOS)
def test_matches_torch_train_then_eval(affine, track, momentum, lazy, rank, dtype):
    rng = np.random.default_rng(COMBOS.index((affine, track, momentum, lazy, rank, dtype)))
    c = 4
    shape = (6, c) if rank == 2 else (5, c, 3)
    ours, theirs = make_pair(affine, track, momentum, lazy, dtype, c)
    tol = TOL[dtype]
    nbt = ours.num_batches_tracked
    for step in range(3):
        x = (rng.standard_normal(shape) * 3 + 1.5).astype(dtype)
        y = ours(x)
        ty = theirs(torch.from_numpy(x)).detach().numpy()
        assert y.dtype == dtype and type(y) is np.ndarray
        np.testing.assert_allclose(y, ty, **tol)
        compare_state(ours, theirs, tol)
        if step == 0:
            assert type(ours) is nn.BatchNorm1d and ours.num_features == c
            if affine:  # random affine params in both so they take part in the comparison
                w, b = rng.uniform(0.5, 2, c).astype(dtype), rng.standard_normal(c).astype(dtype)
                ours.load_state_dict({**ours.state_dict(), "weight": w, "bias": b})
                with torch.no_grad():
                    theirs.weight.copy_(torch.from_numpy(w))
                    theirs.bias.copy_(torch.from_numpy(b))
    if track:
        assert ours.num_batches_tracked is nbt  # updated in place, never replaced
    ours.eval()
    theirs.eval()
    x = (rng.standard_normal(shape) * 2).astype(dtype)
    np.testing.assert_allclose(ours(x), theirs(torch.from_numpy(x)).detach().numpy(), **tol)
    compare_state(ours, theirs, tol)
    # eval with one sample is fine when running stats are tracked
    x1 = x[:1]
    if track:
        np.testing.assert_allclose(ours(x1), theirs(torch.from_numpy(x1)).detach().numpy(), **tol)


def test_running_var_is_unbiased_and_momentum_none_is_cumulative():
    bn = nn.BatchNorm1d(2, momentum=None, dtype=np.float64)
    xs = [np.random.default_rng(i).standard_normal((4, 2)) for i in range(3)]
    for x in xs:
        bn(x)
    np.testing.assert_allclose(bn.running_mean, np.mean([x.mean(0) for x in xs], axis=0), rtol=1e-12)
    # cumulative average of the unbiased variances, starting from the initial 1 (replaced at step 1)
    np.testing.assert_allclose(bn.running_var, np.mean([x.var(0, ddof=1) for x in xs], axis=0), rtol=1e-12)
    assert int(bn.num_batches_tracked) == 3


def test_train_normalizes_with_biased_variance():
    x = np.random.default_rng(0).standard_normal((8, 3, 2))
    bn = nn.BatchNorm1d(3, dtype=np.float64)
    y = bn(x)
    ref = (x - x.mean((0, 2), keepdims=True)) / np.sqrt(x.var((0, 2), keepdims=True) + 1e-5)
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)


def test_float32_statistics_accumulate_in_float64():
    # A large offset makes a float32 accumulation lose the small variance.
    rng = np.random.default_rng(0)
    x = (1000.0 + rng.standard_normal((64, 3)) * 1e-2).astype(np.float32)
    bn = nn.BatchNorm1d(3, momentum=1.0)
    bn(x)
    np.testing.assert_allclose(bn.running_var, x.astype(np.float64).var(0, ddof=1), rtol=1e-6)


def test_track_running_stats_false_uses_batch_stats_in_eval():
    bn = nn.BatchNorm1d(3, track_running_stats=False, dtype=np.float64).eval()
    assert bn.running_mean is None and bn.running_var is None and bn.num_batches_tracked is None
    assert list(bn.state_dict()) == ["weight", "bias"]
    x = np.random.default_rng(1).standard_normal((5, 3)) + 4
    np.testing.assert_allclose(bn(x).mean(0), 0, atol=1e-12)


def test_affine_false_has_no_weight_or_bias():
    bn = nn.BatchNorm1d(3, affine=False)
    assert bn.weight is None and bn.bias is None
    assert list(bn.state_dict()) == ["running_mean", "running_var", "num_batches_tracked"]
    assert len(list(bn.parameters())) == 0


def test_repr_matches_torch():
    cases = [
        (nn.BatchNorm1d(256), torch.nn.BatchNorm1d(256)),
        (
            nn.BatchNorm1d(3, eps=1e-3, momentum=None, affine=False),
            torch.nn.BatchNorm1d(3, 1e-3, None, False),
        ),
        (nn.LazyBatchNorm1d(track_running_stats=False), torch.nn.LazyBatchNorm1d(track_running_stats=False)),
        (nn.BatchNorm1d(3, bias=False), torch.nn.BatchNorm1d(3, bias=False)),
    ]
    for ours, theirs in cases:
        assert repr(ours) == repr(theirs)


def test_bias_false_matches_torch():
    ours, theirs = nn.BatchNorm1d(3, bias=False), torch.nn.BatchNorm1d(3, bias=False)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    x = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    np.testing.assert_allclose(ours(x), theirs(torch.from_numpy(x)).detach().numpy(), rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------ errors
def bn_model(lazy=False):
    bn = nn.LazyBatchNorm1d() if lazy else nn.BatchNorm1d(10)
    model = nn.Sequential(nn.Identity(), nn.Identity(), bn)
    if not lazy:
        model(np.random.default_rng(0).standard_normal((4, 10)).astype(np.float32))  # non-trivial stats
    return model


@pytest.mark.parametrize("lazy", [False, True])
@pytest.mark.parametrize(
    "x,error,needles",
    [
        (np.zeros((4, 10, 2, 2), np.float32), ShapeError, ["expected 2D or 3D input (got 4D input)"]),
        (np.zeros((4,), np.float32), ShapeError, ["expected 2D or 3D input (got 1D input)"]),
        (
            np.ones((1, 10), np.float32),
            ShapeError,
            ["expected more than 1 value per channel when training, got input size (1, 10)"],
        ),
        (np.ones((1, 10, 1), np.float32), ShapeError, ["got input size (1, 10, 1)"]),
        (np.ones((4, 10), np.int64), DTypeError, ["float32 or float64", "int64"]),
        (np.ones((4, 10), bool), DTypeError, ["float32 or float64", "bool"]),
        (np.ones((4, 10), np.complex64), DTypeError, ["complex64"]),
        (np.ones((4, 10), np.float64), DTypeError, ["expected float32", "got float64"]),
    ],
)
def test_errors_name_module_and_change_nothing(lazy, x, error, needles):
    model = bn_model(lazy)
    before = snapshot(model)
    with pytest.raises(error) as info:
        model(x)
    msg = str(info.value)
    assert "'2'" in msg and ("LazyBatchNorm1d" if lazy else "BatchNorm1d") in msg and "batch_norm" in msg
    for needle in needles:
        assert needle in msg
    assert_same_snapshot(before, snapshot(model))
    assert isinstance(model[2], nn.LazyBatchNorm1d) == lazy


def test_feature_mismatch_names_expected_and_got():
    model = bn_model()
    before = snapshot(model)
    with pytest.raises(ShapeError, match=r"'2' \(BatchNorm1d\).*10 channels.*\(4, 7\)"):
        model(np.zeros((4, 7), np.float32))
    assert_same_snapshot(before, snapshot(model))


@pytest.mark.parametrize("shape", [(0, 3), (0, 3, 4), (2, 3, 0)])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_empty_batch_in_train_gives_empty_output_and_only_counts_like_torch(shape, momentum):
    bn = nn.BatchNorm1d(3, momentum=momentum)
    bn.running_mean[:] = [1.0, 2.0, 3.0]
    tbn = torch.nn.BatchNorm1d(3, momentum=momentum)
    tbn.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in bn.state_dict().items()})
    y = bn(np.empty(shape, np.float32))
    with torch.no_grad():
        want = tbn(torch.from_numpy(np.empty(shape, np.float32)))
    assert y.shape == tuple(want.shape) and y.dtype == np.float32
    for k, v in tbn.state_dict().items():
        np.testing.assert_array_equal(np.asarray(bn.state_dict()[k]), v.numpy(), err_msg=k)
    assert int(bn.num_batches_tracked) == 1
    bn.eval()
    assert bn(np.empty(shape, np.float32)).shape == shape


def test_one_sample_in_train_with_untracked_stats_raises_also_in_eval():
    bn = nn.BatchNorm1d(3, track_running_stats=False).eval()
    with pytest.raises(ShapeError, match="more than 1 value per channel"):
        bn(np.ones((1, 3), np.float32))


@pytest.mark.parametrize(
    "kw",
    [
        dict(eps=0),
        dict(eps=-1e-5),
        dict(eps=float("nan")),
        dict(eps=float("inf")),
        dict(eps="a"),
        dict(momentum=-0.1),
        dict(momentum="x"),
        dict(momentum=1.5),
        dict(momentum=float("nan")),
        dict(momentum=True),
    ],
)
@pytest.mark.parametrize("cls", ["BatchNorm1d", "LazyBatchNorm1d"])
def test_bad_config_raises(kw, cls):
    args = (3,) if cls == "BatchNorm1d" else ()
    with pytest.raises(ConfigError, match=cls + ": " + next(iter(kw))):
        getattr(nn, cls)(*args, **kw)


def test_momentum_bounds_are_inclusive():
    for m in (0, 0.0, 1, 1.0, None):
        nn.BatchNorm1d(2, momentum=m)


def test_bad_num_features_and_dtype():
    with pytest.raises(ConfigError, match="num_features"):
        nn.BatchNorm1d(-1)
    with pytest.raises(ConfigError, match="dtype"):
        nn.BatchNorm1d(3, dtype=np.int32)


def test_float64_module_rejects_float32_input():
    bn = nn.BatchNorm1d(3, dtype=np.float64)
    with pytest.raises(DTypeError, match="expected float64 .*got float32"):
        bn(np.ones((2, 3), np.float32))


def test_to_double_and_float():
    lf.manual_seed(0)
    bn = nn.BatchNorm1d(3).double()
    assert bn.weight.dtype == np.float64 and bn.running_var.dtype == np.float64
    assert bn.num_batches_tracked.dtype == np.int64
    assert isinstance(bn.weight, nn.Parameter)
    assert bn(np.ones((2, 3))).dtype == np.float64
    bn.float()
    assert bn.running_mean.dtype == np.float32


# ------------------------------------------------------------------------------------------ reassigned state
P = nn.Parameter


def two_bns(train=True):
    """Two BatchNorm1d(3): a failure in the second must also undo the first one's update."""
    lf.manual_seed(0)
    model = nn.Sequential(nn.BatchNorm1d(3), nn.BatchNorm1d(3))
    model(np.random.default_rng(1).standard_normal((4, 3)).astype(np.float32))  # non-trivial stats
    return model.train(train)


def _delete(name):
    return lambda bn: delattr(bn, name)


STATE_MUTATIONS = [
    ("weight", lambda bn: setattr(bn, "weight", P(np.ones(1, np.float32))), ShapeError,
     ["expected weight of shape (3,) (num_features), got (1,)"]),
    ("weight4", lambda bn: setattr(bn, "weight", P(np.ones(4, np.float32))), ShapeError,
     ["expected weight of shape (3,)", "got (4,)"]),
    ("mean1", lambda bn: setattr(bn, "running_mean", np.zeros(1, np.float32)), ShapeError,
     ["expected running_mean of shape (3,) (num_features), got (1,)"]),
    ("var4", lambda bn: setattr(bn, "running_var", np.ones(4, np.float32)), ShapeError,
     ["expected running_var of shape (3,)", "got (4,)"]),
    ("var_f64", lambda bn: setattr(bn, "running_var", np.ones(3)), DTypeError,
     ["expected running_var of dtype float32 (like weight), got float64"]),
    ("mean_int", lambda bn: setattr(bn, "running_mean", np.zeros(3, np.int64)), DTypeError,
     ["expected running_mean of dtype float32 or float64, got int64"]),
    ("mean_big_endian", lambda bn: setattr(bn, "running_mean", np.zeros(3, ">f4")), DTypeError,
     ["expected running_mean of dtype float32 or float64, got >f4"]),
    ("var_none", lambda bn: setattr(bn, "running_var", None), ConfigError,
     ["expected running_mean and running_var to be both arrays or both None, got running_var=None"]),
    ("mean_none", lambda bn: setattr(bn, "running_mean", None), ConfigError, ["got running_mean=None"]),
    ("var_deleted", _delete("running_var"), ConfigError,
     ["expected buffer 'running_var' (an array or None), got no such buffer (it was deleted)"]),
    ("weight_deleted", _delete("weight"), ConfigError, ["expected parameter 'weight'"]),
]
TRAIN_ONLY = [
    ("count_f32", lambda bn: setattr(bn, "num_batches_tracked", np.zeros((), np.float32)), DTypeError,
     ["expected num_batches_tracked of dtype int64, got float32"]),
    ("count_1d", lambda bn: setattr(bn, "num_batches_tracked", np.zeros(2, np.int64)), ShapeError,
     ["expected num_batches_tracked of shape (), got (2,)"]),
    ("count_none", lambda bn: setattr(bn, "num_batches_tracked", None), ConfigError,
     ["expected num_batches_tracked to be a 0-d int64 array", "got None"]),
]


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("case", [c[0] for c in STATE_MUTATIONS + TRAIN_ONLY])
def test_reassigned_state_is_checked_before_anything_changes(case, train):
    _, mutate, error, needles = next(c for c in STATE_MUTATIONS + TRAIN_ONLY if c[0] == case)
    model = two_bns(train)
    mutate(model[1])
    before = snapshot(model)
    x = np.random.default_rng(2).standard_normal((5, 3)).astype(np.float32)
    if not train and case.startswith("count"):
        model(x)  # eval never reads num_batches_tracked, like torch
        return
    with pytest.raises(error) as info:
        model(x)
    msg = str(info.value)
    assert msg.startswith("module '1' (BatchNorm1d): batch_norm: ")
    for needle in needles:
        assert needle in msg
    assert_same_snapshot(before, snapshot(model))


def test_unset_weight_is_allowed_like_torch():
    ours, theirs = nn.BatchNorm1d(3), torch.nn.BatchNorm1d(3)
    ours.weight, theirs.weight = None, None
    x = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    np.testing.assert_allclose(ours(x), theirs(torch.from_numpy(x)).detach().numpy(), rtol=1e-5, atol=1e-5)
    compare_state(ours, theirs, TOL[np.float32])


@pytest.mark.parametrize("name", ["running_mean", "running_var", "num_batches_tracked"])
def test_read_only_running_state_fails_before_any_update_in_train(name):
    model = two_bns()
    getattr(model[1], name).setflags(write=False)
    before = snapshot(model)
    x = np.random.default_rng(2).standard_normal((5, 3)).astype(np.float32)
    with pytest.raises(StateError) as info:
        model(x)
    msg = str(info.value)
    assert msg.startswith("module '1' (BatchNorm1d): batch_norm: ")
    assert f"expected a writable {name}" in msg and "got a read-only array" in msg
    assert_same_snapshot(before, snapshot(model))
    model.eval()
    model(x)  # eval only reads the running stats


@pytest.mark.parametrize(
    "attr,value,needle",
    [
        ("momentum", "x", "momentum must be a float in [0, 1] or None, got 'x'"),
        ("momentum", 2.0, "momentum must be a float in [0, 1] or None, got 2.0"),
        ("momentum", True, "momentum must be a float in [0, 1] or None, got True"),
        ("eps", -1.0, "eps must be a finite float > 0, got -1.0"),
        ("eps", "a", "eps must be a finite float > 0, got 'a'"),
        ("eps", 0, "eps must be a finite float > 0, got 0"),
        ("eps", float("inf"), "eps must be a finite float > 0, got inf"),
    ],
)
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_reassigned_eps_and_momentum_are_checked_like_the_constructor(attr, value, needle, train):
    model = two_bns(train)
    setattr(model[1], attr, value)
    before = snapshot(model)
    with pytest.raises(ConfigError) as info:
        model(np.ones((4, 3), np.float32))
    assert str(info.value) == f"module '1' (BatchNorm1d): batch_norm: {needle}"
    assert_same_snapshot(before, snapshot(model))
    with pytest.raises(ConfigError) as info:
        nn.BatchNorm1d(3, **{attr: value})
    assert str(info.value) == f"BatchNorm1d: {needle}"  # the constructor's message


def test_lazy_batchnorm_with_bad_eps_stays_lazy():
    lf.manual_seed(0)
    model = nn.Sequential(nn.LazyBatchNorm1d())
    model[0].eps = -1.0
    before = snapshot(model)
    with pytest.raises(ConfigError, match=r"^module '0' \(LazyBatchNorm1d\): batch_norm: eps"):
        model(np.ones((4, 3), np.float32))
    assert_same_snapshot(before, snapshot(model))
    assert type(model[0]) is nn.LazyBatchNorm1d
