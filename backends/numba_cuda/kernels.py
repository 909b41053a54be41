"""The ``cuda`` backend's kernel templates, copied into every generated module (see :mod:`.codegen`).

These are plain functions: the generated module compiles each with ``@cuda.jit(cache=True)``, in
whose globals the names used here live (``cuda``, ``math``, ``float64``, the tile constants and,
for :func:`gemm`, ``SCALAR``: the GEMM is emitted once per dtype, ``gemm_f32`` / ``gemm_f64``,
because shared and local arrays need their dtype at compile time).  Importing this module needs no
``numba.cuda``.

- :func:`gemm` is ``out = x @ w.T`` (``x`` (M, K), ``w`` (C, K): a Linear weight as stored) in
  BM x BN tiles of shared memory, each of the TY x TX threads computing TM x TN outputs from
  registers, with the epilogue fused (``mode``): bias; eval BatchNorm from the running stats as
  they are at the call; or raw values plus per-tile column statistics for train BatchNorm.
- Train BatchNorm statistics are per-block partials (mean and M2 in float64 of a known number of
  rows: deterministic, no atomics), merged by Chan's formula in :func:`bn_merge`, which also updates
  the running stats and writes the per-channel scale/shift that :func:`bn_apply` applies.
- NaN propagates: ReLU is ``v < 0 -> 0`` (NaN compares false), no fastmath anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# These names are globals of the generated module (it defines them; see codegen.CONSTANTS).
cuda: Any = None
math: Any = None
float64: Any = None
SCALAR: Any = None
# The launch geometry (tile sizes, threads per block) is a :class:`Geometry`; the generated module
# defines its values under these names (FULL unless LAZYFUSE_CUDA_TILES=small).
BM = BN = BMP = BK = TY = TX = TM = TN = LOADS = RED = ROWS2 = COLS2 = CHUNK2 = CHUNK3 = 0


@dataclass(frozen=True)
class Geometry:
    """Tile sizes and threads per block of the kernels (their values in a generated module)."""

    TY: int  # GEMM threads per block: TY x TX
    TX: int
    TM: int  # outputs per GEMM thread: TM rows x TN columns
    TN: int
    BK: int  # K slice held in shared memory per step
    RED: int  # threads of the 1-D reduction and elementwise kernels (a power of 2)
    ROWS2: int  # bn_partials2 block: COLS2 adjacent columns x ROWS2 rows
    COLS2: int
    CHUNK2: int  # rows per block of bn_partials2
    CHUNK3: int  # (n, l) positions per block of bn_partials3

    @property
    def BM(self) -> int:  # noqa: N802 - the generated module's constant names
        return self.TY * self.TM

    @property
    def BN(self) -> int:  # noqa: N802
        return self.TX * self.TN

    @property
    def BMP(self) -> int:  # noqa: N802 - a shared tile row: BM plus one element of padding
        return self.BM + 1

    @property
    def LOADS(self) -> int:  # noqa: N802 - tile elements each thread loads per operand and step
        return self.BM * self.BK // (self.TY * self.TX)

    def __post_init__(self) -> None:
        # gemm loads both operands' tiles with one index (square tiles), each thread the same count;
        # block_sum halves RED down to 1.
        if self.BM != self.BN or self.LOADS * self.TY * self.TX != self.BM * self.BK:
            raise ValueError(f"{self}: the GEMM needs BM == BN and BM * BK a multiple of TY * TX")
        if self.RED & (self.RED - 1):
            raise ValueError(f"{self}: RED must be a power of 2")

    def constants(self) -> dict[str, int]:
        """The module constants, by name."""
        return {name: getattr(self, name) for name in CONSTANTS if hasattr(self, name)}


# 64 x 64 output tiles from 16 x 16 threads of 4 x 4 outputs each: the register blocking that
# lets a tile reuse each loaded element 4 times per operand.
FULL = Geometry(TY=16, TX=16, TM=4, TN=4, BK=16, RED=256, ROWS2=8, COLS2=32, CHUNK2=512, CHUNK3=4096)
# The same kernels with 8 x 8 tiles of 4 x 4 threads: tests on tiny shapes then cross many tile and
# chunk edges (the simulator's cost follows the arithmetic, so tiny shapes stay tiny either way).
SMALL = Geometry(TY=4, TX=4, TM=2, TN=2, BK=8, RED=16, ROWS2=4, COLS2=4, CHUNK2=8, CHUNK3=16)


# Epilogue modes of gemm.
EPI_BIAS = 0  # v + bias (no bias: v)
EPI_EVAL_BN = 1  # (v + bias - running_mean) * gamma / sqrt(running_var + eps) + beta
EPI_STATS = 2  # v as computed, plus per-tile column mean / M2 into p_mean / p_m2


def gemm(x, w, out, mode, relu, bias, has_bias, gamma, beta, affine, rm, rv, eps, p_mean, p_m2):
    """One BM x BN output tile per block (block (TX, TY); grid (row tiles, column tiles)).

    No assumption of tile multiples: loads outside (M, K) / (C, K) read zeros, stores are masked.
    Every thread reaches every ``syncthreads`` (no early return), which the statistics need."""
    # K-major tiles, each row padded by one element: consecutive threads store consecutive k of one
    # row, which would otherwise all land in one shared-memory bank (a row stride of 64 words).
    xs = cuda.shared.array((BK, BMP), SCALAR)
    ws = cuda.shared.array((BK, BMP), SCALAR)
    acc = cuda.local.array((TM, TN), SCALAR)
    a = cuda.local.array(TM, SCALAR)
    b = cuda.local.array(TN, SCALAR)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    tid = ty * TX + tx
    row0 = cuda.blockIdx.x * BM
    col0 = cuda.blockIdx.y * BN
    m = x.shape[0]
    k = x.shape[1]
    n = w.shape[0]
    for i in range(TM):
        for j in range(TN):
            acc[i, j] = 0
    for k0 in range(0, k, BK):
        for step in range(LOADS):
            e = tid + step * (TX * TY)
            r = e // BK
            kk = e - r * BK
            gk = k0 + kk
            if row0 + r < m and gk < k:
                xs[kk, r] = x[row0 + r, gk]
            else:
                xs[kk, r] = 0
            if col0 + r < n and gk < k:
                ws[kk, r] = w[col0 + r, gk]
            else:
                ws[kk, r] = 0
        cuda.syncthreads()
        for kk in range(BK):
            for i in range(TM):
                a[i] = xs[kk, ty + i * TY]
            for j in range(TN):
                b[j] = ws[kk, tx + j * TX]
            for i in range(TM):
                for j in range(TN):
                    acc[i, j] += a[i] * b[j]
        cuda.syncthreads()
    # Per-column epilogue coefficients v * s + t, computed at the call from the arrays as they are.
    s = cuda.local.array(TN, SCALAR)
    t = cuda.local.array(TN, SCALAR)
    for j in range(TN):
        c = col0 + tx + j * TX
        sj = 1.0
        tj = 0.0
        if c < n:
            if mode == EPI_BIAS:
                if has_bias:
                    tj = bias[c]
            elif mode == EPI_EVAL_BN:
                sj = 1.0 / math.sqrt(float64(rv[c]) + eps)
                tj = 0.0
                if affine:
                    sj *= gamma[c]
                    tj = float64(beta[c])
                pre = float64(bias[c]) if has_bias else 0.0
                tj += (pre - rm[c]) * sj
        s[j] = sj
        t[j] = tj
    for i in range(TM):
        r = row0 + ty + i * TY
        for j in range(TN):
            c = col0 + tx + j * TX
            if r < m and c < n:
                v = acc[i, j] * s[j] + t[j]
                if relu and v < 0:
                    v = SCALAR(0)
                out[r, c] = v
    if mode == EPI_STATS:
        tile_column_stats(acc, m - row0, n - col0, col0, p_mean, p_m2)


def tile_column_stats(acc, rows, cols, col0, p_mean, p_m2):
    """Mean and M2 (float64, two passes over the registers) of each column of this block's tile,
    over its ``min(BM, rows)`` valid rows, into ``p_mean[row tile, col]`` / ``p_m2[...]``."""
    red = cuda.shared.array((TY, BN), float64)
    mean = cuda.shared.array(BN, float64)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    tid = ty * TX + tx
    valid = min(BM, rows)
    for j in range(TN):
        total = 0.0
        for i in range(TM):
            if ty + i * TY < valid:
                total += float64(acc[i, j])  # explicit: NumPy (the simulator) would add in f32
        red[ty, tx + j * TX] = total
    cuda.syncthreads()
    if tid < BN:
        total = 0.0
        for y in range(TY):
            total += red[y, tid]
        mean[tid] = total / max(valid, 1)  # no valid rows: an empty batch, which bn_merge skips
    cuda.syncthreads()
    for j in range(TN):
        mu = mean[tx + j * TX]
        total = 0.0
        for i in range(TM):
            if ty + i * TY < valid:
                d = acc[i, j] - mu
                total += d * d
        red[ty, tx + j * TX] = total
    cuda.syncthreads()
    if tid < BN and tid < cols:
        total = 0.0
        for y in range(TY):
            total += red[y, tid]
        p_mean[cuda.blockIdx.x, col0 + tid] = mean[tid]
        p_m2[cuda.blockIdx.x, col0 + tid] = total


def block_sum(red, value):
    """The sum over the RED threads of a 1-D block of ``value`` (every thread gets it)."""
    t = cuda.threadIdx.x
    red[t] = value
    cuda.syncthreads()
    width = RED // 2
    while width > 0:
        if t < width:
            red[t] += red[t + width]
        cuda.syncthreads()
        width //= 2
    total = red[0]
    cuda.syncthreads()  # everyone has read red[0] before the next use overwrites it
    return total


def bn_partials3(x, chunk, p_mean, p_m2):
    """Mean and M2 (float64) of channel ``blockIdx.y`` of ``x`` (N, C, L) over its ``chunk``
    flat (n, l) positions number ``blockIdx.x`` (block (RED,); grid (chunks, C))."""
    red = cuda.shared.array(RED, float64)
    c = cuda.blockIdx.y
    length = x.shape[2]
    start = cuda.blockIdx.x * chunk
    stop = min(start + chunk, x.shape[0] * length)
    total = 0.0
    e = start + cuda.threadIdx.x
    while e < stop:
        q = e // length
        total += float64(x[q, c, e - q * length])
        e += RED
    mu = block_sum(red, total) / max(stop - start, 1)
    total = 0.0
    e = start + cuda.threadIdx.x
    while e < stop:
        q = e // length
        d = x[q, c, e - q * length] - mu
        total += d * d
        e += RED
    m2 = block_sum(red, total)
    if cuda.threadIdx.x == 0:
        p_mean[cuda.blockIdx.x, c] = mu
        p_m2[cuda.blockIdx.x, c] = m2


def bn_partials2(x, chunk, p_mean, p_m2):
    """Mean and M2 (float64) of COLS2 columns of ``x`` (N, C) over rows chunk ``blockIdx.x`` (block
    (COLS2, ROWS2): threads along a row read adjacent columns; grid (chunks, column groups))."""
    red = cuda.shared.array((ROWS2, COLS2), float64)
    mean = cuda.shared.array(COLS2, float64)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    c = cuda.blockIdx.y * COLS2 + tx
    start = cuda.blockIdx.x * chunk
    stop = min(start + chunk, x.shape[0])
    inside = c < x.shape[1]
    total = 0.0
    if inside:
        for r in range(start + ty, stop, ROWS2):
            total += float64(x[r, c])
    red[ty, tx] = total
    cuda.syncthreads()
    if ty == 0:
        total = 0.0
        for y in range(ROWS2):
            total += red[y, tx]
        mean[tx] = total / max(stop - start, 1)
    cuda.syncthreads()
    mu = mean[tx]
    total = 0.0
    if inside:
        for r in range(start + ty, stop, ROWS2):
            d = x[r, c] - mu
            total += d * d
    cuda.syncthreads()  # red's first use is read (by ty == 0) before it is overwritten
    red[ty, tx] = total
    cuda.syncthreads()
    if ty == 0 and inside:
        total = 0.0
        for y in range(ROWS2):
            total += red[y, tx]
        p_mean[cuda.blockIdx.x, c] = mu
        p_m2[cuda.blockIdx.x, c] = total


def bn_merge(p_mean, p_m2, chunk, count, batch_stats, update, momentum, eps, pre, has_pre,
             gamma, beta, affine, rm, rv, nbt, scale, shift):
    """Per channel (one thread each): the batch mean and variance merged from the partials by
    Chan's formula in float64 (partial ``b`` holds ``min(chunk, count - b * chunk)`` values), the
    running-stat update when ``update`` and the batch is not empty (unbiased variance;
    ``momentum < 0`` is ``momentum=None``: factor 1 / (num_batches_tracked + 1), the count
    :func:`bn_apply` stores), and the coefficients
    ``scale``/``shift`` of y = v * scale + shift.  Without ``batch_stats`` the running stats are
    the statistics.  ``pre`` is a per-channel bias the values lack (a fused Linear's bias): it
    shifts the mean the running stats see and cancels in the output."""
    c = cuda.grid(1)
    if c >= scale.shape[0]:
        return
    p = float64(pre[c]) if has_pre else 0.0
    if batch_stats:
        seen = 0.0
        mean = 0.0
        m2 = 0.0
        for blk in range(p_mean.shape[0] if count > 0 else 0):
            nb = float64(min(chunk, count - blk * chunk))
            delta = p_mean[blk, c] - mean
            total = seen + nb
            mean += delta * (nb / total)
            m2 += p_m2[blk, c] + delta * delta * (seen * nb / total)
            seen = total
        var = m2 / max(seen, 1.0)
        if update and count > 0:  # an empty batch only counts (bn_apply), like PyTorch
            f = 1.0 / (nbt[0] + 1.0) if momentum < 0.0 else momentum
            rm[c] = (1.0 - f) * rm[c] + f * (mean + p)
            rv[c] = (1.0 - f) * rv[c] + f * (m2 / (seen - 1.0))
    else:
        mean = float64(rm[c]) - p
        var = float64(rv[c])
    sc = 1.0 / math.sqrt(var + eps)
    sh = 0.0
    if affine:
        sc *= gamma[c]
        sh = float64(beta[c])
    scale[c] = sc
    shift[c] = sh - mean * sc


def bn_apply(x, out, scale, shift, relu, nbt, bump):
    """out = x * scale[c] + shift[c] (+ ReLU) over (N, C, L) views (``out`` may be ``x``), grid-stride;
    thread 0 adds one to ``num_batches_tracked`` when ``bump`` (after :func:`bn_merge` read it)."""
    i = cuda.grid(1)
    if bump and i == 0:
        nbt[0] += 1
    channels = x.shape[1]
    length = x.shape[2]
    plane = channels * length
    total = x.shape[0] * plane
    stride = cuda.gridsize(1)
    while i < total:
        q = i // plane
        rest = i - q * plane
        c = rest // length
        l = rest - c * length
        v = x[q, c, l] * scale[c] + shift[c]
        if relu and v < 0:
            out[q, c, l] = 0
        else:
            out[q, c, l] = v
        i += stride


def bias_relu2(out, bias, has_bias, relu):
    """out (M, C) += bias[c] (+ ReLU) in place: the epilogue of a GEMM that had none (cuBLAS)."""
    i = cuda.grid(1)
    stride = cuda.gridsize(1)
    cols = out.shape[1]
    total = out.shape[0] * cols
    while i < total:
        r = i // cols
        c = i - r * cols
        v = out[r, c]
        if has_bias:
            v += bias[c]
        if relu and v < 0:
            out[r, c] = 0
        else:
            out[r, c] = v
        i += stride


def relu_flat(x, out):
    """out = relu(x) over flat (contiguous) views; NaN stays NaN."""
    i = cuda.grid(1)
    stride = cuda.gridsize(1)
    while i < x.shape[0]:
        v = x[i]
        if v < 0:
            out[i] = 0
        else:
            out[i] = v
        i += stride


def add4(a, b, out):
    """out = a + b over 4-D views with NumPy broadcasting (a size-1 dim of an input repeats)."""
    i = cuda.grid(1)
    stride = cuda.gridsize(1)
    d1 = out.shape[1]
    d2 = out.shape[2]
    d3 = out.shape[3]
    total = out.shape[0] * d1 * d2 * d3
    while i < total:
        i3 = i % d3
        rest = i // d3
        i2 = rest % d2
        rest //= d2
        i1 = rest % d1
        i0 = rest // d1
        va = a[min(i0, a.shape[0] - 1), min(i1, a.shape[1] - 1), min(i2, a.shape[2] - 1),
               min(i3, a.shape[3] - 1)]
        vb = b[min(i0, b.shape[0] - 1), min(i1, b.shape[1] - 1), min(i2, b.shape[2] - 1),
               min(i3, b.shape[3] - 1)]
        out[i0, i1, i2, i3] = va + vb
        i += stride


def transpose2(x, out):
    """out (C, N) = x (N, C).T."""
    i = cuda.grid(1)
    stride = cuda.gridsize(1)
    cols = x.shape[1]
    total = x.shape[0] * cols
    while i < total:
        r = i // cols
        c = i - r * cols
        out[c, r] = x[r, c]
        i += stride


# The templates in emission order; gemm is emitted per dtype, the rest once (Numba specializes
# them on their arguments' dtypes).
DEVICE_FUNCTIONS = (tile_column_stats, block_sum)
KERNELS = (bn_partials3, bn_partials2, bn_merge, bn_apply, bias_relu2, relu_flat, add4, transpose2)
PER_DTYPE = (gemm,)
CONSTANTS = ("BM", "BN", "BMP", "BK", "TY", "TX", "TM", "TN", "LOADS", "RED", "ROWS2", "COLS2", "CHUNK2",
             "CHUNK3", "EPI_BIAS", "EPI_EVAL_BN", "EPI_STATS")
