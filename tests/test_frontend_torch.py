"""The PyTorch frontend: torch.nn models compiled on the reference and cpu backends vs torch's own
forward (outputs and every state_dict entry), lazy materialization, trace errors, the examples and the
IR text (shared state, call errors, the grad warning and pickling: test_frontend_torch_runtime.py).
Each distinct graph costs the cpu backend a cold Numba compile (seconds on 2 cores), so the cpu
backend runs a few chosen cases; the reference backend (no compile) runs all of them."""

from __future__ import annotations

import copy
import importlib.util
import operator
import os
import re
import warnings

import numpy as np
import pytest

import lazyfuse as lf

torch = pytest.importorskip("torch")
TM = pytest.importorskip("lazyfuse.examples.torch_models")
from torch_frontend_helpers import (  # noqa: E402  (after the importorskip)
    BACKENDS,
    DTYPES,
    TDTYPE,
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

def _line_of(code: str) -> int:
    """The line number of the one line of this file that is ``code`` (stripped)."""
    with open(__file__) as f:
        found = [i for i, line in enumerate(f, 1) if line.strip() == code]
    assert len(found) == 1, (code, found)
    return found[0]


# ----------------------------------------------------------------------------------- test models
class Fn(nn.Module):
    """``forward`` is ``body(self, x)``: the functions and tensor methods the frontend converts."""

    def __init__(self, body, k: int = 6) -> None:
        super().__init__()
        self.body = body
        self.fc, self.fc2 = nn.Linear(k, 5), nn.Linear(k, 5)
        self.w, self.b = nn.Parameter(torch.randn(5, k)), nn.Parameter(torch.randn(5))
        self.gamma, self.beta = nn.Parameter(torch.rand(5) + 0.5), nn.Parameter(torch.randn(5))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.body(self, x)


def _alias(inplace):
    """``y = fc(x); z = inplace(y); y + z``: torch writes ``y`` in place, so this is 2 * z."""
    def body(s, x):
        y = s.fc(x)
        z = inplace(s, y)
        return y + z
    return body


def _fn(body, k: int = 6):
    return lambda: Fn(body, k)


def _cnn() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(inplace=True),
                         nn.MaxPool2d(2), nn.Flatten(), nn.LazyLinear(5), nn.LazyBatchNorm1d(), nn.ReLU())


def _seq(make):
    """``make()`` in a Sequential: a layer below the root is an fx leaf (the root one is converted
    directly, see test_supported_layer_as_root_module)."""
    return lambda: nn.Sequential(make())


def _shared_lazy() -> Fn:
    """One LazyLinear called twice: sized by its first call."""
    m = Fn(lambda s, x: s.fc2(F.relu(s.fc2(x))), k=5)
    m.fc2 = nn.LazyLinear(5)
    return m


CASES = {  # name -> (model factory, input shape)
    "Linear": (_seq(lambda: nn.Linear(6, 5)), (4, 6)),
    "Linear-as-root": (lambda: nn.Linear(6, 5), (4, 6)),  # fx traces Linear.forward: F.linear
    "Linear-nobias": (_seq(lambda: nn.Linear(6, 5, bias=False)), (4, 6)),
    "LazyLinear": (_seq(lambda: nn.LazyLinear(5)), (4, 6)),
    "BatchNorm1d-NC": (lambda: nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5)), (4, 6)),
    "BatchNorm1d-NCL": (_seq(lambda: nn.BatchNorm1d(3)), (4, 3, 5)),
    "LazyBatchNorm1d-NCL": (_seq(lambda: nn.LazyBatchNorm1d(eps=1e-3)), (4, 3, 5)),
    "BatchNorm2d": (_seq(lambda: nn.BatchNorm2d(3)), (2, 3, 4, 4)),
    "LazyBatchNorm2d": (_seq(lambda: nn.LazyBatchNorm2d(momentum=0.3)), (2, 3, 4, 4)),
    "BN-affine-False": (_seq(lambda: nn.BatchNorm1d(5, affine=False)), (4, 5)),
    "BN-no-running-stats": (_seq(lambda: nn.BatchNorm1d(5, track_running_stats=False)), (4, 5)),
    "BN2d-neither": (_seq(lambda: nn.BatchNorm2d(3, affine=False, track_running_stats=False)), (2, 3, 3, 3)),
    "BN-momentum-None": (_seq(lambda: nn.BatchNorm1d(5, momentum=None)), (4, 5)),
    "BN-eps": (_seq(lambda: nn.BatchNorm1d(5, eps=0.5)), (4, 5)),
    "Conv2d-stride-pad": (_seq(lambda: nn.Conv2d(3, 4, 3, stride=2, padding=1)), (2, 3, 7, 7)),
    "LazyConv2d-nobias": (_seq(lambda: nn.LazyConv2d(4, (3, 2), padding=(1, 0), bias=False)), (2, 3, 5, 6)),
    "MaxPool2d": (_seq(lambda: nn.MaxPool2d(2)), (2, 3, 6, 6)),
    "MaxPool2d-stride-pad": (_seq(lambda: nn.MaxPool2d(3, stride=2, padding=1)), (2, 3, 7, 7)),
    "CNN": (_cnn, (3, 3, 6, 6)),
    "Identity-Flatten(1,2)": (lambda: nn.Sequential(nn.Identity(), nn.Flatten(1, 2)), (4, 3, 2, 5)),
    "ReLU": (lambda: nn.Sequential(nn.Linear(6, 5), nn.ReLU()), (4, 6)),
    "F.relu": (_fn(lambda s, x: F.relu(s.fc(x))), (4, 6)),
    "torch.relu": (_fn(lambda s, x: torch.relu(s.fc(x))), (4, 6)),
    "Tensor.relu": (_fn(lambda s, x: s.fc(x).relu()), (4, 6)),
    "torch.relu_-alias": (_fn(_alias(lambda s, y: torch.relu_(y))), (4, 6)),
    "F.relu_-alias": (_fn(_alias(lambda s, y: F.relu_(y))), (4, 6)),
    "F.relu(inplace)-alias": (_fn(_alias(lambda s, y: F.relu(y, inplace=True))), (4, 6)),
    "Tensor.relu_-alias": (_fn(_alias(lambda s, y: y.relu_())), (4, 6)),
    "ReLU(inplace)-alias": (_fn(_alias(lambda s, y: s.act(y))), (4, 6)),
    "Tensor.add_-alias": (_fn(_alias(lambda s, y: y.add_(F.relu(y)))), (4, 6)),
    "F.linear": (_fn(lambda s, x: F.linear(x, s.w, s.b)), (4, 6)),
    "F.linear-nobias": (_fn(lambda s, x: F.linear(x, s.w)), (4, 6)),
    "torch.flatten": (_fn(lambda s, x: s.fc(torch.flatten(x, 1))), (4, 3, 2)),
    "Tensor.flatten": (_fn(lambda s, x: s.fc(x.flatten(1))), (4, 3, 2)),
    "view-size": (_fn(lambda s, x: s.fc(x.view(x.size(0), -1))), (4, 3, 2)),
    "reshape-shape": (_fn(lambda s, x: s.fc(x.reshape(x.shape[0], -1))), (4, 3, 2)),
    "reshape-size()[0]": (_fn(lambda s, x: s.fc(x.reshape((x.size()[0], -1)))), (4, 3, 2)),
    "view-dim()": (_fn(lambda s, x: s.fc(x.view(x.shape[0], x.dim(), -1).flatten(1))), (4, 3, 2)),
    "add-operator": (_fn(lambda s, x: s.fc(x) + s.fc2(x)), (4, 6)),
    "Tensor.t-and-torch.t": (_fn(lambda s, x: torch.t(s.fc(x).t().relu())), (4, 6)),
    "torch.add": (_fn(lambda s, x: torch.add(s.fc(x), s.fc2(x))), (4, 6)),
    "Tensor.add": (_fn(lambda s, x: s.fc(x).add(s.fc2(x))), (4, 6)),
    "F.batch_norm": (_fn(lambda s, x: F.batch_norm(s.fc(x), None, None, s.gamma, s.beta, training=True,
                                                    eps=1e-3)), (4, 6)),
    "F.batch_norm-noaffine": (_fn(lambda s, x: F.batch_norm(s.fc(x), None, None, training=True)), (4, 6)),
    "shared-LazyLinear": (_shared_lazy, (4, 5)),
    "tuple-output": (_fn(lambda s, x: (s.fc(x), F.relu(s.fc2(x)))), (4, 6)),
}
CPU_CASES = ["LazyLinear", "BatchNorm1d-NCL", "BN2d-neither", "BN-momentum-None", "CNN",
             "LazyConv2d-nobias", "MaxPool2d-stride-pad", "torch.relu_-alias", "view-size", "F.batch_norm"]
PARITY = ([pytest.param(c, d, "reference", id=f"{c}-{d}-reference") for c in CASES for d in DTYPES]
          + [pytest.param(c, "float32", "cpu", id=f"{c}-float32-cpu") for c in CPU_CASES])


def _parity(make, shape, dtype: str, backend: str, modes=(True, False, True)) -> None:
    """Compile ``make()``, then for each mode compare a call with a torch twin's forward: outputs,
    the whole state_dict, and the input left as it was."""
    torch.manual_seed(0)
    model = make().to(TDTYPE[dtype])
    cm = lf.compile(model, lf.TensorSpec(("N", *shape[1:]), dtype=dtype), backend=backend)
    _randomize_bn(model)  # in-place writes after compiling: the calls must see them
    twin = copy.deepcopy(model)
    with torch.no_grad():
        for training in modes:
            model.train(training)
            twin.train(training)
            x = torch.randn(shape, dtype=TDTYPE[dtype])
            x_before = x.clone()
            out = cm(x)
            assert torch.equal(x, x_before)
            _assert_outputs(out, twin(x), dtype)
            _assert_state(model, twin, dtype)


# ----------------------------------------------------------------------------------------- 1. numerics
@pytest.mark.parametrize("case, dtype, backend", PARITY)
def test_matches_torch_forward(case, dtype, backend):
    make, shape = CASES[case]
    _parity(make, shape, dtype, backend)


def test_augmented_add_follows_torch_fx_which_records_it_as_a_plain_add():
    """torch.fx records ``z += t`` on a traced tensor as ``z + t`` (its Proxy has no in-place ``+=``), so
    another name of the same tensor keeps the old value in fx's graph: lazyfuse computes what fx's own
    GraphModule computes (README, From PyTorch), which differs from eager torch here."""
    model = Fn(_alias(lambda s, y: operator.iadd(y, F.relu(y))), 6).double()
    fx_module = torch.fx.symbolic_trace(model)
    x = torch.randn(4, 6, dtype=torch.float64)
    cm = lf.compile(model, lf.TensorSpec(("N", 6), dtype="float64"), backend="reference")
    with torch.no_grad():
        _assert_outputs(cm(x), fx_module(x), "float64")
        assert not torch.allclose(fx_module(x), model(x))  # eager torch aliases; fx does not


def test_an_inplace_op_on_a_view_is_refused_when_the_base_is_read_later():
    model = Fn(_alias(lambda s, y: y.view(y.size(0), -1).relu_()), 6)
    snap = _snapshot(model)
    with pytest.raises(lf.TraceError, match=r"in-place op on a view \(reshape\) of a tensor that is used"):
        lf.compile(model, ("N", 6), backend="reference")
    _assert_unchanged(model, snap)
    # Without a later read of the base the write-through is unobservable: it compiles and matches.
    _parity(_fn(lambda s, x: s.fc(x).view(x.size(0), -1).relu_()), (4, 6), "float64", "reference")


@pytest.mark.parametrize("make, shape", [(lambda: nn.BatchNorm1d(3), (4, 3)),
                                         (lambda: nn.Conv2d(3, 4, 3), (2, 3, 5, 5)),
                                         (lambda: nn.MaxPool2d(2), (2, 3, 4, 4)),
                                         (lambda: nn.LazyLinear(5), (4, 6))],
                         ids=["BatchNorm1d", "Conv2d", "MaxPool2d", "LazyLinear"])
def test_supported_layer_as_root_module(make, shape):
    _parity(make, shape, "float32", "reference", modes=(True,))


# -------------------------------------------------------------------------------- 2. train then eval
def _bn_chain() -> nn.Sequential:
    return nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5, momentum=None), nn.ReLU(), nn.Linear(5, 4),
                         nn.LazyBatchNorm1d(affine=False, momentum=0.2, eps=1e-3))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("make, shape, dtype", [(_cnn, (3, 3, 6, 6), "float32"),
                                                (_bn_chain, (5, 6), "float64")], ids=["cnn", "bn-chain"])
def test_train_steps_update_torch_buffers_in_place_then_eval(make, shape, dtype, backend):
    torch.manual_seed(0)
    model = make().to(TDTYPE[dtype])
    cm = lf.compile(model, lf.TensorSpec(("N", *shape[1:]), dtype=dtype), backend=backend)
    twin = copy.deepcopy(model)
    ptrs = {k: v.data_ptr() for k, v in model.state_dict().items()}
    start = _snapshot(model)
    with torch.no_grad():
        for step in range(3):
            x = torch.randn(shape, dtype=TDTYPE[dtype]) * (step + 1) + step
            _assert_outputs(cm(x), twin(x), dtype)
            _assert_state(model, twin, dtype)
        assert {k: v.data_ptr() for k, v in model.state_dict().items()} == ptrs  # updated in place
        moved = [k for k in start if "running" in k and not torch.equal(start[k], model.state_dict()[k])]
        assert moved and all(int(v) == 3 for k, v in model.state_dict().items() if "num_batches" in k)
        model.eval()
        twin.eval()
        x = torch.randn(shape, dtype=TDTYPE[dtype])
        _assert_outputs(cm(x), twin(x), dtype)
        _assert_state(model, twin, dtype)


# ------------------------------------------------------------------------- 3. lazy materialization
def test_compile_materializes_like_torch_first_forward():
    torch.manual_seed(0)
    a = TM.TorchMLPWithBN()
    torch.manual_seed(0)
    b = TM.TorchMLPWithBN()
    torch.manual_seed(1)
    cm = lf.compile(a, ("N", 784), backend="reference")
    torch.manual_seed(1)
    b.eval()
    b(torch.zeros(2, 784))
    b.train()
    assert type(a.fc2) is nn.Linear and a.fc2.in_features == 256 and a.fc2.weight.shape == (128, 256)
    assert type(a.bn1) is nn.BatchNorm1d and a.bn1.num_features == 256 and a.bn2.num_features == 128
    assert type(a.fc3) is nn.Linear and a.fc3.in_features == 128 and type(a.bn2) is nn.BatchNorm1d
    assert not a.fc2._forward_pre_hooks and not a.bn1._forward_pre_hooks  # lazy hooks removed
    assert not any(isinstance(t, nn.parameter.UninitializedTensorMixin)
                   for t in a.state_dict(keep_vars=True).values())
    _assert_unchanged(a, b.state_dict())  # bit-identical: same sizes, same draws, same order
    x = torch.randn(3, 784)
    with torch.no_grad():
        a.eval()
        b.eval()
        _assert_outputs(cm(x), b(x), "float32")


def test_trace_and_summary_leave_model_lazy():
    m = TM.TorchMLPWithBN()
    fc1 = m.fc1.weight.clone()
    graph = lf.trace(m, ("N", 784))
    assert type(m.fc2) is nn.LazyLinear and m.fc2.has_uninitialized_params()
    assert type(m.bn1) is nn.LazyBatchNorm1d and m.bn1.has_uninitialized_params()
    text = lf.summary(m, ("N", 784))
    assert "Lazy sizes" in text
    rows = {line.split()[0]: line for line in text.splitlines() if line.strip()}
    assert "num_features=256" in rows["bn1"] and "in_features=256" in rows["fc2"]
    assert "num_features=128" in rows["bn2"] and "in_features=128" in rows["fc3"]
    assert "f32[N,10]" in rows["fc3"]
    assert type(m.fc2) is nn.LazyLinear and m.fc2.has_uninitialized_params()
    assert torch.equal(m.fc1.weight, fc1)
    lf.infer_shapes(graph)  # documented: infer_shapes materializes the model's lazy modules
    assert type(m.fc2) is nn.Linear and m.fc2.in_features == 256


# ------------------------------------------------------------------------------------------ 5. errors
class Pair(nn.Module):
    def __init__(self, first: nn.Module, second: nn.Module) -> None:
        super().__init__()
        self.first, self.second = first, second

    def forward(self, x):
        return self.second(self.first(x))


@pytest.mark.parametrize("layer", [nn.Dropout(), nn.Softmax(dim=1)], ids=["Dropout", "Softmax"])
def test_unsupported_module_names_path_class_and_line(layer):
    m = Pair(nn.LazyLinear(5), layer)
    with pytest.raises(lf.TraceError) as info:
        lf.compile(m, ("N", 6), backend="reference")
    code = "return self.second(self.first(x))"
    msg = str(info.value)
    assert f"test_frontend_torch.py:{_line_of(code)}: `{code}`" in msg
    assert f"module 'second' ({type(layer).__name__})" in msg and "supported layers" in msg
    assert os.path.dirname(__file__) not in msg
    assert type(m.first) is nn.LazyLinear and m.first.has_uninitialized_params()


class Bad(nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.fc = nn.Linear(6, 5)
        self.bn = nn.LazyBatchNorm1d()

    def forward(self, x):
        if self.kind == "function":
            return torch.sigmoid(self.bn(self.fc(x)))
        if self.kind == "method":
            return self.bn(self.fc(x)).sigmoid()
        if self.kind == "control flow":
            if x.sum() > 0:
                return self.bn(self.fc(x))
        if self.kind == "len":
            return self.bn(self.fc(x)).view(len(x), -1)
        return self.bn(self.fc(x))[:, :2]


UNTRACEABLE = [
    ("function", "return torch.sigmoid(self.bn(self.fc(x)))", ["sigmoid", "not supported"]),
    ("method", "return self.bn(self.fc(x)).sigmoid()", ["Tensor.sigmoid", "not supported"]),
    ("control flow", "if x.sum() > 0:", ["control flow", "without branching"]),
    ("len", "return self.bn(self.fc(x)).view(len(x), -1)", ["'len'", "x.shape[0]"]),
    ("slice", "return self.bn(self.fc(x))[:, :2]", ["indexing a tensor is not supported"]),
]
FX_ERRORS = ("control flow", "len")  # raised by torch.fx itself (the others by the converter)


def _untraceable(kind: str) -> str:
    m = Bad(kind)
    snap = _snapshot(m.fc)
    with pytest.raises(lf.TraceError) as info:
        lf.compile(m, ("N", 6), backend="reference")
    assert type(m.bn) is nn.LazyBatchNorm1d and m.bn.has_uninitialized_params()
    _assert_unchanged(m.fc, snap)
    return str(info.value)


@pytest.mark.parametrize("kind, code, fragments", UNTRACEABLE, ids=[u[0] for u in UNTRACEABLE])
def test_untraceable_forward_is_a_trace_error(kind, code, fragments):
    msg = _untraceable(kind)
    for fragment in fragments:
        assert fragment in msg, msg
    if kind not in FX_ERRORS:
        assert f"test_frontend_torch.py:{_line_of(code)}: `{code}`" in msg, msg


@pytest.mark.parametrize("kind, code", [u[:2] for u in UNTRACEABLE if u[0] in FX_ERRORS], ids=FX_ERRORS)
def test_fx_error_names_the_line_in_tree(kind, code):
    assert f"test_frontend_torch.py:{_line_of(code)}: `{code}`" in _untraceable(kind)


def test_fx_error_names_the_line_outside_the_package(tmp_path):
    src = tmp_path / "user_model.py"
    src.write_text("import torch\n\n\nclass M(torch.nn.Module):\n    def forward(self, x):\n"
                   "        if x.sum() > 0:\n            return x\n        return len(x)\n")
    spec = importlib.util.spec_from_file_location("user_model", src)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    with pytest.raises(lf.TraceError, match=r"^user_model\.py:6: `if x\.sum\(\) > 0:`: .*control flow"):
        lf.trace(mod.M(), ("N", 6))


def test_wrong_number_of_specs_and_unsupported_dtype():
    m = _small()
    with pytest.raises(lf.TraceError, match=r"takes 1 input\(s\), got 2 spec"):
        lf.trace(m, ("N", 6), ("N", 6))
    with pytest.raises(lf.TraceError, match="TensorSpec"):
        lf.compile(m, backend="reference")
    with pytest.raises(lf.TraceError, match="float16"):
        lf.trace(nn.Linear(4, 3).half(), ("N", 4))


@pytest.mark.parametrize("make, spec, words", [
    (lambda: Pair(nn.LazyBatchNorm1d(), nn.Linear(10, 5)), ("N", 7), ["in_features", "10", "7"]),
    (lambda: Pair(nn.LazyBatchNorm2d(), nn.Conv2d(3, 4, 3)), ("N", 4, 6, 6), ["in_channels", "3", "4"]),
], ids=["linear", "conv2d"])
@pytest.mark.parametrize("entry", ["compile", "infer_shapes"])
def test_size_mismatch_is_inference_error_and_model_untouched(make, spec, words, entry):
    m = make()
    snap = _snapshot(m.second)
    with pytest.raises(lf.InferenceError) as info:
        if entry == "compile":
            lf.compile(m, spec, backend="reference")
        else:
            lf.infer_shapes(lf.trace(m, spec))
    msg = str(info.value)
    code = "return self.second(self.first(x))"
    assert "module 'second'" in msg and f"test_frontend_torch.py:{_line_of(code)}" in msg, msg
    assert all(w in msg for w in words), msg
    assert m.first.has_uninitialized_params()
    _assert_unchanged(m.second, snap)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_call_inputs_are_refused_before_any_state_change(backend):
    m = _small().train()
    cm = lf.compile(m, ("N", 6), backend=backend)
    snap = _snapshot(m)
    bad = [(torch.randn(4, 6, dtype=torch.float64), lf.DTypeError, "float64"),
           (np.zeros((4, 6)), lf.DTypeError, "float64"),
           (torch.randn(4, 7), lf.ShapeError, "dim 1 is 7"),
           (torch.randn(1, 6), lf.ShapeError, "more than 1 value per channel"),
           (torch.empty(4, 6, device="meta"), lf.InputError, "meta")]
    with torch.no_grad():
        for x, error, match in bad:
            with pytest.raises(error, match=match):
                cm(x)
            _assert_unchanged(m, snap)
    with warnings.catch_warnings():  # grad mode on: the checked call path
        warnings.simplefilter("ignore", lf.GradientWarning)
        with pytest.raises(lf.InputError, match="meta"):
            cm(torch.empty(4, 6, device="meta"))
    _assert_unchanged(m, snap)
    with torch.no_grad():
        cm(torch.randn(4, 6))
    assert int(m[1].num_batches_tracked) == 1 and not torch.equal(m[1].running_mean, snap["1.running_mean"])


# ------------------------------------------------------------------------------------- 7. the examples
@pytest.mark.parametrize("cls, spec", [(TM.TorchDynamicNetwork, ("N", 20)),
                                       (TM.TorchDynamicMLP, ("N", 1, 28, 28)),
                                       (TM.TorchMLPWithBN, ("N", 784))],
                         ids=["TorchDynamicNetwork", "TorchDynamicMLP", "TorchMLPWithBN"])
def test_examples_match_torch_on_cpu(cls, spec):
    torch.manual_seed(0)
    m = cls()
    cm = lf.compile(m, spec, backend="cpu")
    assert not any(isinstance(mod, nn.modules.lazy.LazyModuleMixin) for mod in m.modules())
    _randomize_bn(m)
    twin = copy.deepcopy(m)
    with torch.no_grad():
        for training in (True, True, False):
            m.train(training)
            twin.train(training)
            x = torch.randn(3, *spec[1:])
            _assert_outputs(cm(x), twin(x), "float32")
            _assert_state(m, twin, "float32")


# ---------------------------------------------------------------------------------------- 8. the IR text
def test_ir_text_names_module_paths_and_source_files():
    text = str(lf.trace(TM.TorchDynamicNetwork(), ("N", 20)))
    for path in ("layers.0:Linear", "layers.1:LazyBatchNorm1d", "layers.2:ReLU", "layers.4:LazyBatchNorm1d"):
        assert path in text
    assert re.search(r"# torch_models\.py:\d+ layers\.0:Linear", text)
    assert "num_features=?" in text and "f32[N,32]" in text
    assert os.path.dirname(os.path.abspath(TM.__file__)) not in text and os.sep + "lazyfuse" not in text
    mlp = lf.trace(TM.TorchDynamicMLP(), ("N", 1, 28, 28))
    assert [n.op for n in mlp.nodes if n.op in ("reshape", "linear", "relu")] == [
        "reshape", "linear", "relu", "linear", "relu", "linear"]
    assert "layers.0:LazyLinear" in str(mlp) and "in_features=?" in str(mlp)
    assert "in_features=784" in str(lf.infer_shapes(mlp))


def test_ir_location_is_the_users_line():
    torch.manual_seed(0)
    text = str(lf.trace(Pair(nn.LazyLinear(5), nn.ReLU()), ("N", 6)))
    line = _line_of("return self.second(self.first(x))")
    assert f"# test_frontend_torch.py:{line} first:LazyLinear" in text
    assert f"# test_frontend_torch.py:{line} second:ReLU" in text
