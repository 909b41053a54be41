"""lf.compile and CompiledModule: backends, input checks before any state change, shared state."""

from __future__ import annotations

import copy
import subprocess
import sys

import models_for_tests as M
import numpy as np
import pytest
from test_trace import assert_same, snapshot

import lazyfuse as lf
from lazyfuse import nn
from lazyfuse.backends import BACKENDS, available_backends, get_backend, register_backend
from lazyfuse.backends.reference import ReferenceExecutable
from lazyfuse.errors import (
    CompileError,
    DTypeError,
    InferenceError,
    InputError,
    ShapeError,
    StateError,
    UninitializedParameterError,
)


def test_unknown_backend_lists_available_ones():
    model = M.ConvLikeBN()
    with pytest.raises(CompileError, match="unknown backend 'tpu'; available: .*cpu.*reference"):
        lf.compile(model, ("N", 3, "L"), backend="tpu")
    assert "reference" in available_backends()
    assert model.has_uninitialized_params()


def test_compile_rejects_non_modules():
    with pytest.raises(CompileError, match="expected a lazyfuse.nn.Module"):
        lf.compile(lambda x: x, ("N", 3), backend="reference")


def test_reference_compile_does_not_load_numba():
    code = (
        "import sys, lazyfuse as lf\n"
        "from lazyfuse import nn\n"
        "cm = lf.compile(nn.Sequential(nn.LazyLinear(2)), ('N', 3), backend='reference')\n"
        "assert 'numba' not in sys.modules and 'lazyfuse.backends.numba_cpu' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_compiled_module_attributes():
    model = M.Residual()
    cm = lf.compile(model, lf.TensorSpec(("N", 5)), backend="reference")
    assert isinstance(cm, lf.CompiledModule)
    assert cm.model is model and cm.graph.model is model
    assert cm.specs == (lf.TensorSpec(("N", 5)),)
    assert all(n.type.is_resolved for n in cm.graph.nodes if n.type is not None)
    assert cm.source == str(cm.graph) and "graph @Residual[N]" in cm.source
    assert isinstance(cm.runner, ReferenceExecutable)
    assert type(model.inp) is nn.Linear


def test_custom_backend_gets_its_pipeline_and_graph():
    built = []

    class Echo:
        name = "echo-test"
        pipeline = ["infer_shapes", "materialize_lazy"]

        def build(self, graph):
            built.append(graph)
            return ReferenceExecutable(graph)

    register_backend(Echo())
    try:
        assert get_backend("echo-test").name == "echo-test"
        cm = lf.compile(nn.Sequential(nn.LazyLinear(2)), ("N", 3), backend="echo-test")
        assert built == [cm.graph]
        assert cm(np.ones((2, 3), np.float32)).shape == (2, 2)
    finally:
        BACKENDS.pop("echo-test")


@pytest.mark.parametrize("args, error, match", [
    ((np.ones((5, 3), np.float32),), TypeError, "takes 2 input\\(s\\), got 1"),
    ((np.ones((5, 3, 1), np.float32), np.ones((5, 2), np.float32)), ShapeError,
     "expected rank 2, got rank 3"),
    ((np.ones((5, 3), np.float64), np.ones((5, 2), np.float32)), DTypeError, "expected dtype float32"),
    ((np.ones((5, 3), np.int64), np.ones((5, 2), np.float32)), DTypeError, "got int64"),
    ((np.ones((5, 4), np.float32), np.ones((5, 2), np.float32)), ShapeError, "dim 1 is 4, expected 3"),
    ((np.ones((5, 3), np.float32), np.ones((6, 2), np.float32)), ShapeError,
     "symbol N is already bound to 5"),
    ((np.ones((1, 3), np.float32), np.ones((1, 2), np.float32)), ShapeError,
     "more than 1 value per channel when training"),
])
def test_bad_inputs_are_rejected_before_any_state_changes(args, error, match):
    lf.manual_seed(0)
    model = M.TwoInputs()
    model.add_module("bn", nn.BatchNorm1d(4))

    class WithBN(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x, y):
            s, _ = self.inner(x, y)
            return self.inner.bn(s)

    wrapper = WithBN(model)
    cm = lf.compile(wrapper, ("N", 3), ("N", 2), backend="reference")
    before = snapshot(wrapper)
    with pytest.raises(error, match=match) as info:
        cm(*args)
    assert "compiled WithBN" in str(info.value) or error is TypeError
    assert_same(before, snapshot(wrapper))
    cm(np.ones((5, 3), np.float32), np.ones((5, 2), np.float32))  # a good call still works
    assert int(model.bn.num_batches_tracked) == 1


def test_inputs_are_made_contiguous():
    model = nn.Sequential(nn.Linear(3, 2))
    model.eval()
    cm = lf.compile(model, ("N", 3), backend="reference")
    x = np.asfortranarray(np.arange(12, dtype=np.float32).reshape(4, 3))
    xt = np.arange(12, dtype=np.float32).reshape(3, 4).T  # a non-contiguous view
    np.testing.assert_allclose(cm(x), model(np.ascontiguousarray(x)), rtol=1e-6)
    np.testing.assert_allclose(cm(xt), model(np.ascontiguousarray(xt)), rtol=1e-6)


def test_compile_errors_leave_the_model_alone():
    for model, spec in [(M.Mismatch(), ("N", 512)), (M.FlattenIntoLazy(), ("N", 3, "L"))]:
        before = snapshot(model)
        with pytest.raises(InferenceError, match="in pass 'infer_shapes'"):
            lf.compile(model, spec, backend="reference")
        assert_same(before, snapshot(model))


@pytest.mark.parametrize("backend", ["reference", "cpu"])
@pytest.mark.parametrize("change, match", [
    (lambda m: setattr(m[1], "momentum", 0.5),
     "'1' \\(BatchNorm1d\\): momentum is now 0.5, compiled with 0.1"),
    (lambda m: setattr(m[1], "momentum", None), "momentum is now None, compiled with 0.1"),
    (lambda m: setattr(m[1], "eps", 1.0), "'1' \\(BatchNorm1d\\): eps is now 1.0, compiled with 1e-05"),
    (lambda m: setattr(m[1], "track_running_stats", False), "track_running_stats is now False"),
    (lambda m: m.__setitem__(2, nn.Identity()), "module '2' is now Identity, compiled as ReLU"),
    (lambda m: m.__setitem__(1, nn.Identity()), "module '1' is now Identity, compiled as BatchNorm1d"),
    (lambda m: m._modules.pop("3"), "module '3' \\(Flatten\\) is no longer in the model"),
    (lambda m: setattr(m[3], "start_dim", 0), "'3' \\(Flatten\\): start_dim is now 0, compiled with 1"),
])
def test_modules_changed_after_compile_give_a_clear_error(backend, change, match):
    """The compiled graph cannot follow another module class or other settings: the next call says
    so (instead of silently running what was compiled), touches nothing, and works once undone."""
    lf.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Flatten())
    cm = lf.compile(model, ("N", 3), backend=backend)
    x = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    cm(x), cm(x)  # replayed from here on, until a module changes
    original = [model[i] for i in range(4)]
    settings = {k: getattr(model[j], k) for j, k in [(1, "momentum"), (1, "eps"), (1, "track_running_stats"),
                                                     (3, "start_dim")]}
    change(model)
    before = snapshot(model)
    with pytest.raises(StateError, match=match + ".*; compile the model again"):
        cm(x)
    assert_same(before, snapshot(model))
    for i, mod in enumerate(original):  # undo: put the compiled modules and settings back
        model._modules[str(i)] = mod
    for k, v in settings.items():
        setattr(model[3 if k == "start_dim" else 1], k, v)
    np.testing.assert_allclose(cm(x), nn.Sequential(*original)(x), rtol=1e-5, atol=1e-6)


def test_a_new_module_of_the_compiled_class_and_settings_is_used():
    lf.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4, momentum=None), nn.ReLU())
    cm = lf.compile(model, ("N", 3), backend="cpu")
    x = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    cm(x)
    model[1] = nn.BatchNorm1d(4, momentum=None)
    model[2] = nn.ReLU()
    ref = copy.deepcopy(model)
    np.testing.assert_allclose(cm(x), ref(x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model[1].running_var, ref[1].running_var, rtol=1e-6)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_read_only_running_stats(backend):
    """Eval calls only read the running stats, so read-only ones (a memory-mapped checkpoint, say)
    work; a train-mode call would update them in place and is refused before anything changes,
    also when the flag flips between two replayed calls (no module change to notice)."""
    lf.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU())
    cm = lf.compile(model, ("N", 3), backend=backend)
    x = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    cm(x), cm(x), cm(x)  # train, replayed
    model[1].running_var.setflags(write=False)
    before = snapshot(model)
    with pytest.raises(StateError, match="module '1' \\(BatchNorm1d\\): batch_norm: buffer '1.running_var' "
                                         "is read-only, and a train-mode call updates it in place"):
        cm(x)
    assert_same(before, snapshot(model))
    model.eval()
    expected = model(x)
    for _ in range(3):
        np.testing.assert_allclose(cm(x), expected, rtol=1e-6, atol=1e-6)
    model[1].running_var.setflags(write=True)
    np.testing.assert_allclose(cm(x), expected, rtol=1e-6, atol=1e-6)
    model.train()
    cm(x), cm(x)
    model[1].num_batches_tracked.setflags(write=False)  # flipped between replayed calls
    with pytest.raises(StateError, match="buffer '1.num_batches_tracked' is read-only"):
        cm(x)
    model[1].num_batches_tracked.setflags(write=True)
    nbt = int(model[1].num_batches_tracked)
    cm(x)
    assert int(model[1].num_batches_tracked) == nbt + 1


def test_read_only_weights_are_used_as_they_are():
    lf.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    cm = lf.compile(model, ("N", 3), backend="cpu")
    x = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    model.eval()
    cm(x), cm(x)
    model[0].weight.setflags(write=False)
    for _ in range(3):
        np.testing.assert_allclose(cm(x), model(x), rtol=1e-6, atol=1e-6)


def test_params_changed_after_compile_give_a_clear_error():
    model = nn.Sequential(nn.LazyLinear(2))
    cm = lf.compile(model, ("N", 3), backend="reference")
    model.double()
    with pytest.raises(DTypeError, match="'0.weight' is now float64, compiled for f32\\[2,3\\]; compile"):
        cm(np.ones((2, 3), np.float32))


def test_params_replaced_or_removed_after_compile_give_clear_errors():
    model = nn.Sequential(nn.Linear(3, 2))
    cm = lf.compile(model, ("N", 3), backend="reference")
    x = np.ones((2, 3), np.float32)
    model[0].weight = nn.Parameter(np.ones((5, 3), np.float32))
    with pytest.raises(ShapeError, match="'0.weight' now has shape \\(5, 3\\), compiled for f32\\[2,3\\]"):
        cm(x)
    model[0].weight = nn.Parameter(np.ones((2, 3), np.float32))
    np.testing.assert_allclose(cm(x), model(x))
    model[0]._parameters["weight"] = nn.UninitializedParameter()
    with pytest.raises(UninitializedParameterError, match="param '0.weight' is uninitialized in the model"):
        cm(x)
    del model[0]._parameters["weight"]
    with pytest.raises(StateError, match="Linear has no parameter 'weight' \\(target '0.weight'\\), "
                                         "compiled with f32\\[2,3\\]; compile the model again"):
        cm(x)
    model[0] = nn.Linear(3, 2, bias=False)
    with pytest.raises(StateError, match="Linear has no parameter 'bias' \\(it is None\\)"):
        cm(x)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_calls_see_every_change_to_the_model_made_after_the_last_call(backend):
    """Calls reuse the arrays fetched for the previous call (and the cpu executable its argument
    list) until a module changes what it holds; each way of changing it must reach the next call."""
    lf.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    cm = lf.compile(model, ("N", 3), backend=backend)
    x = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)

    def check():
        np.testing.assert_allclose(cm(x), model(x), rtol=1e-6, atol=1e-6)

    model.eval()
    check()
    model[0]._parameters["weight"] = nn.Parameter(np.full((4, 3), 0.5, np.float32))  # direct dict write
    check()
    model[0].weight = nn.Parameter(np.full((4, 3), -0.25, np.float32))
    check()
    model[0].weight[0, 0] = 7.0  # in place: the arrays are shared, nothing to refetch
    check()
    model[0] = nn.Linear(3, 4)  # a new submodule with new arrays
    check()
    model[1].running_mean = np.arange(4, dtype=np.float32)
    check()
    out_eval = cm(x)
    model.train()
    check()
    assert not np.allclose(cm(x), out_eval)
    model[1].training = False
    check()
    model[0]._parameters.pop("bias")
    with pytest.raises(StateError, match="Linear has no parameter 'bias'"):
        cm(x)
    model[0].bias = nn.Parameter(np.zeros(4, np.float32))
    check()
    model.double()
    with pytest.raises(DTypeError, match="'0.weight' is now float64"):
        cm(x)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_a_repeated_call_is_replayed_and_anything_else_is_checked_again(backend, monkeypatch):
    """A call like the last two (same model version, inputs of their shapes, strides and dtypes)
    skips the input checks and state fetch; any other input is checked again in full."""
    lf.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU())
    model.eval()
    cm = lf.compile(model, ("N", 3), backend=backend)
    x = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    for _ in range(2):  # the second call like the first binds the replay
        np.testing.assert_allclose(cm(x), model(x), rtol=1e-6, atol=1e-6)

    def no_checks(arrays):
        raise AssertionError("a repeated call was checked again")

    with monkeypatch.context() as m:
        m.setattr(cm, "_check_inputs", no_checks)
        y = x + 1  # a new array like x
        np.testing.assert_allclose(cm(y), model(y), rtol=1e-6, atol=1e-6)
    x7 = np.random.default_rng(1).standard_normal((7, 3)).astype(np.float32)

    class Sub(np.ndarray):
        pass

    for other in (x7, np.asfortranarray(x), np.repeat(x, 2, axis=1)[:, ::2], x.view(Sub)):
        np.testing.assert_allclose(cm(other), model(np.asarray(other, np.float32)), rtol=1e-6, atol=1e-6)
        cm(x), cm(x)
    for bad, error, match in [(x.astype(np.float64), DTypeError, "expected dtype float32"),
                              (x[:, :2].copy(), ShapeError, "dim 1 is 2, expected 3"),
                              (x[None], ShapeError, "expected rank 2, got rank 3")]:
        with pytest.raises(error, match=match):
            cm(bad)
        cm(x), cm(x)
    with pytest.raises(InputError, match="takes 1 input\\(s\\), got 2"):
        cm(x, x)
    with pytest.raises(TypeError, match="takes 1 input\\(s\\), got 0"):  # InputError is a TypeError
        cm()


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_replayed_calls_with_two_inputs_and_two_outputs(backend):
    lf.manual_seed(0)
    model = M.TwoInputs()
    cm = lf.compile(model, ("N", 3), ("N", 2), backend=backend)
    rng = np.random.default_rng(0)
    for _ in range(3):
        x = rng.standard_normal((5, 3)).astype(np.float32)
        y = rng.standard_normal((5, 2)).astype(np.float32)
        for got, want in zip(cm(x, y), model(x, y)):
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    with pytest.raises(ShapeError, match="symbol N is already bound to 5"):
        cm(x, y[:4])


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_replayed_train_calls_update_the_running_stats_every_time(backend):
    lf.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU())
    eager = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU())
    eager.load_state_dict(model.state_dict())
    cm = lf.compile(model, ("N", 3), backend=backend)
    rng = np.random.default_rng(0)
    for _ in range(5):  # calls 3 to 5 are replayed
        x = rng.standard_normal((6, 3)).astype(np.float32)
        np.testing.assert_allclose(cm(x), eager(x), rtol=1e-5, atol=1e-6)
    for name in ("running_mean", "running_var"):
        np.testing.assert_allclose(getattr(model[1], name), getattr(eager[1], name), rtol=1e-5, atol=1e-6)
    assert int(model[1].num_batches_tracked) == int(eager[1].num_batches_tracked) == 5


def test_plain_shape_tuple_spec():
    model = nn.Sequential(nn.LazyLinear(2), nn.ReLU())
    cm = lf.compile(model, (4, 3), backend="reference")
    assert str(cm.graph.inputs[0].type) == "f32[4,3]"
    with pytest.raises(ShapeError, match="dim 0 is 5, expected 4"):
        cm(np.ones((5, 3), np.float32))


@pytest.mark.parametrize("name, spec, shape", [
    ("MLPWithBN", ("N", 28, 28), (4, 28, 28)), ("DynamicNetwork", ("N", 20), (4, 20)),
    ("DynamicMLP", ("N", 20), (4, 20)), ("SimpleNet", ("N", 7), (4, 7)),
])
def test_examples_compile_and_match_eager(name, spec, shape):
    from lazyfuse.examples import mlp

    lf.manual_seed(5)
    model = getattr(mlp, name)()
    cm = lf.compile(model, lf.TensorSpec(spec), backend="reference")
    eager = getattr(mlp, name)()
    eager.load_state_dict(model.state_dict())
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    np.testing.assert_allclose(cm(x), eager(x), rtol=2e-5, atol=2e-6)
    for k, v in model.state_dict().items():
        np.testing.assert_allclose(v, eager.state_dict()[k], rtol=2e-5, atol=2e-6, err_msg=k)


def test_compile_with_the_wrong_number_of_specs_is_a_trace_error():
    from lazyfuse.errors import TraceError

    model = nn.Sequential(nn.Linear(4, 3))
    takes = "model Sequential's forward takes 1 input\\(s\\), got"
    with pytest.raises(TraceError, match=f"{takes} 2 spec\\(s\\)"):
        lf.compile(model, ("N", 4), ("N", 4), backend="reference")
    with pytest.raises(TraceError, match=f"{takes} 0 spec\\(s\\)"):
        lf.compile(model, backend="reference")
    with pytest.raises(TraceError, match="model TwoInputs's forward takes 2 input\\(s\\), got 1 spec"):
        lf.compile(M.TwoInputs(), ("N", 3), backend="reference")


def test_infer_shapes_of_a_model_says_to_trace_it_first():
    from lazyfuse.errors import TraceError

    model = M.ConvLikeBN()
    with pytest.raises(TraceError, match="expected a lazyfuse.Graph, got ConvLikeBN; trace the model first"):
        lf.infer_shapes(model)
    with pytest.raises(TypeError, match="expected a lazyfuse.Graph, got str$"):
        lf.infer_shapes("graph")
    assert model.has_uninitialized_params()


@pytest.mark.parametrize("seed, match", [
    ("a", "seed must be an int, got str 'a'"), (1.5, "got float 1.5"), (None, "got NoneType"),
    (True, "got bool True"), (2**64, "must be in \\[-2\\*\\*63, 2\\*\\*64 - 1\\], got 18446744073709551616"),
    (-(2**63) - 1, "got -9223372036854775809"),
])
def test_manual_seed_rejects_bad_seeds_and_keeps_the_generator(seed, match):
    from lazyfuse.errors import ConfigError
    from lazyfuse.frontends.nn.init import get_generator

    before = get_generator()
    with pytest.raises(ConfigError, match=match):
        lf.manual_seed(seed)
    assert get_generator() is before


def test_manual_seed_takes_negative_seeds_like_torch():
    draws = {s: lf.manual_seed(s).random() for s in (-1, 2**64 - 1, np.int64(-(2**63)), 2**63, 0)}
    assert draws[-1] == draws[2**64 - 1]  # torch seeds -1 as 2**64 - 1 too
    assert draws[2**63] == draws[-(2**63)]
    assert draws[0] != draws[-1]


def test_a_parameter_registered_again_as_a_buffer_is_a_state_error():
    # The graph reads @0.bias as a parameter: a buffer of the same name is not it (nor the reverse).
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    cm = lf.compile(model, lf.TensorSpec(("N", 3)), backend="reference")
    x = np.ones((4, 3), np.float32)
    cm(x)
    bias = model[0].bias
    del model[0].bias
    model[0].register_buffer("bias", np.asarray(bias))
    with pytest.raises(StateError, match=r"Linear has no parameter 'bias' \(target '0.bias'\)"):
        cm(x)
    del model[0].bias
    model[0].bias = bias
    rm = model[1].running_mean
    del model[1].running_mean
    model[1].running_mean = nn.Parameter(rm)
    match = r"BatchNorm1d has no buffer 'running_mean' \(target '1\.running_mean'\)"
    with pytest.raises(StateError, match=match):
        cm(x)
