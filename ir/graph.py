"""The graph IR: ``Node`` (a node *is* the value it defines), ``Loc`` and ``Graph`` with its edit API.

Special ops: ``input`` (attr ``index``, printed in the graph header), ``param``/``buffer`` (attr
``target``; the node's name is the target, printed ``@target``), ``output`` (one per graph, its
inputs are the results, its ``type`` is ``None``).
"""

from __future__ import annotations

import os
import re
import weakref
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lazyfuse.errors import IRError, IRParseError, UnknownNodeError

from .types import TensorType

if TYPE_CHECKING:
    import networkx as nx

SOURCE_OPS = ("input", "param", "buffer")
STATE_OPS = ("param", "buffer")


@dataclass(frozen=True)
class Loc:
    """A source location ``file:line``; an absolute ``file`` is reduced to its basename."""

    file: str
    line: int

    def __post_init__(self) -> None:
        f = str(self.file).replace("\\", "/")
        if os.path.isabs(f) or re.match(r"[A-Za-z]:/", f):
            f = f.rsplit("/", 1)[-1]
        object.__setattr__(self, "file", f)
        object.__setattr__(self, "line", int(self.line))

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


class Node:
    """One operation and the value it defines. Edit through :class:`Graph` and the methods here."""

    def __init__(self, graph: Graph, name: str, op: str, inputs: Sequence[Node], attrs: dict[str, Any],
                 type: TensorType | None, loc: Loc | None = None, module: str | None = None,
                 module_type: str | None = None) -> None:
        self.graph = graph
        self.name = name
        self.op = op
        self.attrs: dict[str, Any] = dict(attrs)
        self.type = type
        self.loc = loc
        self.module = module
        self.module_type = module_type
        self._users: dict[Node, None] = {}
        self._inputs: tuple[Node, ...] = ()
        self.inputs = tuple(inputs)

    # -- use lists ------------------------------------------------------------------------------
    @property
    def inputs(self) -> tuple[Node, ...]:
        return self._inputs

    @inputs.setter
    def inputs(self, new: Iterable[Node]) -> None:
        new = tuple(new)
        for n in new:
            if not isinstance(n, Node):
                raise IRError(f"input of {self.ref} must be a Node, got {n!r}")
            if n.graph is not self.graph:
                raise IRError(f"input {n.ref} of {self.ref} belongs to a different graph")
        for old in self._inputs:
            old._users.pop(self, None)
        self._inputs = new
        for n in new:
            n._users[self] = None

    @property
    def users(self) -> list[Node]:
        """Nodes that use this value, in the order they started using it."""
        return list(self._users)

    def replace_input(self, old: Node, new: Node) -> None:
        """Replace every use of ``old`` among this node's inputs by ``new``."""
        if old not in self._inputs:
            raise IRError(f"{old.ref} is not an input of {self.ref}")
        self.inputs = tuple(new if n is old else n for n in self._inputs)

    def replace_all_uses_with(self, other: Node) -> list[Node]:
        """Make every user of this node use ``other`` instead; returns the changed users."""
        if other is self:
            return []
        changed = self.users
        for user in changed:
            user.replace_input(self, other)
        return changed

    # -- printing -------------------------------------------------------------------------------
    @property
    def target(self) -> str | None:
        return self.attrs.get("target") if self.op in STATE_OPS else None

    @property
    def ref(self) -> str:
        """How operands print: ``%name`` or ``@target``."""
        from .printer import format_ref

        return format_ref(self)

    def format(self) -> str:
        """The node's line in the text IR (without indentation)."""
        from .printer import format_node

        return format_node(self)

    def __repr__(self) -> str:
        return self.ref


class Graph:
    """A typed dataflow graph: ordered nodes (topological), declared symbols, one output node."""

    def __init__(self, name: str = "graph", symbols: Iterable[str] = ()) -> None:
        self.name = name
        self.symbols: list[str] = list(symbols)
        self.nodes: list[Node] = []
        self._names: dict[str, Node] = {}
        self._model_ref: Any = None

    # -- model link (kept out of equality, printing and copies' deep state) ---------------------
    @property
    def model(self) -> Any:
        """The model this graph was traced from (held weakly when possible), or ``None``."""
        ref = self._model_ref
        return ref() if isinstance(ref, weakref.ref) else ref

    @model.setter
    def model(self, value: Any) -> None:
        try:
            self._model_ref = weakref.ref(value) if value is not None else None
        except TypeError:
            self._model_ref = value

    # -- queries --------------------------------------------------------------------------------
    @property
    def inputs(self) -> list[Node]:
        return sorted((n for n in self.nodes if n.op == "input"), key=lambda n: n.attrs.get("index", 0))

    @property
    def output(self) -> Node | None:
        for n in reversed(self.nodes):
            if n.op == "output":
                return n
        return None

    @property
    def output_types(self) -> list[TensorType | None]:
        out = self.output
        return [] if out is None else [n.type for n in out.inputs]

    def params(self) -> list[Node]:
        """The ``param`` and ``buffer`` nodes, in graph order."""
        return [n for n in self.nodes if n.op in STATE_OPS]

    def node(self, name: str) -> Node:
        """Look a node up by name (a param/buffer by its target)."""
        try:
            return self._names[name]
        except KeyError:
            raise UnknownNodeError(f"graph @{self.name} has no node named {name!r}") from None

    def __contains__(self, node: object) -> bool:
        return isinstance(node, Node) and node.graph is self and self._names.get(node.name) is node

    def __iter__(self) -> Iterator[Node]:
        return iter(list(self.nodes))

    def __len__(self) -> int:
        return len(self.nodes)

    # -- building -------------------------------------------------------------------------------
    def _unique_name(self, base: str) -> str:
        base = re.sub(r"[^A-Za-z0-9_]", "_", base) or "v"
        if base not in self._names:
            return base
        i = 1
        while f"{base}_{i}" in self._names:
            i += 1
        return f"{base}_{i}"

    def _insert(self, node: Node, before: Node | None, after: Node | None) -> None:
        if before is not None and after is not None:
            raise IRError("pass at most one of before= and after=")
        anchor = before if before is not None else after
        if anchor is not None:
            if anchor not in self:
                raise IRError(f"insertion point {anchor.ref} is not in graph @{self.name}")
            i = self.nodes.index(anchor) + (1 if after is not None else 0)
        else:
            out = self.output
            i = self.nodes.index(out) if out is not None else len(self.nodes)
        self.nodes.insert(i, node)
        self._names[node.name] = node

    def create_node(self, op: str, inputs: Sequence[Node] = (), attrs: dict[str, Any] | None = None,
                    type: TensorType | None = None, name: str | None = None, loc: Loc | None = None,
                    module: str | None = None, module_type: str | None = None,
                    before: Node | None = None, after: Node | None = None) -> Node:
        """Create a node; inserted before ``before``, after ``after``, or before the output node.

        The name (default: the op) is made unique: ``fc1``, ``fc1_1``, ...
        """
        if op in ("input", "param", "buffer", "output"):
            raise IRError(f"use add_input/get_attr/set_output to create {op!r} nodes")
        node = Node(self, self._unique_name(name or op), op, inputs, attrs or {}, type, loc, module,
                    module_type)
        try:
            self._insert(node, before, after)
        except IRError:
            node.inputs = ()
            raise
        return node

    def add_input(self, name: str, type: TensorType) -> Node:
        """Append a graph input; symbols in its type are declared on the graph if new."""
        index = len(self.inputs)
        node = Node(self, self._unique_name(name), "input", (), {"index": index}, type)
        last = max((i for i, n in enumerate(self.nodes) if n.op == "input"), default=-1)
        self.nodes.insert(last + 1, node)
        self._names[node.name] = node
        for s in type.symbols:
            if s not in self.symbols:
                self.symbols.append(s)
        return node

    def get_attr(self, kind: str, target: str, type: TensorType | None) -> Node:
        """The ``param``/``buffer`` node for ``target`` (created after existing ones, or reused)."""
        if kind not in STATE_OPS:
            raise IRError(f"get_attr kind must be 'param' or 'buffer', got {kind!r}")
        existing = self._names.get(target)
        if existing is not None:
            if existing.op != kind:
                raise IRError(f"@{target} already exists as a {existing.op}, not a {kind}")
            return existing
        if not isinstance(target, str) or not target:
            raise IRError(f"bad parameter target {target!r}")
        node = Node(self, target, kind, (), {"target": target}, type)
        last = max((i for i, n in enumerate(self.nodes) if n.op in SOURCE_OPS), default=-1)
        self.nodes.insert(last + 1, node)
        self._names[target] = node
        return node

    def set_output(self, nodes: Node | Sequence[Node]) -> Node:
        """Set the graph results (replacing an existing output node); returns the output node."""
        results = (nodes,) if isinstance(nodes, Node) else tuple(nodes)
        old = self.output
        if old is not None:
            self.erase(old)
        node = Node(self, self._unique_name("output"), "output", results, {}, None)
        self.nodes.append(node)
        self._names[node.name] = node
        return node

    def erase(self, node: Node) -> None:
        """Remove ``node``, which must have no users."""
        if node not in self:
            raise IRError(f"{node.ref} is not in graph @{self.name}")
        if node._users:
            users = ", ".join(u.ref for u in node._users)
            raise IRError(f"cannot erase {node.ref}: it is still used by {users}")
        node.inputs = ()
        self.nodes.remove(node)
        del self._names[node.name]
        if node.op == "input":
            for i, n in enumerate(self.inputs):
                n.attrs["index"] = i

    def rename(self, node: Node, name: str) -> str:
        """Give a (non param/buffer) node a new unique name; returns the name used."""
        if node.op in STATE_OPS:
            raise IRError(f"{node.ref}: a param/buffer is named by its target")
        del self._names[node.name]
        node.name = self._unique_name(name)
        self._names[node.name] = node
        return node.name

    # -- algorithms -----------------------------------------------------------------------------
    def to_networkx(self) -> nx.DiGraph:
        """A ``networkx.DiGraph`` over the Node objects, edges from each input to its user."""
        import networkx as nx

        g = nx.DiGraph()
        for n in self.nodes:
            g.add_node(n, op=n.op, name=n.name)
        for n in self.nodes:
            for i, src in enumerate(n.inputs):
                if g.has_edge(src, n):
                    g.edges[src, n]["index"].append(i)
                else:
                    g.add_edge(src, n, index=[i])
        return g

    def find_cycle(self) -> list[Node] | None:
        """A list of nodes forming a cycle, or ``None`` when the graph is acyclic."""
        # Fast path (and no networkx import, which is slow): inputs defined before their users is a
        # topological order, so there is no cycle.  Only graphs out of order get the real search.
        seen: set[int] = set()
        for n in self.nodes:
            if any(id(i) not in seen for i in n.inputs):
                break
            seen.add(id(n))
        else:
            return None
        import networkx as nx

        try:
            edges = nx.find_cycle(self.to_networkx())
        except nx.NetworkXNoCycle:
            return None
        return [u for u, _ in edges]

    def topological_sort(self) -> list[Node]:
        """Reorder ``nodes`` topologically (stable: keeps the current order where it can).

        Returns the new order; raises :class:`IRError` on a cycle.
        """
        cycle = self.find_cycle()
        if cycle is not None:
            raise IRError("graph has a cycle: " + " -> ".join(n.ref for n in cycle + cycle[:1]))
        import networkx as nx

        pos = {n: (n.op == "output", i) for i, n in enumerate(self.nodes)}
        order = list(nx.lexicographical_topological_sort(self.to_networkx(), key=pos.__getitem__))
        self.nodes[:] = order
        return list(order)

    def copy(self) -> Graph:
        """A deep copy of the IR (nodes, attrs, names); the model link is shared, not copied."""
        g = Graph(self.name, self.symbols)
        g._model_ref = self._model_ref
        mapping: dict[Node, Node] = {}
        for n in self.nodes:
            new = Node(g, n.name, n.op, (), dict(n.attrs), n.type, n.loc, n.module, n.module_type)
            mapping[n] = new
            g.nodes.append(new)
            g._names[new.name] = new
        for n in self.nodes:
            # Inputs may (in a broken graph) point outside; keep what maps.
            mapping[n].inputs = tuple(mapping[i] for i in n.inputs if i in mapping)
        return g

    # -- text and other formats -----------------------------------------------------------------
    def __str__(self) -> str:
        from .printer import format_graph

        return format_graph(self)

    def __repr__(self) -> str:
        return f"<Graph @{self.name}: {len(self.nodes)} nodes>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Graph):
            return NotImplemented
        return str(self) == str(other)

    __hash__ = None  # type: ignore[assignment]

    @staticmethod
    def parse(text: str) -> Graph:
        """Parse the text IR printed by ``str(graph)``."""
        from .parser import parse_graph

        if not isinstance(text, str):
            raise IRParseError(f"Graph.parse: expected the IR text as a str, got {type(text).__name__}")
        return parse_graph(text)

    def to_json(self, indent: int | None = None) -> str:
        """Serialize to JSON (see :mod:`lazyfuse.ir.serialize`)."""
        from .serialize import graph_to_json

        return graph_to_json(self, indent=indent)

    @staticmethod
    def from_json(text: str) -> Graph:
        from .serialize import graph_from_json

        return graph_from_json(text)

    def to_dot(self) -> str:
        """Graphviz DOT text of the graph."""
        from .dot import graph_to_dot

        return graph_to_dot(self)

    def summary(self) -> str:
        """A per-module table: module path, type, output shape, parameter count."""
        from .summary import graph_summary

        return graph_summary(self)

    def verify(self) -> None:
        from .verifier import verify

        verify(self)
