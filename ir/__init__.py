"""lazyfuse.ir: typed graph IR (types, graph + edit API, op table, text/JSON/DOT forms, verifier)."""

from .graph import Graph, Loc, Node
from .ops import OPS, AttrSpec, OpDef, ShapeResult, bn_module, register_op
from .types import UNKNOWN, DType, Sym, TensorType, dtype_from, f32, f64, i64
from .verifier import verify

__all__ = [
    "DType", "f32", "f64", "i64", "dtype_from", "Sym", "UNKNOWN", "TensorType",
    "Graph", "Node", "Loc", "OPS", "OpDef", "AttrSpec", "ShapeResult", "register_op", "verify",
    "bn_module",
]

# The fused ops (``fused_linear_bn_relu``, ...) belong to the op table too, so that a parsed or
# deserialized fused graph verifies and runs without the ``fuse`` pass having been imported.  Their
# definitions live beside the pattern table that produces them; importing it registers them.
from lazyfuse.passes import patterns as _fused_ops  # noqa: E402,F401
