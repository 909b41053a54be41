"""A compiled module acts like the module it wraps: modes, parameters, state dicts, keyword inputs,
pickling, repr; ``Module.to`` takes torch's device arguments; an array reshaped in place is caught."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

import lazyfuse as lf
from lazyfuse import nn
from lazyfuse.examples.mlp import MLPWithBN

SPEC = lf.TensorSpec(("N", 784))


def _x(n=4, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 784)).astype(np.float32)


@pytest.fixture
def compiled():
    lf.manual_seed(0)
    model = MLPWithBN()
    return lf.compile(model, SPEC, backend="reference")


def test_train_and_eval_act_on_the_model_and_return_the_compiled_module(compiled):
    assert compiled.training and compiled.model.training
    assert compiled.eval() is compiled
    assert not compiled.training and not compiled.model.bn1.training
    assert compiled.train() is compiled and compiled.model.bn2.training
    compiled.train(False)
    assert not compiled.model.bn1.training
    compiled.training = True  # like module.training = True: the root's flag only
    assert compiled.model.training and not compiled.model.bn1.training
    with pytest.raises(lf.ConfigError, match="training mode is expected to be a bool"):
        compiled.train("yes")


def test_eval_through_the_compiled_module_changes_what_a_call_computes(compiled):
    x = _x()
    before = copy.deepcopy(compiled.model.bn1.running_mean)
    compiled.eval()(x)
    np.testing.assert_array_equal(compiled.model.bn1.running_mean, before)  # eval: no update
    compiled.train()(x)
    assert not np.array_equal(compiled.model.bn1.running_mean, before)


def test_parameters_buffers_and_modules_are_the_models(compiled):
    model = compiled.model
    assert [id(p) for p in compiled.parameters()] == [id(p) for p in model.parameters()]
    assert [n for n, _ in compiled.named_parameters()] == [n for n, _ in model.named_parameters()]
    assert [n for n, _ in compiled.named_buffers()] == [n for n, _ in model.named_buffers()]
    assert len(list(compiled.buffers())) == len(list(model.buffers()))
    assert list(compiled.modules()) == list(model.modules())
    assert [n for n, _ in compiled.named_modules()] == [n for n, _ in model.named_modules()]
    assert [n for n, _ in compiled.named_parameters(prefix="m")][0] == "m.fc1.weight"


def test_state_dict_round_trip_through_the_compiled_module(compiled):
    x = _x()
    compiled.eval()
    sd = {k: np.array(v) for k, v in compiled.state_dict().items()}
    assert list(sd) == list(compiled.model.state_dict())
    before = compiled(x)
    lf.manual_seed(1)
    other = lf.compile(MLPWithBN(), SPEC, backend="reference").eval()
    assert not np.allclose(other(x), before)
    result = other.load_state_dict(sd)
    assert result.missing_keys == [] and result.unexpected_keys == []
    np.testing.assert_array_equal(other(x), before)
    with pytest.raises(lf.StateDictError):
        other.load_state_dict({"fc1.weight": np.zeros((3, 3), np.float32)}, strict=True)
    np.testing.assert_array_equal(other(x), before)  # a failed load changes nothing


def test_keyword_inputs_by_forward_parameter_names(compiled):
    x = _x()
    compiled.eval()
    np.testing.assert_array_equal(compiled(x=x), compiled(x))
    eager = compiled.model(x=x)  # eager takes it too
    np.testing.assert_allclose(compiled(x=x), eager, rtol=1e-5, atol=1e-6)


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.LazyLinear(3)

    def forward(self, a, b):
        return self.fc(a) + b


@pytest.mark.parametrize("args, kwargs, message", [
    ((), {"a": 1, "c": 2}, "unexpected keyword input 'c'"),
    ((np.zeros((2, 4), np.float32),), {"a": 1}, "input 'a' given twice"),
    ((), {"b": 1}, "missing input\\(s\\) 'a'"),
    ((1, 2, 3), {"b": 1}, "takes 2 input\\(s\\), got 3 positional"),
])
def test_keyword_input_mistakes_name_forward_parameters(args, kwargs, message):
    lf.manual_seed(0)
    cm = lf.compile(TwoInputs(), lf.TensorSpec(("N", 4)), lf.TensorSpec(("N", 3)), backend="reference")
    with pytest.raises(lf.InputError, match=r"compiled TwoInputs\(a, b\).*" + message):
        cm(*args, **kwargs)


def test_keyword_inputs_in_any_order():
    lf.manual_seed(0)
    cm = lf.compile(TwoInputs(), lf.TensorSpec(("N", 4)), lf.TensorSpec(("N", 3)), backend="reference")
    a, b = np.ones((2, 4), np.float32), np.full((2, 3), 2.0, np.float32)
    np.testing.assert_array_equal(cm(b=b, a=a), cm(a, b))
    np.testing.assert_array_equal(cm(a, b=b), cm(a, b))


def test_repr_says_backend_specs_and_model(compiled):
    text = repr(compiled)
    assert text.startswith("CompiledModule(\n  backend='reference',\n  specs=(x: f32[N,784]),\n"
                           "  model=MLPWithBN(\n")
    assert "(fc1): Linear(in_features=784, out_features=256, bias=True)" in text


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_pickle_round_trip_recompiles_with_the_same_numbers(backend):
    lf.manual_seed(0)
    cm = lf.compile(MLPWithBN(), SPEC, backend=backend)
    x = _x()
    cm(x)  # a train step: running stats moved
    cm.eval()
    loaded = pickle.loads(pickle.dumps(cm))
    assert isinstance(loaded, lf.CompiledModule) and loaded.backend == backend
    assert loaded.model is not cm.model and not loaded.training
    np.testing.assert_array_equal(loaded.model.bn1.running_mean, cm.model.bn1.running_mean)
    np.testing.assert_allclose(loaded(x), cm(x), rtol=1e-6, atol=1e-6)
    # deepcopy goes the same way: an independent compiled module over a copied model
    clone = copy.deepcopy(cm)
    clone.train()(x)
    assert not cm.training and not np.array_equal(clone.model.bn1.running_mean, cm.model.bn1.running_mean)


def test_pickling_a_compiled_module_built_by_hand_is_a_lazyfuse_error(compiled):
    bare = lf.CompiledModule(compiled.model, compiled.graph, compiled.runner, compiled.specs)
    with pytest.raises(lf.CompileError, match="cannot be pickled: it was not built by lazyfuse.compile"):
        pickle.dumps(bare)


# ----------------------------------------------------------------------------- Module.to devices
def test_to_accepts_cpu_and_torch_style_arguments():
    m = nn.Linear(2, 3)
    assert m.to("cpu") is m and m.to("cpu:0") is m and m.to(device="cpu") is m
    assert m.to("cpu", np.float64).weight.dtype == np.float64
    assert m.to(dtype="float32").weight.dtype == np.float32
    assert m.to(np.zeros(1, np.float64)).weight.dtype == np.float64
    assert m.to("cpu", non_blocking=True) is m


def test_to_accepts_torch_devices_and_dtypes():
    torch = pytest.importorskip("torch")
    m = nn.Linear(2, 3)
    assert m.to(torch.device("cpu")) is m
    assert m.to(torch.float64).weight.dtype == np.float64
    assert m.to(torch.device("cpu"), torch.float32).weight.dtype == np.float32
    with pytest.raises(lf.ConfigError, match="device 'cuda:0'.*backend='cuda'"):
        m.to(torch.device("cuda", 0))


@pytest.mark.parametrize("args, kwargs, message", [
    (("cuda",), {}, "module Linear: to: device 'cuda': lazyfuse models keep their parameters in host "
                    "memory .* backend='cuda'"),
    ((), {"device": "cuda:1"}, "device 'cuda:1'"),
    (("mps",), {}, "unsupported device 'mps'"),
    (("cpu", "int64"), {}, "dtype must be float32 or float64, got 'int64'"),
    ((), {"memory_format": 1}, "unexpected keyword argument\\(s\\) memory_format"),
    (("cpu", np.float32, 1), {}, "at most a device and a dtype, got 3"),
])
def test_to_mistakes_are_config_errors_and_change_nothing(args, kwargs, message):
    m = nn.Linear(2, 3)
    before = {k: np.array(v) for k, v in m.state_dict().items()}
    weight = m.weight
    with pytest.raises(lf.ConfigError, match=message):
        m.to(*args, **kwargs)
    assert m.weight is weight
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
        assert v.dtype == before[k].dtype


# ------------------------------------------------------------------- arrays reshaped in place
@pytest.mark.parametrize("backend", ["reference", "cpu"])
@pytest.mark.parametrize("target", ["fc1.weight", "bn1.running_var"])
def test_an_array_reshaped_in_place_is_caught_before_the_call(backend, target):
    lf.manual_seed(0)
    cm = lf.compile(MLPWithBN(), SPEC, backend=backend).eval()
    x = _x()
    good = cm(x)
    cm(x)  # second call of this signature: the fast replay path is armed
    owner_path, _, name = target.rpartition(".")
    array = getattr(cm.model.get_submodule(owner_path), name)
    shape = array.shape
    array.shape = (shape[::-1] if len(shape) == 2 else (1, shape[0]))
    with pytest.raises(lf.ShapeError, match=f"'{target}' now has shape .*compile the model again"):
        cm(x)
    with pytest.raises(lf.ShapeError):
        cm.model(x)  # eager refuses it too
    array.shape = shape
    np.testing.assert_array_equal(cm(x), good)
