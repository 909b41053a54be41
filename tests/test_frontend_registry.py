"""Adding an op from outside lazyfuse: an OpDef, a module class and a function registered with the
tracer, traced, inferred and run, then every registration removed again."""

from __future__ import annotations

import numpy as np
import pytest

import lazyfuse as lf
from lazyfuse import nn
from lazyfuse.errors import TraceError
from lazyfuse.frontends.tracing import traces_function, traces_method, traces_module, unregister
from lazyfuse.ir.ops import OPS, OpDef, ShapeResult, register_op


class Neg(nn.Module):
    """``-x``: a layer lazyfuse does not know."""

    def forward(self, input):
        return -np.asarray(input)


def neg(input):
    """``-x`` as a function; a traced value takes the call over (like every nn.functional function)."""
    if hasattr(type(input), "__lazyfuse_function__"):
        return input.__lazyfuse_function__(neg, (input,), {})
    return -np.asarray(input)


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.neg = Neg()

    def forward(self, x):
        return neg(self.neg(self.fc(x))).neg()


@pytest.fixture
def registered():
    register_op(OpDef(name="neg", attrs={}, operands=("input",),
                      shape_rule=lambda attrs, ts: ShapeResult(ts[0], dict(attrs)),
                      impl=lambda attrs, x, training=False: np.negative(x)))

    @traces_module(Neg, op="neg")
    def _neg_module(tracer, module, x):
        return [x.node], {}

    @traces_function(neg, op="neg")
    def _neg_function(tracer, args):
        return [tracer.as_node(args["input"], "neg()")], {}

    @traces_method("neg", op="neg")
    def _neg_method(tracer, x):
        return [x.node], {}

    yield
    unregister(Neg, neg, "neg")
    OPS.pop("neg")


def test_a_registered_module_function_and_method_trace_to_the_op(registered):
    g = lf.trace(Model(), ("N", 4))
    body = [line.split("  #")[0].strip() for line in str(g).splitlines() if "= neg(" in line]
    assert body == ["%neg: f32[N,3] = neg(%fc)", "%neg_1: f32[N,3] = neg(%neg)",
                    "%neg_2: f32[N,3] = neg(%neg_1)"]
    assert [n.module for n in g.nodes if n.op == "neg"] == ["neg", None, None]
    lf.ir.verify(lf.infer_shapes(g))


def test_the_registered_op_runs_like_the_eager_model(registered):
    model = Model()
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    cm = lf.compile(model, ("N", 4), backend="reference")
    np.testing.assert_allclose(cm(x), -(-(-model.fc(x))), rtol=1e-6)


def test_subclasses_keep_the_registered_emitter_unless_they_override_forward(registered):
    class Quiet(Neg):
        pass

    class Twice(Neg):
        def forward(self, x):
            return x + x

    g = lf.trace(nn.Sequential(Quiet(), Twice()), ("N", 2))
    assert [n.op for n in g.nodes if n.op not in ("input", "output")] == ["neg", "add"]


def test_hints_list_the_registered_names(registered):
    class Bad(nn.Module):
        def forward(self, x):
            return x.exp()

    with pytest.raises(TraceError, match=r"\(supported: shape, size, dim, reshape, view, flatten, relu, "
                                         r"t, neg, \+\)"):
        lf.trace(Bad(), ("N", 2))

    class UsesNumPy(nn.Module):
        def forward(self, x):
            return np.exp(x)

    with pytest.raises(TraceError, match=r"\(relu, linear, batch_norm, flatten, conv2d, max_pool2d, "
                                         r"\S*test_frontend_registry\.neg\)"):
        lf.trace(UsesNumPy(), ("N", 2))


def test_registering_twice_is_refused_and_cleanup_removes_everything(registered):
    with pytest.raises(ValueError, match="already registered"):
        traces_module(Neg, op="neg")(lambda tracer, module, x: ([x.node], {}))
    unregister(Neg, neg, "neg")

    class Bad(nn.Module):
        def forward(self, x):
            return x.neg()

    with pytest.raises(TraceError, match="'neg' on a traced value is not supported"):
        lf.trace(Bad(), ("N", 2))
    with pytest.raises(TraceError, match="function 'neg' is not supported by the tracer"):
        lf.trace(type("F", (nn.Module,), {"forward": lambda self, x: neg(x)})(), ("N", 2))
    with pytest.raises(TraceError, match="test_frontend_registry.py:.*-np.asarray"):
        lf.trace(nn.Sequential(Neg()), ("N", 2))  # its own forward is traced now: NumPy on a Proxy
