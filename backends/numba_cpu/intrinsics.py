"""Low-level helpers the generated modules import (Numba intrinsics; not copied as source).

:func:`madvise` calls libc ``madvise(addr, length, advice)`` from nopython code.  The symbol is
resolved when the machine code is loaded (also from Numba's disk cache), so no address is baked
into cached code.  Off Linux it is a no-op returning 0 (``MADV_HUGEPAGE`` is Linux-only).
"""

from __future__ import annotations

import sys

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

# Part of the generated source (``# intrinsics <VERSION>``): bump it when a helper here changes, so
# the content-hashed module, and Numba's cache of it, are not reused with stale machine code.
VERSION = "1"

_LINUX = sys.platform.startswith("linux")


@intrinsic
def madvise(typingctx, addr, length, advice):
    """``int madvise(uintp addr, uintp length, intc advice)``; 0 without a call off Linux."""
    sig = types.intc(types.uintp, types.uintp, types.intc)

    def codegen(context, builder, signature, args):
        if not _LINUX:
            return ir.Constant(ir.IntType(32), 0)
        fnty = ir.FunctionType(ir.IntType(32), [ir.IntType(64), ir.IntType(64), ir.IntType(32)])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "madvise")
        return builder.call(fn, args)

    return sig, codegen
