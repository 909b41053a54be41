"""What the backends that generate Python for Numba (``cpu``, ``cuda``) share when they write a
graph's ``run``: unique identifiers for graph values, dims read from the input shapes, the
arguments (inputs, parameters and buffers, BatchNorm ``training`` flags) and the walk over the
graph's nodes.  Each backend's ``Emitter`` subclasses :class:`GraphEmitter` with its own lines."""

from __future__ import annotations

import keyword
import re
from collections.abc import Iterable

from lazyfuse.errors import CompileError
from lazyfuse.ir.graph import Graph, Node
from lazyfuse.ir.ops import mode_module
from lazyfuse.ir.types import UNKNOWN, Sym, TensorType


def identifier(text: str, prefix: str, taken: set[str]) -> str:
    """``prefix + text`` as a Python identifier not in ``taken`` (then added to it)."""
    base = prefix + re.sub(r"\W", "_", text)
    if keyword.iskeyword(base):
        base += "_"
    name, i = base, 1
    while name in taken:
        name, i = f"{base}_{i}", i + 1
    taken.add(name)
    return name


class GraphEmitter:
    """Names and arguments of one generated ``run``; subclasses write the lines (:meth:`emit`,
    :meth:`compute_node`) and may hook :meth:`read_dim` / :meth:`input_added`."""

    backend = "?"  # "cpu backend", ... in messages

    def __init__(self, graph: Graph, reserved: Iterable[str]) -> None:
        self.graph = graph
        self.taken: set[str] = set(reserved)
        self.var: dict[Node, str] = {}
        self.syms: dict[str, str] = {}
        self.params: list[str] = []
        self.args: list[tuple[str, object]] = []
        self.train: dict[str | None, str] = {}

    def emit(self, line: str) -> None:
        raise NotImplementedError

    def compute_node(self, node: Node) -> None:
        raise NotImplementedError

    # -- for lowerings ----------------------------------------------------------------------------
    def dim(self, d: object, where: Node) -> str:
        """The expression of dim ``d`` (an int or a symbol read from an input's shape)."""
        if isinstance(d, int):
            return str(d)
        if isinstance(d, Sym):
            parts = [self._sym(n, where) for n in d.names]
            if d.coeff != 1:
                parts.insert(0, str(d.coeff))
            return " * ".join(parts)
        raise CompileError(f"{self.backend}: {where.ref} has an unresolved dim ({d}); run infer_shapes first")

    def _sym(self, name: str, where: Node) -> str:
        if name not in self.syms:
            raise CompileError(f"{self.backend}: symbol {name} in {where.ref} is not a dim of any input")
        return self.syms[name]

    def dims(self, t: TensorType, where: Node) -> list[str]:
        """The expression of each dim of ``t``."""
        return [self.dim(d, where) for d in t.shape]

    @staticmethod
    def tuple_of(dims: list[str]) -> str:
        """A tuple expression of the expressions ``dims``."""
        return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"

    def shape(self, t: TensorType, where: Node) -> str:
        """The shape tuple expression of ``t``."""
        return self.tuple_of(self.dims(t, where))

    def flag(self, node: Node) -> str:
        """The ``run`` argument holding the ``training`` flag of ``node``'s BatchNorm module."""
        path = mode_module(node)
        if path not in self.train:
            self.train[path] = identifier(path or "model", "t_", self.taken)
            self.args.append(("train", path))
        return self.train[path]

    # -- the walk -------------------------------------------------------------------------------
    def read_dim(self, line: str) -> None:
        """A line ``sym = input.shape[k]`` binding a symbol, at the top of ``run``."""
        self.emit(line)

    def input_added(self, name: str, node: Node) -> None:
        """Called for each graph input after its dims are bound."""

    def source_node(self, node: Node) -> None:
        """An input, parameter or buffer: its ``run`` argument (and the symbols its shape binds)."""
        if node.op == "input":
            name = identifier(node.name, "a_", self.taken)
            self.args.append(("input", node.attrs["index"]))
            for k, d in enumerate(node.type.shape):
                if isinstance(d, Sym) and d.coeff == 1 and len(d.names) == 1 and d.names[0] not in self.syms:
                    sym = identifier(d.names[0], "sym_", self.taken)
                    self.syms[d.names[0]] = sym
                    self.read_dim(f"{sym} = {name}.shape[{k}]")
            self.input_added(name, node)
        else:
            name = identifier(node.attrs["target"], "s_", self.taken)
            self.args.append(("state", node.attrs["target"]))
        self.params.append(name)
        self.var[node] = name

    def walk(self) -> list[str]:
        """Every node of the graph, sources first; returns the output variables."""
        graph = self.graph
        for node in sorted(graph.inputs, key=lambda n: n.attrs["index"]):
            self.source_node(node)
        for node in graph.params():
            self.source_node(node)
        outputs: list[str] = []
        for node in graph.nodes:
            if node.op in ("input", "param", "buffer"):
                continue
            if node.op == "output":
                outputs = [self.var[n] for n in node.inputs]
                continue
            for d in node.type.shape if node.type is not None else ():
                if d is UNKNOWN:
                    raise CompileError(f"{self.backend}: {node.ref} has an unresolved dim; run infer_shapes "
                                       "first")
            self.compute_node(node)
        if not outputs:
            raise CompileError(f"{self.backend}: graph @{graph.name} has no output")
        return outputs

    def ordered_args(self) -> list[tuple[str, object]]:
        """``run``'s arguments after the inputs and state: the training flags, last."""
        return [a for a in self.args if a[0] != "train"] + [("train", p) for p in self.train]

    def signature(self) -> list[str]:
        """``run``'s parameter names in :meth:`ordered_args` order."""
        return self.params + [self.train[p] for p in self.train]
