"""The "Adding an op" recipe: an op defined entirely in this file is verified, typed by infer_shapes,
kept or removed by dce according to its effects, and run by the reference backend."""

from __future__ import annotations

import numpy as np
import pytest

import lazyfuse as lf
from lazyfuse import nn
from lazyfuse.backends.reference import ReferenceExecutable
from lazyfuse.errors import DTypeError, IRError, ShapeError, VerifierError
from lazyfuse.frontends.tracing import traces_module, unregister
from lazyfuse.ir import (
    OPS,
    Graph,
    OpDef,
    ShapeResult,
    Sym,
    TensorType,
    f32,
    has_effects,
    mode_module,
    register_op,
    updated_operands,
    verify,
)
from lazyfuse.ir.ops import AttrSpec
from lazyfuse.passes.manager import PassContext, run_passes


def _same_type_rule(attrs, ts):
    return ShapeResult(ts[0], dict(attrs))


def _total_rule(attrs, ts):
    x, total = ts
    if total.rank != 0 or total.dtype != x.dtype:
        raise DTypeError(f"accumulate: total has type {total}, expected {x.dtype}[]")
    return ShapeResult(x, dict(attrs))


def _neg_impl(attrs, x, training=False):
    return np.negative(x) * attrs["scale"]


def _accumulate_impl(attrs, x, total, training=False):
    if training:
        total += x.sum(dtype=total.dtype)  # in place: the buffer is the model's array
    return x


NEG = OpDef("recipe_neg", {"scale": AttrSpec("float", 1.0)}, ("input",), _same_type_rule, _neg_impl)
ACCUMULATE = OpDef("recipe_accumulate", {}, ("input", "total"), _total_rule, _accumulate_impl,
                   effects=("total",), uses_training=True)


@pytest.fixture
def recipe_ops():
    for op in (NEG, ACCUMULATE):
        register_op(op)
    try:
        yield
    finally:
        for op in (NEG, ACCUMULATE):
            del OPS[op.name]


def _graph(use_acc: bool = True, use_neg: bool = True) -> Graph:
    g = Graph("recipe", ["N"])
    x = g.add_input("x", TensorType(f32, (Sym("N"), 4)))
    total = g.get_attr("buffer", "acc.total", TensorType(f32, ()))
    neg = g.create_node("recipe_neg", [x], {"scale": 2.0}, name="neg")
    acc = g.create_node("recipe_accumulate", [x, total], {}, name="acc", module="acc",
                        module_type="Accumulate")
    outs = ([neg] if use_neg else []) + ([acc] if use_acc else [])
    g.set_output(outs or [x])
    return g


def test_a_new_op_is_verified_typed_kept_and_run(recipe_ops):
    g = run_passes(_graph(), ["infer_shapes"], PassContext(verify=True))
    assert str(g.node("neg").type) == "f32[N,4]" and str(g.node("acc").type) == "f32[N,4]"
    verify(g)
    acc = g.node("acc")
    assert updated_operands(acc) == (g.node("acc.total"),) and has_effects(acc)
    assert mode_module(acc) == "acc" and mode_module(g.node("neg")) is None
    assert not has_effects(g.node("neg"))

    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    total = np.zeros((), np.float32)
    run = ReferenceExecutable(g).run
    neg, same = run([x], {"acc.total": total}, {"acc": True})
    np.testing.assert_array_equal(neg, -2.0 * x)
    np.testing.assert_array_equal(same, x)
    assert float(total) == x.sum()
    run([x], {"acc.total": total}, {"acc": False})  # eval: follows the module's training flag
    assert float(total) == x.sum()


def test_dce_removes_an_unused_op_without_effects_and_keeps_one_with(recipe_ops):
    g = run_passes(_graph(use_acc=False, use_neg=False), ["infer_shapes", "dce"], PassContext(verify=True))
    ops = [n.op for n in g.nodes]
    assert "recipe_neg" not in ops  # unused, no effects
    assert "recipe_accumulate" in ops and "acc.total" in [n.name for n in g.nodes]


def test_the_verifier_and_shape_rule_use_the_new_definition(recipe_ops):
    g = run_passes(_graph(), ["infer_shapes"], PassContext(verify=True))
    g.node("acc").inputs = g.node("acc").inputs[:1]
    with pytest.raises(VerifierError, match=r"expected 2 operands, got 1 \(operands: input, total\)"):
        verify(g)
    g = _graph()
    g.node("acc.total").type = TensorType("float64", ())
    with pytest.raises(DTypeError, match="(?s)accumulate: total has type f64.*IR: .*in pass 'infer_shapes'"):
        run_passes(g, ["infer_shapes"], PassContext(verify=True))


def test_register_op_rejects_malformed_definitions():
    with pytest.raises(IRError, match="already registered"):
        register_op(OPS["relu"])
    with pytest.raises(IRError, match="effect 'state' is not an operand"):
        register_op(OpDef("recipe_bad", {}, ("input",), None, None, effects=("state",)))
    with pytest.raises(IRError, match="unknown kind 'integer'"):
        register_op(OpDef("recipe_bad", {"n": AttrSpec("integer")}, ("input",), None, None))
    assert "recipe_bad" not in OPS


def _no_single_row(attrs, shape, training):
    if training and shape[0] == 1:
        raise ShapeError(f"recipe_rows: expected more than 1 row when training, got input of shape {shape}")


ROWS = OpDef("recipe_rows", {}, ("input",), _same_type_rule, lambda attrs, x, training=False: x,
             uses_training=True, call_check=_no_single_row)


class Rows(nn.Module):
    def forward(self, x):
        return x


@pytest.fixture
def rows_op():
    register_op(ROWS)

    @traces_module(Rows, op="recipe_rows")
    def _rows(tracer, module, x):
        return [x.node], {}

    try:
        yield
    finally:
        unregister(Rows)
        del OPS[ROWS.name]


def test_a_call_check_runs_before_the_compiled_call_and_follows_the_training_flag(rows_op):
    model = nn.Sequential(nn.Linear(3, 3), Rows())
    cm = lf.compile(model, lf.TensorSpec(("N", 3)), backend="reference")
    assert cm(np.ones((2, 3), np.float32)).shape == (2, 3)
    with pytest.raises(ShapeError, match=r"^compiled Sequential: module '1' \(Rows\): recipe_rows: expected "
                                         r"more than 1 row when training, got input of shape \(1, 3\)$"):
        cm(np.ones((1, 3), np.float32))
    model.eval()
    assert cm(np.ones((1, 3), np.float32)).shape == (1, 3)


def test_an_op_that_follows_training_without_a_call_check_takes_one_row():
    # The one-value-per-channel rule is batch_norm's own call check: the runtime names no op, so
    # another op that follows the training flag runs a train-mode call of one row.
    free = OpDef("recipe_rows_free", {}, ("input",), _same_type_rule, lambda attrs, x, training=False: x,
                 uses_training=True)
    register_op(free)

    class Free(nn.Module):
        def forward(self, x):
            return x

    traces_module(Free, op="recipe_rows_free")(lambda tracer, module, x: ([x.node], {}))
    try:
        model = nn.Sequential(nn.Linear(3, 3), Free())
        cm = lf.compile(model, lf.TensorSpec(("N", 3)), backend="reference")
        assert model.training and cm(np.ones((1, 3), np.float32)).shape == (1, 3)
    finally:
        unregister(Free)
        del OPS[free.name]
    assert OPS["fused_bn_relu"].call_check is not None and OPS["fused_linear_relu"].call_check is None


def test_operands_that_are_not_names_are_an_ir_error():
    # The op definition names its operands; the pre-registry ``arity`` forms are refused clearly.
    with pytest.raises(IRError, match=r"operands must be a tuple of names.*got \(1, 3\)"):
        OpDef("recipe_bad", {}, (1, 3), None, None)
    counted = OpDef("recipe_bad", {}, lambda attrs: 2, None, None)
    with pytest.raises(IRError, match="its operands function must return a tuple of names, got 2"):
        counted.operand_names({})
