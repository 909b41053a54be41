"""Text IR: golden printing, parse round trips (hand-built and random graphs), parse errors."""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lazyfuse.errors import IRParseError
from lazyfuse.ir import UNKNOWN, Graph, Loc, Sym, TensorType, f32, i64, verify
from lazyfuse.ir.ops import infer_node
from lazyfuse.ir.testing import random_graph

N = Sym("N")


def t(*shape, dtype=f32):
    return TensorType(dtype, shape)


def lazy_mlp():
    """MLPWithBN as the tracer records it: Linear(784,256) -> LazyBatchNorm1d -> ReLU -> LazyLinear(10)."""
    g = Graph("MLPWithBN")
    x = g.add_input("x", t(N, 28, 28))
    fl = g.create_node("flatten", [x], {"start_dim": 1, "end_dim": -1}, t(N, 784),
                       loc=Loc("/home/u/mlp.py", 12), module="flatten", module_type="Flatten")
    w1 = g.get_attr("param", "fc1.weight", t(256, 784))
    b1 = g.get_attr("param", "fc1.bias", t(256))
    fc1 = g.create_node("linear", [fl, w1, b1], {"bias": True, "in_features": 784, "out_features": 256},
                        t(N, 256), name="fc1", loc=Loc("mlp.py", 13), module="fc1", module_type="Linear")
    state = [g.get_attr("param", "bn1.weight", t(UNKNOWN)), g.get_attr("param", "bn1.bias", t(UNKNOWN)),
             g.get_attr("buffer", "bn1.running_mean", t(UNKNOWN)),
             g.get_attr("buffer", "bn1.running_var", t(UNKNOWN)),
             g.get_attr("buffer", "bn1.num_batches_tracked", t(dtype=i64))]
    bn1 = g.create_node("batch_norm", [fc1, *state],
                        {"num_features": UNKNOWN, "eps": 1e-5, "momentum": 0.1, "affine": True,
                         "track_running_stats": True},
                        t(N, 256), name="bn1", loc=Loc("mlp.py", 14), module="bn1",
                        module_type="LazyBatchNorm1d")
    relu = g.create_node("relu", [bn1], {}, t(N, 256), name="relu1", loc=Loc("mlp.py", 15))
    w2 = g.get_attr("param", "fc2.weight", t(10, UNKNOWN))
    b2 = g.get_attr("param", "fc2.bias", t(10))
    fc2 = g.create_node("linear", [relu, w2, b2], {"bias": True, "in_features": UNKNOWN, "out_features": 10},
                        t(N, 10), name="fc2", module="fc2", module_type="LazyLinear")
    g.set_output(fc2)
    return g


def resolve(g):
    """A tiny infer_shapes: run the shape rules in order, applying resolved attrs and operand types."""
    for node in g.nodes:
        if node.op in ("input", "param", "buffer", "output"):
            continue
        res = infer_node(node.op, node.attrs, [i.type for i in node.inputs])
        node.attrs, node.type = res.attrs, res.out
        for k, ty in res.inputs.items():
            node.inputs[k].type = ty
    return g


LAZY_TEXT = """\
graph @MLPWithBN[N](%x: f32[N,28,28]) -> (f32[N,10]) {
  @fc1.weight: f32[256,784] = param
  @fc1.bias: f32[256] = param
  @bn1.weight: f32[?] = param
  @bn1.bias: f32[?] = param
  @bn1.running_mean: f32[?] = buffer
  @bn1.running_var: f32[?] = buffer
  @bn1.num_batches_tracked: i64[] = buffer
  @fc2.weight: f32[10,?] = param
  @fc2.bias: f32[10] = param
  %flatten: f32[N,784] = flatten[end_dim=-1, start_dim=1](%x)  # mlp.py:12 flatten:Flatten
  %fc1: f32[N,256] = linear[bias=true, in_features=784, out_features=256](%flatten, @fc1.weight, @fc1.bias)  # mlp.py:13 fc1:Linear
  %bn1: f32[N,256] = batch_norm[affine=true, eps=1e-05, momentum=0.1, num_features=?, track_running_stats=true](%fc1, @bn1.weight, @bn1.bias, @bn1.running_mean, @bn1.running_var, @bn1.num_batches_tracked)  # mlp.py:14 bn1:LazyBatchNorm1d
  %relu1: f32[N,256] = relu(%bn1)  # mlp.py:15
  %fc2: f32[N,10] = linear[bias=true, in_features=?, out_features=10](%relu1, @fc2.weight, @fc2.bias)  # fc2:LazyLinear
  return (%fc2)
}"""  # noqa: E501


def test_golden_lazy_graph():
    g = lazy_mlp()
    assert str(g) == LAZY_TEXT
    verify(g)


def test_golden_after_shape_rules():
    text = str(resolve(lazy_mlp()))
    assert "@bn1.weight: f32[256] = param" in text
    assert "@bn1.running_var: f32[256] = buffer" in text
    assert "@fc2.weight: f32[10,256] = param" in text
    assert "num_features=256, track_running_stats=true" in text
    assert "linear[bias=true, in_features=256, out_features=10](%relu1" in text
    assert "?" not in text


@pytest.mark.parametrize("make", [lazy_mlp, lambda: resolve(lazy_mlp())])
def test_round_trip(make):
    g = make()
    g2 = Graph.parse(str(g))
    assert g2 == g and str(g2) == str(g)
    verify(g2)
    assert [n.name for n in g2.nodes] == [n.name for n in g.nodes]
    assert g2.node("fc1").loc == Loc("mlp.py", 13) and g2.node("bn1").module_type == "LazyBatchNorm1d"
    assert g2.node("bn1.weight").attrs == {"target": "bn1.weight"}
    assert g2.node("fc2").attrs == g.node("fc2").attrs


def test_attr_values_round_trip():
    g = Graph("attrs", ["N", "L"])
    x = g.add_input("x", t(N, 3, Sym("L")))
    attrs = {"a": (N, -1), "b": 3 * Sym("L"), "c": UNKNOWN, "d": None, "e": True, "f": 0.1 + 0.2,
             "g": 'say "hi"\n', "h": ("fc1",), "i": (), "j": float("inf"), "k": -7, "l": 1e-300,
             "m": ((1, 2), (N, "s"))}
    n = g.create_node("custom_op", [x], attrs, t(N, 3, Sym("L")), module="weird mod.0",
                      module_type="Odd", loc=Loc("my file.py", 9))
    g.set_output([n, x])
    text = str(g)
    assert "a=(N, -1)" in text and "b=3*L" in text and "c=?" in text and "h=(\"fc1\",)" in text
    assert "e=true" in text and "d=none" in text and "f=0.30000000000000004" in text
    g2 = Graph.parse(text)
    assert g2.node(n.name).attrs == attrs
    assert str(g2) == text
    assert g2.node(n.name).module == "weird mod.0" and g2.node(n.name).loc.file == "my file.py"


def test_odd_names_are_quoted():
    g = Graph("odd graph")
    x = g.add_input("x", t(2))
    w = g.get_attr("param", 'a "quoted".weight', t(2))
    y = g.create_node("add", [x, w], {}, t(2))
    g.set_output(y)
    text = str(g)
    assert text.startswith('graph @"odd graph"(%x: f32[2])')
    assert '@"a \\"quoted\\".weight"' in text
    assert Graph.parse(text) == g


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), lazy=st.booleans())
def test_random_graphs_round_trip(seed, lazy):
    g = random_graph(random.Random(seed), lazy=lazy)
    verify(g)
    text = str(g)
    g2 = Graph.parse(text)
    assert str(g2) == text
    verify(g2)
    assert Graph.parse(str(g.copy())) == g


@pytest.mark.parametrize("text, where, msg", [
    ("", "1:1", "empty input"),
    ("grph @g() -> () {\n}", "1:1", "expected 'graph'"),
    ("graph @g(%x: f33[N]) -> () {\n}", "1:14", "expected a dtype"),
    ("graph @g(%x: f32[N,) -> () {\n}", "1:20", "expected a dim"),
    ("graph @g(%x: f32[N]) -> (f32[N]) {\n  %y: f32[N] = relu(%z)\n  return (%y)\n}", "2:21",
     "undefined value %z"),
    ("graph @g(%x: f32[N]) -> (f32[N]) {\n  %y: f32[N] = relu(@x)\n  return (%y)\n}", "2:21",
     "undefined value @x"),
    ("graph @g(%x: f32[N]) -> (f32[N]) {\n  %x: f32[N] = relu(%x)\n  return (%x)\n}", "2:3",
     "redefinition of %x"),
    ("graph @g(%x: f32[N]) -> (f32[N]) {\n  %y: f32[N] = relu[a=](%x)\n  return (%y)\n}", "2:23",
     "expected an attribute value"),
    ("graph @g(%x: f32[N]) -> (f32[N]) {\n  %y: f32[N] = relu(%x) $\n}", "2:25", "unexpected character"),
    ("graph @g(%x: f32[N]) -> (f32[N]) {\n  return (%x)\n", "2:14", "missing closing"),
    ("graph @g(%x: f32[N]) -> (f32[N]) {\n  return (%x)\n}\nextra", "4:1", "after the closing"),
    ("graph @g(%x: f32[N]) -> (f32[M]) {\n  return (%x)\n}", "1:22", "header declares results"),
    ("graph @g(%x: f32[N]) -> (f32[N]) {\n  @w: f32[N] = relu(%x)\n  return (%x)\n}", "2:3",
     "named @target"),
    ("graph @g(%x: f32[N]) -> (f32[N]) {\n  return (%x)\n  %y: f32[N] = relu(%x)\n}", "3:3",
     "after 'return'"),
    ("graph @g(%x: f32[N]) -> (f32[N]) {\n  %y: f32[N] = relu(%x)  # a.py:1 b.py:2\n  return (%y)\n}",
     "2:35", "two source locations"),
])
def test_parse_errors(text, where, msg):
    with pytest.raises(IRParseError, match=msg) as info:
        Graph.parse(text)
    assert str(info.value).startswith(f"line {where}:")
    if text:
        assert "^" in str(info.value)


@pytest.mark.parametrize("value, got", [(None, "NoneType"), (b"graph @g() -> () {", "bytes"), (3, "int")])
def test_parse_of_a_non_string_names_what_it_got(value, got):
    with pytest.raises(IRParseError, match=f"Graph.parse: expected the IR text as a str, got {got}$"):
        Graph.parse(value)


def test_parse_ignores_blank_and_slash_comment_lines():
    text = "// ----- IR after infer_shapes -----\n" + LAZY_TEXT.replace("\n  return", "\n\n  return")
    assert Graph.parse(text) == lazy_mlp()


def test_annotator_hook_marks_dims_and_attrs_and_defaults_to_plain_text():
    from lazyfuse.ir.printer import Annotator, format_graph

    g = resolve(lazy_mlp())
    assert format_graph(g) == format_graph(g, Annotator()) == str(g)

    class Marker(Annotator):
        mark = "!"

        def dims(self, node):
            return {1} if node.name in ("fc2.weight", "fc2") else ()

        def attrs(self, node):
            return {"in_features"} if node.name == "fc2" else ()

    text = format_graph(g, Marker())
    assert "@fc2.weight: f32[10,256!] = param" in text
    assert "%fc2: f32[N,10!] = linear[bias=true, in_features=256!, out_features=10](" in text
    assert text.splitlines()[0] == "graph @MLPWithBN[N](%x: f32[N,28,28]) -> (f32[N,10!]) {"
    assert text.replace("!", "") == str(g)
