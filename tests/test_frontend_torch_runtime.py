"""The PyTorch frontend at call time: state shared with the torch model both ways, NumPy and tensor
inputs, models changed after compiling, the grad warning and pickling, on the reference and cpu
backends."""

from __future__ import annotations

import copy
import os
import pickle
import warnings

import numpy as np
import pytest

import lazyfuse as lf

torch = pytest.importorskip("torch")
TM = pytest.importorskip("lazyfuse.examples.torch_models")
from torch_frontend_helpers import (  # noqa: E402  (after the importorskip)
    BACKENDS,
    TOL,
    _assert_outputs,
    _assert_state,
    _assert_unchanged,
    _randomize_bn,
    _small,
    _snapshot,
)

torch.set_num_threads(2)
nn = torch.nn
F = torch.nn.functional


# ---------------------------------------------------------------------------------- 4. state sharing
@pytest.mark.parametrize("backend", BACKENDS)
def test_load_state_dict_and_inplace_writes_are_seen(backend):
    torch.manual_seed(0)
    m = _small()
    cm = lf.compile(m, ("N", 6), backend=backend)
    torch.manual_seed(1)
    other = _small()
    _randomize_bn(other)
    x = torch.randn(4, 6)
    with torch.no_grad():
        m.eval()
        other.eval()
        cm(x.numpy())
        cm(x.numpy())  # the second call takes the replay path
        m.load_state_dict(other.state_dict())
        _assert_outputs(cm(x), other(x), "float32")
        np.testing.assert_allclose(cm(x.numpy()), other(x).numpy(), rtol=1e-5, atol=1e-5)
        m[0].weight.data.mul_(2)
        m[3].bias.add_(1)
        _assert_outputs(cm(x), m(x), "float32")
    opt = torch.optim.SGD(m.parameters(), lr=0.5)  # an optimizer step writes in place too
    m(x).square().sum().backward()
    opt.step()
    with torch.no_grad():
        _assert_outputs(cm(x), m(x), "float32")


REPLACE = {"parameter": lambda m: setattr(m[0], "weight", nn.Parameter(torch.randn(5, 6))),
           "data": lambda m: setattr(m[0].weight, "data", torch.randn(5, 6)),
           "buffer": lambda m: setattr(m[1], "running_mean", torch.randn(5))}


@pytest.mark.parametrize("how", list(REPLACE))
def test_replaced_tensor_is_seen(how):
    m = _small()
    cm = lf.compile(m, ("N", 6), backend="reference")
    x = torch.randn(4, 6)
    m.eval()
    with torch.no_grad():
        cm(x)
        version = cm.model.state_version
        REPLACE[how](m)
        assert cm.model.state_version != version
        _assert_outputs(cm(x), m(x), "float32")


@pytest.mark.parametrize("backend", BACKENDS)
def test_training_modes_are_shared(backend):
    m = _small()
    cm = lf.compile(m, ("N", 6), backend=backend)
    _randomize_bn(m)
    twin = copy.deepcopy(m)
    x = torch.randn(4, 6)
    with torch.no_grad():
        for set_mode in (lambda mod: mod.eval(), lambda mod: mod.train(), lambda mod: mod[1].eval()):
            set_mode(m)
            set_mode(twin)
            _assert_outputs(cm(x), twin(x), "float32")
            _assert_state(m, twin, "float32")
    assert cm.eval() is cm and not cm.training
    assert not any(mod.training for mod in m.modules())
    assert cm.train() is cm and cm.training
    assert all(mod.training for mod in m.modules())


def test_numpy_in_numpy_out_tensor_in_tensor_out():
    m = _small().eval()
    cm = lf.compile(m, ("N", 6), backend="reference")
    x = torch.randn(4, 6)
    with torch.no_grad():
        ref = m(x)
        out_np = cm(x.numpy())
        assert type(out_np) is np.ndarray and out_np.dtype == np.float32 and out_np.shape == (4, 3)
        out_t = cm(x)
        assert type(out_t) is torch.Tensor and out_t.dtype == torch.float32 and not out_t.requires_grad
        kept = out_t.clone()
        by_name = cm(input=x * 2)  # Sequential.forward(input)
        assert type(by_name) is torch.Tensor
        torch.testing.assert_close(by_name, m(x * 2), **TOL["float32"])
        assert torch.equal(out_t, kept)  # a later call does not overwrite an earlier output
        np.testing.assert_allclose(out_np, ref.numpy(), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(out_t, ref, **TOL["float32"])


def test_model_changed_after_compile_is_refused():
    m = _small()
    cm = lf.compile(m, ("N", 6), backend="reference")
    x = torch.randn(4, 6)
    with torch.no_grad():
        cm(x)
        m.double()
        with pytest.raises(lf.DTypeError, match="compile the model again"):
            cm(x)
        m.float()
        m[2] = nn.Identity()
        with pytest.raises(lf.StateError, match="Identity.*ReLU"):
            cm(x)


@pytest.mark.parametrize("setting", ["momentum", "eps"])
def test_changed_module_setting_is_refused(setting):
    m = _small()
    cm = lf.compile(m, ("N", 6), backend="reference")
    x = torch.randn(4, 6)
    with torch.no_grad():
        cm(x)
        cm(x)
        setattr(m[1], setting, 0.5)
        with pytest.raises(lf.StateError, match=setting):
            cm(x)


# ------------------------------------------------------------------------------------ 6. grad warning
def _grad_warnings(calls) -> list:
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        for call in calls:
            call()
    return [w for w in record if issubclass(w.category, lf.GradientWarning)]


def test_grad_mode_warns_once():
    m = _small()
    cm = lf.compile(m, ("N", 6), backend="reference")
    x = torch.randn(4, 6)
    outs = []
    found = _grad_warnings([lambda: outs.append(cm(x)), lambda: outs.append(cm(x))])
    assert len(found) == 1 and "forward only" in str(found[0].message)
    assert os.path.basename(found[0].filename) == "test_frontend_torch_runtime.py"
    assert all(type(o) is torch.Tensor and not o.requires_grad for o in outs)
    assert _grad_warnings([lambda: cm(x)]) == []
    m.requires_grad_(False)  # then only an input can ask for grad
    cm = lf.compile(m, ("N", 6), backend="reference")
    assert _grad_warnings([lambda: cm(x), lambda: cm(x.numpy())]) == []
    xg = x.clone().requires_grad_(True)
    assert len(_grad_warnings([lambda: outs.append(cm(xg)), lambda: cm(xg)])) == 1
    assert not outs[-1].requires_grad


@pytest.mark.parametrize("ctx", [torch.no_grad, torch.inference_mode], ids=["no_grad", "inference_mode"])
def test_no_grad_and_inference_mode_are_silent(ctx):
    m = _small()
    cm = lf.compile(m, ("N", 6), backend="reference")
    x = torch.randn(4, 6)
    outs = []

    def call():
        with ctx():
            outs.append(cm(x))

    assert _grad_warnings([call, call]) == []
    assert all(not o.requires_grad for o in outs)
    assert len(_grad_warnings([lambda: cm(x)])) == 1  # the silence did not use up the warning


# ----------------------------------------------------------------------------------------- 9. pickle
@pytest.mark.parametrize("backend", BACKENDS)
def test_pickle_round_trip_gives_a_separate_working_copy(backend):
    torch.manual_seed(0)
    m = TM.TorchMLPWithBN()
    cm = lf.compile(m, ("N", 784), backend=backend)
    _randomize_bn(m)
    cm2 = pickle.loads(pickle.dumps(cm))
    assert type(cm2) is type(cm) and cm2.backend == backend
    assert cm2.torch_module is not m and type(cm2.torch_module.fc2) is nn.Linear
    _assert_state(cm2.torch_module, m, "float32")
    x = torch.randn(3, 784)
    with torch.no_grad():
        cm.eval()
        cm2.eval()
        _assert_outputs(cm2(x), m(x), "float32")
        snap = _snapshot(m)
        cm2.train()
        cm2(x)
        assert m.training is False
        _assert_unchanged(m, snap)
        assert int(cm2.torch_module.bn1.num_batches_tracked) == 4
