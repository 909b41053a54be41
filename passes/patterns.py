"""The ``fuse`` pass's matching rules: which op chains it rewrites, longest first.

The fused ops themselves -- their parts, composed shape rules and impls, and which edges may fuse
-- are defined in :mod:`lazyfuse.ir.fused_ops`; each pattern here is one of them.
"""

from __future__ import annotations

from dataclasses import dataclass

from lazyfuse.ir import OPS
from lazyfuse.ir.fused_ops import FUSED_OPS


@dataclass(frozen=True)
class FusionPattern:
    """A chain of ops (producer first) and the name of the op it fuses into."""

    ops: tuple[str, ...]
    fused_op: str


# Longest first (a stable sort: FUSED_OPS order among equal lengths); the matcher takes the first
# pattern that matches at a node.
PATTERNS: tuple[FusionPattern, ...] = tuple(sorted(
    (FusionPattern(OPS[name].parts, name) for name in FUSED_OPS), key=lambda p: -len(p.ops)))
