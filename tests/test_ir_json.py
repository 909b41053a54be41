"""JSON form: exact round trips (attrs with Syms, tuples, None, floats) and clear errors; DOT text."""

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lazyfuse.errors import IRError
from lazyfuse.ir import UNKNOWN, Graph, Loc, Sym, TensorType, f32, verify
from lazyfuse.ir.testing import random_graph

N, L = Sym("N"), Sym("L")


def small_graph():
    g = Graph("g")
    x = g.add_input("x", TensorType(f32, (N, 3, L)))
    attrs = {"shape": (N, -1), "dim": 3 * L, "lazy": UNKNOWN, "none": None, "f": 0.1 + 0.2,
             "tiny": 5e-324, "inf": float("-inf"), "names": ("fc1", "bn1"), "flag": False, "s": "a\"b"}
    y = g.create_node("custom", [x, x], attrs, TensorType(f32, (N, 3 * L)), loc=Loc("m.py", 4),
                      module="blocks.0", module_type="Block")
    g.set_output(y)
    return g


def test_json_round_trip_exact_attrs():
    g = small_graph()
    text = g.to_json()
    data = json.loads(text)
    assert data["format"] == "lazyfuse-ir" and data["version"] == 1 and data["symbols"] == ["N", "L"]
    g2 = Graph.from_json(text)
    assert g2 == g and g2.to_json() == text
    node = g2.node("custom")
    assert node.attrs == g.node("custom").attrs
    assert node.attrs["f"] == 0.1 + 0.2 and node.attrs["tiny"] == 5e-324
    assert isinstance(node.attrs["names"], tuple) and node.attrs["lazy"] is UNKNOWN
    assert node.inputs == (g2.node("x"), g2.node("x")) and g2.node("x").users == [node]
    assert node.loc == Loc("m.py", 4) and node.module == "blocks.0"


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), lazy=st.booleans())
def test_random_graphs_json_round_trip(seed, lazy):
    g = random_graph(random.Random(seed), lazy=lazy)
    g2 = Graph.from_json(g.to_json(indent=1))
    assert g2 == g
    verify(g2)
    assert [n.attrs for n in g2.nodes] == [n.attrs for n in g.nodes]


@pytest.mark.parametrize("mutate, msg", [
    (lambda d: d.update(format="other"), "not a lazyfuse IR JSON"),
    (lambda d: d.update(version=99), "unsupported lazyfuse IR JSON version"),
    (lambda d: d["nodes"][1].update(inputs=["nope"]), "not defined before it"),
    (lambda d: d["nodes"][1].update(name="x"), "duplicate node name"),
    (lambda d: d["nodes"][1].update(type="f99[N]"), "bad node #1"),
    (lambda d: d["nodes"][1]["attrs"].update(shape={"what": 1}), "unknown encoded attribute"),
])
def test_json_errors(mutate, msg):
    data = json.loads(small_graph().to_json())
    mutate(data)
    with pytest.raises(IRError, match=msg):
        Graph.from_json(json.dumps(data))
    with pytest.raises(IRError, match="invalid IR JSON"):
        Graph.from_json("{not json")
    with pytest.raises(IRError, match="invalid IR JSON: expected str, bytes or bytearray, got NoneType"):
        Graph.from_json(None)


def test_unserializable_attr_is_a_clear_error():
    g = small_graph()
    g.node("custom").attrs["bad"] = {"a": 1}
    with pytest.raises(TypeError, match="cannot be serialized"):
        g.to_json()


def test_dot_output():
    g = Graph("net")
    x = g.add_input("x", TensorType(f32, (N, 4)))
    w = g.get_attr("param", "fc1.weight", TensorType(f32, (8, 4)))
    fc = g.create_node("linear", [x, w], {"in_features": 4, "out_features": 8, "bias": False},
                       TensorType(f32, (N, 8)), name="fc1", module="fc1", module_type="Linear")
    odd = g.create_node("relu", [fc], {}, TensorType(f32, (N, 8)), module='evil"}\n{')
    g.set_output(odd)
    dot = g.to_dot()
    assert dot.startswith('digraph "net" {') and dot.rstrip().endswith("}")
    assert 'label="f32[N,8]"' in dot and 'label="f32[N,4]"' in dot
    assert "subgraph cluster_" in dot and 'label="fc1"' in dot
    assert "in_features=4, out_features=8" in dot
    assert 'label="evil\\"}\\n{"' in dot  # escaped: cannot close the label or the graph
    # Every double quote outside an escape opens or closes a string: the count is even per line.
    for line in dot.splitlines():
        assert (line.count('"') - line.count('\\"')) % 2 == 0, line
    assert dot.count(" -> ") == 4


def test_json_document_without_name_or_nodes_is_an_ir_error():
    data = json.loads(small_graph().to_json())
    for key in ("name", "nodes"):
        broken = dict(data)
        del broken[key]
        with pytest.raises(IRError, match="bad IR JSON document"):
            Graph.from_json(json.dumps(broken))
    data["nodes"][1]["type"] = "f32[N,2.5]"
    with pytest.raises(IRError, match="bad node #1"):
        Graph.from_json(json.dumps(data))
