"""``infer_shapes``: one walk over the graph applying each op's shape rule.

It resolves the ``?`` dims of lazy parameters and attrs (``in_features``, ``num_features``) from the
input spec alone and checks every op; errors show the IR line, the user's source line and the pass.
"""

from __future__ import annotations

from lazyfuse.errors import DTypeError, InferenceError, ShapeError
from lazyfuse.ir.graph import STATE_OPS, Node
from lazyfuse.ir.ops import OPS
from lazyfuse.ir.ops import infer_node as ops_infer_node
from lazyfuse.ir.types import UNKNOWN, Sym, TensorType

from .manager import PassContext, register_pass

PASS_NAME = "infer_shapes"


def size_attrs(op: str) -> tuple[str, ...]:
    """The attrs of ``op`` holding a (possibly lazy) size, schema kind ``"dim"``: they must come out
    of shape inference as plain ints (``in_features``, ``num_features``)."""
    return tuple(k for k, spec in OPS[op].attrs.items() if spec.kind == "dim")


def describe_node(node: Node) -> str:
    """``module 'fc1' (LazyLinear)`` or ``op linear`` for messages."""
    if node.module:
        return f"module '{node.module}' ({node.module_type or node.op})"
    return f"op {node.op}"


def node_error(node: Node, detail: str, pass_name: str = PASS_NAME,
               cls: type[InferenceError] | type[DTypeError] = InferenceError) -> InferenceError | DTypeError:
    """A ``cls`` error (:class:`InferenceError` unless told) showing the IR line, operand types, the
    source line and the pass."""
    operands = ", ".join(f"{i.ref}: {i.type}" for i in node.inputs)
    src = f"{node.loc}" if node.loc is not None else "unknown (no source location recorded)"
    return cls(
        f"{describe_node(node)}: {detail}\n"
        f"  IR:       {node.format()}\n"
        f"  operands: {operands}\n"
        f"  source:   {src}\n"
        f"  (in pass '{pass_name}')"
    )


def _symbols(d: object) -> list[str]:
    return sorted(d.symbols) if isinstance(d, Sym) else []


def _check_size_attrs(node: Node, attrs: dict) -> None:
    for key in size_attrs(node.op):
        d = attrs.get(key)
        if isinstance(d, Sym):
            syms = ", ".join(_symbols(d))
            raise node_error(
                node,
                f"{key} would be {d}, which depends on the symbolic dim(s) {syms}; a lazy size must be a "
                f"concrete int: give {syms} a fixed size in the input spec, or set {key} explicitly",
            )


def _refine_state(node: Node, operand: Node, new: TensorType) -> None:
    """Give a param/buffer with ``?`` dims the type the shape rule deduced for it."""
    old = operand.type
    if old == new:
        return
    if operand.op not in STATE_OPS or old is None or old.rank != new.rank or old.dtype != new.dtype:
        raise node_error(node, f"operand {operand.ref} has type {old}, but the op needs {new}")
    for a, b in zip(old.shape, new.shape):
        if a is not UNKNOWN and a != b:
            raise node_error(node, f"operand {operand.ref} has type {old}, but the op needs {new}")
    for d in new.shape:
        if isinstance(d, Sym):
            raise node_error(
                node,
                f"{operand.ref} would get type {new}, which depends on the symbolic dim(s) "
                f"{', '.join(_symbols(d))}; parameter sizes must be concrete: give them a fixed size "
                "in the input spec",
            )
    operand.type = new


def infer_node(node: Node, pass_name: str = PASS_NAME) -> None:
    """Apply ``node``'s shape rule: set its type and attrs, refine lazy operands."""
    if node.op not in OPS:
        raise node_error(node, f"unknown op {node.op!r}", pass_name)
    try:
        result = ops_infer_node(node.op, dict(node.attrs), [i.type for i in node.inputs])
    except (ShapeError, DTypeError) as exc:
        cls = DTypeError if isinstance(exc, DTypeError) else InferenceError
        raise node_error(node, str(exc), pass_name, cls) from None
    attrs = dict(result.attrs) if result.attrs else dict(node.attrs)
    _check_size_attrs(node, attrs)
    for index, new in (result.inputs or {}).items():
        _refine_state(node, node.inputs[index], new)
    node.attrs = attrs
    node.type = result.out


@register_pass(PASS_NAME)
def infer_shapes(graph, ctx: PassContext):
    """Type every node from the graph inputs' types; lazy ``?`` dims become concrete."""
    for node in list(graph.nodes):
        if node.op in ("input", "param", "buffer", "output"):
            continue
        infer_node(node)
    for node in graph.params():
        if node.type is None or not node.type.is_resolved:
            users = ", ".join(u.ref for u in node.users) or "nothing"
            raise InferenceError(
                f"{node.ref}: type {node.type} still has unknown dims after shape inference "
                f"(used by {users}) (in pass '{PASS_NAME}')"
            )
    return graph
