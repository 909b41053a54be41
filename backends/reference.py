"""The ``reference`` backend: a NumPy interpreter of the IR built on the op table's impls.

It is the semantic oracle other backends are tested against: one impl call per node, no fusion.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence

import numpy as np

from lazyfuse.errors import CompileError
from lazyfuse.ir.graph import Graph, Node
from lazyfuse.ir.ops import OPS, mode_module
from lazyfuse.ir.types import Sym

from . import register_backend


class ReferenceExecutable:
    """Interprets a graph node by node; ``source`` is the IR text."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.source = str(graph)
        for node in graph.nodes:
            if node.op in ("input", "param", "buffer", "output"):
                continue
            opdef = OPS.get(node.op)
            if opdef is None or opdef.impl is None:
                raise CompileError(f"reference backend: op {node.op!r} ({node.ref}) has no NumPy impl")
        self._nodes: list[Node] = list(graph.nodes)
        # Impls such as reshape[shape=(N, -1)] evaluate symbolic attrs with the call's symbol sizes.
        self._wants_bindings = {
            op for op in {n.op for n in self._nodes}
            if op in OPS and OPS[op].impl is not None
            and "bindings" in inspect.signature(OPS[op].impl).parameters
        }

    def run(self, inputs: Sequence[np.ndarray], state: Mapping[str, np.ndarray],
            training: Mapping[str | None, bool]) -> np.ndarray | tuple[np.ndarray, ...]:
        env: dict[Node, np.ndarray] = {}
        bindings: dict[str, int] = {}
        for node in self._nodes:
            if node.op == "input":
                env[node] = inputs[node.attrs["index"]]
                _bind_symbols(node, env[node].shape, bindings)
            elif node.op in ("param", "buffer"):
                env[node] = state[node.attrs["target"]]
            elif node.op == "output":
                results = tuple(env[n] for n in node.inputs)
                return results[0] if len(results) == 1 else results
            else:
                mode = bool(training.get(mode_module(node), False))
                args = [env[n] for n in node.inputs]
                extra = {"bindings": bindings} if node.op in self._wants_bindings else {}
                env[node] = OPS[node.op].impl(node.attrs, *args, training=mode, **extra)
        raise CompileError(f"reference backend: graph @{self.graph.name} has no output node")


def _bind_symbols(node: Node, shape: tuple[int, ...], bindings: dict[str, int]) -> None:
    """Record the sizes of ``node``'s plain symbolic dims (``N``) from an input of ``shape``; the
    caller (``CompiledModule``) has checked the shape against the type already."""
    if len(shape) != node.type.rank:
        raise CompileError(f"reference backend: input %{node.name} has shape {tuple(shape)}, "
                           f"expected rank {node.type.rank} ({node.type})")
    for d, s in zip(node.type.shape, shape):
        if isinstance(d, Sym) and d.coeff == 1 and len(d.names) == 1:
            bindings.setdefault(d.names[0], int(s))


class ReferenceBackend:
    """NumPy interpreter backend (``lazyfuse.compile(..., backend="reference")``)."""

    name = "reference"
    pipeline = ["dce"]  # after the API's inference stage (see lazyfuse.api.pipeline)

    def build(self, graph: Graph) -> ReferenceExecutable:
        return ReferenceExecutable(graph)


BACKEND = register_backend(ReferenceBackend())
