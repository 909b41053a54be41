"""The NumPy math of 2-D convolution and max pooling, shared by eager ``nn`` and the op table.

A leaf module like :mod:`.numpy_math`: numpy, the stdlib and :mod:`lazyfuse.errors` only.  The
functions take checked NCHW arrays and normalized arguments (pairs of ints; convolution padding as
``(top, bottom, left, right)``, which ``padding="same"`` needs for even kernels) and are vectorized
with stride tricks: one im2col copy per call and one batched GEMM, no Python loop over pixels.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from lazyfuse.errors import ShapeError

Pair = tuple[int, int]
Pad4 = tuple[int, int, int, int]


def conv_out_size(size: int, kernel: int, stride: int, pad_lo: int, pad_hi: int, dilation: int) -> int:
    """Output length of a convolution along one axis (may be < 1: the kernel does not fit)."""
    return (size + pad_lo + pad_hi - dilation * (kernel - 1) - 1) // stride + 1


def pool_out_size(size: int, kernel: int, stride: int, pad: int, dilation: int, ceil_mode: bool) -> int:
    """Output length of max pooling along one axis, PyTorch's rule: with ``ceil_mode`` the last
    window may run past the input, but must start inside it (or its left padding)."""
    span = size + 2 * pad - dilation * (kernel - 1) - 1
    out = (span + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def same_padding(kernel: Pair, dilation: Pair) -> Pad4:
    """``padding="same"`` for stride 1: total ``dilation * (kernel - 1)`` per axis, the odd one
    extra at the bottom / right (as PyTorch does)."""
    out: list[int] = []
    for k, d in zip(kernel, dilation):
        total = d * (k - 1)
        out += [total // 2, total - total // 2]
    return (out[0], out[1], out[2], out[3])


def _windows(xp: np.ndarray, kernel: Pair, stride: Pair, dilation: Pair, out_hw: Pair) -> np.ndarray:
    """Read-only view ``(N, C, Ho, Wo, kh, kw)`` of the windows of the padded ``xp``."""
    eh, ew = (d * (k - 1) + 1 for k, d in zip(kernel, dilation))
    win = sliding_window_view(xp, (eh, ew), axis=(2, 3))
    win = win[:, :, ::stride[0], ::stride[1], ::dilation[0], ::dilation[1]]
    return win[:, :, :out_hw[0], :out_hw[1]]


def conv2d(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, stride: Pair, padding: Pad4,
           dilation: Pair, groups: int) -> np.ndarray:
    """Cross-correlation of ``x`` (N, C, H, W) with ``weight`` (O, C/groups, kh, kw) + ``bias``.

    The inputs are checked (dtypes agree, channels divide by ``groups``, the kernel fits): the
    output is ``(N, O, Ho, Wo)`` in ``x``'s dtype, accumulated in it by the BLAS GEMM."""
    n, c, h, w = x.shape
    o, cg, kh, kw = weight.shape
    pt, pb, pl, pr = padding
    ho = conv_out_size(h, kh, stride[0], pt, pb, dilation[0])
    wo = conv_out_size(w, kw, stride[1], pl, pr, dilation[1])
    if ho < 1 or wo < 1:
        raise ShapeError(f"conv2d: kernel ({kh}, {kw}) with dilation {dilation} does not fit the padded "
                         f"input ({h + pt + pb}, {w + pl + pr})")
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr))) if any(padding) else x
    win = _windows(xp, (kh, kw), stride, dilation, (ho, wo))  # (N, C, Ho, Wo, kh, kw)
    og = o // groups
    # im2col: (N, groups, Ho*Wo, C/groups*kh*kw), one copy; then one GEMM per (sample, group).
    cols = win.reshape(n, groups, cg, ho, wo, kh, kw).transpose(0, 1, 3, 4, 2, 5, 6)
    cols = cols.reshape(n, groups, ho * wo, cg * kh * kw)
    wmat = weight.reshape(groups, og, cg * kh * kw).transpose(0, 2, 1)  # (groups, K, O/groups)
    out = np.matmul(cols, wmat)  # (N, groups, Ho*Wo, O/groups)
    out = out.transpose(0, 1, 3, 2).reshape(n, o, ho, wo)
    if bias is not None:
        out = out + bias.reshape(1, o, 1, 1)
    return np.ascontiguousarray(out, dtype=x.dtype)


def max_pool2d(x: np.ndarray, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair,
               ceil_mode: bool) -> np.ndarray:
    """Max over each window of ``x`` (N, C, H, W), padding with ``-inf`` (checked arguments);
    NaN propagates like PyTorch."""
    n, c, h, w = x.shape
    ho = pool_out_size(h, kernel[0], stride[0], padding[0], dilation[0], ceil_mode)
    wo = pool_out_size(w, kernel[1], stride[1], padding[1], dilation[1], ceil_mode)
    if ho < 1 or wo < 1:
        raise ShapeError(f"max_pool2d: output size ({ho}, {wo}) is too small for input ({h}, {w}), "
                         f"kernel {kernel}, padding {padding}, dilation {dilation}")
    # The padded extent must hold every window; with ceil_mode the last one may need more on the
    # bottom / right than the symmetric padding.
    extra = [max(0, (o - 1) * s + d * (k - 1) + 1 - (size + 2 * p))
             for o, s, d, k, size, p in zip((ho, wo), stride, dilation, kernel, (h, w), padding)]
    pads = ((0, 0), (0, 0), (padding[0], padding[0] + extra[0]), (padding[1], padding[1] + extra[1]))
    xp = np.pad(x, pads, constant_values=-np.inf) if any(p for pair in pads for p in pair) else x
    if n * c == 0:
        return np.empty((n, c, ho, wo), x.dtype)
    return np.ascontiguousarray(_windows(xp, kernel, stride, dilation, (ho, wo)).max(axis=(4, 5)))


__all__ = ["conv_out_size", "pool_out_size", "same_padding", "conv2d", "max_pool2d"]
