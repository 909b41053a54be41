"""lazyfuse.ir: typed graph IR (types, graph + edit API, op table, text/JSON/DOT forms, verifier).

It imports nothing of lazyfuse but :mod:`lazyfuse.errors`; importing it registers every op,
the fused ones (:mod:`.fused_ops`) included, so a parsed or deserialized fused graph verifies and
runs without the ``fuse`` pass.
"""

from lazyfuse.errors import IRTypeError, UnknownNodeError

from . import conv_ops as _conv_ops  # noqa: F401 - registers conv2d and max_pool2d
from . import fused_ops as _fused_ops  # noqa: F401 - registers the fused ops (after the ops they fuse)
from .graph import Graph, Loc, Node
from .ops import (
    OPS,
    AttrSpec,
    OpDef,
    ShapeResult,
    Variadic,
    bn_module,
    has_effects,
    mode_module,
    named_updates,
    register_op,
    updated_operands,
)
from .types import UNKNOWN, DType, Sym, TensorType, dtype_from, f32, f64, i64
from .verifier import verify

__all__ = [
    "DType", "f32", "f64", "i64", "dtype_from", "Sym", "UNKNOWN", "TensorType",
    "Graph", "Node", "Loc", "OPS", "OpDef", "AttrSpec", "ShapeResult", "Variadic", "register_op", "verify",
    "bn_module", "mode_module", "named_updates", "updated_operands", "has_effects", "IRTypeError",
    "UnknownNodeError",
]
