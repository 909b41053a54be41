"""What a ``backend="cuda"`` CompiledModule does around its kernels, against the reference backend:
device arrays in and out, the state rules (the model's NumPy arrays are the source of truth; what
is seen without ``cm.sync()`` and what needs it), bad inputs (the reference's errors, nothing
touched), calls from threads, ``source`` and pickling, float64, BatchNorm without running stats or
affine parameters, and torch models.

The kernels are the same on any geometry; these tests compile with the small tiles
(``LAZYFUSE_CUDA_TILES=small``), which the simulator runs several times faster on tiny shapes.
Models that no test changes are compiled once per module (fixtures); the others per test.
"""

from __future__ import annotations

import copy
import pickle
import threading

import numpy as np
import pytest
from numba import cuda
from state_checks import assert_same_state

import lazyfuse as lf
from lazyfuse import nn

TOL = {"float32": dict(rtol=1e-5, atol=1e-5), "float64": dict(rtol=1e-12, atol=1e-12)}
SPEC = lf.TensorSpec(("N", 7), "float32")


# --------------------------------------------------------------------------------------- helpers
def _compile(model, *specs):
    """``lf.compile(model, *specs, backend="cuda")`` with the small tiles (see the module docstring)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LAZYFUSE_CUDA_TILES", "small")
        return lf.compile(model, *(specs or (SPEC,)), backend="cuda")


def _pair(model, *specs):
    """The model compiled for cuda, and a deep copy of it compiled for the reference backend."""
    specs = specs or (SPEC,)
    twin = copy.deepcopy(model)
    return _compile(model, *specs), lf.compile(twin, *specs, backend="reference")


def _mlp(dtype="float32", seed=0, **bn):
    lf.manual_seed(seed)
    model = nn.Sequential(nn.Linear(7, 9), nn.BatchNorm1d(9, **bn), nn.ReLU(), nn.Linear(9, 5))
    return model.double() if dtype == "float64" else model


def _batch(n, seed, dtype="float32", k=7):
    return np.random.default_rng(seed).standard_normal((n, k)).astype(dtype)


def _snapshot(model):
    return {k: np.array(v, copy=True) for k, v in model.state_dict().items()}


def _assert_same_state(a, b, dtype="float32"):
    """Two models' state dicts agree (num_batches_tracked exactly)."""
    assert_same_state(a, b, **TOL[dtype])


def _assert_unchanged(model, before):
    after = model.state_dict()
    assert after.keys() == before.keys()
    for k, v in before.items():
        assert np.array_equal(np.asarray(after[k]), v), k


def _is_device(a):
    return bool(getattr(a, "__cuda_ndarray__", False))


def _host(a):
    assert _is_device(a), type(a)
    return a.copy_to_host()


def _give_stats(model, seed=5):
    """Running stats away from their initial values (an eval call then tells them apart)."""
    rng = np.random.default_rng(seed)
    bn = model[1]
    bn.running_mean[...] = rng.standard_normal(bn.running_mean.shape).astype(bn.running_mean.dtype)
    bn.running_var[...] = rng.uniform(0.5, 2.0, bn.running_var.shape).astype(bn.running_var.dtype)
    return model


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.fa = nn.Linear(7, 4)
        self.fb = nn.Linear(3, 4)

    def forward(self, a, b):
        return self.fa(a) + self.fb(b)


@pytest.fixture(scope="module")
def served():
    """An eval-mode MLP that no test changes: (cuda, reference)."""
    cm, ref = _pair(_give_stats(_mlp()).eval())
    return cm, ref


@pytest.fixture(scope="module")
def two_inputs():
    lf.manual_seed(1)
    return _pair(TwoInputs(), lf.TensorSpec(("N", 7), "float32"), lf.TensorSpec(("N", 3), "float32"))


@pytest.fixture(scope="module")
def checked():
    """A train-mode MLP that only gets bad inputs (its state must never move): (cuda, reference)."""
    return _pair(_mlp())


# ------------------------------------------------------------------------------ source, pickling
def test_source_is_the_generated_python(served):
    cm, _ = served
    assert isinstance(cm.source, str)
    assert "@cuda.jit" in cm.source
    assert "def run(stream" in cm.source
    assert cm.backend == "cuda"


def test_pickle_round_trip_gives_the_same_results(served):
    cm, ref = served
    loaded = pickle.loads(pickle.dumps(cm))
    assert loaded.backend == "cuda" and loaded.model is not cm.model
    assert not loaded.training
    _assert_same_state(loaded.model, cm.model)
    x = _batch(6, 1)
    np.testing.assert_array_equal(loaded(x), cm(x))
    np.testing.assert_allclose(loaded(x), ref(x), **TOL["float32"])


# --------------------------------------------------------------------------------- device arrays
def test_device_input_gives_a_device_output_equal_to_the_host_result(served):
    cm, ref = served
    x = _batch(6, 2)
    host = cm(x)
    assert type(host) is np.ndarray
    np.testing.assert_allclose(host, ref(x), **TOL["float32"])
    y = cm(cuda.to_device(x))
    assert _is_device(y) and y.shape == (6, 5) and y.dtype == np.float32
    np.testing.assert_array_equal(_host(y), host)
    # A contiguous row slice of a device array is a device input like any other.
    part = cm(cuda.to_device(x)[2:5])
    np.testing.assert_allclose(_host(part), ref(x[2:5]), **TOL["float32"])
    # Each call's output is its own: a later call does not overwrite it.
    z = cm(cuda.to_device(_batch(6, 3)))
    assert z is not y
    np.testing.assert_array_equal(_host(y), host)


def test_eval_batch_of_one_host_and_device(served):
    cm, ref = served
    x = _batch(1, 4)
    want = ref(x)
    np.testing.assert_allclose(cm(x), want, **TOL["float32"])
    np.testing.assert_allclose(_host(cm(cuda.to_device(x))), want, **TOL["float32"])


def test_non_contiguous_host_input_is_copied(served):
    cm, ref = served
    x = np.random.default_rng(6).standard_normal((5, 14)).astype(np.float32)[:, ::2]
    assert not x.flags.c_contiguous
    np.testing.assert_allclose(cm(x), ref(np.ascontiguousarray(x)), **TOL["float32"])


def test_mixed_host_and_device_inputs_give_a_device_output(two_inputs):
    cm, ref = two_inputs
    a, b = _batch(5, 7), _batch(5, 8, k=3)
    want = ref(a, b)
    host = cm(a, b)
    assert type(host) is np.ndarray
    np.testing.assert_allclose(host, want, **TOL["float32"])
    for args in ((a, cuda.to_device(b)), (cuda.to_device(a), b), (cuda.to_device(a), cuda.to_device(b))):
        y = cm(*args)
        assert _is_device(y)
        np.testing.assert_allclose(_host(y), want, **TOL["float32"])
    y = cm(b=cuda.to_device(b), a=a)  # by name
    np.testing.assert_allclose(_host(y), want, **TOL["float32"])


def _strided(x):
    return cuda.to_device(np.repeat(x, 2, axis=1))[:, ::2]


@pytest.mark.parametrize("make", [
    _strided,
    lambda x: cuda.to_device(np.ascontiguousarray(x.T)).T,
    lambda x: cuda.to_device(np.asfortranarray(x)),
], ids=["step-slice", "transposed", "fortran-order"])
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_non_contiguous_device_input_is_an_input_error(checked, make, train):
    cm, _ = checked
    cm.train(train)
    x = make(_batch(8, 9))
    assert x.shape == (8, 7) and not x.is_c_contiguous()
    before = _snapshot(cm.model)
    with pytest.raises(lf.InputError, match=r"compiled Sequential: input 'input' \(#0\) is a non-contiguous "
                                            r"device array \(shape \(8, 7\)"):
        cm(x)
    _assert_unchanged(cm.model, before)
    cm.train()


# ------------------------------------------------------------------------------------ bad inputs
BAD_INPUTS = {
    "float64": (lf.DTypeError, np.zeros((4, 7), np.float64)),
    "features": (lf.ShapeError, np.zeros((4, 8), np.float32)),
    "rank-1": (lf.ShapeError, np.zeros((7,), np.float32)),
    "rank-3": (lf.ShapeError, np.zeros((4, 7, 1), np.float32)),
    "train-batch-1": (lf.ShapeError, np.zeros((1, 7), np.float32)),
}


@pytest.mark.parametrize("where", ["host", "device"])
@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_raises_the_reference_error_and_touches_nothing(checked, case, where):
    cm, ref = checked
    cm.train(), ref.train()
    error, x = BAD_INPUTS[case]
    with pytest.raises(error) as expected:
        ref(x)
    before = _snapshot(cm.model)
    with pytest.raises(error) as got:
        cm(cuda.to_device(x) if where == "device" else x)
    assert str(got.value) == str(expected.value)
    assert str(got.value).startswith("compiled Sequential: ")
    if case == "train-batch-1":
        assert "module '1' (BatchNorm1d)" in str(got.value)
        assert "more than 1 value per channel when training" in str(got.value)
    else:
        assert "input 'input' (#0)" in str(got.value)
    _assert_unchanged(cm.model, before)


def test_wrong_number_of_inputs_is_an_input_error(checked):
    cm, ref = checked
    x = _batch(4, 10)
    before = _snapshot(cm.model)
    for args in ((), (x, x), (cuda.to_device(x), x)):
        with pytest.raises(lf.InputError, match="takes 1 input"):
            cm(*args)
    with pytest.raises(lf.InputError, match="takes 1 input"):
        ref(x, x)
    _assert_unchanged(cm.model, before)


# ----------------------------------------------------------------------------------- state rules
@pytest.mark.parametrize("momentum", [0.1, None], ids=["momentum=0.1", "momentum=None"])
def test_train_calls_update_the_models_running_stats(momentum):
    cm, ref = _pair(_mlp(momentum=momentum))
    for step, (n, device) in enumerate(((6, False), (5, True), (8, False))):
        x = _batch(n, 20 + step)
        y = cm(cuda.to_device(x) if device else x)
        np.testing.assert_allclose(_host(y) if device else y, ref(x), **TOL["float32"])
        _assert_same_state(cm.model, ref.model)
        assert int(cm.model[1].num_batches_tracked) == step + 1
    cm.eval(), ref.eval()
    x = _batch(4, 29)
    np.testing.assert_allclose(cm(x), ref(x), **TOL["float32"])


def test_an_assigned_parameter_is_seen_without_sync():
    cm, ref = _pair(_give_stats(_mlp()).eval())
    x = _batch(5, 30)
    np.testing.assert_allclose(cm(x), ref(x), **TOL["float32"])
    rng = np.random.default_rng(31)
    w = rng.standard_normal((9, 7)).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    for c in (cm, ref):
        c.model[0].weight = nn.Parameter(np.asfortranarray(w))  # any memory order
        c.model[3].bias = nn.Parameter(b.copy())
    np.testing.assert_allclose(cm(x), ref(x), **TOL["float32"])
    np.testing.assert_allclose(_host(cm(cuda.to_device(x))), ref(x), **TOL["float32"])


def test_load_state_dict_is_seen_without_sync():
    cm, ref = _pair(_mlp().eval())
    x = _batch(5, 40)
    cm(x), cm(x)  # the second call may replay the first
    other = _give_stats(_mlp(seed=41), seed=41)
    cm.model.load_state_dict(other.state_dict())
    ref.model.load_state_dict(other.state_dict())
    want = ref(x)
    np.testing.assert_allclose(cm(x), want, **TOL["float32"])
    # Through the compiled module as well.
    source = _give_stats(_mlp(seed=43), seed=43).state_dict()
    cm.load_state_dict(source), ref.load_state_dict(source)
    np.testing.assert_allclose(_host(cm(cuda.to_device(x))), ref(x), **TOL["float32"])


def test_in_place_parameter_writes_are_seen_after_sync():
    cm, ref = _pair(_give_stats(_mlp()).eval())
    x = _batch(5, 50)
    cm(x), cm(x)
    for c in (cm, ref):
        c.model[0].weight[...] = 0
        c.model[1].weight[2:5] = 3.0  # BatchNorm gamma
    cm(x)  # not guaranteed to see the writes: nothing asserted
    cm.sync()
    np.testing.assert_allclose(cm(x), ref(x), **TOL["float32"])
    np.testing.assert_allclose(_host(cm(cuda.to_device(x))), ref(x), **TOL["float32"])


def test_in_place_running_stat_writes_are_seen_without_sync():
    cm, ref = _pair(_mlp(momentum=None).eval())
    x = _batch(5, 60)
    np.testing.assert_allclose(cm(x), ref(x), **TOL["float32"])
    cm(x)
    for c in (cm, ref):
        c.model[1].running_mean[...] = 5
    np.testing.assert_allclose(cm(x), ref(x), **TOL["float32"])
    for c in (cm, ref):
        c.model[1].running_var[...] = 3
    np.testing.assert_allclose(_host(cm(cuda.to_device(x))), ref(x), **TOL["float32"])
    # A train call starts from the written stats (momentum=None averages over num_batches_tracked).
    cm.train(), ref.train()
    for c in (cm, ref):
        c.model[1].num_batches_tracked[...] = 10
        c.model[1].running_mean[...] = 2
    np.testing.assert_allclose(cm(x), ref(x), **TOL["float32"])
    _assert_same_state(cm.model, ref.model)
    assert int(cm.model[1].num_batches_tracked) == 11


def test_eager_train_forward_then_compiled_calls():
    """Eager train-mode forwards update the stats in NumPy; the next compiled call starts from them
    (in train mode, with no flag changed in between, as well as in eval after ``eval()``)."""
    cm, ref = _pair(_mlp())
    x = _batch(5, 70)
    np.testing.assert_allclose(cm(x), ref(x), **TOL["float32"])  # the device holds these stats now
    for step in range(2):
        for c in (cm, ref):
            c.model(_batch(6, 71 + step))  # eager, in NumPy
        _assert_same_state(cm.model, ref.model)
        np.testing.assert_allclose(cm(x), ref(x), **TOL["float32"])
        _assert_same_state(cm.model, ref.model)
    assert int(cm.model[1].num_batches_tracked) == 5
    for c in (cm, ref):
        c.model(_batch(6, 75))
        c.model.eval()
    np.testing.assert_allclose(cm(x), ref(x), **TOL["float32"])
    _assert_same_state(cm.model, ref.model)


def test_two_compiled_modules_of_one_model_alternate_train_calls():
    model = _mlp()
    ref = lf.compile(copy.deepcopy(model), SPEC, backend="reference")
    first, second = _compile(model, SPEC), _compile(model, SPEC)
    for step in range(4):
        cm = (first, second)[step % 2]
        x = _batch(5 + step, 80 + step)
        np.testing.assert_allclose(cm(x), ref(x), **TOL["float32"])
        _assert_same_state(model, ref.model)
    model.eval(), ref.eval()
    x = _batch(3, 89)
    for cm in (first, second):
        np.testing.assert_allclose(cm(x), ref(x), **TOL["float32"])


def _strided_stats_mlp():
    model = _mlp()
    model[1].running_mean = np.zeros(18, np.float32)[::2]  # a view with a stride of 8 bytes
    return model


def test_train_call_with_a_strided_running_stat_buffer():
    cm, ref = _compile(_strided_stats_mlp()), lf.compile(_strided_stats_mlp(), SPEC, backend="reference")
    assert not cm.model[1].running_mean.flags.c_contiguous
    x = _batch(6, 90)
    want = ref(x)
    np.testing.assert_allclose(cm(x), want, **TOL["float32"])
    _assert_same_state(cm.model, ref.model)
    assert not cm.model[1].running_mean.flags.c_contiguous  # still the model's own view
    cm.eval(), ref.eval()
    np.testing.assert_allclose(cm(x), ref(x), **TOL["float32"])


# --------------------------------------------------------------------------------------- threads
def _in_threads(work, n):
    errors = []

    def guarded(i):
        try:
            work(i)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors


def test_eval_calls_from_threads(served):
    cm, ref = served
    inputs = {(i, j): _batch(2 + i + j, 100 + 3 * i + j) for i in range(4) for j in range(3)}
    got = {}

    def work(i):
        for j in range(3):
            got[i, j] = cm(inputs[i, j])

    _in_threads(work, 4)
    for key, x in inputs.items():
        np.testing.assert_allclose(got[key], ref(x), **TOL["float32"], err_msg=str(key))


def test_train_calls_from_threads_are_serialized():
    cm, ref = _pair(_mlp())
    x = _batch(6, 110)  # every call gets the same batch: the order of the updates does not matter
    got = []

    def work(i):
        for _ in range(3):
            got.append(cm(x))

    _in_threads(work, 2)
    assert int(cm.model[1].num_batches_tracked) == 6
    want = ref(x)
    for _ in range(5):
        ref(x)
    for y in got:
        np.testing.assert_allclose(y, want, **TOL["float32"])
    _assert_same_state(cm.model, ref.model)


# ------------------------------------------------------------------------ float64, BatchNorm options
def test_float64_model():
    cm, ref = _pair(_mlp("float64"), lf.TensorSpec(("N", 7), "float64"))
    assert "gemm_f64" in cm.source
    for step, n in enumerate((6, 5)):
        x = _batch(n, 120 + step, "float64")
        y = cm(x)
        assert y.dtype == np.float64
        np.testing.assert_allclose(y, ref(x), **TOL["float64"])
        _assert_same_state(cm.model, ref.model, "float64")
    cm.eval(), ref.eval()
    for n in (1, 4):
        x = _batch(n, 130 + n, "float64")
        np.testing.assert_allclose(cm(x), ref(x), **TOL["float64"])
        np.testing.assert_allclose(_host(cm(cuda.to_device(x))), ref(x), **TOL["float64"])
    with pytest.raises(lf.DTypeError, match="expected dtype float64"):
        cm(cuda.to_device(_batch(4, 139)))


@pytest.mark.parametrize("bn", [dict(track_running_stats=False), dict(affine=False)],
                         ids=["track_running_stats=False", "affine=False"])
def test_batchnorm_options_train_and_eval(bn):
    cm, ref = _pair(_mlp(**bn))
    keys = set(cm.model.state_dict())
    if "affine" in bn:
        assert "1.weight" not in keys and "1.running_mean" in keys
    else:
        assert "1.running_mean" not in keys and "1.weight" in keys
    for step, (train, n) in enumerate(((True, 6), (True, 5), (False, 4))):
        cm.train(train), ref.train(train)
        x = _batch(n, 140 + step)
        np.testing.assert_allclose(cm(x), ref(x), **TOL["float32"])
        _assert_same_state(cm.model, ref.model)


def test_batch_of_one_in_train_without_running_stats_is_a_shape_error():
    cm, ref = _pair(_mlp(track_running_stats=False).eval())
    x = _batch(1, 150)
    with pytest.raises(lf.ShapeError) as expected:  # batch statistics in eval too
        ref(x)
    before = _snapshot(cm.model)
    with pytest.raises(lf.ShapeError) as got:
        cm(x)
    assert str(got.value) == str(expected.value)
    _assert_unchanged(cm.model, before)


# ---------------------------------------------------------------------------------------- torch
@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


def _torch_mlp(torch, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(7, 9), torch.nn.BatchNorm1d(9), torch.nn.ReLU())


def _torch_state_equal(torch, got, want):
    theirs = got.state_dict()
    for k, v in want.state_dict().items():
        if k.endswith("num_batches_tracked"):
            assert int(theirs[k]) == int(v), k
        else:
            np.testing.assert_allclose(theirs[k].numpy(), v.numpy(), rtol=2e-5, atol=2e-6, err_msg=k)


def test_torch_model_takes_and_gives_cpu_tensors(torch):
    tm = _torch_mlp(torch)
    twin = copy.deepcopy(tm)
    cm = _compile(tm, SPEC)
    for step, (train, n) in enumerate(((True, 6), (True, 5), (False, 3), (False, 1))):
        tm.train(train), twin.train(train)
        x = torch.from_numpy(_batch(n, 160 + step) + 1.5)
        with torch.no_grad():
            y = cm(x)
            want = twin(x)
        assert isinstance(y, torch.Tensor) and y.device.type == "cpu" and y.dtype == torch.float32
        np.testing.assert_allclose(y.numpy(), want.numpy(), rtol=2e-5, atol=2e-5)
        _torch_state_equal(torch, tm, twin)
    assert int(tm[1].num_batches_tracked) == 2
    with torch.no_grad():  # NumPy in, NumPy out
        assert type(cm(_batch(2, 169))) is np.ndarray


def test_torch_load_state_dict_is_seen_without_sync(torch):
    tm = _torch_mlp(torch).eval()
    twin = copy.deepcopy(tm)
    cm = _compile(tm, SPEC)
    x = torch.from_numpy(_batch(4, 170))
    with torch.no_grad():
        cm(x), cm(x)
        other = _torch_mlp(torch, seed=1)
        other[1].running_mean.uniform_(-1, 1)
        other[1].running_var.uniform_(0.5, 2)
        tm.load_state_dict(other.state_dict())  # in-place copy_ into tm's tensors
        twin.load_state_dict(other.state_dict())
        np.testing.assert_allclose(cm(x).numpy(), twin(x).numpy(), rtol=2e-5, atol=2e-5)


def test_torch_cuda_tensors_in_and_out(torch):
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA device here (CUDA tensors need a GPU build of torch and a GPU)")
    tm = _torch_mlp(torch).eval()
    twin = copy.deepcopy(tm)
    cm = _compile(tm, SPEC)
    x = torch.from_numpy(_batch(4, 180))
    with torch.no_grad():
        y = cm(x.cuda())
        want = twin(x)
    assert isinstance(y, torch.Tensor) and y.device.type == "cuda"
    np.testing.assert_allclose(y.cpu().numpy(), want.numpy(), rtol=2e-5, atol=2e-5)
