"""The fusion pattern table and the fused ops it produces.

A pattern is a chain of ops, producer first, where each op after the first takes the previous
op's value as its operand 0.  Its fused op is *composed* from the chain's entries in the op table:

- operands: the first op's operands, then each later op's operands after operand 0, in order
  (``fused_linear_bn_relu(x, W, b?, weight?, bias?, running_mean?, running_var?,
  num_batches_tracked?)``);
- attrs: the union of the ops' attrs (their names do not clash) plus ``modules`` (one module path
  per fused op, ``""`` for a functional call outside any module) and, when a ``batch_norm`` is
  inside, ``bn_module`` (the module whose ``training`` flag the runtime reads);
- shape rule and NumPy impl: the original ones run in sequence, so the reference backend executes
  fused graphs with exactly the unfused semantics (running stats included).

``EDGE_RULES`` says when a producer -> consumer edge may be fused, from the producer's type alone;
the shape rules of the fused ops enforce the same rules so the verifier catches illegal nodes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from lazyfuse.errors import InferenceError
from lazyfuse.ir.ops import OPS, AttrSpec, OpDef, ShapeResult, register_op
from lazyfuse.ir.types import TensorType

EdgeRule = Callable[[TensorType], "str | None"]


def _bn_channel_is_linear_out(t: TensorType) -> str | None:
    """Linear -> BatchNorm: BN normalizes dim 1, which is Linear's output axis only for ``(N,C)``."""
    if t.rank != 2:
        return (f"batch_norm's channel axis (dim 1) is not linear's output axis (dim -1) for "
                f"an input of type {t}; expected a 2-D (N,C) value")
    return None


EDGE_RULES: dict[tuple[str, str], EdgeRule] = {
    ("linear", "batch_norm"): _bn_channel_is_linear_out,
}


def edge_problem(producer: str, consumer: str, t: TensorType) -> str | None:
    """Why the edge ``producer -> consumer`` carrying a value of type ``t`` cannot fuse, or None."""
    rule = EDGE_RULES.get((producer, consumer))
    return rule(t) if rule is not None else None


@dataclass(frozen=True)
class FusionPattern:
    """A chain of ops (producer first) and the name of the op it fuses into."""

    ops: tuple[str, ...]
    fused_op: str


# Longest first: the matcher takes the first pattern that matches at a node.
PATTERNS: tuple[FusionPattern, ...] = tuple(sorted((
    FusionPattern(("linear", "batch_norm", "relu"), "fused_linear_bn_relu"),
    FusionPattern(("linear", "batch_norm"), "fused_linear_bn"),
    FusionPattern(("linear", "relu"), "fused_linear_relu"),
    FusionPattern(("batch_norm", "relu"), "fused_bn_relu"),
), key=lambda p: -len(p.ops)))


# ------------------------------------------------------------------------- composed fused ops
def part_attrs(op: str, attrs: dict[str, Any]) -> dict[str, Any]:
    """The attrs of the original op ``op`` inside a fused node's ``attrs`` (defaults applied)."""
    opdef = OPS[op]
    return opdef.with_defaults({k: v for k, v in attrs.items() if k in opdef.attrs})


def _part_arity(op: str, attrs: dict[str, Any], first: bool) -> int:
    lo, hi = OPS[op].arity_range(attrs)
    if lo != hi:
        raise InferenceError(f"{op}: a fused op needs a fixed operand count, got {lo}..{hi}")
    return hi if first else hi - 1


def split_operands(parts: tuple[str, ...], attrs: dict[str, Any], n: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of each part's own operands among a fused node's ``n`` operands."""
    spans, pos = [], 0
    for i, op in enumerate(parts):
        k = _part_arity(op, part_attrs(op, attrs), i == 0)
        spans.append((pos, pos + k))
        pos += k
    if pos != n:
        raise InferenceError(f"fused {'+'.join(parts)}: expected {pos} operands, got {n}")
    return spans


def _make_shape_rule(name: str, parts: tuple[str, ...]) -> Callable[..., ShapeResult]:
    def rule(attrs: dict[str, Any], ts: list[TensorType]) -> ShapeResult:
        out_attrs = dict(attrs)
        refined: dict[int, TensorType] = {}
        prev: TensorType | None = None
        for i, (op, (a, b)) in enumerate(zip(parts, split_operands(parts, attrs, len(ts)))):
            operands = list(ts[a:b]) if prev is None else [prev, *ts[a:b]]
            if prev is not None:
                problem = edge_problem(parts[i - 1], op, prev)
                if problem is not None:
                    raise InferenceError(f"{name}: {problem}")
            try:
                res = OPS[op].shape_rule(part_attrs(op, attrs), operands)
            except InferenceError as e:
                raise InferenceError(f"{name}: {e}") from None
            out_attrs.update(res.attrs)
            offset = a if prev is None else a - 1
            refined.update({offset + j: t for j, t in res.inputs.items() if prev is None or j > 0})
            prev = res.out
        assert prev is not None
        return ShapeResult(prev, out_attrs, refined)

    return rule


def _make_impl(parts: tuple[str, ...]) -> Callable[..., np.ndarray]:
    def impl(attrs: dict[str, Any], *arrays: np.ndarray, training: bool = False) -> np.ndarray:
        value: np.ndarray | None = None
        for op, (a, b) in zip(parts, split_operands(parts, attrs, len(arrays))):
            args = arrays[a:b] if value is None else (value, *arrays[a:b])
            value = OPS[op].impl(part_attrs(op, attrs), *args, training=training)
        assert value is not None
        return value

    return impl


def fused_opdef(name: str, parts: tuple[str, ...]) -> OpDef:
    """The op ``name`` composed from the op table entries of ``parts`` (see the module docstring)."""
    schema: dict[str, AttrSpec] = {}
    for op in parts:
        clash = set(schema) & set(OPS[op].attrs)
        if clash:
            raise ValueError(f"{name}: attrs {sorted(clash)} appear in more than one fused op")
        schema.update(OPS[op].attrs)
    schema["modules"] = AttrSpec("strs")
    if "batch_norm" in parts:
        schema["bn_module"] = AttrSpec("str")

    def arity(attrs: dict[str, Any]) -> int:
        return sum(_part_arity(op, part_attrs(op, attrs), i == 0) for i, op in enumerate(parts))

    return OpDef(name, schema, arity, _make_shape_rule(name, parts), _make_impl(parts), kind="fused")


def register_fused_ops() -> None:
    """Register every pattern's fused op (idempotent)."""
    for pat in PATTERNS:
        if pat.fused_op not in OPS:
            register_op(fused_opdef(pat.fused_op, pat.ops))


register_fused_ops()
