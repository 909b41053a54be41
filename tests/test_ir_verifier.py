"""verify(): accepts well-formed graphs and names the problem in broken ones."""

import random

import pytest

from lazyfuse.errors import VerifierError
from lazyfuse.ir import UNKNOWN, Graph, Sym, TensorType, f32, verify
from lazyfuse.ir.graph import Node
from lazyfuse.ir.testing import random_graph

N = Sym("N")


def t(*shape):
    return TensorType(f32, shape)


def mlp():
    g = Graph("mlp")
    x = g.add_input("x", t(N, 4))
    w = g.get_attr("param", "fc1.weight", t(3, 4))
    b = g.get_attr("param", "fc1.bias", t(3))
    fc = g.create_node("linear", [x, w, b], {"in_features": 4, "out_features": 3, "bias": True}, t(N, 3),
                       name="fc1")
    r = g.create_node("relu", [fc], {}, t(N, 3), name="relu1")
    g.set_output(r)
    return g


def test_good_graphs_pass():
    verify(mlp())
    for seed in range(20):
        verify(random_graph(random.Random(seed), lazy=seed % 2 == 0))


def broken(fn):
    g = mlp()
    fn(g)
    return g


@pytest.mark.parametrize("breaker, msg", [
    # users/inputs consistency
    (lambda g: g.node("fc1")._users.pop(g.node("relu1")), r"@?%fc1 \(linear\): users list misses %relu1"),
    (lambda g: g.node("relu1")._users.update({Node(g, "ghost", "relu", (), {}, t(N, 3)): None}),
     "dangling user %ghost"),
    (lambda g: g.node("x")._users.update({g.node("relu1"): None}), "does not use it"),
    # defined before use
    (lambda g: g.nodes.insert(1, g.nodes.pop(g.nodes.index(g.node("relu1")))),
     "operand 0 \\(%fc1\\) is used before it is defined"),
    # cycle
    (lambda g: g.node("fc1").replace_input(g.node("x"), g.node("relu1")), "cycle"),
    # names
    (lambda g: setattr(g.node("relu1"), "name", "fc1"), "duplicate name 'fc1'"),
    # output
    (lambda g: g.erase(g.output), "exactly one output node, found 0"),
    (lambda g: g.nodes.insert(0, g.nodes.pop()), "must be the last node"),
    # arity and attrs
    (lambda g: setattr(g.node("fc1"), "inputs", g.node("fc1").inputs[:2]), "expected 3 operands, got 2"),
    (lambda g: g.node("fc1").attrs.pop("out_features"), "missing attr 'out_features'"),
    (lambda g: g.node("fc1").attrs.update(bias="yes"), "attr bias='yes' is not a valid bool"),
    (lambda g: g.node("relu1").attrs.update(alpha=1), "unexpected attr 'alpha'"),
    (lambda g: setattr(g.node("relu1"), "op", "gelu"), "unknown op 'gelu'"),
    # types
    (lambda g: setattr(g.node("relu1"), "type", None), "missing or bad type"),
    (lambda g: setattr(g.node("relu1"), "type", t(N, 4)),
     r"type is f32\[N,4\], but the shape rule gives f32\[N,3\]"),
    (lambda g: setattr(g.node("fc1.weight"), "type", t(3, 5)),
     "shape rule fails: linear in_features mismatch"),
    (lambda g: g.node("fc1").attrs.update(in_features=UNKNOWN), "attr in_features=\\? is unresolved"),
    (lambda g: g.node("fc1.bias").attrs.update(target="fc2.bias"), "differs from the node name"),
    (lambda g: g.node("x").attrs.update(index=3), "input indices"),
])
def test_broken_graphs_are_caught(breaker, msg):
    with pytest.raises(VerifierError, match=msg):
        verify(broken(breaker))


def test_lazy_operands_skip_the_shape_check_but_not_the_rest():
    g = mlp()
    g.node("fc1.weight").type = t(3, UNKNOWN)
    g.node("fc1").attrs["in_features"] = UNKNOWN
    verify(g)  # inputs unresolved: nothing to reproduce yet
    g.node("fc1").type = t(N, 3, 1)
    with pytest.raises(VerifierError, match="%relu1"):
        verify(g)  # fc1's own type is not re-derived, but its user's is
    g.node("fc1").type = t(N, 3)
    g.node("fc1.weight").type = t(3, 4)
    with pytest.raises(VerifierError, match="in_features"):
        verify(g)


def test_graph_verify_method():
    g = mlp()
    g.verify()
    g.node("relu1").type = None
    with pytest.raises(VerifierError, match="%relu1 \\(relu\\)"):
        g.verify()
