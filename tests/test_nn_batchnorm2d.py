"""BatchNorm2d / LazyBatchNorm2d against torch (train steps, then eval), their errors, tracing, compiling."""

import copy
import itertools

import numpy as np
import pytest

import lazyfuse as lf
from lazyfuse import nn
from lazyfuse.errors import DTypeError, ShapeError, TraceError

torch = pytest.importorskip("torch")
torch.set_num_threads(2)

TOL = {np.float32: dict(rtol=1e-5, atol=1e-5), np.float64: dict(rtol=1e-12, atol=1e-12)}
TORCH_DTYPE = {np.float32: torch.float32, np.float64: torch.float64}
COMBOS = list(itertools.product([True, False], [True, False], [0.1, None], [False, True],
                                [np.float32, np.float64]))


def rand(*shape, dtype=np.float32, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def compare_state(ours, theirs, tol):
    for name in ("running_mean", "running_var", "weight", "bias"):
        a, b = getattr(ours, name), getattr(theirs, name)
        assert (a is None) == (b is None), name
        if a is not None:
            np.testing.assert_allclose(a, b.detach().numpy(), **tol, err_msg=name)
    if theirs.num_batches_tracked is None:
        assert ours.num_batches_tracked is None
    else:
        assert int(ours.num_batches_tracked) == int(theirs.num_batches_tracked)


@pytest.mark.parametrize("affine,track,momentum,lazy,dtype", COMBOS)
def test_matches_torch_train_then_eval(affine, track, momentum, lazy, dtype):
    rng = np.random.default_rng(COMBOS.index((affine, track, momentum, lazy, dtype)))
    kw = dict(eps=1e-5, momentum=momentum, affine=affine, track_running_stats=track)
    if lazy:
        ours = nn.LazyBatchNorm2d(dtype=dtype, **kw)
        theirs = torch.nn.LazyBatchNorm2d(dtype=TORCH_DTYPE[dtype], **kw)
    else:
        ours = nn.BatchNorm2d(3, dtype=dtype, **kw)
        theirs = torch.nn.BatchNorm2d(3, dtype=TORCH_DTYPE[dtype], **kw)
    tol = TOL[dtype]
    for step in range(3):
        x = (rng.standard_normal((4, 3, 3, 5)) * 3 + 1.5).astype(dtype)
        y = ours(x)
        assert y.dtype == dtype and type(y) is np.ndarray
        np.testing.assert_allclose(y, theirs(torch.from_numpy(x)).detach().numpy(), **tol)
        compare_state(ours, theirs, tol)
        if step == 0:
            assert type(ours) is nn.BatchNorm2d and ours.num_features == 3
            if affine:
                w, b = rng.uniform(0.5, 2, 3).astype(dtype), rng.standard_normal(3).astype(dtype)
                ours.load_state_dict({**ours.state_dict(), "weight": w, "bias": b})
                with torch.no_grad():
                    theirs.weight.copy_(torch.from_numpy(w))
                    theirs.bias.copy_(torch.from_numpy(b))
    ours.eval()
    theirs.eval()
    x = (rng.standard_normal((2, 3, 2, 3)) * 2).astype(dtype)
    np.testing.assert_allclose(ours(x), theirs(torch.from_numpy(x)).detach().numpy(), **tol)
    compare_state(ours, theirs, tol)


def test_statistics_are_over_batch_height_and_width():
    x = rand(5, 2, 3, 4, dtype=np.float64)
    bn = nn.BatchNorm2d(2, momentum=1.0, dtype=np.float64)
    y = bn(x)
    mean, var = x.mean((0, 2, 3), keepdims=True), x.var((0, 2, 3), keepdims=True)
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-5), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(bn.running_var, x.var((0, 2, 3), ddof=1), rtol=1e-12)
    assert int(bn.num_batches_tracked) == 1


def test_classes_and_repr_like_torch():
    assert not isinstance(nn.BatchNorm2d(3), nn.BatchNorm1d)
    for ours, theirs in [(nn.BatchNorm2d(4), torch.nn.BatchNorm2d(4)),
                         (nn.BatchNorm2d(3, 1e-3, None, False), torch.nn.BatchNorm2d(3, 1e-3, None, False)),
                         (nn.LazyBatchNorm2d(track_running_stats=False),
                          torch.nn.LazyBatchNorm2d(track_running_stats=False))]:
        assert repr(ours) == repr(theirs)
        assert list(ours.state_dict()) == list(theirs.state_dict())


def snapshot(model):
    return [(k, repr(v) if nn.is_uninitialized(v) else np.array(v).tolist())
            for k, v in model.state_dict().items()]


@pytest.mark.parametrize("lazy", [False, True])
@pytest.mark.parametrize("x,error,needle", [
    (rand(4, 3, 5), ShapeError, "expected 4D input (got 3D input)"),
    (rand(4, 3), ShapeError, "expected 4D input (got 2D input)"),
    (rand(2, 3, 2, 2, 2), ShapeError, "expected 4D input (got 5D input)"),
    (rand(1, 3, 1, 1), ShapeError, "expected more than 1 value per channel when training, got input size "
                                   "(1, 3, 1, 1)"),
    (np.ones((2, 3, 2, 2), np.int32), DTypeError, "float32 or float64"),
    (rand(2, 3, 2, 2, dtype=np.float64), DTypeError, "expected float32"),
])
def test_errors_name_the_module_and_change_nothing(lazy, x, error, needle):
    model = nn.Sequential(nn.Identity(), nn.LazyBatchNorm2d() if lazy else nn.BatchNorm2d(3))
    if not lazy:
        model(rand(2, 3, 2, 2))  # non-trivial stats
    before = snapshot(model)
    with pytest.raises(error) as info:
        model(x)
    name = "LazyBatchNorm2d" if lazy else "BatchNorm2d"
    assert str(info.value).startswith(f"module '1' ({name}): batch_norm: ") and needle in str(info.value)
    assert snapshot(model) == before
    assert isinstance(model[1], nn.LazyBatchNorm2d) == lazy


def test_channel_mismatch_after_a_train_step_undoes_it():
    model = nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 5, 1), nn.BatchNorm2d(4))
    before = snapshot(model)
    with pytest.raises(ShapeError, match=r"^module '2' \(BatchNorm2d\): batch_norm: expected input with "
                                         r"4 channels at dim 1 \(num_features\), got input of shape "
                                         r"\(2, 5, 2, 2\)"):
        model(rand(2, 3, 2, 2))
    assert snapshot(model) == before


def test_load_torch_state_into_lazy_and_eval_like_torch():
    t = torch.nn.BatchNorm2d(3)
    t(torch.randn(4, 3, 2, 2) * 2 + 1)
    ours = nn.LazyBatchNorm2d()
    ours.load_state_dict(t.state_dict())
    assert type(ours) is nn.BatchNorm2d and ours.num_features == 3 and int(ours.num_batches_tracked) == 1
    x = rand(2, 3, 2, 3)
    want = t.eval()(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(ours.eval()(x), want, **TOL[np.float32])


# ------------------------------------------------------------------------------------------ tracing
@pytest.mark.parametrize("layer,spec,needle", [
    (lambda: nn.BatchNorm2d(3), ("N", 3, 5),
     "module '0' (BatchNorm2d): batch_norm: expected 4D input (got 3D input)"),
    (nn.LazyBatchNorm2d, ("N", 3),
     "module '0' (LazyBatchNorm2d): batch_norm: expected 4D input (got 2D input)"),
    (lambda: nn.BatchNorm1d(3), ("N", 3, 4, 4),
     "module '0' (BatchNorm1d): batch_norm: expected 2D or 3D input (got 4D input)"),
    (nn.LazyBatchNorm1d, ("N", 3, 4, 4),
     "module '0' (LazyBatchNorm1d): batch_norm: expected 2D or 3D input (got 4D input)"),
])
def test_trace_checks_the_rank_of_the_module_class(layer, spec, needle):
    model = nn.Sequential(layer())
    with pytest.raises(TraceError) as info:
        lf.trace(model, spec)
    assert needle in str(info.value)
    eager_shape = tuple(2 if d == "N" else d for d in spec)
    with pytest.raises(ShapeError) as info:
        model(rand(*eager_shape))
    assert str(info.value) == needle  # eager says the same


def conv_bn_net():
    lf.manual_seed(3)
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.LazyBatchNorm2d(momentum=None), nn.ReLU(),
                         nn.MaxPool2d(2))


def test_compiled_train_and_eval_match_eager():
    model = conv_bn_net()
    compiled = lf.compile(model, ("N", 2, 6, 6), backend="reference")
    assert type(model[1]) is nn.BatchNorm2d and model[1].num_features == 4
    eager = copy.deepcopy(model)
    for step in range(2):
        x = rand(3, 2, 6, 6, seed=step) * 2 + 1
        np.testing.assert_allclose(compiled(x), eager(x), rtol=1e-5, atol=1e-6)
    for name in ("running_mean", "running_var"):
        np.testing.assert_allclose(getattr(model[1], name), getattr(eager[1], name), rtol=1e-6)
    assert int(model[1].num_batches_tracked) == int(eager[1].num_batches_tracked) == 2
    model.eval()
    eager.eval()
    x = rand(1, 2, 6, 6, seed=9)
    np.testing.assert_allclose(compiled(x), eager(x), rtol=1e-5, atol=1e-6)


def test_static_materialization_matches_eager_first_forward():
    eager = conv_bn_net()
    eager.eval()(rand(2, 2, 6, 6))  # eval: the state stays as initialized
    static = conv_bn_net()
    lf.infer_shapes(lf.trace(static, ("N", 2, 6, 6)))
    assert [type(m) for m in static] == [type(m) for m in eager]
    for (ka, va), (kb, vb) in zip(eager.state_dict().items(), static.state_dict().items()):
        assert ka == kb
        np.testing.assert_array_equal(va, vb, err_msg=ka)
