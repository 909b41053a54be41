"""User mistakes at every public entry point raise lazyfuse errors, never a bare builtin exception.

Each entry point is called with a set of wrong arguments; whatever it raises must be a
``LazyFuseError`` (which also derives from the ValueError/TypeError a Python user expects).  A call
that accepts a value is fine too: the test is about what escapes.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import lazyfuse as lf
from lazyfuse import nn
from lazyfuse.errors import LazyFuseError

BAD_VALUES: list[Any] = [None, 0, -1, 2.5, True, "x", "", b"x", [], (), {}, [["N"]], ("N", None), (0,),
                         ("N", 784.0), object(), np.zeros(3, np.int64), np.float32(1.0), float("nan")]


def _tiny_model() -> nn.Module:
    lf.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.LazyBatchNorm1d(), nn.ReLU())


def _compiled() -> Any:
    return lf.compile(_tiny_model(), lf.TensorSpec(("N", 4)), backend="reference")


GRAPH_TEXT = str(lf.trace(_tiny_model(), lf.TensorSpec(("N", 4))))

ENTRY_POINTS: dict[str, Callable[[Any], Any]] = {
    "TensorSpec(shape)": lambda v: lf.TensorSpec(v),
    "TensorSpec(dtype)": lambda v: lf.TensorSpec(("N", 4), dtype=v),
    "trace(model)": lambda v: lf.trace(v, lf.TensorSpec(("N", 4))),
    "trace(spec)": lambda v: lf.trace(_tiny_model(), v),
    "infer_shapes(graph)": lambda v: lf.infer_shapes(v),
    "compile(model)": lambda v: lf.compile(v, lf.TensorSpec(("N", 4)), backend="reference"),
    "compile(spec)": lambda v: lf.compile(_tiny_model(), v, backend="reference"),
    "compile(backend)": lambda v: lf.compile(_tiny_model(), lf.TensorSpec(("N", 4)), backend=v),
    "summary(spec)": lambda v: lf.summary(_tiny_model(), v),
    "CompiledModule(input)": lambda v: _compiled()(v),
    "Graph.parse": lambda v: lf.Graph.parse(v),
    "Graph.parse(edited)": lambda v: lf.Graph.parse(GRAPH_TEXT.replace("linear", str(v), 1)),
    "Graph.from_json": lambda v: lf.Graph.from_json(v),
    "manual_seed": lambda v: lf.manual_seed(v),
    "Linear(in_features)": lambda v: nn.Linear(v, 3),
    "Linear(dtype)": lambda v: nn.Linear(4, 3, dtype=v),
    "LazyLinear(out_features)": lambda v: nn.LazyLinear(v),
    "BatchNorm1d(num_features)": lambda v: nn.BatchNorm1d(v),
    "BatchNorm1d(eps)": lambda v: nn.BatchNorm1d(4, eps=v),
    "BatchNorm1d(momentum)": lambda v: nn.BatchNorm1d(4, momentum=v),
    "Flatten(start_dim)": lambda v: nn.Flatten(v),
    "Conv2d(in_channels)": lambda v: nn.Conv2d(v, 4, 3),
    "Conv2d(kernel_size)": lambda v: nn.Conv2d(3, 4, v),
    "Conv2d(stride)": lambda v: nn.Conv2d(3, 4, 3, stride=v),
    "Conv2d(padding)": lambda v: nn.Conv2d(3, 4, 3, padding=v),
    "Conv2d(dilation)": lambda v: nn.Conv2d(3, 4, 3, dilation=v),
    "Conv2d(groups)": lambda v: nn.Conv2d(4, 4, 3, groups=v),
    "Conv2d(padding_mode)": lambda v: nn.Conv2d(3, 4, 3, padding_mode=v),
    "LazyConv2d(out_channels)": lambda v: nn.LazyConv2d(v, 3),
    "BatchNorm2d(num_features)": lambda v: nn.BatchNorm2d(v),
    "MaxPool2d(kernel_size)": lambda v: nn.MaxPool2d(v),
    "MaxPool2d(stride)": lambda v: nn.MaxPool2d(2, stride=v),
    "MaxPool2d(padding)": lambda v: nn.MaxPool2d(2, padding=v),
    "Conv2d.__call__": lambda v: nn.Conv2d(3, 4, 3)(v),
    "MaxPool2d.__call__": lambda v: nn.MaxPool2d(2)(v),
    "functional.conv2d": lambda v: nn.functional.conv2d(np.ones((1, 3, 5, 5), np.float32),
                                                        np.ones((4, 3, 3, 3), np.float32), padding=v),
    "functional.max_pool2d": lambda v: nn.functional.max_pool2d(np.ones((1, 3, 5, 5), np.float32), v),
    "Module.__call__": lambda v: _tiny_model()(v),
    "Module.train(mode)": lambda v: _tiny_model().train(v),
    "Module.to(dtype)": lambda v: _tiny_model().to(v),
    "Module.load_state_dict": lambda v: _tiny_model().load_state_dict(v),
    "Module.get_submodule": lambda v: _tiny_model().get_submodule(v) if isinstance(v, str) else None,
    "functional.linear": lambda v: nn.functional.linear(v, np.ones((3, 4), np.float32)),
    "functional.relu": lambda v: nn.functional.relu(v),
    "functional.flatten": lambda v: nn.functional.flatten(np.ones((2, 3), np.float32), v),
    "functional.batch_norm": lambda v: nn.functional.batch_norm(np.ones((2, 3), np.float32), v, v,
                                                                training=True),
}


@pytest.mark.parametrize(("entry", "value"), list(itertools.product(ENTRY_POINTS, range(len(BAD_VALUES)))),
                         ids=lambda x: x if isinstance(x, str) else repr(BAD_VALUES[x])[:20])
def test_bad_arguments_raise_lazyfuse_errors(entry: str, value: int) -> None:
    bad = BAD_VALUES[value]
    try:
        ENTRY_POINTS[entry](bad)
    except LazyFuseError:
        pass
    except (KeyError, AttributeError) as exc:  # get_submodule follows torch: AttributeError
        if entry != "Module.get_submodule":
            pytest.fail(f"{entry}({bad!r}) raised {type(exc).__name__}: {exc}")
    except Exception as exc:  # noqa: BLE001 - the point of the test
        pytest.fail(f"{entry}({bad!r}) raised a bare {type(exc).__name__}: {exc}")


def test_a_wrong_argument_error_is_also_the_builtin_users_expect() -> None:
    with pytest.raises(ValueError):
        lf.TensorSpec(("N", 0))
    with pytest.raises(TypeError):
        lf.TensorSpec(("N", 4), dtype="int64")


# ----------------------------------------------------------------- state untouched by a mistake
def _bits(model: nn.Module) -> tuple:
    """Everything a mistake must not change, bit for bit: classes, flags, sizes, array identities,
    shapes, dtypes and bytes."""
    mods = [(p, type(m), m.training, vars(m).get("in_features"), vars(m).get("num_features"))
            for p, m in model.named_modules()]
    arrays = []
    for p, m in model.named_modules():
        for kind in ("parameter", "buffer"):
            for k, v in m.local_state(kind).items():
                raw = None if v is None or nn.is_uninitialized(v) else (v.shape, v.dtype, v.tobytes())
                arrays.append((p, k, id(v), type(v), raw))
    return mods, arrays


def _lazy_model() -> nn.Module:
    lf.manual_seed(0)
    return nn.Sequential(nn.LazyLinear(3), nn.LazyBatchNorm1d(), nn.ReLU())


def _conv_model(lazy: bool = False) -> nn.Module:
    """A conv block in train mode (a call updates the BatchNorm2d's running stats)."""
    lf.manual_seed(0)
    conv = nn.LazyConv2d(4, 3, padding=1) if lazy else nn.Conv2d(3, 4, 3, padding=1)
    bn = nn.LazyBatchNorm2d() if lazy else nn.BatchNorm2d(4)
    return nn.Sequential(conv, bn, nn.ReLU(), nn.MaxPool2d(2))


def _compiled_lazy(model: nn.Module) -> Any:
    return lf.compile(model, lf.TensorSpec(("N", 4)), backend="reference")  # materializes it


# (setup: model -> what the mistake is made on, mistake: (that, bad value) -> anything)
STATEFUL_ENTRY_POINTS: dict[str, tuple[Callable[[Any], Any], Callable[[Any, Any], Any]]] = {
    "Module.__call__": (lambda m: m, lambda m, v: m(v)),
    "Module.__call__(keyword)": (lambda m: m, lambda m, v: m(input=v)),
    "Module.__call__(eval)": (lambda m: m.eval(), lambda m, v: m(v)),
    "Module.train": (lambda m: m, lambda m, v: m.train(v)),
    "Module.to": (lambda m: m, lambda m, v: m.to(v)),
    "Module.to(device)": (lambda m: m, lambda m, v: m.to(device=v)),
    "Module.to(device, dtype)": (lambda m: m, lambda m, v: m.to("cpu", v)),
    "Module.load_state_dict": (lambda m: m, lambda m, v: m.load_state_dict(v)),
    "Module.load_state_dict(entry)": (
        lambda m: m, lambda m, v: m.load_state_dict({**m.state_dict(), "0.bias": v})),
    "trace(spec)": (lambda m: m, lambda m, v: lf.trace(m, v)),
    "summary(spec)": (lambda m: m, lambda m, v: lf.summary(m, v)),
    "compile(spec)": (lambda m: m, lambda m, v: lf.compile(m, v, backend="reference")),
    "compile(backend)": (lambda m: m, lambda m, v: lf.compile(m, ("N", 4), backend=v)),
    "CompiledModule(input)": (_compiled_lazy, lambda cm, v: cm(v)),
    "CompiledModule(keyword)": (_compiled_lazy, lambda cm, v: cm(x=v)),
    "CompiledModule(eval)": (lambda m: _compiled_lazy(m).eval(), lambda cm, v: cm(v)),
    "CompiledModule.train": (_compiled_lazy, lambda cm, v: cm.train(v)),
    "CompiledModule.load_state_dict": (_compiled_lazy, lambda cm, v: cm.load_state_dict(v)),
    "ConvNet.__call__": (lambda m: _conv_model(), lambda m, v: m(v)),
    "ConvNet.__call__(lazy)": (lambda m: _conv_model(lazy=True), lambda m, v: m(v)),
    "ConvNet.load_state_dict(entry)": (
        lambda m: _conv_model(), lambda m, v: m.load_state_dict({**m.state_dict(), "1.running_var": v})),
    "CompiledModule(conv input)": (
        lambda m: lf.compile(_conv_model(lazy=True), ("N", 3, 6, 6), backend="reference"),
        lambda cm, v: cm(v)),
    "Tensor.view": (lambda m: m, lambda m, v: np.ones((2, 4), np.float32).view(lf.Tensor).view(v)),
    "Tensor.size": (lambda m: m, lambda m, v: np.ones((2, 4), np.float32).view(lf.Tensor).size(v)),
    "Tensor.flatten": (lambda m: m, lambda m, v: np.ones((2, 4), np.float32).view(lf.Tensor).flatten(v)),
}


@pytest.mark.parametrize(("entry", "value"),
                         list(itertools.product(STATEFUL_ENTRY_POINTS, range(len(BAD_VALUES)))),
                         ids=lambda x: x if isinstance(x, str) else repr(BAD_VALUES[x])[:20])
def test_a_mistake_leaves_parameters_and_buffers_bit_identical(entry: str, value: int) -> None:
    setup, mistake = STATEFUL_ENTRY_POINTS[entry]
    model = _lazy_model()
    target = setup(model)
    model = target.model if isinstance(target, lf.CompiledModule) else target  # what the mistake is made on
    before = _bits(model)
    try:
        mistake(target, BAD_VALUES[value])
    except LazyFuseError:
        assert _bits(model) == before, f"{entry}({BAD_VALUES[value]!r}) raised but changed the model"
    except Exception as exc:  # noqa: BLE001 - the point of the test
        pytest.fail(f"{entry}({BAD_VALUES[value]!r}) raised a bare {type(exc).__name__}: {exc}")
