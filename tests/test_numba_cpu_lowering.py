"""The ``cpu`` backend's registries: an op added from outside the package end to end (op table,
kernel, drivers, lowering), the unsupported-op error, and the explicit serial drivers."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from numba import prange

from lazyfuse.backends import module_cache as cache
from lazyfuse.backends.numba_cpu import NumbaCPUExecutable, codegen
from lazyfuse.backends.numba_cpu.registry import (
    LOWERINGS,
    TEMPLATES,
    Template,
    driver,
    kernel,
    linear_ops,
    lowers,
    register_template,
    serial_violations,
    unregister_lowering,
    unregister_template,
)
from lazyfuse.errors import CompileError
from lazyfuse.ir import OPS, Graph, OpDef, ShapeResult, register_op, verify

NEG_GRAPH = """graph @negs[N](%x: f32[N,3]) -> (f32[N,2]) {
  @w: f32[2,3] = param
  %y: f32[N,3] = neg(%x)
  %z: f32[N,2] = linear[bias=false, in_features=3, out_features=2](%y, @w)
  return (%z)
}"""


def _same_type(attrs, in_types):
    return ShapeResult(in_types[0], dict(attrs))


@contextlib.contextmanager
def neg_op():
    """Op ``neg`` added the way code outside lazyfuse would; every registration removed afterwards."""
    try:
        register_op(OpDef("neg", {}, 1, _same_type, lambda attrs, x, training=False: np.negative(x)))

        @kernel(parallel=True)
        def k_neg(x, out):
            for i in prange(x.size):
                out[i] = -x[i]

        @driver
        def op_neg(x, out):
            xf = x.reshape(x.size)
            of = out.reshape(out.size)
            if x.size >= PAR_MIN:  # noqa: F821  (names of the generated module)
                k_neg_p(xf, of)  # noqa: F821
            else:
                k_neg_s(xf, of)  # noqa: F821

        @driver(serial=True)
        def op_neg_s(x, out):
            k_neg_s(x.reshape(x.size), out.reshape(out.size))  # noqa: F821

        @lowers("neg")
        def lower_neg(em, node, out, ins):
            em.emit(f"{out} = np.empty_like({ins[0]})")
            em.emit_run(f"advise_huge({out})")
            em.emit(f"op_neg({ins[0]}, {out})", f"op_neg_s({ins[0]}, {out})")

        yield
    finally:
        OPS.pop("neg", None)
        LOWERINGS.pop("neg", None)
        for name in ("k_neg", "op_neg", "op_neg_s"):
            TEMPLATES.pop(name, None)


@pytest.fixture
def neg():
    with neg_op():
        yield


def test_an_op_added_from_outside_compiles_and_matches_numpy(neg):
    graph = Graph.parse(NEG_GRAPH)
    verify(graph)
    ex = NumbaCPUExecutable(graph)
    src = ex.source
    assert "def k_neg_p(" in src and "def k_neg_s(" in src and "def op_neg_s(" in src
    assert "@kernel" not in src and "@driver" not in src  # decorator lines are not copied
    run, run_s = src.split("\ndef run(")[1].split("\ndef run_s(")
    assert "op_neg(a_x, v_y)" in run and "advise_huge(v_y)" in run
    assert "op_neg_s(a_x, v_y)" in run_s and "advise_huge(" not in run_s
    rng = np.random.default_rng(0)
    w = rng.standard_normal((2, 3)).astype(np.float32)
    x = rng.standard_normal((4, 3)).astype(np.float32)
    want = -x @ w.T
    assert ex.entry([x]) == "run_s"
    np.testing.assert_allclose(ex.run([x], {"w": w}, {}), want, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ex.module.run(x, w), want, rtol=1e-6, atol=1e-6)  # run's path too


def test_registrations_are_removed_afterwards():
    before = codegen.library_source()
    with neg_op():
        assert "neg" in OPS and "neg" in LOWERINGS and "def k_neg_p(" in codegen.library_source()
    assert "neg" not in OPS and "neg" not in LOWERINGS
    assert not {"k_neg", "op_neg", "op_neg_s"} & TEMPLATES.keys()
    assert codegen.library_source() == before


def test_a_template_from_a_source_string_and_name_clashes():
    src = "@some_decorator\ndef k_twice(x, out):\n    out[:] = 2 * x\n"
    try:
        register_template(Template("k_twice", "kernel", source=src))
        lib = codegen.library_source()
        assert "\ndef k_twice(x, out):\n    out[:] = 2 * x\n" in lib and "@some_decorator" not in lib
        with pytest.raises(ValueError, match="already registered"):
            register_template(Template("k_twice", "kernel", source=src))
        with pytest.raises(ValueError, match="'k_stats2d_s' is already taken"):
            register_template(Template("k_stats2d_s", "kernel", source="def k_stats2d_s():\n    pass\n"))
        with pytest.raises(ValueError, match="already has a lowering"):
            lowers("relu")(lambda em, node, out, ins: None)
        # names the generated module defines itself, and sources that cannot be read, fail now
        for name in ("small", "madvise", "PAR_MIN"):
            with pytest.raises(CompileError, match=f"name '{name}' is already taken"):
                register_template(Template(name, "helper", source=f"def {name}():\n    pass\n"))
        namespace: dict = {}
        exec("def k_unreadable(x):\n    return x\n", namespace)  # noqa: S102 - no source file
        with pytest.raises(CompileError, match="template 'k_unreadable': cannot read"):
            register_template(Template("k_unreadable", "kernel", fn=namespace["k_unreadable"]))
    finally:
        unregister_template("k_twice")
    assert "k_twice" not in codegen.library_source()


def test_an_op_without_a_lowering_is_not_supported():
    register_op(OpDef("mystery", {}, 1, _same_type, lambda attrs, x, training=False: x))
    try:
        graph = Graph.parse(NEG_GRAPH.replace("neg(", "mystery("))
        with pytest.raises(CompileError, match=r"^cpu backend: op 'mystery' \(%y.*\) is not supported$"):
            codegen.generate(graph)
    finally:
        del OPS["mystery"]


def test_linear_family_comes_from_the_lowerings():
    assert linear_ops() == {"linear", "fused_linear_relu", "fused_linear_bn", "fused_linear_bn_relu"}
    try:
        lowers("fake_linear", linear=True)(lambda em, node, out, ins: None)
        assert "fake_linear" in linear_ops()
    finally:
        unregister_lowering("fake_linear")
    assert "fake_linear" not in linear_ops()


def test_every_driver_has_a_serial_flavour_that_calls_serial_kernels_only():
    drivers = [t for t in TEMPLATES.values() if t.role == "driver"]
    serial = {t.name: t for t in TEMPLATES.values() if t.role == "serial_driver"}
    assert {t.name + "_s" for t in drivers} == serial.keys()
    parallel = [n for t in TEMPLATES.values() if t.role == "parallel" for n in t.emitted if n.endswith("_p")]
    for name, t in serial.items():
        text = t.text()
        assert text.startswith(f"def {name}(")
        assert not [p for p in parallel if p + "(" in text], name
        assert "PAR_MIN" not in text and "advise_huge" not in text, name


@pytest.fixture(scope="module")
def lib():
    return cache.load_module(codegen.library_source(), "cpu")[0]


@pytest.mark.parametrize("batch_stats", [True, False])
def test_explicit_serial_bn_and_relu_drivers_equal_the_drivers_on_small_inputs(lib, batch_stats):
    """Below PAR_MIN the drivers take the serial kernels too, so the two flavours agree bit for bit."""
    rng = np.random.default_rng(3)
    for shape in ((9, 4), (5, 4, 3)):
        x = rng.standard_normal(shape) * 2 + 1
        c = shape[1]
        results = []
        for name in ("op_bn2", "op_bn2_s") if len(shape) == 2 else ("op_bn3", "op_bn3_s"):
            rm, rv, nbt = np.zeros(c), np.ones(c), np.zeros((), np.int64)
            gamma, beta, out = np.full(c, 1.5), np.full(c, 0.25), np.empty(shape)
            pre = (np.arange(c) * 0.5,) if len(shape) == 2 else ()
            flags = (batch_stats, batch_stats, 0.1, 1e-5, True)  # batch_stats, update, momentum, eps, relu
            getattr(lib, name)(x, out, *pre, gamma, beta, rm, rv, nbt, *flags)
            results.append((out, rm, rv, nbt))
        for a, b in zip(*results):
            np.testing.assert_array_equal(a, b)
    x = rng.standard_normal((3, 5))
    outs = [np.empty_like(x), np.empty_like(x)]
    lib.op_relu(x, outs[0])
    lib.op_relu_s(x, outs[1])
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(outs[1], np.maximum(x, 0))


def test_a_serial_driver_that_reaches_parallel_code_is_refused():
    # through a helper, to a driver of run's flavour (which picks *_p kernels by size)
    helper_src = "def h_bad(x, out):\n    op_relu(x, out)\n"
    driver_src = "def op_bad_s(x, out):\n    h_bad(x, out)\n"
    register_template(Template("h_bad", "helper", source=helper_src))
    register_template(Template("op_bad_s", "serial_driver", source=driver_src))
    try:
        match = r"serial driver 'op_bad_s' reaches 'op_relu' \(through 'h_bad'\)"
        with pytest.raises(CompileError, match=match):
            codegen.library_source()
    finally:
        unregister_template("op_bad_s")
        unregister_template("h_bad")
    assert serial_violations(tuple(TEMPLATES.values())) == []  # the built-in library is clean
