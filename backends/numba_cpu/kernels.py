# ruff: noqa: F821  (drivers call the generated ``*_p`` / ``*_s`` variants and ``madvise`` by name)
"""Kernel templates for the ``cpu`` backend.

These are plain Python functions; :mod:`.codegen` copies their *source* into each generated module
(so ``cm.source`` shows every line that runs and Numba's disk cache sees one self-contained file).
Functions listed in :data:`PARALLEL` are emitted twice: ``name_p`` (``parallel=True``, ``prange``)
and ``name_s`` (serial, ``prange`` -> ``range``); the ``op_*`` drivers pick one by size at call time,
because waking a thread pool costs microseconds that small batches cannot pay back.

Numerics:
- No ``fastmath``: it would let LLVM assume no NaNs, turning ``relu(NaN)`` into 0 (torch gives NaN).
  Reductions vectorize anyway because each accumulator is a lane of an array, not a scalar.
- Train-BN statistics use *shifted* sums: ``d = v - shift[c]`` with ``shift`` a sample of the channel
  (the first row, 0 when non-finite), accumulated in the input dtype over a fixed number of row
  chunks (independent of the thread count, so results are deterministic) and merged in float64.
  This stays accurate when ``|mean| >> std``; non-finite inputs propagate like PyTorch (an inf in a
  channel gives mean inf / var NaN, a NaN gives NaN).
- Per-channel coefficients are float64, computed at call time from the current batch or running
  statistics (O(C)); the epilogue is ``(v - m) * s + t`` in the data dtype, optionally ReLU'd with
  ``v < 0 -> 0`` (NaN stays NaN).
"""

from __future__ import annotations

import numpy as np
from numba import prange

# Elements below which the serial variants run (a parallel region costs a few microseconds).
PAR_MIN = 1 << 15
# Train-BN statistics over (N, C): at most this many row chunks, at least this many rows per chunk.
MAX_CHUNKS = 64
MIN_CHUNK_ROWS = 64
# Rows of an (N, C, L) channel summed in the data dtype before the partials go to float64.
BN3_ROWS = 64
# Output buffers of at least this many bytes get ``madvise(MADV_HUGEPAGE)`` (NumPy uses 4 MiB).
HUGE_MIN = 1 << 22
# Names of the templates that have a parallel and a serial variant.
PARALLEL = ("k_stats2d", "k_affine2d", "k_relu", "k_bn3d_train", "k_affine3d")


# ---------------------------------------------------------------------------------------- kernels
def k_gemm(x, w, out):
    """out = x @ w.T through BLAS (``x`` (M, K), ``w`` (N, K), ``out`` (M, N) preallocated)."""
    np.dot(x, w.T, out)


def k_stats2d(x, mean, var):
    """Per-column mean and biased variance of ``x`` (N, C) into float64 ``mean``, ``var``."""
    n, c = x.shape
    nch = min(MAX_CHUNKS, max(1, n // MIN_CHUNK_ROWS))
    shift = np.zeros(c, x.dtype)
    for j in range(c):
        v = x[0, j]
        if v - v == 0.0:  # finite (inf - inf and NaN - NaN are NaN)
            shift[j] = v
    p1 = np.zeros((nch, c), x.dtype)
    p2 = np.zeros((nch, c), x.dtype)
    for k in prange(nch):
        lo = k * n // nch
        hi = (k + 1) * n // nch
        for i in range(lo, hi):
            for j in range(c):
                d = x[i, j] - shift[j]
                p1[k, j] += d
                p2[k, j] += d * d
    s1 = np.zeros(c)
    s2 = np.zeros(c)
    for k in range(nch):
        for j in range(c):
            s1[j] += p1[k, j]
            s2[j] += p2[k, j]
    for j in range(c):
        m = s1[j] / n
        mean[j] = shift[j] + m
        v = s2[j] / n - m * m
        var[j] = 0.0 if v < 0.0 else v  # rounding only; NaN stays NaN


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


def k_relu(x, out):
    """out = relu(x) elementwise on flat arrays (NaN stays NaN)."""
    for i in prange(x.size):
        v = x[i]
        out[i] = 0.0 if v < 0.0 else v


def k_bn3d_train(x, out, gamma, beta, eps, relu, mean, var):
    """Train BatchNorm over (N, C, L), one channel per task: statistics, then normalize while the
    channel's N*L values are still in cache.  Batch mean / biased var go to float64 ``mean``/``var``.

    The statistics accumulate *per position* ``l`` (``a1[l] += x[i, ch, l] - shift``): the inner
    loop is elementwise over contiguous memory, so LLVM vectorizes it without fastmath (a scalar
    running sum would need reassociation).  The data-dtype partials cover at most ``BN3_ROWS`` rows,
    are merged into float64 per position, and the positions are summed in float64 at the end."""
    n, c, ln = x.shape
    cnt = n * ln
    zero = np.zeros(1, x.dtype)[0]
    for ch in prange(c):
        sh = x[0, ch, 0]
        if not sh - sh == zero:  # not finite
            sh = zero
        a1 = np.empty(ln, x.dtype)
        a2 = np.empty(ln, x.dtype)
        b1 = np.zeros(ln)
        b2 = np.zeros(ln)
        for i0 in range(0, n, BN3_ROWS):
            a1[:] = zero
            a2[:] = zero
            for i in range(i0, min(i0 + BN3_ROWS, n)):
                row = x[i, ch]
                for q in range(ln):
                    d = row[q] - sh
                    a1[q] += d
                    a2[q] += d * d
            for q in range(ln):
                b1[q] += a1[q]
                b2[q] += a2[q]
        s1 = 0.0
        s2 = 0.0
        for q in range(ln):
            s1 += b1[q]
            s2 += b2[q]
        mu = s1 / cnt
        bmean = sh + mu
        bvar = s2 / cnt - mu * mu
        if bvar < 0.0:
            bvar = 0.0
        mean[ch] = bmean
        var[ch] = bvar
        sc = gamma[ch] / np.sqrt(bvar + eps)
        cv = np.empty(3, out.dtype)  # the coefficients in the data dtype (vectorized epilogue)
        cv[0] = bmean
        cv[1] = sc
        cv[2] = beta[ch]
        m1 = cv[0]
        s1c = cv[1]
        t1 = cv[2]
        for i in range(n):
            src = x[i, ch]
            dst = out[i, ch]
            if relu:
                for q in range(ln):
                    v = (src[q] - m1) * s1c + t1
                    dst[q] = zero if v < zero else v
            else:
                for q in range(ln):
                    dst[q] = (src[q] - m1) * s1c + t1


def k_affine3d(x, out, m, s, t, relu):
    """out[i, c, l] = (x[i, c, l] - m[c]) * s[c] + t[c], then ReLU if ``relu``."""
    n, c, ln = x.shape
    zero = np.zeros(1, out.dtype)[0]
    for i in prange(n):
        for ch in range(c):
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


# ---------------------------------------------------------------------------------- allocation
def advise_huge(a):
    """Ask Linux for transparent huge pages on a fresh buffer of at least ``HUGE_MIN`` bytes.

    Numba's ``np.empty`` is a plain ``malloc`` (an ``mmap`` for big blocks) and every 4 KiB page then
    faults on first write: a 128 MiB output costs ~3x a copy in faults alone.  NumPy's own
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
def bn_coeffs(mean, var, gamma, beta, pre, eps, m, s, t):
    """Epilogue coefficients from statistics: m = mean - pre, s = gamma / sqrt(var + eps), t = beta.

    ``pre`` is a bias the data does not contain yet (the Linear bias skipped by the fused GEMM)."""
    for j in range(m.shape[0]):
        m[j] = mean[j] - pre[j]
        s[j] = gamma[j] / np.sqrt(var[j] + eps)
        t[j] = beta[j]


def update_running(rm, rv, mean, var, pre, cnt, momentum, nbt):
    """num_batches_tracked += 1 and the running-stat update (unbiased var) in place.

    ``momentum < 0`` stands for ``momentum=None``: the factor is ``1 / num_batches_tracked``."""
    nbt[()] += 1
    f = 1.0 / nbt[()] if momentum < 0.0 else momentum
    corr = cnt / (cnt - 1.0)
    for j in range(rm.shape[0]):
        rm[j] = (1.0 - f) * rm[j] + f * (mean[j] + pre[j])
        rv[j] = (1.0 - f) * rv[j] + f * (var[j] * corr)


# ----------------------------------------------------------------------------------- op drivers
def op_linear(x, w, b, has_bias, relu, out):
    """linear / fused_linear_relu on (M, K) -> (M, N): BLAS GEMM + bias/ReLU epilogue."""
    k_gemm(x, w, out)
    if has_bias or relu:
        # The affine kernel with m = 0, s = 1, t = b: (v - 0) * 1 + b rounds exactly like v + b,
        # and one kernel less to compile (each parallel variant costs ~1 s of Numba/LLVM time).
        c = out.shape[1]
        m = np.zeros(c, out.dtype)
        s = np.ones(c, out.dtype)
        if out.size >= PAR_MIN:
            k_affine2d_p(out, out, m, s, b, relu)
        else:
            k_affine2d_s(out, out, m, s, b, relu)


def op_bn2(x, out, pre, gamma, beta, rm, rv, nbt, batch_stats, update, momentum, eps, relu):
    """BatchNorm over (N, C) (+ ReLU) from ``x`` into ``out`` (may be ``x``).

    ``pre`` is a per-channel bias that belongs to ``x`` but was not added (fused Linear bias)."""
    c = x.shape[1]
    m = np.empty(c, out.dtype)
    s = np.empty(c, out.dtype)
    t = np.empty(c, out.dtype)
    par = x.size >= PAR_MIN
    if batch_stats:
        mean = np.empty(c)
        var = np.empty(c)
        if par:
            k_stats2d_p(x, mean, var)
        else:
            k_stats2d_s(x, mean, var)
        if update:
            update_running(rm, rv, mean, var, pre, x.shape[0], momentum, nbt)
        bn_coeffs(mean, var, gamma, beta, np.zeros(c), eps, m, s, t)
    else:
        bn_coeffs(rm.astype(np.float64), rv.astype(np.float64), gamma, beta, pre, eps, m, s, t)
    if par:
        k_affine2d_p(x, out, m, s, t, relu)
    else:
        k_affine2d_s(x, out, m, s, t, relu)


def op_linear_bn(x, w, b, gamma, beta, rm, rv, nbt, batch_stats, update, momentum, eps, relu, out):
    """fused_linear_bn(_relu): GEMM into ``out``, then BatchNorm (+ ReLU) in place.  The Linear
    bias is never added to the data: train BN subtracts the batch mean anyway, eval folds it into m."""
    k_gemm(x, w, out)
    op_bn2(out, out, b, gamma, beta, rm, rv, nbt, batch_stats, update, momentum, eps, relu)


def op_bn3(x, out, gamma, beta, rm, rv, nbt, batch_stats, update, momentum, eps, relu):
    """BatchNorm over (N, C, L) (+ ReLU); statistics over N and L."""
    n, c, ln = x.shape
    par = x.size >= PAR_MIN
    if batch_stats:
        mean = np.empty(c)
        var = np.empty(c)
        if par:
            k_bn3d_train_p(x, out, gamma, beta, eps, relu, mean, var)
        else:
            k_bn3d_train_s(x, out, gamma, beta, eps, relu, mean, var)
        if update:
            update_running(rm, rv, mean, var, np.zeros(c), n * ln, momentum, nbt)
    else:
        m = np.empty(c, out.dtype)
        s = np.empty(c, out.dtype)
        t = np.empty(c, out.dtype)
        bn_coeffs(rm.astype(np.float64), rv.astype(np.float64), gamma, beta, np.zeros(c), eps, m, s, t)
        if par:
            k_affine3d_p(x, out, m, s, t, relu)
        else:
            k_affine3d_s(x, out, m, s, t, relu)


def op_relu(x, out):
    """Unfused ReLU on a contiguous array of any rank."""
    xf = x.reshape(x.size)
    of = out.reshape(out.size)
    if x.size >= PAR_MIN:
        k_relu_p(xf, of)
    else:
        k_relu_s(xf, of)


# Emission order (helpers before their users keeps the generated file readable).
SERIAL = ("k_gemm", "advise_huge", "bn_coeffs", "update_running", "op_linear", "op_bn2", "op_linear_bn",
          "op_bn3", "op_relu")
