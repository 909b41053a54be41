"""The fused ops: which exist (:data:`FUSED_OPS`), and their op-table entries composed from their parts.

A fused op stands for a chain of ops, producer first, where each op after the first takes the
previous op's value as its operand 0.  Its definition is *composed* from the parts' entries:

- operands: the first part's operands, then each later part's operands after operand 0, in order,
  named ``part.name`` (``fused_linear_bn_relu(linear.input, linear.weight, linear.bias?,
  batch_norm.weight?, ..., batch_norm.num_batches_tracked?)``); effects likewise;
- attrs: the union of the parts' attrs (their names must not clash) plus ``modules`` (one module
  path per part, ``""`` for a functional call outside any module) and, when a part follows a
  module's ``training`` flag, ``bn_module`` (that module; see :func:`~lazyfuse.ir.ops.mode_module`);
- shape rule and NumPy impl: the parts' ones run in sequence, so the reference backend executes
  fused graphs with exactly the unfused semantics (running stats included).

:data:`EDGE_RULES` says when a producer -> consumer edge may be fused, from the value's type alone;
the composed shape rules enforce them, so the verifier catches an illegal fused node and the
``fuse`` pass asks :func:`edge_problem` before it rewrites.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from lazyfuse.errors import DTypeError, InferenceError, IRError, ShapeError

from .ops import MODE_ATTR, OPS, AttrSpec, CallCheck, OpDef, ShapeResult, Variadic, register_op
from .types import TensorType

# Name -> parts.  The ``fuse`` pass tries them longest first, in this order among equal lengths.
FUSED_OPS: dict[str, tuple[str, ...]] = {
    "fused_linear_bn_relu": ("linear", "batch_norm", "relu"),
    "fused_linear_bn": ("linear", "batch_norm"),
    "fused_linear_relu": ("linear", "relu"),
    "fused_bn_relu": ("batch_norm", "relu"),
    "fused_conv_bn_relu": ("conv2d", "batch_norm", "relu"),
    "fused_conv_bn": ("conv2d", "batch_norm"),
    "fused_conv_relu": ("conv2d", "relu"),
    # max(relu(v)) == relu(max(v)): the pool kernel applies the ReLU to each window's max.
    "fused_relu_max_pool2d": ("relu", "max_pool2d"),
}

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


# ------------------------------------------------------------------------------ composition
def part_attrs(op: str, attrs: dict[str, Any]) -> dict[str, Any]:
    """The attrs of the part ``op`` inside a fused node's ``attrs`` (defaults applied)."""
    opdef = OPS[op]
    return opdef.with_defaults({k: v for k, v in attrs.items() if k in opdef.attrs})


def _own_operands(op: str, attrs: dict[str, Any], first: bool) -> tuple[str, ...]:
    """The operand names a part contributes: all for the first part, all but operand 0 after."""
    names = OPS[op].operand_names(part_attrs(op, attrs))
    return names if first else names[1:]


def split_operands(parts: tuple[str, ...], attrs: dict[str, Any], n: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of each part's own operands among a fused node's ``n`` operands."""
    spans, pos = [], 0
    for i, op in enumerate(parts):
        k = len(_own_operands(op, attrs, i == 0))
        spans.append((pos, pos + k))
        pos += k
    if pos != n:
        raise InferenceError(f"fused {'+'.join(parts)}: expected {pos} operands, got {n}")
    return spans


def _qualifiers(parts: tuple[str, ...]) -> list[str]:
    """``linear``, ``batch_norm``, ...; an op that occurs twice gets its index (``relu2``)."""
    return [op if parts.count(op) == 1 else f"{op}{i}" for i, op in enumerate(parts)]


def _make_operands(parts: tuple[str, ...]) -> Callable[[dict[str, Any]], tuple[str, ...]]:
    quals = _qualifiers(parts)

    def operands(attrs: dict[str, Any]) -> tuple[str, ...]:
        return tuple(f"{q}.{name}" for i, (op, q) in enumerate(zip(parts, quals))
                     for name in _own_operands(op, attrs, i == 0))

    return operands


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
            except (ShapeError, DTypeError) as e:  # InferenceError is a ShapeError
                raise type(e)(f"{name}: {e}") from None
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
    """The op ``name`` composed from the op-table entries of ``parts`` (see the module docstring).

    Raises :class:`IRError` when the parts cannot be composed: an unknown or variadic op, attrs
    that clash, more than one part following a ``training`` flag.
    """
    unknown = [op for op in parts if op not in OPS]
    if len(parts) < 2 or unknown:
        raise IRError(f"{name}: a fused op needs two or more known ops, got {parts!r}")
    schema: dict[str, AttrSpec] = {}
    for op in parts:
        opdef = OPS[op]
        if isinstance(opdef.operands, Variadic) or opdef.kind != "compute":
            raise IRError(f"{name}: {op} cannot be fused (a {opdef.kind} op, or a variadic one)")
        clash = set(schema) & set(opdef.attrs)
        if clash:
            raise IRError(f"{name}: attrs {sorted(clash)} appear in more than one fused op")
        schema.update(opdef.attrs)
    schema["modules"] = AttrSpec("strs")
    moded = [op for op in parts if OPS[op].uses_training]
    if len(moded) > 1:
        raise IRError(f"{name}: at most one part may follow a module's training flag, got {moded}")
    if moded:
        schema[MODE_ATTR] = AttrSpec("str")
    effects = tuple(f"{q}.{e}" for op, q in zip(parts, _qualifiers(parts)) for e in OPS[op].effects)
    return OpDef(name, schema, _make_operands(parts), _make_shape_rule(name, parts), _make_impl(parts),
                 kind="fused", effects=effects, uses_training=bool(moded), parts=tuple(parts),
                 call_check=_make_call_check(parts))


def _make_call_check(parts: tuple[str, ...]) -> CallCheck | None:
    """The parts' call checks, on the fused node's output shape.  That is the checked part's output
    shape when the parts after it keep their input's shape, as in every fused op here (only
    ``batch_norm`` and ``relu`` follow another part); a fused op with a shape-changing part after a
    checked one would need its own check."""
    checks = [(op, OPS[op].call_check) for op in parts if OPS[op].call_check is not None]
    if not checks:
        return None

    def check(attrs: dict[str, Any], shape: tuple[int, ...], training: bool) -> None:
        for op, fn in checks:
            fn(part_attrs(op, attrs), shape, training)

    return check


def register_fused_ops() -> None:
    """Register every op of :data:`FUSED_OPS` (idempotent)."""
    for name, parts in FUSED_OPS.items():
        if name not in OPS:
            register_op(fused_opdef(name, parts))


register_fused_ops()

__all__ = ["FUSED_OPS", "EDGE_RULES", "edge_problem", "part_attrs", "split_operands", "fused_opdef",
           "register_fused_ops"]
