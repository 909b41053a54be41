"""The pass manager: registration, order, verification after each pass, printing, timings."""

from __future__ import annotations

import models_for_tests as M
import pytest

import lazyfuse as lf
from lazyfuse.errors import CompileError, VerifierError
from lazyfuse.ir.types import TensorType
from lazyfuse.passes import manager
from lazyfuse.passes.manager import PassContext, get_pass, register_pass, run_passes


@pytest.fixture
def scratch_passes():
    for name in ("infer_shapes", "materialize_lazy", "dce"):
        get_pass(name)  # registered before the snapshot, so restoring keeps them
    saved = dict(manager.PASSES)
    yield
    manager.PASSES.clear()
    manager.PASSES.update(saved)


def test_tests_verify_by_default():
    assert PassContext().verify is True  # conftest sets LAZYFUSE_VERIFY=1


def test_verify_default_follows_environment(monkeypatch):
    monkeypatch.setenv("LAZYFUSE_VERIFY", "0")
    assert PassContext().verify is False
    monkeypatch.delenv("LAZYFUSE_VERIFY")
    assert PassContext().verify is False


def test_passes_run_in_order_and_are_timed(scratch_passes):
    calls = []

    @register_pass("note_a")
    def a(graph, ctx):
        calls.append(("a", ctx.model))
        return graph

    @register_pass("note_b")
    def b(graph, ctx):
        calls.append(("b", ctx.model))
        return graph

    model = M.ConvLikeBN()
    g = lf.trace(model, ("N", 3, "L"))
    ctx = PassContext(verify=True)
    assert run_passes(g, ["note_b", "infer_shapes", "note_a"], ctx) is g
    assert calls == [("b", model), ("a", model)]  # ctx.model defaults to graph.model
    assert set(ctx.timings) == {"note_b", "infer_shapes", "note_a"}
    assert all(t >= 0 for t in ctx.timings.values())
    assert get_pass("note_a") is a


def test_unknown_pass_lists_known_ones():
    with pytest.raises(CompileError, match="unknown pass 'nope'.*infer_shapes"):
        run_passes(lf.trace(M.ConvLikeBN(), ("N", 3, "L")), ["nope"])


def test_verifier_catches_a_broken_pass_and_names_it(scratch_passes):
    @register_pass("break_types")
    def broken(graph, ctx):
        node = graph.node("act")
        node.type = TensorType("float32", (1, 2))
        return graph

    g = lf.infer_shapes(lf.trace(M.ConvLikeBN(), ("N", 3, "L")))
    with pytest.raises(VerifierError, match="after pass 'break_types'"):
        run_passes(g, ["break_types"], PassContext(verify=True))
    # Without verification the broken graph goes through unnoticed.
    g = lf.infer_shapes(lf.trace(M.ConvLikeBN(), ("N", 3, "L")))
    run_passes(g, ["break_types"], PassContext(verify=False))


def test_print_after_from_context(capsys):
    g = lf.trace(M.ConvLikeBN(), ("N", 3, "L"))
    run_passes(g, ["infer_shapes", "dce"], PassContext(print_after={"dce"}))
    err = capsys.readouterr().err
    assert err.count("// ----- IR after") == 1
    assert "// ----- IR after dce -----\n" + str(g) in err


def test_print_after_from_environment(capsys, monkeypatch):
    monkeypatch.setenv("LAZYFUSE_PRINT_AFTER", "all")
    g = lf.trace(M.ConvLikeBN(), ("N", 3, "L"))
    run_passes(g, ["infer_shapes", "dce"], PassContext())
    err = capsys.readouterr().err
    assert "// ----- IR after infer_shapes -----" in err and "// ----- IR after dce -----" in err
    monkeypatch.setenv("LAZYFUSE_PRINT_AFTER", "dce, infer_shapes")
    run_passes(g, ["dce"], PassContext())
    assert "// ----- IR after dce -----" in capsys.readouterr().err
    monkeypatch.setenv("LAZYFUSE_PRINT_AFTER", "infer_shapes")
    run_passes(g, ["dce"], PassContext())
    assert capsys.readouterr().err == ""


def test_compile_passes_print_after(capsys):
    ctx = PassContext(print_after="all")
    lf.compile(M.ConvLikeBN(), ("N", 3, "L"), backend="reference", ctx=ctx)
    err = capsys.readouterr().err
    for name in ("infer_shapes", "materialize_lazy", "dce"):
        assert f"// ----- IR after {name} -----" in err
    assert list(ctx.timings) == ["infer_shapes", "materialize_lazy", "dce"]


def test_an_error_inside_a_pass_names_the_pass_and_keeps_its_class(scratch_passes):
    from lazyfuse.errors import DTypeError, ShapeError

    @register_pass("raise_shape")
    def raise_shape(graph, ctx):
        raise ShapeError("bad size")

    @register_pass("raise_multiline")
    def raise_multiline(graph, ctx):
        raise DTypeError("bad dtype\n  IR:       %x")

    @register_pass("raise_named")
    def raise_named(graph, ctx):
        raise ShapeError("already (in pass 'elsewhere')")

    g = lf.trace(M.ConvLikeBN(), ("N", 3, "L"))
    with pytest.raises(ShapeError) as info:
        run_passes(g, ["raise_shape"])
    assert type(info.value) is ShapeError and str(info.value) == "bad size (in pass 'raise_shape')"
    assert str(info.value.__cause__) == "bad size"
    with pytest.raises(DTypeError) as info:
        run_passes(g, ["raise_multiline"])
    assert str(info.value) == "bad dtype\n  IR:       %x\n  (in pass 'raise_multiline')"
    with pytest.raises(ShapeError) as info:
        run_passes(g, ["raise_named"])
    assert str(info.value) == "already (in pass 'elsewhere')" and info.value.__cause__ is None


def test_a_builtin_error_inside_a_pass_is_left_alone(scratch_passes):
    @register_pass("raise_bug")
    def raise_bug(graph, ctx):
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="^a bug$"):
        run_passes(lf.trace(M.ConvLikeBN(), ("N", 3, "L")), ["raise_bug"])
