"""ir.graph: the edit API keeps users in sync; names, hoisting, copy, topological order, summary."""

import networkx as nx
import pytest

from lazyfuse.errors import IRError
from lazyfuse.ir import UNKNOWN, Graph, Loc, Sym, TensorType, bn_module, f32, verify

N = Sym("N")


def t(*shape):
    return TensorType(f32, shape)


def mlp():
    g = Graph("mlp")
    x = g.add_input("x", t(N, 784))
    w = g.get_attr("param", "fc1.weight", t(256, 784))
    b = g.get_attr("param", "fc1.bias", t(256))
    fc = g.create_node("linear", [x, w, b], {"in_features": 784, "out_features": 256, "bias": True},
                       t(N, 256), name="fc1", module="fc1", module_type="Linear", loc=Loc("mlp.py", 3))
    r = g.create_node("relu", [fc], {}, t(N, 256), name="relu1", module="relu1", module_type="ReLU")
    g.set_output(r)
    return g


def test_build_and_query():
    g = mlp()
    verify(g)
    assert [n.name for n in g.inputs] == ["x"]
    assert [n.name for n in g.params()] == ["fc1.weight", "fc1.bias"]
    assert g.output.inputs == (g.node("relu1"),)
    assert g.node("fc1").users == [g.node("relu1")]
    assert g.node("x").users == [g.node("fc1")]
    assert g.output_types == [t(N, 256)]
    assert g.symbols == ["N"]
    assert g.node("fc1.weight").ref == "@fc1.weight" and g.node("fc1").ref == "%fc1"


def test_names_are_unique_and_sanitized():
    g = mlp()
    a = g.create_node("relu", [g.node("fc1")], {}, t(N, 256), name="fc1")
    b = g.create_node("relu", [g.node("fc1")], {}, t(N, 256), name="fc1")
    c = g.create_node("relu", [g.node("fc1")], {}, t(N, 256), name="layers.0")
    assert (a.name, b.name, c.name) == ("fc1_1", "fc1_2", "layers_0")


def test_create_node_positions():
    g = mlp()
    fc, relu = g.node("fc1"), g.node("relu1")
    before = g.create_node("relu", [g.node("x")], {}, t(N, 784), name="pre", before=fc)
    after = g.create_node("relu", [fc], {}, t(N, 256), name="post", after=fc)
    tail = g.create_node("relu", [relu], {}, t(N, 256), name="tail")
    names = [n.name for n in g.nodes]
    assert names.index("pre") == names.index("fc1") - 1
    assert names.index("post") == names.index("fc1") + 1
    assert names[-2:] == ["tail", "output"]  # default insertion keeps the output last
    assert before.users == [] and after.inputs == (fc,) and tail.inputs == (relu,)
    with pytest.raises(IRError, match="at most one"):
        g.create_node("relu", [fc], {}, t(N, 256), before=fc, after=fc)


def test_get_attr_hoists_and_reuses():
    g = mlp()
    bn_w = g.get_attr("param", "bn1.weight", t(UNKNOWN))
    rm = g.get_attr("buffer", "bn1.running_mean", t(UNKNOWN))
    names = [n.name for n in g.nodes]
    assert names[:5] == ["x", "fc1.weight", "fc1.bias", "bn1.weight", "bn1.running_mean"]
    assert g.get_attr("param", "bn1.weight", t(UNKNOWN)) is bn_w
    assert rm.attrs == {"target": "bn1.running_mean"}
    with pytest.raises(IRError, match="already exists as a buffer"):
        g.get_attr("param", "bn1.running_mean", t(3))
    with pytest.raises(IRError):
        g.get_attr("constant", "c", t(3))


def test_replace_all_uses_and_erase():
    g = mlp()
    fc, relu = g.node("fc1"), g.node("relu1")
    new = g.create_node("relu", [fc], {}, t(N, 256), name="relu2", after=relu)
    changed = relu.replace_all_uses_with(new)
    assert changed == [g.output] and g.output.inputs == (new,)
    assert relu.users == [] and fc.users == [relu, new]
    g.erase(relu)
    assert fc.users == [new] and "relu1" not in [n.name for n in g.nodes]
    verify(g)
    with pytest.raises(IRError, match="still used by %relu2"):
        g.erase(fc)


def test_replace_input_handles_repeated_operands():
    g = mlp()
    fc = g.node("fc1")
    add = g.create_node("add", [fc, fc], {}, t(N, 256))
    assert fc.users == [g.node("relu1"), add]
    other = g.create_node("relu", [fc], {}, t(N, 256), before=add)
    add.replace_input(fc, other)
    assert add.inputs == (other, other)
    assert add not in fc.users and other.users == [add]
    with pytest.raises(IRError, match="not an input"):
        add.replace_input(fc, other)


def test_inputs_from_another_graph_are_rejected():
    g1, g2 = mlp(), mlp()
    with pytest.raises(IRError, match="different graph"):
        g1.create_node("relu", [g2.node("fc1")], {}, t(N, 256))


def test_set_output_replaces_old_output():
    g = mlp()
    g.set_output([g.node("fc1"), g.node("relu1")])
    assert [n.op for n in g.nodes].count("output") == 1
    assert g.output_types == [t(N, 256), t(N, 256)]
    verify(g)


def test_copy_is_deep_for_ir_and_shares_model():
    class Model:
        pass

    g = mlp()
    model = Model()
    g.model = model
    c = g.copy()
    assert c == g and c is not g and c.model is model
    c.node("fc1").attrs["out_features"] = 7
    c.erase(c.output)
    assert g.node("fc1").attrs["out_features"] == 256 and g.output is not None
    assert all(n.graph is c for n in c.nodes)
    assert "Model" not in str(g)


def test_model_is_held_weakly():
    class Model:
        pass

    g = mlp()
    m = Model()
    g.model = m
    assert g.model is m
    del m
    assert g.model is None


def test_networkx_and_topological_sort():
    g = mlp()
    dg = g.to_networkx()
    assert isinstance(dg, nx.DiGraph) and dg.number_of_nodes() == len(g.nodes)
    assert dg.has_edge(g.node("fc1"), g.node("relu1"))
    # Move the relu in front of its producer; sort restores a valid order.
    relu = g.node("relu1")
    g.nodes.remove(relu)
    g.nodes.insert(1, relu)
    order = g.topological_sort()
    assert order == g.nodes and g.nodes.index(g.node("fc1")) < g.nodes.index(relu)
    assert g.nodes[-1] is g.output
    verify(g)


def test_cycle_detection():
    g = mlp()
    fc, relu = g.node("fc1"), g.node("relu1")
    fc.replace_input(g.node("x"), relu)
    assert set(g.find_cycle()) == {fc, relu}
    with pytest.raises(IRError, match="cycle"):
        g.topological_sort()


def test_loc_never_absolute():
    assert Loc("/home/me/project/mlp.py", 3).file == "mlp.py"
    assert Loc("C:\\proj\\mlp.py", 3).file == "mlp.py"
    assert str(Loc("examples/mlp.py", 12)) == "examples/mlp.py:12"


def test_graph_equality_compares_text():
    assert mlp() == mlp()
    g = mlp()
    g.node("relu1").module_type = "LeakyReLU"
    assert g != mlp()


def test_bn_module_helper():
    g = mlp()
    assert bn_module(g.node("fc1")) is None
    fused = g.create_node("fused_bn_relu", [g.node("fc1")], {"bn_module": "bn1"}, t(N, 256))
    assert bn_module(fused) == "bn1"


def test_summary_table():
    g = Graph("net")
    x = g.add_input("x", t(N, 784))
    w = g.get_attr("param", "fc1.weight", t(10, UNKNOWN))
    b = g.get_attr("param", "fc1.bias", t(10))
    fc = g.create_node("linear", [x, w, b], {"in_features": UNKNOWN, "out_features": 10, "bias": True},
                       t(N, 10), name="fc1", module="fc1", module_type="LazyLinear")
    r = g.create_node("relu", [fc], {}, t(N, 10), module="act", module_type="ReLU")
    g.set_output(r)
    lines = g.summary().splitlines()
    assert lines[0] == "Graph @net(%x: f32[N,784])"
    assert lines[1].split() == ["Module", "Type", "Output", "Params"]
    assert lines[3].split() == ["fc1", "LazyLinear", "f32[N,10]", "?"]
    assert lines[4].split() == ["act", "ReLU", "f32[N,10]", "0"]
    assert lines[-1].startswith("Total params: ? (10 known")
    w.type = t(10, 784)
    assert g.summary().splitlines()[3].split()[-1] == "7,850"
    assert g.summary().splitlines()[-1] == "Total params: 7,850"


def test_unknown_node_name_is_an_ir_error_and_a_key_error():
    from lazyfuse.ir import UnknownNodeError

    with pytest.raises(UnknownNodeError) as info:
        mlp().node("nope")
    assert isinstance(info.value, KeyError) and isinstance(info.value, IRError)
    assert str(info.value) == "graph @mlp has no node named 'nope'"


def test_unprintable_attr_is_an_ir_type_error():
    from lazyfuse.ir import IRTypeError

    g = mlp()
    g.node("relu1").attrs["bad"] = {"a": 1}
    with pytest.raises(IRTypeError, match="cannot be printed in the IR") as info:
        str(g)
    assert isinstance(info.value, TypeError)
