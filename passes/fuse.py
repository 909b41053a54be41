"""``fuse``: rewrite Linear → BatchNorm → ReLU chains into single fused nodes.

The patterns live in one table, longest first; a generic chain matcher applies them.  A chain is
fusable when every intermediate value has exactly one user (so no graph output or second consumer
needs it) and, for the Linear-headed patterns, the Linear's input is 2-D ``(N, in_features)`` — then
BatchNorm's channel axis (dim 1) is the Linear's output axis.  ``(N, C, L)`` BatchNorm after a
Linear therefore stays unfused, while ``fused_bn_relu`` takes 2-D and 3-D inputs.

Fusion only restructures the graph: eval-mode BatchNorm is *not* folded into the weights (the
backends compute scale/shift from the current running statistics at call time).  Each fused op is
registered in the op table with a shape rule and a NumPy impl composed from the original ops', so
the reference backend runs fused graphs and serves as their oracle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from lazyfuse.ir.graph import Graph, Node
from lazyfuse.ir.ops import OPS, AttrSpec, OpDef, ShapeResult, register_op
from lazyfuse.ir.types import TensorType

from .manager import PassContext, register_pass

LINEAR_ATTRS = ("in_features", "out_features", "bias")
BN_ATTRS = ("num_features", "eps", "momentum", "affine", "track_running_stats")


@dataclass(frozen=True)
class Pattern:
    """A chain of ops (each feeding the next through its first operand) and the op it becomes."""

    fused_op: str
    chain: tuple[str, ...]

    @property
    def has_linear(self) -> bool:
        return self.chain[0] == "linear"

    @property
    def has_bn(self) -> bool:
        return "batch_norm" in self.chain


PATTERNS: tuple[Pattern, ...] = (
    Pattern("fused_linear_bn_relu", ("linear", "batch_norm", "relu")),
    Pattern("fused_linear_bn", ("linear", "batch_norm")),
    Pattern("fused_linear_relu", ("linear", "relu")),
    Pattern("fused_bn_relu", ("batch_norm", "relu")),
)


# ------------------------------------------------------------------------------ fused op table
def _split(pattern: Pattern, attrs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The original ops' attrs, recovered from a fused node's attrs."""
    parts: dict[str, dict[str, Any]] = {}
    if pattern.has_linear:
        parts["linear"] = {k: attrs[k] for k in LINEAR_ATTRS}
    if pattern.has_bn:
        parts["batch_norm"] = {k: attrs[k] for k in BN_ATTRS}
    return parts


def _operand_counts(pattern: Pattern, attrs: dict[str, Any]) -> list[tuple[str, int]]:
    """How many operands each original op contributes (its first operand is the chain value)."""
    counts = []
    for op in pattern.chain:
        if op == "relu":
            continue
        sub = _split(pattern, attrs)[op]
        counts.append((op, OPS[op].arity_range(OPS[op].with_defaults(sub))[0]))
    return counts


def _arity(pattern: Pattern) -> Callable[[dict[str, Any]], int]:
    def arity(attrs: dict[str, Any]) -> int:
        # The head op brings its data input; later ops take the chain value instead of one.
        counts = _operand_counts(pattern, attrs)
        return sum(c for _, c in counts) - (len(counts) - 1)

    return arity


def _walk(pattern: Pattern, attrs: dict[str, Any], operands: list[Any],
          step: Callable[[str, dict[str, Any], list[Any]], Any]) -> Any:
    """Thread a value through the chain: ``step(op, sub_attrs, op_operands)`` per original op."""
    parts = _split(pattern, attrs)
    counts = dict(_operand_counts(pattern, attrs))
    value, rest = None, list(operands)
    for i, op in enumerate(pattern.chain):
        if op == "relu":
            value = step("relu", {}, [value])
            continue
        n = counts[op] if i == 0 else counts[op] - 1
        own, rest = rest[:n], rest[n:]
        value = step(op, parts[op], own if i == 0 else [value, *own])
    return value


def _shape_rule(pattern: Pattern) -> Callable[[dict[str, Any], list[TensorType]], ShapeResult]:
    def rule(attrs: dict[str, Any], ts: list[TensorType]) -> ShapeResult:
        resolved = dict(attrs)
        refined: dict[int, TensorType] = {}
        offset = 0

        def step(op: str, sub: dict[str, Any], types: list[TensorType]) -> TensorType:
            nonlocal offset
            res = OPS[op].shape_rule(OPS[op].with_defaults(sub), types)
            resolved.update({k: v for k, v in res.attrs.items() if k in sub})
            first_own = 0 if op == pattern.chain[0] else 1  # operand 0 of a later op is the chain value
            for i, t in res.inputs.items():
                if i >= first_own:
                    refined[offset + i - first_own] = t
            offset += len(types) - first_own
            return res.out

        out = _walk(pattern, attrs, ts, step)
        return ShapeResult(out, resolved, refined)

    return rule


def _impl(pattern: Pattern) -> Callable[..., np.ndarray]:
    def impl(attrs: dict[str, Any], *arrays: np.ndarray, training: bool = False) -> np.ndarray:
        def step(op: str, sub: dict[str, Any], values: list[np.ndarray]) -> np.ndarray:
            return OPS[op].impl(OPS[op].with_defaults(sub), *values, training=training)

        return _walk(pattern, attrs, list(arrays), step)

    return impl


def _attr_schema(pattern: Pattern) -> dict[str, AttrSpec]:
    schema: dict[str, AttrSpec] = {"modules": AttrSpec("strs")}
    for op in dict.fromkeys(pattern.chain):
        if op == "relu":
            continue
        schema.update(OPS[op].attrs)
    if pattern.has_bn:
        schema["bn_module"] = AttrSpec("str?", None)
    return schema


for _pattern in PATTERNS:
    register_op(OpDef(_pattern.fused_op, _attr_schema(_pattern), _arity(_pattern), _shape_rule(_pattern),
                      _impl(_pattern), kind="fused"), replace=True)


# ---------------------------------------------------------------------------------- matching
def match_chain(node: Node, pattern: Pattern) -> list[Node] | None:
    """The nodes of ``pattern`` starting at ``node``, or ``None`` when it does not match legally."""
    if node.op != pattern.chain[0]:
        return None
    if pattern.has_linear and node.inputs[0].type.rank != 2:
        return None  # BN's channel axis is the Linear's output axis only for (N, in) inputs
    chain = [node]
    for op in pattern.chain[1:]:
        current = chain[-1]
        users = current.users
        if len(users) != 1:  # a second consumer (or the graph output) still needs the value
            return None
        (user,) = users
        if user.op != op or user.inputs[0] is not current or user.inputs.count(current) != 1:
            return None
        chain.append(user)
    return chain


def _fused_attrs(pattern: Pattern, chain: list[Node]) -> dict[str, Any]:
    attrs: dict[str, Any] = {"modules": tuple(n.module for n in chain if n.module)}
    for n in chain:
        if n.op == "linear":
            attrs.update({k: n.attrs[k] for k in LINEAR_ATTRS})
        elif n.op == "batch_norm":
            attrs.update({k: n.attrs[k] for k in BN_ATTRS})
            attrs["bn_module"] = n.module
    return attrs


def fuse_chain(graph: Graph, pattern: Pattern, chain: list[Node]) -> Node:
    """Replace ``chain`` by one ``pattern.fused_op`` node; returns the new node."""
    head, tail = chain[0], chain[-1]
    operands = list(head.inputs)
    for n in chain[1:]:
        operands.extend(n.inputs[1:])
    module_types = [n.module_type for n in chain if n.module_type]
    fused = graph.create_node(
        pattern.fused_op, operands, _fused_attrs(pattern, chain), tail.type,
        name="_".join(n.name for n in chain), loc=head.loc, module=head.module,
        module_type="+".join(module_types) or None, before=head)
    tail.replace_all_uses_with(fused)
    for n in reversed(chain):
        graph.erase(n)
    return fused


@register_pass("fuse")
def fuse(graph: Graph, ctx: PassContext) -> Graph:
    """Apply :data:`PATTERNS` (longest first) wherever they match legally."""
    for node in list(graph.nodes):
        if node.graph is not graph or node not in graph:  # already fused away
            continue
        for pattern in PATTERNS:
            chain = match_chain(node, pattern)
            if chain is not None:
                fuse_chain(graph, pattern, chain)
                break
    return graph
