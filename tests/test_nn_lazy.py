"""Lazy modules: resolution (forward, materialize, load_state_dict), placeholders, copies, atomic loads."""

import copy
import pickle

import numpy as np
import pytest

import lazyfuse as lf
from lazyfuse import nn
from lazyfuse.errors import ConfigError, DTypeError, ShapeError, StateDictError, UninitializedParameterError

torch = pytest.importorskip("torch")
torch.set_num_threads(2)

HINT = "run a forward pass or lazyfuse.infer_shapes(lazyfuse.trace(model, spec)) to resolve it"


def net():
    return nn.Sequential(nn.Linear(6, 5), nn.LazyBatchNorm1d(), nn.ReLU(), nn.LazyLinear(3))


def x32(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def frozen(model):
    """A comparable picture of the whole model state (arrays copied, placeholders by repr)."""
    items = [
        (k, repr(v) if nn.is_uninitialized(v) else np.array(v).tolist())
        for k, v in model.state_dict().items()
    ]
    mods = [
        (n, type(m).__name__, getattr(m, "in_features", None), getattr(m, "num_features", None))
        for n, m in model.named_modules()
    ]
    return items, mods


def test_lazy_linear_resolves_on_first_forward_and_matches_torch():
    lf.manual_seed(0)
    m = nn.LazyLinear(4)
    assert m.in_features == 0 and m.has_uninitialized_params()
    assert nn.is_uninitialized(m.weight) and m.weight.dtype == np.float32
    x = x32(3, 2, 7)
    y = m(x)
    assert type(m) is nn.Linear and m.in_features == 7 and m.weight.shape == (4, 7)
    assert not m.has_uninitialized_params()
    t = torch.nn.LazyLinear(4)
    t(torch.from_numpy(x))
    with torch.no_grad():
        t.weight.copy_(torch.from_numpy(np.asarray(m.weight)))
        t.bias.copy_(torch.from_numpy(np.asarray(m.bias)))
    np.testing.assert_allclose(y, t(torch.from_numpy(x)).detach().numpy(), rtol=1e-5, atol=1e-5)
    bound = 1 / np.sqrt(7)
    assert np.abs(m.weight).max() <= bound and np.abs(m.bias).max() <= bound


def test_lazy_batchnorm_resolves_and_becomes_batchnorm():
    bn = nn.LazyBatchNorm1d()
    assert bn.num_features == 0 and bn.has_uninitialized_params()
    assert isinstance(bn.num_batches_tracked, np.ndarray) and int(bn.num_batches_tracked) == 0
    bn(x32(4, 3, 2))
    assert type(bn) is nn.BatchNorm1d and bn.num_features == 3 and int(bn.num_batches_tracked) == 1
    assert not bn.has_uninitialized_params()


def test_lazy_batchnorm_without_state_still_resolves_num_features():
    bn = nn.LazyBatchNorm1d(affine=False, track_running_stats=False)
    assert not bn.has_uninitialized_params() and bn.num_features == 0
    y = bn(x32(4, 3))
    assert type(bn) is nn.BatchNorm1d and bn.num_features == 3 and y.shape == (4, 3)


def test_materialize_equals_eager_first_forward():
    lf.manual_seed(5)
    a = net()
    a(x32(4, 6))
    lf.manual_seed(5)
    b = net()
    b[1].materialize(num_features=5)
    b[3].materialize(in_features=5)
    assert [type(m) for m in a] == [type(m) for m in b]
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb
        if "running" not in ka and "num_batches" not in ka:  # a trained one step
            np.testing.assert_array_equal(va, vb)


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"in_features": 0},
        {"in_features": -3},
        {"in_features": 2.0},
        {"num_features": 4},
        {"in_features": 2, "num_features": 2},
    ],
)
def test_materialize_rejects_bad_dims(kw):
    m = nn.LazyLinear(3)
    with pytest.raises(ConfigError, match="materialize"):
        m.materialize(**kw)
    assert type(m) is nn.LazyLinear


def test_reading_uninitialized_parameter_names_path_and_resolution():
    model = net()
    for action in (
        lambda w: w.shape,
        np.asarray,
        lambda w: w + 1,
        lambda w: x32(2, 5) @ w.T,
        len,
        lambda w: w[0],
        lambda w: np.zeros(3) * w,
    ):
        with pytest.raises(UninitializedParameterError) as info:
            action(model[3].weight)
        msg = str(info.value)
        assert "'3.weight'" in msg and "'3' (LazyLinear)" in msg and HINT in msg
    with pytest.raises(
        UninitializedParameterError, match=r"buffer '1.running_mean' of module '1' \(LazyBatchNorm1d\)"
    ):
        model[1].running_mean.shape


@pytest.mark.parametrize(
    "x,error,needle",
    [
        (np.ones((2, 5), np.int64), DTypeError, "int64"),
        (np.ones((2, 5), np.float64), DTypeError, "expected float32"),
        (np.float32(1), ShapeError, "0-d"),
        (np.ones((2, 0), np.float32), ShapeError, "last dimension is 0"),
    ],
)
def test_failing_first_forward_leaves_lazy_linear_lazy(x, error, needle):
    lf.manual_seed(9)
    m = nn.Sequential(nn.LazyLinear(3))
    before = frozen(m)
    with pytest.raises(error, match=needle) as info:
        m(x)
    assert "'0' (LazyLinear)" in str(info.value)
    assert frozen(m) == before and type(m[0]) is nn.LazyLinear and m.has_uninitialized_params()
    # the random generator was not consumed either
    m[0].materialize(in_features=5)
    lf.manual_seed(9)
    fresh = nn.LazyLinear(3)
    fresh.materialize(in_features=5)
    np.testing.assert_array_equal(m[0].weight, fresh.weight)


def test_lazy_batchnorm_one_sample_in_train_stays_lazy():
    model = net()
    before = frozen(model)
    with pytest.raises(ShapeError, match=r"got input size \(1, 5\)"):
        model(x32(1, 6))
    assert frozen(model) == before and type(model[1]) is nn.LazyBatchNorm1d


@pytest.mark.parametrize("copier", [copy.deepcopy, lambda m: pickle.loads(pickle.dumps(m))])
def test_unresolved_modules_deepcopy_and_pickle(copier):
    model = net()
    clone = copier(model)
    assert type(clone[3]) is nn.LazyLinear and clone.has_uninitialized_params()
    with pytest.raises(UninitializedParameterError, match="'3.weight'"):
        clone[3].weight.shape
    np.testing.assert_array_equal(clone[0].weight, model[0].weight)
    assert clone[0].weight is not model[0].weight
    clone(x32(4, 6))
    assert type(clone[3]) is nn.Linear and type(model[3]) is nn.LazyLinear  # independent
    with pytest.raises(ShapeError, match="'0' \\(Linear\\)"):
        clone(x32(4, 7))


def test_state_dict_of_unresolved_module_holds_markers():
    sd = net().state_dict()
    assert list(sd) == [
        "0.weight",
        "0.bias",
        "1.weight",
        "1.bias",
        "1.running_mean",
        "1.running_var",
        "1.num_batches_tracked",
        "3.weight",
        "3.bias",
    ]
    assert all(nn.is_uninitialized(sd[k]) for k in ("1.weight", "1.running_var", "3.weight", "3.bias"))
    assert isinstance(sd["1.weight"], nn.UninitializedParameter)
    assert isinstance(sd["1.running_mean"], nn.UninitializedBuffer)
    assert not nn.is_uninitialized(sd["0.weight"]) and not nn.is_uninitialized(sd["1.num_batches_tracked"])


def test_load_real_arrays_resolves_lazy_modules():
    src = net()
    src(x32(4, 6))
    src(x32(4, 6, seed=1))
    dst = net()
    result = dst.load_state_dict(src.state_dict())
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert type(dst[1]) is nn.BatchNorm1d and dst[1].num_features == 5
    assert type(dst[3]) is nn.Linear and dst[3].in_features == 5  # torch would leave 0 here
    assert not dst.has_uninitialized_params()
    for k, v in src.state_dict().items():
        np.testing.assert_array_equal(dst.state_dict()[k], v)
    assert dst.state_dict()["1.weight"] is not src.state_dict()["1.weight"]
    x = x32(3, 6, seed=2)
    np.testing.assert_array_equal(dst.eval()(x), src.eval()(x))


def test_load_torch_state_dict_into_lazy_model():
    t = torch.nn.Sequential(
        torch.nn.Linear(6, 5), torch.nn.BatchNorm1d(5), torch.nn.ReLU(), torch.nn.Linear(5, 3)
    )
    t(torch.randn(4, 6))
    ours = net()
    ours.load_state_dict(t.state_dict())
    t.eval()
    ours.eval()
    x = x32(3, 6)
    np.testing.assert_allclose(ours(x), t(torch.from_numpy(x)).detach().numpy(), rtol=1e-5, atol=1e-5)


def test_markers_onto_unresolved_model_keep_it_lazy():
    dst = net()
    sd = net().state_dict()
    sd["1.num_batches_tracked"] = np.array(7)
    dst.load_state_dict(sd)
    assert dst.has_uninitialized_params() and type(dst[3]) is nn.LazyLinear
    assert int(dst[1].num_batches_tracked) == 7


def test_load_copies_in_place():
    model = net()
    model(x32(4, 6))
    held_w, held_nbt = model[0].weight, model[1].num_batches_tracked
    new = {k: np.full(np.shape(v), 0.5, dtype=np.asarray(v).dtype) for k, v in model.state_dict().items()}
    model.load_state_dict(new)
    assert model[0].weight is held_w and model[1].num_batches_tracked is held_nbt
    assert float(held_w[0, 0]) == 0.5 and int(held_nbt) == 0  # 0.5 cast to int64


def good_state():
    src = net()
    src(x32(4, 6))
    return {k: np.array(v) for k, v in src.state_dict().items()}


@pytest.mark.parametrize(
    "mutate,needles",
    [
        (lambda sd: sd.pop("3.bias"), ["Missing key(s)", '"3.bias"']),
        (lambda sd: sd.update(extra=np.zeros(1)), ["Unexpected key(s)", '"extra"']),
        (
            lambda sd: sd.update({"0.weight": np.zeros((5, 7), np.float32)}),
            ["size mismatch for 0.weight", "(5, 7)", "(5, 6)"],
        ),
        (lambda sd: sd.update({"3.weight": np.zeros((3, 5, 1), np.float32)}), ["3.weight", "(3, 5, 1)"]),
        (lambda sd: sd.update({"3.weight": np.zeros((4, 5), np.float32)}), ["3.weight", "(4, 5)"]),
        (
            lambda sd: sd.update({"3.bias": np.zeros(4, np.float32)}),
            ["size mismatch for 3.bias", "(4,)", "(3,)"],
        ),
        (lambda sd: sd.update({"1.running_var": np.zeros((5, 1), np.float32)}), ["1.running_var", "1-D"]),
        (
            lambda sd: sd.update({"1.bias": np.zeros(4, np.float32)}),
            ["inconsistent num_features", "1.bias: (4,)"],
        ),
        (lambda sd: sd.update({"3.bias": nn.UninitializedParameter()}), ["3.bias missing or uninitialized"]),
        (lambda sd: sd.update({"0.bias": nn.UninitializedParameter()}), ["uninitialized entry '0.bias'"]),
        (
            lambda sd: sd.update({"1.num_batches_tracked": np.array(1.5)}),
            ["dtype mismatch", "float64", "int64"],
        ),
        (lambda sd: sd.update({"0.bias": np.array(["a"] * 5)}), ["dtype mismatch"]),
    ],
)
def test_mismatched_load_raises_and_changes_nothing(mutate, needles):
    sd = good_state()
    mutate(sd)
    model = net()
    before = frozen(model)
    with pytest.raises(StateDictError) as info:
        model.load_state_dict(sd)
    msg = str(info.value)
    assert "nothing was loaded" in msg
    for needle in needles:
        assert needle in msg
    assert frozen(model) == before
    assert model.has_uninitialized_params()


def test_non_strict_load_reports_keys_but_still_checks_shapes():
    sd = good_state()
    del sd["0.bias"]
    sd["junk"] = np.zeros(2)
    model = net()
    result = model.load_state_dict(sd, strict=False)
    assert result.missing_keys == ["0.bias"] and result.unexpected_keys == ["junk"]
    assert type(model[3]) is nn.Linear
    sd["0.weight"] = np.zeros((1, 1), np.float32)
    with pytest.raises(StateDictError, match="size mismatch for 0.weight"):
        net().load_state_dict(sd, strict=False)


def test_load_requires_a_mapping():
    with pytest.raises(StateDictError, match="mapping"):
        nn.Linear(2, 2).load_state_dict([1, 2])


def test_to_double_before_resolution():
    m = nn.LazyLinear(3).double()
    assert m.weight.dtype == np.float64
    y = m(np.ones((2, 4)))
    assert m.weight.dtype == np.float64 and y.dtype == np.float64


def test_has_uninitialized_params_is_recursive():
    model = net()
    assert model.has_uninitialized_params() and not model[0].has_uninitialized_params()
    model(x32(2, 6))
    assert not model.has_uninitialized_params()


@pytest.mark.parametrize("use", [
    lambda w: w.sum(),
    lambda w: w.copy(),
    lambda w: w.nbytes,
    lambda w: w.reshape(2, -1),
    np.sum,
    np.copy,
])
def test_ndarray_methods_on_a_placeholder_raise_the_same_error(use):
    model = net()
    with pytest.raises(UninitializedParameterError) as info:
        use(model[3].weight)
    msg = str(info.value)
    assert "'3.weight'" in msg and "'3' (LazyLinear)" in msg and HINT in msg
    with pytest.raises(AttributeError):
        model[3].weight.no_such_attribute  # names an ndarray lacks stay AttributeErrors
    assert copy.deepcopy(model[3].weight).dtype == np.float32


def test_lazy_dims_declare_where_each_size_lives():
    assert nn.LazyLinear.lazy_dims == {"in_features": {"weight": 1}}
    lin = nn.LazyLinear(5)
    assert lin.placeholder_shapes() == {"weight": (5, None), "bias": (5,)}
    assert lin.placeholder_shapes({"in_features": 3}) == {"weight": (5, 3), "bias": (5,)}
    assert lin.dims_from_shapes("weight", (5, 7)) == {"in_features": 7}
    assert lin.dims_from_shapes("bias", (5,)) == {}
    stats = ("weight", "bias", "running_mean", "running_var")
    assert nn.LazyBatchNorm1d.lazy_dims == {"num_features": dict.fromkeys(stats, 0)}
    assert nn.LazyBatchNorm1d().placeholder_shapes() == dict.fromkeys(stats, (None,))
    assert nn.LazyBatchNorm1d(affine=False, track_running_stats=False).placeholder_shapes() == {}


def test_static_materialization_reads_the_declaration():
    from lazyfuse.frontends.materialize import materialize_lazy, plan
    from lazyfuse.passes.manager import PassContext, run_passes

    class MyLazy(nn.LazyLinear):  # a subclass keeps its parent's declaration and emitter
        pass

    model = nn.Sequential(MyLazy(3), nn.LazyBatchNorm1d(affine=False, track_running_stats=False))
    traced = lf.trace(model, ("N", 4))
    assert "@0.weight: f32[3,?] = param" in str(traced)
    g = run_passes(traced.copy(), ["infer_shapes"], PassContext(model=None))
    assert [(path, sizes) for path, _, sizes in plan(g, model)] == [
        ("0", {"in_features": 4}), ("1", {"num_features": 3})]
    with pytest.raises(lf.InferenceError, match="in_features is \\?, not a concrete size"):
        materialize_lazy(traced, model)  # nothing inferred yet: nothing touched
    assert model.has_uninitialized_params()
    materialize_lazy(g, model)
    assert type(model[0]) is nn.Linear and model[0].weight.shape == (3, 4)
    assert type(model[1]) is nn.BatchNorm1d and model[1].num_features == 3
