# ruff: noqa: F821  (generated names: ``*_p`` / ``*_s`` variants, ``madvise``, ``gemm_n?``, ``BLAS_INT_MAX``)
"""Kernel templates for the ``cpu`` backend.

These are plain Python functions; :mod:`.codegen` copies their *source* into each generated module
(so ``cm.source`` shows every line that runs and Numba's disk cache sees one self-contained file).
Each is registered by its decorator (see :mod:`.registry`), which also gives its role.  Kernels
registered ``parallel=True`` are emitted twice: ``name_p`` (``parallel=True``, ``prange``) and
``name_s`` (compiled serial, where Numba runs ``prange`` as ``range``); the ``op_*`` drivers pick one
by size at call time, because waking a thread pool costs microseconds that small batches cannot pay
back.  Calls whose tensors are all small go to ``run_s``, which calls only the serial drivers
``op_*_s`` and so never references a parallel kernel: a first small call does not pay Numba's
compile time for the parallel variants.

Numerics:
- No ``fastmath``: it would let LLVM assume no NaNs, turning ``relu(NaN)`` into 0 (torch gives NaN).
  Reductions vectorize anyway because each accumulator is a lane of an array, not a scalar.
- Train-BN statistics use *shifted* sums: ``d = v - shift[c]`` with ``shift`` a sample of the channel
  (the first row, 0 when non-finite), accumulated in the input dtype over a fixed number of row
  chunks (independent of the thread count, so results are deterministic) and merged in float64.
  This stays accurate when ``|mean| >> std``; non-finite inputs propagate like PyTorch (an inf in a
  channel gives mean inf / var NaN, a NaN gives NaN).
- Kernels and helpers get their flags as ``bool(flag)``: a constant argument would be typed ``Literal[bool]``
  and compile one specialization per value (twice the compile time for a model that has both).
- Per-channel coefficients are computed in float64 at call time from the current batch or running
  statistics (O(C)) and rounded to the data dtype; the epilogue is ``(v - m) * s + t`` in the data
  dtype, optionally ReLU'd with ``v < 0 -> 0`` (NaN stays NaN).  (In float32 with |mean| / std near
  1e5 the rounded ``m`` leaves ~4e-3 absolute error in the normalized output; float32 PyTorch's
  was 2e-2 or more in the same test.)
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .registry import blas_fallback, driver, helper, kernel

# Calls whose every tensor has fewer elements run the serial flavour ``run_s`` (see codegen).
SMALL_MAX = 1 << 15
# Tensors below this many elements take the serial variant inside ``run``: a parallel region is
# expensive to start on Numba's ``workqueue`` layer (its workers sleep, and waking them is slow on
# a VM), and on ``omp`` its spinning workers slow the next OpenBLAS GEMM; below this size a serial
# pass costs less than either (see bench/RESULTS.md).
PAR_MIN = 1 << 20
# Train-BN statistics: at most this many row chunks, at least this many rows per chunk.
MAX_CHUNKS = 64
MIN_CHUNK_ROWS = 64
# Lanes of the data-dtype partial sums of one (N, C, L) row (a multiple of the SIMD width).
LANES = 32
# Output buffers of at least this many bytes get ``madvise(MADV_HUGEPAGE)`` (NumPy uses 4 MiB).
HUGE_MIN = 1 << 22


# ---------------------------------------------------------------------------------------- kernels
@helper
def k_gemm(a, b, out, bt):
    """out = a @ b.T (``bt``; ``b`` (N, K)) or a @ b (``b`` (K, N)) through BLAS: ``a`` (M, K),
    ``out`` (M, N) preallocated."""
    if out.size == 0:
        return
    if max(a.shape[0], a.shape[1], out.shape[1]) > BLAS_INT_MAX:  # a 32-bit-int (LP64) CBLAS
        raise ValueError("linear: a GEMM dimension exceeds the BLAS integer range (LP64 CBLAS)")
    if a.shape[1] == 0:  # an empty sum; BLAS wants K >= 1
        for i in range(out.shape[0]):  # loops: a reshape here costs Numba compile time
            for j in range(out.shape[1]):
                out[i, j] = 0.0
        return
    # No copy for the usual C-contiguous operands; a strided parameter (say a transposed view
    # assigned as a weight) is copied, since the CBLAS call reads rows with unit stride.
    if bt:
        gemm_nt(np.ascontiguousarray(a), np.ascontiguousarray(b), out)
    else:
        gemm_nn(np.ascontiguousarray(a), np.ascontiguousarray(b), out)


@kernel(parallel=True)
def k_stats2d(x, mean, var):
    """Per-column mean and biased variance of ``x`` (N, C) into float64 ``mean``, ``var``."""
    n, c = x.shape
    if n == 0:  # an empty batch (train BN allows it, like PyTorch): no statistics
        for j in range(c):
            mean[j] = np.nan
            var[j] = np.nan
        return
    nch = n // MIN_CHUNK_ROWS
    if nch > MAX_CHUNKS:
        nch = MAX_CHUNKS
    if nch < 1:
        nch = 1
    shift = np.empty(c, x.dtype)
    for j in range(c):
        v = x[0, j]
        shift[j] = v if v - v == 0.0 else 0.0  # finite (inf - inf and NaN - NaN are NaN)
    p1 = np.empty(nch * c, x.dtype)  # chunk k's partial sums at [k * c, (k + 1) * c)
    p2 = np.empty(nch * c, x.dtype)
    for k in prange(nch):
        lo = k * n // nch
        hi = (k + 1) * n // nch
        # Views, not p1[k * c + j]: an index LLVM cannot prove non-negative keeps Numba's
        # wraparound check in the loop and the loop scalar (several times slower).
        a1 = p1[k * c:(k + 1) * c]
        a2 = p2[k * c:(k + 1) * c]
        for j in range(c):
            a1[j] = 0.0
            a2[j] = 0.0
        for i in range(lo, hi):
            row = x[i]
            for j in range(c):
                d = row[j] - shift[j]
                a1[j] += d
                a2[j] += d * d
    for j in range(c):  # merge in float64, in mean / var themselves
        mean[j] = 0.0
        var[j] = 0.0
    for k in range(nch):
        for j in range(c):
            mean[j] += p1[k * c + j]
            var[j] += p2[k * c + j]
    for j in range(c):
        m = mean[j] / n
        v = var[j] / n - m * m
        mean[j] = shift[j] + m
        var[j] = 0.0 if v < 0.0 else v  # rounding only; NaN stays NaN


@kernel(parallel=True)
def k_affine2d(x, out, m, s, t, relu):
    """out[i, j] = (x[i, j] - m[j]) * s[j] + t[j], then ReLU if ``relu`` (``out`` may be ``x``)."""
    n, c = x.shape
    for i in prange(n):
        if relu:
            for j in range(c):
                v = (x[i, j] - m[j]) * s[j] + t[j]
                out[i, j] = 0.0 if v < 0.0 else v
        else:
            for j in range(c):
                out[i, j] = (x[i, j] - m[j]) * s[j] + t[j]


@kernel(parallel=True)
def k_relu(x, out):
    """out = relu(x) elementwise on flat arrays (NaN stays NaN)."""
    for i in prange(x.size):
        v = x[i]
        out[i] = 0.0 if v < 0.0 else v


@kernel(parallel=True)
def k_stats3d(x, mean, var):
    """Per-channel mean and biased variance of ``x`` (N, C, L) over N and L into float64 ``mean``,
    ``var``.

    Tasks are a fixed number of blocks of (i, c) rows in memory order, so each thread streams one
    contiguous range (channel-major tasks read short pieces far apart, which wastes memory
    bandwidth).  A row's shifted sums run in ``LANES`` data-dtype lanes (an elementwise loop, so
    LLVM vectorizes it without fastmath), are summed in float64 and added to the block's float64
    partial of that channel; blocks are merged in a fixed order (deterministic)."""
    n, c, ln = x.shape
    if n * ln == 0:  # no values per channel: no statistics
        for ch in range(c):
            mean[ch] = np.nan
            var[ch] = np.nan
        return
    rows = n * c
    nch = rows // MIN_CHUNK_ROWS
    if nch > MAX_CHUNKS:
        nch = MAX_CHUNKS
    if nch < 1:
        nch = 1
    zero = np.zeros(1, x.dtype)[0]
    shift = np.empty(c, x.dtype)
    for ch in range(c):
        v = x[0, ch, 0]
        shift[ch] = v if v - v == zero else zero  # finite
    p1 = np.zeros(nch * c)
    p2 = np.zeros(nch * c)
    nb = ln // LANES
    for k in prange(nch):
        q1 = p1[k * c:(k + 1) * c]
        q2 = p2[k * c:(k + 1) * c]
        a1 = np.empty(LANES, x.dtype)
        a2 = np.empty(LANES, x.dtype)
        for r in range(k * rows // nch, (k + 1) * rows // nch):
            i = r // c
            ch = r - i * c
            row = x[i, ch]
            sh = shift[ch]
            for u in range(LANES):
                a1[u] = zero
                a2[u] = zero
            for b in range(nb):
                seg = row[b * LANES:(b + 1) * LANES]
                for u in range(LANES):
                    d = seg[u] - sh
                    a1[u] += d
                    a2[u] += d * d
            s1 = 0.0
            s2 = 0.0
            for u in range(LANES):
                s1 += a1[u]
                s2 += a2[u]
            for q in range(nb * LANES, ln):
                d = row[q] - sh
                s1 += d
                s2 += d * d
            q1[ch] += s1
            q2[ch] += s2
    cnt = n * ln
    for ch in range(c):
        s1 = 0.0
        s2 = 0.0
        for k in range(nch):
            s1 += p1[k * c + ch]
            s2 += p2[k * c + ch]
        mu = s1 / cnt
        v = s2 / cnt - mu * mu
        mean[ch] = shift[ch] + mu
        var[ch] = 0.0 if v < 0.0 else v  # rounding only; NaN stays NaN


@kernel(parallel=True)
def k_affine3d(x, out, m, s, t, relu):
    """out[i, c, l] = (x[i, c, l] - m[c]) * s[c] + t[c], then ReLU if ``relu``.

    Tasks are the (i, c) rows in memory order, so each thread writes one contiguous block of a fresh
    ``out``: a page it faults in (and the kernel zeroes) is written while still in cache.  Channel
    order instead interleaves the threads over every page, which is much slower."""
    n, c, ln = x.shape
    zero = np.zeros(1, out.dtype)[0]
    for r in prange(n * c):
        i = r // c
        ch = r - i * c
        src = x[i, ch]
        dst = out[i, ch]
        mc = m[ch]
        sc = s[ch]
        tc = t[ch]
        if relu:
            for q in range(ln):
                v = (src[q] - mc) * sc + tc
                dst[q] = zero if v < zero else v
        else:
            for q in range(ln):
                dst[q] = (src[q] - mc) * sc + tc


@blas_fallback("gemm_nt")
def gemm_nt_loops(a, b, out):
    """out = a @ b.T in plain loops (float64 sums): the GEMM when NumPy's BLAS exports no CBLAS gemm
    (emitted as ``gemm_nt``; correct but far slower than BLAS)."""
    m, k = a.shape
    n = b.shape[0]
    for i in range(m):
        ar = a[i]
        for j in range(n):
            br = b[j]
            acc = 0.0
            for q in range(k):
                acc += ar[q] * br[q]
            out[i, j] = acc


@blas_fallback("gemm_nn")
def gemm_nn_loops(a, b, out):
    """out = a @ b likewise (emitted as ``gemm_nn`` when there is no CBLAS gemm)."""
    gemm_nt(a, np.ascontiguousarray(b.T), out)


# ------------------------------------------------------------- small calls (serial flavour only)
@kernel
def k_rowstats(y, mean, var):
    """Mean and biased variance of each row of ``y`` (C, M) — a channel of a transposed GEMM
    output — into float64 ``mean``, ``var``: shifted sums in float64 (small inputs only)."""
    c, m = y.shape
    for j in range(c):
        if m == 0:  # an empty batch: no statistics
            mean[j] = np.nan
            var[j] = np.nan
            continue
        row = y[j]
        sh = row[0] + 0.0
        if not sh - sh == 0.0:  # not finite
            sh = 0.0
        s1 = 0.0
        s2 = 0.0
        for q in range(m):
            d = row[q] - sh
            s1 += d
            s2 += d * d
        mu = s1 / m
        v = s2 / m - mu * mu
        mean[j] = sh + mu
        var[j] = 0.0 if v < 0.0 else v  # rounding only; NaN stays NaN


@kernel
def k_affine_cm(y, out, m, s, t, relu, transpose):
    """The epilogue of a channel-major ``y`` (C, M) (a transposed GEMM output): with ``transpose``,
    out[i, j] = (y[j, i] - m[j]) * s[j] + t[j] into ``out`` (M, C), else y[j, i] = ... in place
    (``out`` unused); then ReLU if ``relu``.

    ReLU is ``lo if v < lo else v`` with ``lo`` 0.0, else -inf, which changes no value (NaN and -inf
    included; float64 compares are exact): one loop per layout instead of two, less Numba compile
    time.  In place reads and writes one row view: through two views of one array LLVM's runtime
    overlap check fails and the loop runs unvectorized (much slower)."""
    c, n = y.shape
    lo = 0.0 if relu else -np.inf
    for j in range(c):
        row = y[j]
        mj = m[j]
        sj = s[j]
        tj = t[j]
        if transpose:
            for i in range(n):
                v = (row[i] - mj) * sj + tj
                out[i, j] = lo if v < lo else v
        else:
            for i in range(n):
                v = (row[i] - mj) * sj + tj
                row[i] = lo if v < lo else v


@helper
def gemm_cm(x, w, out, xt, ot):
    """The serial Linear drivers' GEMM, channel-major: ``w @ x.T`` (C, M) (for few rows of ``x``
    OpenBLAS runs that orientation faster, see bench/RESULTS.md), or ``w @ x`` when ``xt`` says ``x``
    is itself channel-major (K, M), the ``ot`` output of a previous Linear.  Written into ``out``
    when ``ot`` (it is (C, M) then), else into a new array; returns it."""
    n = x.shape[1] if xt else x.shape[0]
    yt = out if ot else np.empty((w.shape[0], n), out.dtype)
    k_gemm(w, x, yt, not xt)
    return yt


# ---------------------------------------------------------------------------------- allocation
@helper
def advise_huge(a):
    """Ask Linux for transparent huge pages on a fresh buffer of at least ``HUGE_MIN`` bytes.

    Numba's ``np.empty`` is a plain ``malloc`` (an ``mmap`` for big blocks) and every 4 KiB page then
    faults on first write: for a big output the faults alone cost more than a copy.  NumPy's own
    allocator does the same ``madvise(MADV_HUGEPAGE)`` on big arrays; the kernel applies it to the
    2 MiB-aligned part of the page-aligned range given here (a hint: failure is harmless)."""
    nb = a.size * a.itemsize
    if nb >= HUGE_MIN:
        p = a.ctypes.data
        lo = (p + np.uintp(4095)) & ~np.uintp(4095)
        hi = (p + np.uintp(nb)) & ~np.uintp(4095)
        if hi > lo:
            madvise(lo, hi - lo, np.intc(14))  # MADV_HUGEPAGE


# ------------------------------------------------------------------------------ per-channel helpers
@helper
def update_running(rm, rv, mean, var, pre, cnt, momentum, nbt):
    """num_batches_tracked += 1 and the running-stat update (unbiased var) in place.

    ``momentum < 0`` stands for ``momentum=None``: the factor is ``1 / num_batches_tracked``.
    ``pre`` as in :func:`bn_mode_coeffs` (added to the batch mean; empty for none).  An empty batch
    (``cnt == 0``) only counts, like PyTorch."""
    nbt[()] += 1
    if cnt == 0:
        return
    f = 1.0 / nbt[()] if momentum < 0.0 else momentum
    corr = cnt / (cnt - 1.0)
    for j in range(rm.shape[0]):
        rm[j] = (1.0 - f) * rm[j] + f * (mean[j] + pre[j] if pre.size else mean[j])
        rv[j] = (1.0 - f) * rv[j] + f * (var[j] * corr)


@helper
def bn_mode_coeffs(mean, var, pre, cnt, gamma, beta, rm, rv, nbt, batch_stats, update, momentum, eps,
                   m, s, t):
    """The BatchNorm mode logic every driver shares, ending in the epilogue coefficients
    m = mean, s = gamma / sqrt(var + eps), t = beta (computed in float64).

    With batch statistics (float64 ``mean``/``var`` of ``cnt`` values per channel, already computed)
    the running stats are updated if asked; otherwise ``mean``/``var`` are overwritten with the
    running stats.  ``pre`` is a bias the data does not contain yet (the Linear bias skipped by the
    fused GEMM), or an empty array for none: eval folds it into m, the update adds it to the batch
    mean.  (One coefficient loop rather than a helper per mode: every helper costs Numba compile
    time.)"""
    if batch_stats:
        if update:
            update_running(rm, rv, mean, var, pre, cnt, momentum, nbt)
    else:
        for j in range(m.shape[0]):
            mean[j] = rm[j] - pre[j] if pre.size else rm[j] + 0.0
            var[j] = rv[j]
    for j in range(m.shape[0]):
        m[j] = mean[j]
        s[j] = gamma[j] / np.sqrt(var[j] + eps)
        t[j] = beta[j]


# ----------------------------------------------------------------------------------- op drivers
# Each ``op_*`` driver (``run``) picks the parallel or serial variant of its kernels by size; its
# serial flavour ``op_*_s`` (``run_s``) calls serial kernels only.
@driver
def op_linear(x, w, b, has_bias, relu, out):
    """linear / fused_linear_relu on (M, K) -> (M, N): BLAS GEMM + bias/ReLU epilogue."""
    k_gemm(x, w, out, x.ndim == 2)  # True, typed bool: a literal True would compile a 2nd k_gemm
    if has_bias or relu:
        # The affine kernel with m = 0, s = 1, t = b: (v - 0) * 1 + b rounds exactly like v + b,
        # and one kernel less to compile (each parallel variant is a large part of the compile time).
        c = out.shape[1]
        m = np.empty(c, out.dtype)
        s = np.empty(c, out.dtype)
        for j in range(c):  # loops, not np.zeros / np.ones: each new signature costs compile time
            m[j] = 0.0
            s[j] = 1.0
        if out.size >= PAR_MIN:
            k_affine2d_p(out, out, m, s, b, bool(relu))
        else:
            k_affine2d_s(out, out, m, s, b, bool(relu))


@driver(serial=True)
def op_linear_s(x, w, b, has_bias, relu, out, xt, ot):
    """Serial flavour of :func:`op_linear`, channel-major (see :func:`gemm_cm`).  The bias (+ ReLU)
    epilogue (m = 0, s = 1, t = b; ``b`` is zeros when the Linear has no bias) runs in place and
    leaves ``out`` (C, M) when ``ot``, or writes it transposed into ``out`` (M, C): between Linear
    layers no transposes at all."""
    yt = gemm_cm(x, w, out, bool(xt), bool(ot))
    c = yt.shape[0]
    m = np.empty(c, out.dtype)
    s = np.empty(c, out.dtype)
    for j in range(c):
        m[j] = 0.0
        s[j] = 1.0
    k_affine_cm(yt, out, m, s, b, bool(relu), not ot)


@driver
def op_bn2(x, out, pre, gamma, beta, rm, rv, nbt, batch_stats, update, momentum, eps, relu):
    """BatchNorm over (N, C) (+ ReLU) from ``x`` into ``out`` (may be ``x``).

    ``pre`` is a per-channel bias that belongs to ``x`` but was not added (fused Linear bias)."""
    c = x.shape[1]
    m = np.empty(c, out.dtype)
    s = np.empty(c, out.dtype)
    t = np.empty(c, out.dtype)
    mean = np.empty(c)
    var = np.empty(c)
    par = x.size >= PAR_MIN
    if batch_stats:
        if par:
            k_stats2d_p(x, mean, var)
        else:
            k_stats2d_s(x, mean, var)
    bn_mode_coeffs(mean, var, pre, x.shape[0], gamma, beta, rm, rv, nbt, bool(batch_stats), bool(update),
                   momentum, eps, m, s, t)
    if par:
        k_affine2d_p(x, out, m, s, t, bool(relu))
    else:
        k_affine2d_s(x, out, m, s, t, bool(relu))


@driver(serial=True)
def op_bn2_s(x, out, pre, gamma, beta, rm, rv, nbt, batch_stats, update, momentum, eps, relu):
    """Serial flavour of :func:`op_bn2`: BatchNorm over (N, C) (+ ReLU) from ``x`` into ``out``."""
    c = x.shape[1]
    m = np.empty(c, out.dtype)
    s = np.empty(c, out.dtype)
    t = np.empty(c, out.dtype)
    mean = np.empty(c)
    var = np.empty(c)
    if batch_stats:
        k_stats2d_s(x, mean, var)
    bn_mode_coeffs(mean, var, pre, x.shape[0], gamma, beta, rm, rv, nbt, bool(batch_stats), bool(update),
                   momentum, eps, m, s, t)
    k_affine2d_s(x, out, m, s, t, bool(relu))


@driver
def op_linear_bn(x, w, b, gamma, beta, rm, rv, nbt, batch_stats, update, momentum, eps, relu, out):
    """fused_linear_bn(_relu): GEMM into ``out``, then BatchNorm (+ ReLU) in place.  The Linear
    bias is never added to the data: train BN subtracts the batch mean anyway, eval folds it into m."""
    k_gemm(x, w, out, x.ndim == 2)  # True (see op_linear)
    op_bn2(out, out, b, gamma, beta, rm, rv, nbt, batch_stats, update, momentum, eps, relu)


@driver(serial=True)
def op_linear_bn_s(x, w, b, gamma, beta, rm, rv, nbt, batch_stats, update, momentum, eps, relu, out, xt,
                   ot):
    """Serial flavour of :func:`op_linear_bn`, channel-major like :func:`op_linear_s`: each channel is
    a contiguous row of the GEMM output for the statistics and the epilogue."""
    yt = gemm_cm(x, w, out, bool(xt), bool(ot))
    c, n = yt.shape
    m = np.empty(c, out.dtype)
    s = np.empty(c, out.dtype)
    t = np.empty(c, out.dtype)
    mean = np.empty(c)
    var = np.empty(c)
    if batch_stats:
        k_rowstats(yt, mean, var)
    bn_mode_coeffs(mean, var, b, n, gamma, beta, rm, rv, nbt, bool(batch_stats), bool(update), momentum,
                   eps, m, s, t)
    k_affine_cm(yt, out, m, s, t, bool(relu), not ot)


@driver
def op_bn3(x, out, gamma, beta, rm, rv, nbt, batch_stats, update, momentum, eps, relu):
    """BatchNorm over (N, C, L) (+ ReLU); statistics over N and L."""
    n, c, ln = x.shape
    m = np.empty(c, out.dtype)
    s = np.empty(c, out.dtype)
    t = np.empty(c, out.dtype)
    mean = np.empty(c)
    var = np.empty(c)
    par = x.size >= PAR_MIN
    if batch_stats:
        if par:
            k_stats3d_p(x, mean, var)
        else:
            k_stats3d_s(x, mean, var)
    bn_mode_coeffs(mean, var, np.empty(0, out.dtype), n * ln, gamma, beta, rm, rv, nbt, bool(batch_stats),
                   bool(update), momentum, eps, m, s, t)
    if par:
        k_affine3d_p(x, out, m, s, t, bool(relu))
    else:
        k_affine3d_s(x, out, m, s, t, bool(relu))


@driver(serial=True)
def op_bn3_s(x, out, gamma, beta, rm, rv, nbt, batch_stats, update, momentum, eps, relu):
    """Serial flavour of :func:`op_bn3`: BatchNorm over (N, C, L) (+ ReLU)."""
    n, c, ln = x.shape
    m = np.empty(c, out.dtype)
    s = np.empty(c, out.dtype)
    t = np.empty(c, out.dtype)
    mean = np.empty(c)
    var = np.empty(c)
    if batch_stats:
        k_stats3d_s(x, mean, var)
    bn_mode_coeffs(mean, var, np.empty(0, out.dtype), n * ln, gamma, beta, rm, rv, nbt, bool(batch_stats),
                   bool(update), momentum, eps, m, s, t)
    k_affine3d_s(x, out, m, s, t, bool(relu))


@driver
def op_relu(x, out):
    """Unfused ReLU on a contiguous array of any rank."""
    xf = x.reshape(x.size)
    of = out.reshape(out.size)
    if x.size >= PAR_MIN:
        k_relu_p(xf, of)
    else:
        k_relu_s(xf, of)


@driver(serial=True)
def op_relu_s(x, out):
    """Serial flavour of :func:`op_relu`."""
    xf = x.reshape(x.size)
    of = out.reshape(out.size)
    k_relu_s(xf, of)
