"""Random well-formed graphs for round-trip and pass tests: ``random_graph(random.Random(seed))``.

Chains of linear / batch_norm / relu / flatten / reshape / add over symbolic and concrete dims,
with odd names, locations and float attrs.  With ``lazy=True`` some Linear/BatchNorm sizes are
left as ``?`` (like a traced graph before ``infer_shapes``); otherwise the graph passes ``verify``.
"""

from __future__ import annotations

import random

from .graph import Graph, Loc, Node
from .ops import infer_node
from .types import UNKNOWN, Sym, TensorType, f32, f64, i64

_ODD_NAMES = ["fc", "layers.0", "0", "blocks.1.bn", "weird name", 'q"uote', "x#y", "ünï"]


def _module_info(rng: random.Random, i: int) -> dict[str, object]:
    info: dict[str, object] = {}
    if rng.random() < 0.7:
        info["module"] = rng.choice(_ODD_NAMES) + str(i) if rng.random() < 0.3 else f"m{i}"
        info["module_type"] = rng.choice(["Linear", "LazyLinear", "BatchNorm1d", "ReLU", None])
    if rng.random() < 0.6:
        info["loc"] = Loc(rng.choice(["mlp.py", "/abs/path/model.py", "pkg/net.py", "my file.py"]),
                          rng.randint(1, 500))
    return info


def _add_node(g: Graph, op: str, inputs: list[Node], attrs: dict, lazy_inputs: dict[int, TensorType],
              rng: random.Random, i: int) -> Node:
    types = [n.type for n in inputs]
    res = infer_node(op, attrs, types)  # the resolved types, computed from concrete operands
    for k, ty in lazy_inputs.items():
        inputs[k].type = ty
    node_attrs = res.attrs if not lazy_inputs else attrs
    return g.create_node(op, inputs, node_attrs, res.out, name=rng.choice([op, f"v{i}", "fc1"]),
                         **_module_info(rng, i))  # type: ignore[arg-type]


def random_graph(rng: random.Random, lazy: bool = False, max_ops: int = 8) -> Graph:
    """A random chain graph; deterministic for a given ``rng`` state."""
    dtype = rng.choice([f32, f64])
    g = Graph(rng.choice(["net", "MLPWithBN", "odd graph"]))
    n_sym = Sym("N")
    shape: list = [n_sym, rng.randint(1, 6)]
    if rng.random() < 0.5:
        shape.append(rng.choice([Sym("L"), rng.randint(2, 4)]))
    cur = g.add_input(rng.choice(["x", "input", "in.0"]), TensorType(dtype, shape))
    for i in range(rng.randint(1, max_ops)):
        t = cur.type
        assert t is not None
        op = rng.choice(["linear", "batch_norm", "relu", "flatten", "reshape", "add"])
        last = t.shape[-1]
        if op == "linear" and isinstance(last, int):
            out_f = rng.randint(1, 6)
            bias = rng.random() < 0.7
            is_lazy = lazy and rng.random() < 0.5
            w = g.get_attr("param", f"l{i}.weight", TensorType(dtype, (out_f, last)))
            ins = [cur, w]
            if bias:
                ins.append(g.get_attr("param", f"l{i}.bias", TensorType(dtype, (out_f,))))
            attrs = {"in_features": UNKNOWN if is_lazy else last, "out_features": out_f, "bias": bias}
            lazy_ins = {1: TensorType(dtype, (out_f, UNKNOWN))} if is_lazy else {}
            cur = _add_node(g, "linear", ins, attrs, lazy_ins, rng, i)
        elif op == "batch_norm" and t.rank in (2, 3) and isinstance(t.shape[1], int):
            c = t.shape[1]
            affine, track = rng.random() < 0.7, rng.random() < 0.7
            is_lazy = lazy and rng.random() < 0.5
            vec = TensorType(dtype, (c,))
            ins = [cur]
            if affine:
                ins += [g.get_attr("param", f"b{i}.weight", vec), g.get_attr("param", f"b{i}.bias", vec)]
            if track:
                ins += [g.get_attr("buffer", f"b{i}.running_mean", vec),
                        g.get_attr("buffer", f"b{i}.running_var", vec),
                        g.get_attr("buffer", f"b{i}.num_batches_tracked", TensorType(i64, ()))]
            attrs = {"num_features": UNKNOWN if is_lazy else c,
                     "eps": rng.choice([1e-5, 1e-3, 0.1 + 0.2]),
                     "momentum": rng.choice([0.1, None, 1 / 3]), "affine": affine,
                     "track_running_stats": track}
            lazy_ins = {k: TensorType(n.type.dtype, (UNKNOWN,)) for k, n in enumerate(ins)
                        if k > 0 and n.type.rank == 1} if is_lazy else {}
            cur = _add_node(g, "batch_norm", ins, attrs, lazy_ins, rng, i)
        elif op == "flatten" and t.rank >= 2:
            cur = _add_node(g, "flatten", [cur], {"start_dim": 1, "end_dim": -1}, {}, rng, i)
        elif op == "reshape" and t.rank >= 2:
            cur = _add_node(g, "reshape", [cur], {"shape": (n_sym, -1)}, {}, rng, i)
        elif op == "add":
            other = rng.choice([n for n in g.nodes if n.op != "output" and n.type == t])
            cur = _add_node(g, "add", [cur, other], {}, {}, rng, i)
        else:
            cur = _add_node(g, "relu", [cur], {}, {}, rng, i)
    g.set_output([cur] if rng.random() < 0.8 else [cur, g.inputs[0]])
    return g
