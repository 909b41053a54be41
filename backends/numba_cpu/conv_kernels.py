# ruff: noqa: F821  (generated names: ``*_p`` / ``*_s`` variants, ``PAR_MIN``, ``LANES``)
"""Convolution and max-pooling templates for the ``cpu`` backend (NCHW, float32 / float64).

A convolution runs in blocks of ``bb`` samples (:func:`conv_blocks`): im2col of the block into
``col`` (K, bb·P) with K = C/groups·kh·kw per group and P = Ho·Wo, one BLAS GEMM per group
``W_g (O/g, K_g) @ col_g (K_g, bb·P) -> y_g`` (row slices of C-contiguous arrays, so ``gemm_nn``
takes them as they are), then an epilogue that scatters ``y`` (O, bb·P) into the NCHW output,
applying the per-channel affine ``(v - m) * s + t`` and ReLU: bias (m = 0, s = 1, t = bias) or
eval BatchNorm (coefficients from the current running stats).  The epilogue of one block and the
im2col of the next are one kernel call (:func:`k_conv_step`), so a convolution makes one call per
block plus one, each parallel only when big (its tasks copy at memory speed; waking Numba's
workers for a small one costs more than it saves).

Train BatchNorm: the blocks write the pre-BN values (no bias: it cancels in the normalized output
and only shifts ``running_mean``, which ``bn_mode_coeffs``' ``pre`` handles) and per-(sample,
channel) shifted sums, merged in float64 in sample order (deterministic, thread-count independent);
then coefficients, running-stat update and the normalize (+ ReLU) pass in place (``k_affine3d``).

Integer geometry reaches the kernels as ``int(...)`` values: a literal int would be typed
``Literal[int]`` and compile one specialization per layer shape.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from . import kernels  # noqa: F401  (registered first: its templates, which these call, come first)
from .registry import driver, helper, kernel

# ---------------------------------------------------------------------------------------- kernels


@kernel(parallel=True)
def k_conv_step(x, col, n0, y, out, p0, m, s, t, relu, stats, p1, p2, shift, geo):
    """One region of the blocked convolution; two kinds of task of ~P elements each:

    - im2col of samples ``n0 ..`` (``col.shape[1] // P`` of them) into ``col`` (K, nb·P):
      col[(c, ky, kx), b·P + oy·Wo + ox] = x[n0 + b, c, oy·sy + ky·dy - pt, ox·sx + kx·dx - pl], 0 outside;
    - the epilogue of the previous block's GEMM output ``y`` (O, pb·P) into ``out[p0 + b, o]``
      (``out`` (N, O, P)): ``(v - m) * s + t``, ReLU if ``relu``; with ``stats`` also the row's
      sums of ``v - shift[o]`` and its square into ``p1``/``p2`` at ``(p0 + b) * O + o``.

    ``geo`` = (kh, kw, sy, sx, dy, dx, pt, pl, Wo)."""
    kh, kw, sy, sx, dy, dx, pt, pl, wo = geo
    c_in = x.shape[1]
    h = x.shape[2]
    w = x.shape[3]
    o = out.shape[1]
    p = out.shape[2]
    ho = p // wo
    khw = kh * kw
    kall = col.shape[0]
    nb = col.shape[1] // p
    t_col = kall * nb
    t_epi = (y.shape[1] // p) * o
    zero = np.zeros(1, out.dtype)[0]
    lim = np.empty(1, out.dtype)
    lim[0] = 0.0 if relu else -np.inf  # -inf: a clamp that changes no value (one loop, not two)
    lo = lim[0]
    cf = col.reshape(col.size)
    xf = x.reshape(x.size)
    ncol = col.shape[1]
    for task in prange(t_col + t_epi):
        if task < t_col:
            kr = task // nb
            b = task - kr * nb
            c = kr // khw
            ky = (kr - c * khw) // kw
            kx = kr - c * khw - ky * kw
            cbase = kr * ncol + b * p
            xbase = ((n0 + b) * c_in + c) * h * w
            off = kx * dx - pl  # ix = ox * sx + off
            x_lo = 0 if off >= 0 else (sx - 1 - off) // sx
            x_hi = 0 if w - 1 - off < 0 else (w - 1 - off) // sx + 1
            if x_hi > wo:
                x_hi = wo
            if x_lo > x_hi:
                x_lo = x_hi
            # Flat indices cast to unsigned: Numba skips the negative-index wraparound for them, so
            # the short row copies vectorize (row views cost more than a 30-element copy).
            for oy in range(ho):
                d0 = cbase + oy * wo
                iy = oy * sy + ky * dy - pt
                if iy < 0 or iy >= h:
                    for q in range(wo):
                        cf[np.uint64(d0 + q)] = zero
                    continue
                for q in range(x_lo):
                    cf[np.uint64(d0 + q)] = zero
                s0 = xbase + iy * w + off
                if sx == 1:
                    for q in range(x_lo, x_hi):
                        cf[np.uint64(d0 + q)] = xf[np.uint64(s0 + q)]
                else:
                    for q in range(x_lo, x_hi):
                        cf[np.uint64(d0 + q)] = xf[np.uint64(s0 + q * sx)]
                for q in range(x_hi, wo):
                    cf[np.uint64(d0 + q)] = zero
        else:
            e = task - t_col
            b = e // o
            ch = e - b * o
            src = y[ch, b * p:(b + 1) * p]
            dst = out[p0 + b, ch]
            mc = m[ch]
            sc = s[ch]
            tc = t[ch]
            for q in range(p):
                v = (src[q] - mc) * sc + tc
                dst[q] = lo if v < lo else v
            if stats:
                # Shifted sums in LANES data-dtype lanes (vectorizes without fastmath), then float64.
                sh = shift[ch]
                a1 = np.empty(LANES, out.dtype)
                a2 = np.empty(LANES, out.dtype)
                for u in range(LANES):
                    a1[u] = zero
                    a2[u] = zero
                nl = p // LANES
                for bl in range(nl):
                    seg = dst[bl * LANES:(bl + 1) * LANES]
                    for u in range(LANES):
                        d = seg[u] - sh
                        a1[u] += d
                        a2[u] += d * d
                s1 = 0.0
                s2 = 0.0
                for u in range(LANES):
                    s1 += a1[u]
                    s2 += a2[u]
                for q in range(nl * LANES, p):
                    d = dst[q] - sh
                    s1 += d
                    s2 += d * d
                p1[(p0 + b) * o + ch] = s1
                p2[(p0 + b) * o + ch] = s2


@kernel(parallel=True)
def k_maxpool(x, out, geo, relu):
    """Max over each window of ``x`` (N, C, H, W) into ``out`` (N, C, Ho, Wo), one task per (n, c)
    plane; taps outside the input are the ``-inf`` padding (also the windows of ``ceil_mode`` that
    run past it).  NaN is sticky like PyTorch; ``relu`` clamps each max (relu∘max == max∘relu).
    ``geo`` = (kh, kw, sy, sx, ph, pw, dy, dx)."""
    kh, kw, sy, sx, ph, pw, dy, dx = geo
    n, c, h, w = x.shape
    ho = out.shape[2]
    wo = out.shape[3]
    zero = np.zeros(1, out.dtype)[0]
    ninf = np.full(1, -np.inf, out.dtype)[0]
    for r in prange(n * c):
        i = r // c
        ch = r - i * c
        plane = x[i, ch]
        dst = out[i, ch]
        for oy in range(ho):
            y0 = oy * sy - ph
            drow = dst[oy]
            for ox in range(wo):
                x0 = ox * sx - pw
                best = ninf
                for ky in range(kh):
                    iy = y0 + ky * dy
                    if iy < 0 or iy >= h:
                        continue
                    row = plane[iy]
                    for kx in range(kw):
                        ix = x0 + kx * dx
                        if ix < 0 or ix >= w:
                            continue
                        v = row[ix]
                        if v > best or v != v:
                            best = v
                if relu and best < zero:
                    best = zero
                drow[ox] = best


# ---------------------------------------------------------------------------------------- helpers
@helper
def conv_stats(p1, p2, shift, cnt, mean, var):
    """Per-channel mean and biased variance from the per-(sample, channel) shifted sums ``p1``,
    ``p2`` (N·C, float64) of :func:`k_conv_step`, ``cnt`` values per channel; merged in sample
    order.  NaN for an empty batch."""
    c = mean.shape[0]
    n = p1.shape[0] // c if c else 0
    for ch in range(c):
        if cnt == 0:
            mean[ch] = np.nan
            var[ch] = np.nan
            continue
        s1 = 0.0
        s2 = 0.0
        for i in range(n):
            s1 += p1[i * c + ch]
            s2 += p2[i * c + ch]
        mu = s1 / cnt
        v = s2 / cnt - mu * mu
        mean[ch] = shift[ch] + mu
        var[ch] = 0.0 if v < 0.0 else v  # rounding only; NaN stays NaN


@helper
def conv_block_size(n, k, p, itemsize):
    """``(samples per block, blocks)`` for ``n`` samples of ``k`` im2col rows of ``p`` columns.

    A block's ``col`` stays within 2 MiB (one core's L2 on the development machine), so it is
    still in cache when the GEMM reads it, and so is ``y`` (O/K of that) when the epilogue does;
    the GEMM still gets a thousand columns or more for the usual K of a few hundred (FeatureExtractor's
    second conv: 2 samples, 1568 columns; its block GEMMs together ran faster than the one bare
    GEMM of the whole batch).  Blocks are then made equal in size."""
    bb = (1 << 21) // max(1, k * p * itemsize)
    bb = max(1, min(bb, n))
    nblk = (n + bb - 1) // bb
    if nblk > 0:
        bb = (n + nblk - 1) // nblk
    return bb, nblk


@helper
def conv_block_gemm(w2, col, y, groups, first, shift):
    """One block's GEMMs: ``y`` (O, bb·P) = ``w2`` (O, K_g) @ ``col`` (C·kh·kw, bb·P), one per group
    (row slices); with ``first`` also ``shift`` (O), each channel's first output value (0 when not
    finite), the shift of the train-BN partial sums."""
    o = w2.shape[0]
    og = o // groups
    kg = w2.shape[1]
    for gi in range(groups):
        k_gemm(w2[gi * og:(gi + 1) * og], col[gi * kg:(gi + 1) * kg], y[gi * og:(gi + 1) * og], bool(False))
    if first:
        for ch in range(o):
            v = y[ch, 0]
            shift[ch] = v if v - v == 0.0 else 0.0  # finite


# ----------------------------------------------------------------------------------- op drivers
@driver
def conv_blocks(x, w, geo, groups, out, m, s, t, relu, stats, p1, p2, shift):
    """The blocked convolution (see the module docstring) of ``x`` (N, C, H, W) with ``w``
    (O, C/groups, kh, kw) into ``out`` (N, O, Ho, Wo), epilogue coefficients ``m, s, t``.
    ``geo`` = (sy, sx, dy, dx, pt, pl); with ``stats`` the block epilogues also fill ``p1``/``p2``
    (N·O) and ``shift`` (O: the first output value of each channel, 0 when not finite)."""
    n = x.shape[0]
    o, cg, kh, kw = w.shape
    wo = out.shape[3]
    p = out.shape[2] * wo
    kg = cg * kh * kw
    kall = x.shape[1] * kh * kw
    g = (kh, kw, int(geo[0]), int(geo[1]), int(geo[2]), int(geo[3]), int(geo[4]), int(geo[5]), wo)
    w2 = np.ascontiguousarray(w).reshape((o, kg))
    out3 = out.reshape((n, o, p))
    bb, nblk = conv_block_size(n, kall, p, x.itemsize)
    colbuf = np.empty(kall * bb * p, out.dtype)
    ybuf = np.empty(o * bb * p, out.dtype)
    pn0 = int(0)  # not Literal[int](0): one k_conv_step signature
    pnb = int(0)
    for blk in range(nblk + 1):  # the extra step: the last block's epilogue
        n0 = blk * bb
        nb = min(bb, n - n0) if blk < nblk else 0
        if nb + pnb == 0:
            continue
        col = colbuf[:kall * nb * p].reshape((kall, nb * p))
        yp = ybuf[:o * pnb * p].reshape((o, pnb * p))
        # One region per step.  Its tasks copy at memory speed, so it pays for waking the workers
        # (~0.1-0.3 ms on ``workqueue``) only from about twice the elements of the other kernels.
        if (kall * nb + o * pnb) * p >= 2 * PAR_MIN:
            k_conv_step_p(x, col, n0, yp, out3, pn0, m, s, t, relu, stats, p1, p2, shift, g)
        else:
            k_conv_step_s(x, col, n0, yp, out3, pn0, m, s, t, relu, stats, p1, p2, shift, g)
        if nb > 0:
            conv_block_gemm(w2, col, ybuf[:o * nb * p].reshape((o, nb * p)), groups, bool(stats and blk == 0),
                            shift)
        pn0 = n0
        pnb = nb


@driver
def op_conv(x, w, b, geo, groups, relu, out):
    """conv2d / fused_conv_relu: blocked im2col + GEMM with the bias (+ ReLU) epilogue
    (m = 0, s = 1, t = ``b``; zeros without bias)."""
    o = w.shape[0]
    m = np.empty(o, out.dtype)
    s = np.empty(o, out.dtype)
    for j in range(o):
        m[j] = 0.0
        s[j] = 1.0
    none = np.empty(0)
    conv_blocks(x, w, geo, groups, out, m, s, b, bool(relu), bool(False), none, none, np.empty(0, out.dtype))


@driver
def op_conv_bn(x, w, b, geo, groups, gamma, beta, rm, rv, nbt, batch_stats, update, momentum, eps, relu, out):
    """fused_conv_bn(_relu).  Eval: coefficients first (conv bias ``b`` as ``pre``), then the blocks
    with the BN (+ ReLU) epilogue.  Batch statistics: the blocks write pre-BN values and partial
    sums; then coefficients (and the running-stat update) and the normalize (+ ReLU) pass."""
    n = x.shape[0]
    o = w.shape[0]
    cnt = n * out.shape[2] * out.shape[3]
    m = np.empty(o, out.dtype)
    s = np.empty(o, out.dtype)
    t = np.empty(o, out.dtype)
    mean = np.empty(o)
    var = np.empty(o)
    k = n * o if batch_stats else 0
    p1 = np.empty(k)
    p2 = np.empty(k)
    shift = np.empty(o if batch_stats else 0, out.dtype)
    if batch_stats:
        for j in range(o):
            m[j] = 0.0
            s[j] = 1.0
            t[j] = 0.0
    else:
        bn_mode_coeffs(mean, var, b, cnt, gamma, beta, rm, rv, nbt, bool(False), bool(False), momentum, eps,
                       m, s, t)
    conv_blocks(x, w, geo, groups, out, m, s, t, bool(relu and not batch_stats), bool(batch_stats), p1, p2,
                shift)
    if batch_stats:
        conv_stats(p1, p2, shift, cnt, mean, var)
        bn_mode_coeffs(mean, var, b, cnt, gamma, beta, rm, rv, nbt, bool(True), bool(update), momentum, eps,
                       m, s, t)
        out3 = out.reshape((n, o, out.shape[2] * out.shape[3]))
        if out.size >= PAR_MIN:
            k_affine3d_p(out3, out3, m, s, t, bool(relu))
        else:
            k_affine3d_s(out3, out3, m, s, t, bool(relu))


@driver
def op_pool(x, geo, relu, out):
    """max_pool2d / fused_relu_max_pool2d; ``geo`` = (kh, kw, sy, sx, ph, pw, dy, dx)."""
    g = (int(geo[0]), int(geo[1]), int(geo[2]), int(geo[3]), int(geo[4]), int(geo[5]), int(geo[6]),
         int(geo[7]))
    if x.size >= PAR_MIN:
        k_maxpool_p(x, out, g, bool(relu))
    else:
        k_maxpool_s(x, out, g, bool(relu))


# ------------------------------------------------------------- small calls (serial flavour only)
@driver(serial=True)
def conv_blocks_s(x, w, geo, groups, out, m, s, t, relu, stats, p1, p2, shift):
    """Serial flavour of :func:`conv_blocks`."""
    n = x.shape[0]
    o, cg, kh, kw = w.shape
    wo = out.shape[3]
    p = out.shape[2] * wo
    kg = cg * kh * kw
    kall = x.shape[1] * kh * kw
    g = (kh, kw, int(geo[0]), int(geo[1]), int(geo[2]), int(geo[3]), int(geo[4]), int(geo[5]), wo)
    w2 = np.ascontiguousarray(w).reshape((o, kg))
    out3 = out.reshape((n, o, p))
    bb, nblk = conv_block_size(n, kall, p, x.itemsize)
    colbuf = np.empty(kall * bb * p, out.dtype)
    ybuf = np.empty(o * bb * p, out.dtype)
    pn0 = int(0)  # not Literal[int](0): one k_conv_step signature
    pnb = int(0)
    for blk in range(nblk + 1):
        n0 = blk * bb
        nb = min(bb, n - n0) if blk < nblk else 0
        if nb + pnb == 0:
            continue
        col = colbuf[:kall * nb * p].reshape((kall, nb * p))
        yp = ybuf[:o * pnb * p].reshape((o, pnb * p))
        k_conv_step_s(x, col, n0, yp, out3, pn0, m, s, t, relu, stats, p1, p2, shift, g)
        if nb > 0:
            conv_block_gemm(w2, col, ybuf[:o * nb * p].reshape((o, nb * p)), groups, bool(stats and blk == 0),
                            shift)
        pn0 = n0
        pnb = nb


@driver(serial=True)
def op_conv_s(x, w, b, geo, groups, relu, out):
    """Serial flavour of :func:`op_conv`."""
    o = w.shape[0]
    m = np.empty(o, out.dtype)
    s = np.empty(o, out.dtype)
    for j in range(o):
        m[j] = 0.0
        s[j] = 1.0
    none = np.empty(0)
    conv_blocks_s(x, w, geo, groups, out, m, s, b, bool(relu), bool(False), none, none,
                  np.empty(0, out.dtype))


@driver(serial=True)
def op_conv_bn_s(x, w, b, geo, groups, gamma, beta, rm, rv, nbt, batch_stats, update, momentum, eps, relu,
                 out):
    """Serial flavour of :func:`op_conv_bn`."""
    n = x.shape[0]
    o = w.shape[0]
    cnt = n * out.shape[2] * out.shape[3]
    m = np.empty(o, out.dtype)
    s = np.empty(o, out.dtype)
    t = np.empty(o, out.dtype)
    mean = np.empty(o)
    var = np.empty(o)
    k = n * o if batch_stats else 0
    p1 = np.empty(k)
    p2 = np.empty(k)
    shift = np.empty(o if batch_stats else 0, out.dtype)
    if batch_stats:
        for j in range(o):
            m[j] = 0.0
            s[j] = 1.0
            t[j] = 0.0
    else:
        bn_mode_coeffs(mean, var, b, cnt, gamma, beta, rm, rv, nbt, bool(False), bool(False), momentum, eps,
                       m, s, t)
    conv_blocks_s(x, w, geo, groups, out, m, s, t, bool(relu and not batch_stats), bool(batch_stats), p1, p2,
                  shift)
    if batch_stats:
        conv_stats(p1, p2, shift, cnt, mean, var)
        bn_mode_coeffs(mean, var, b, cnt, gamma, beta, rm, rv, nbt, bool(True), bool(update), momentum, eps,
                       m, s, t)
        out3 = out.reshape((n, o, out.shape[2] * out.shape[3]))
        k_affine3d_s(out3, out3, m, s, t, bool(relu))


@driver(serial=True)
def op_pool_s(x, geo, relu, out):
    """Serial flavour of :func:`op_pool`."""
    g = (int(geo[0]), int(geo[1]), int(geo[2]), int(geo[3]), int(geo[4]), int(geo[5]), int(geo[6]),
         int(geo[7]))
    k_maxpool_s(x, out, g, bool(relu))
