"""Op-table entries of the 2-D ops on NCHW values: ``conv2d`` and ``max_pool2d``.

Attrs are normalized pairs (``kernel_size=(3, 3)``) and, for ``conv2d``, ``padding`` as
``(top, bottom, left, right)`` (``padding="same"`` with an even kernel pads one more at the bottom /
right).  The batch dim may be symbolic; the spatial dims must be concrete: an output size is a
floor division of the input size, which the dim algebra (monomials) does not express, so a
symbolic ``H`` or ``W`` is an :class:`InferenceError` that says so.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lazyfuse.errors import InferenceError

from . import conv_math as cm
from .ops import AttrSpec, OpDef, ShapeResult, _check_operand, _refine, _same_dtype, register_op, resolve_lazy
from .types import UNKNOWN, TensorType, dim_mul


def _spatial(op: str, x: TensorType) -> tuple[int, int]:
    """``(H, W)`` of an NCHW value, which must be concrete ints."""
    if x.rank != 4:
        raise InferenceError(f"{op}: expected a 4-D input (N, C, H, W), got {x}")
    h, w = x.shape[2], x.shape[3]
    if not (isinstance(h, int) and isinstance(w, int)):
        raise InferenceError(
            f"{op}: spatial dims must be concrete for now, got input {x}; give H and W fixed sizes "
            "in the input spec (only the batch dim may be symbolic)")
    return h, w


def _conv_operands(attrs: dict[str, Any]) -> tuple[str, ...]:
    return ("input", "weight", "bias") if attrs.get("bias", True) else ("input", "weight")


def _conv_rule(attrs: dict[str, Any], ts: list[TensorType]) -> ShapeResult:
    x, w = ts[0], ts[1]
    _same_dtype("conv2d", ts)
    h, wd = _spatial("conv2d", x)
    if w.rank != 4:
        raise InferenceError("conv2d: expected a weight of shape (out_channels, in_channels/groups, kh, "
                             f"kw), got {w}")
    g, out_c = attrs["groups"], attrs["out_channels"]
    kh, kw = attrs["kernel_size"]
    if g < 1 or out_c % g:
        raise InferenceError(f"conv2d: out_channels ({out_c}) must be divisible by groups ({g})")
    in_c = resolve_lazy("conv2d in_channels",
                        [("in_channels", attrs["in_channels"]), ("input dim 1", x.shape[1]),
                         ("weight dim 1 * groups", dim_mul(w.shape[1], g))],
                        "LazyConv2d's in_channels")
    if in_c is not UNKNOWN and in_c % g:
        raise InferenceError(f"conv2d: in_channels ({in_c}) must be divisible by groups ({g}), got input {x}")
    sh, sw = attrs["stride"]
    pt, pb, pl, pr = attrs["padding"]
    dh, dw = attrs["dilation"]
    ho = cm.conv_out_size(h, kh, sh, pt, pb, dh)
    wo = cm.conv_out_size(wd, kw, sw, pl, pr, dw)
    if ho < 1 or wo < 1:
        raise InferenceError(
            f"conv2d: kernel ({kh}, {kw}) with dilation ({dh}, {dw}) is larger than the padded input "
            f"({h + pt + pb}, {wd + pl + pr}) of {x}")
    refined: dict[int, TensorType] = {}
    cg = in_c if in_c is UNKNOWN else in_c // g
    _check_operand("conv2d", "weight", w, (out_c, cg, kh, kw))
    _refine(w, (out_c, cg, kh, kw), refined, 1)
    if attrs["bias"]:
        if len(ts) != 3:
            raise InferenceError("conv2d: bias=true needs a bias operand")
        _check_operand("conv2d", "bias", ts[2], (out_c,))
        _refine(ts[2], (out_c,), refined, 2)
    return ShapeResult(x.with_shape((x.shape[0], out_c, ho, wo)), dict(attrs, in_channels=in_c), refined)


def _pool_rule(attrs: dict[str, Any], ts: list[TensorType]) -> ShapeResult:
    x = ts[0]
    h, w = _spatial("max_pool2d", x)
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (attrs[k] for k in ("kernel_size", "stride", "padding",
                                                                  "dilation"))
    if min(kh, kw, sh, sw, dh, dw) < 1:
        raise InferenceError(f"max_pool2d: kernel_size, stride and dilation must be >= 1, got "
                             f"{attrs['kernel_size']}, {attrs['stride']}, {attrs['dilation']}")
    if ph > kh // 2 or pw > kw // 2:
        raise InferenceError(f"max_pool2d: padding {attrs['padding']} must be at most half the kernel "
                             f"size {attrs['kernel_size']}")
    ho = cm.pool_out_size(h, kh, sh, ph, dh, attrs["ceil_mode"])
    wo = cm.pool_out_size(w, kw, sw, pw, dw, attrs["ceil_mode"])
    if ho < 1 or wo < 1:
        raise InferenceError(f"max_pool2d: output size ({ho}, {wo}) is too small: input {x}, kernel "
                             f"({kh}, {kw}), padding ({ph}, {pw}), dilation ({dh}, {dw})")
    return ShapeResult(x.with_shape((x.shape[0], x.shape[1], ho, wo)), dict(attrs))


def _conv_impl(attrs: dict[str, Any], x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None,
               training: bool = False) -> np.ndarray:
    return cm.conv2d(x, w, b, attrs["stride"], attrs["padding"], attrs["dilation"], attrs["groups"])


def _pool_impl(attrs: dict[str, Any], x: np.ndarray, training: bool = False) -> np.ndarray:
    return cm.max_pool2d(x, attrs["kernel_size"], attrs["stride"], attrs["padding"], attrs["dilation"],
                         attrs["ceil_mode"])


register_op(OpDef(
    "conv2d",
    {"in_channels": AttrSpec("dim"), "out_channels": AttrSpec("int"), "kernel_size": AttrSpec("ints"),
     "stride": AttrSpec("ints", (1, 1)), "padding": AttrSpec("ints", (0, 0, 0, 0)),
     "dilation": AttrSpec("ints", (1, 1)), "groups": AttrSpec("int", 1), "bias": AttrSpec("bool", True)},
    _conv_operands, _conv_rule, _conv_impl))
register_op(OpDef(
    "max_pool2d",
    {"kernel_size": AttrSpec("ints"), "stride": AttrSpec("ints"), "padding": AttrSpec("ints", (0, 0)),
     "dilation": AttrSpec("ints", (1, 1)), "ceil_mode": AttrSpec("bool", False)},
    ("input",), _pool_rule, _pool_impl))
