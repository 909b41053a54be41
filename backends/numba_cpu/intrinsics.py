"""Low-level helpers the generated modules import (Numba intrinsics; not copied as source).

:func:`madvise` calls libc ``madvise(addr, length, advice)`` from nopython code.  Off Linux it is a
no-op returning 0 (``MADV_HUGEPAGE`` is Linux-only).

:func:`gemm_nt` calls ``cblas_?gemm`` of **NumPy's own BLAS** (found through NumPy's extension
module, see :func:`find_numpy_cblas`).  Numba's ``np.dot`` would bind SciPy's BLAS instead: a second
OpenBLAS with its own thread pool, and importing ``scipy.linalg`` at every process start.
One BLAS means ``np.matmul`` and lazyfuse share one pool, and SciPy is not needed at all.

Both call their C function by symbol name, resolved when the machine code is linked (also when
Numba loads it from its disk cache), so no address is baked into cached code: the BLAS symbols are
registered with LLVM under stable ``lazyfuse_cblas_?gemm`` names when this module is imported.

An output of one row or one column is a matrix-vector product, and OpenBLAS's GEMM is several times
slower than its GEMV there (the fused Linear(1024, 1024) at batch 1: 180 µs vs 40 µs); ``np.matmul``
switches to ``cblas_?gemv`` for such shapes, and so do these helpers, at run time, where NumPy's
BLAS exports the GEMV too (``lazyfuse_cblas_?gemv``).
"""

from __future__ import annotations

import ctypes
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from llvmlite import binding as llvm
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.errors import TypingError
from numba.extending import intrinsic

# Part of the generated source (``# intrinsics <VERSION>``): bump it when a helper here changes, so
# the content-hashed module, and Numba's cache of it, are not reused with stale machine code.
VERSION = "4"

_LINUX = sys.platform.startswith("linux")

# cblas enums (``enum CBLAS_ORDER`` / ``CBLAS_TRANSPOSE``, C ints in every ABI).
_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112
# Exported names of ``cblas_sgemm`` in the BLAS builds NumPy ships or links, and their integer width:
# NumPy >= 2 wheels (scipy-openblas64), NumPy 1.x wheels (openblas64_), scipy-openblas32, plain CBLAS
# (conda's OpenBLAS/MKL, Accelerate).  ``{t}`` is ``s`` or ``d``.
_CANDIDATES = (("scipy_cblas_{t}gemm64_", 64), ("cblas_{t}gemm64_", 64),
               ("scipy_cblas_{t}gemm", 32), ("cblas_{t}gemm", 32))


@dataclass(frozen=True)
class Cblas:
    """The gemm functions found: exported names and the width of their integer arguments."""

    sgemm: str
    dgemm: str
    int_bits: int
    gemv: bool = False  # whether ``?gemv`` of the same family was found too

    @property
    def tag(self) -> str:
        """Goes into the generated source, so a module (and its cache) is per BLAS ABI."""
        return f"{self.sgemm}/{self.dgemm}/ilp{self.int_bits}" + ("/gemv" if self.gemv else "")


def _numpy_libraries() -> list[str | None]:
    """Where NumPy's BLAS symbols may be: its extension module (``dlsym`` on that handle searches
    the libraries it links, whatever the bundled OpenBLAS file is called), the bundled libraries
    themselves (Windows looks up a symbol in one DLL only), and the whole process (None)."""
    try:
        from numpy._core import _multiarray_umath as ext  # NumPy >= 2
    except ImportError:  # pragma: no cover - NumPy 1.x
        from numpy.core import _multiarray_umath as ext
    root = Path(np.__file__).parent
    bundled = [str(p) for d in (root.parent / "numpy.libs", root / ".libs", root / ".dylibs")
               if d.is_dir() for p in sorted(d.iterdir()) if "blas" in p.name.lower()]
    return [ext.__file__, *bundled, None]


def find_numpy_cblas() -> Cblas | None:
    """The ``cblas_sgemm``/``cblas_dgemm`` that NumPy itself calls, registered with LLVM as
    ``lazyfuse_cblas_sgemm``/``_dgemm``; None when NumPy's BLAS exports no CBLAS gemm we know."""
    handles = []
    for path in _numpy_libraries():
        try:
            handles.append(ctypes.CDLL(path))
        except (OSError, TypeError):  # pragma: no cover - not loadable here (TypeError: None on Windows)
            continue
    def lookup(name: str) -> int | None:
        for h in handles:
            try:
                return ctypes.cast(getattr(h, name), ctypes.c_void_p).value
            except AttributeError:
                continue
        return None

    for pattern, bits in _CANDIDATES:
        gemm = {t: lookup(pattern.format(t=t)) for t in "sd"}
        if None in gemm.values():
            continue
        gemv = {t: lookup(pattern.format(t=t).replace("gemm", "gemv")) for t in "sd"}
        has_gemv = None not in gemv.values()
        for t in "sd":
            llvm.add_symbol(f"lazyfuse_cblas_{t}gemm", gemm[t])
            if has_gemv:
                llvm.add_symbol(f"lazyfuse_cblas_{t}gemv", gemv[t])
        return Cblas(pattern.format(t="s"), pattern.format(t="d"), bits, has_gemv)
    return None


CBLAS = find_numpy_cblas()


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


def _gemm_codegen(trans_b: bool):
    """Code for ``out = a @ (b.T if trans_b else b)`` by ``cblas_?gemm`` (row-major, unit strides),
    or by ``cblas_?gemv`` when ``out`` is one column or one row (see the module docstring)."""

    def codegen(context, builder, signature, args):
        letter = "s" if signature.args[0].dtype == types.float32 else "d"
        fp = ir.FloatType() if letter == "s" else ir.DoubleType()
        it = ir.IntType(CBLAS.int_bits)
        i32 = ir.IntType(32)
        ra, rb, rc = (context.make_array(t)(context, builder, v) for t, v in zip(signature.args, args))
        m, k = cgutils.unpack_tuple(builder, ra.shape, 2)
        n = cgutils.unpack_tuple(builder, rc.shape, 2)[1]
        m, n, k = (builder.trunc(v, it) if it.width < v.type.width else v for v in (m, n, k))
        ptr, one, zero, inc = fp.as_pointer(), ir.Constant(fp, 1.0), ir.Constant(fp, 0.0), ir.Constant(it, 1)
        order, no_trans, trans = (ir.Constant(i32, v) for v in (_ROW_MAJOR, _NO_TRANS, _TRANS))

        def gemm() -> None:
            fnty = ir.FunctionType(ir.VoidType(),
                                   [i32, i32, i32, it, it, it, fp, ptr, it, ptr, it, fp, ptr, it])
            fn = cgutils.get_or_insert_function(builder.module, fnty, f"lazyfuse_cblas_{letter}gemm")
            builder.call(fn, [order, no_trans, trans if trans_b else no_trans, m, n, k, one, ra.data, k,
                              rb.data, k if trans_b else n, zero, rc.data, n])

        if not CBLAS.gemv:
            gemm()
            return context.get_dummy_value()
        # y = op(A) x: (order, trans, rows, cols, alpha, A, lda, x, incx, beta, y, incy)
        fnty = ir.FunctionType(ir.VoidType(), [i32, i32, it, it, fp, ptr, it, ptr, it, fp, ptr, it])
        gemv = cgutils.get_or_insert_function(builder.module, fnty, f"lazyfuse_cblas_{letter}gemv")
        with builder.if_else(builder.icmp_signed("==", n, inc)) as (column, wider):
            with column:  # out (M, 1) = a (M, K) @ the K contiguous values of b
                builder.call(gemv, [order, no_trans, m, k, one, ra.data, k, rb.data, inc, zero, rc.data, inc])
            with wider:
                with builder.if_else(builder.icmp_signed("==", m, inc)) as (row, general):
                    with row:  # out (1, N) = b (N, K) @ a, or b (K, N).T @ a
                        if trans_b:
                            builder.call(gemv, [order, no_trans, n, k, one, rb.data, k, ra.data, inc, zero,
                                                rc.data, inc])
                        else:
                            builder.call(gemv, [order, trans, k, n, one, rb.data, n, ra.data, inc, zero,
                                                rc.data, inc])
                    with general:
                        gemm()
        return context.get_dummy_value()

    return codegen


def _gemm_signature(name: str, a, b, out):
    arrays = (a, b, out)
    if CBLAS is None:
        raise TypingError(f"{name}: NumPy's BLAS exports no CBLAS gemm (lazyfuse generates a loop GEMM then)")
    if not all(isinstance(t, types.Array) and t.ndim == 2 and t.layout == "C" for t in arrays):
        raise TypingError(f"{name}: expected three 2-D C-contiguous arrays, got {arrays}")
    if a.dtype not in (types.float32, types.float64) or b.dtype != a.dtype or out.dtype != a.dtype:
        raise TypingError(f"{name}: expected one dtype, float32 or float64, got {arrays}")
    return types.void(a, b, out)


@intrinsic
def gemm_nt(typingctx, a, b, out):
    """``out = a @ b.T`` by NumPy's ``cblas_?gemm``: ``a`` (M, K), ``b`` (N, K), ``out`` (M, N), all
    C-contiguous float32 or all float64.  The caller guarantees M, N, K > 0 (BLAS wants leading
    dimensions >= 1) and matching shapes."""
    return _gemm_signature("gemm_nt", a, b, out), _gemm_codegen(trans_b=True)


@intrinsic
def gemm_nn(typingctx, a, b, out):
    """``out = a @ b`` likewise: ``a`` (M, K), ``b`` (K, N), ``out`` (M, N)."""
    return _gemm_signature("gemm_nn", a, b, out), _gemm_codegen(trans_b=False)
