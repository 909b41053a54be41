"""Lowerings of the NCHW ops of the ``cpu`` backend: convolution (plain, + ReLU, + BatchNorm
(+ ReLU)) and max pooling (+ a ReLU before it); the kernels are in :mod:`.conv_kernels`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lazyfuse.ir.graph import Node

from .lowering import bn_args
from .registry import lowers

if TYPE_CHECKING:
    from .codegen import Emitter


@lowers("conv2d", "fused_conv_relu", "fused_conv_bn", "fused_conv_bn_relu")
def lower_conv(em: Emitter, node: Node, out: str, ins: list[str]) -> None:
    """conv2d and its fused forms: blocked im2col + one GEMM per group + fused epilogue.  The
    kernel size comes from the weight, the bottom / right padding from the output shape."""
    a = node.attrs
    relu = node.op.endswith("_relu")
    has_bias = a.get("bias", True)
    bias = ins[2] if has_bias else em.zeros(str(a["out_channels"]), node.type)
    sy, sx = a["stride"]
    dy, dx = a["dilation"]
    pt, _, pl, _ = a["padding"]
    geo = f"({sy}, {sx}, {dy}, {dx}, {pt}, {pl})"
    em.alloc(out, em.shape(node.type, node), node.type)
    groups = a["groups"]
    em.emit(f"# im2col blocks + GEMM ({groups} group{'s' if groups > 1 else ''}) + epilogue; "
            "geometry (sy, sx, dy, dx, pad top, pad left)")
    head = f"{ins[0]}, {ins[1]}, {bias}, {geo}, {groups}"
    if node.op.startswith("fused_conv_bn"):
        bn_ins = ins[3:] if has_bias else ins[2:]
        rest = f"{head}, {bn_args(em, node, bn_ins, node.type)}, {relu}, {out}"
        em.emit(f"op_conv_bn({rest})", f"op_conv_bn_s({rest})")
    else:
        em.emit(f"op_conv({head}, {relu}, {out})", f"op_conv_s({head}, {relu}, {out})")


@lowers("max_pool2d", "fused_relu_max_pool2d")
def lower_max_pool(em: Emitter, node: Node, out: str, ins: list[str]) -> None:
    """max_pool2d, and fused_relu_max_pool2d as the pool with its max ReLU'd."""
    a = node.attrs
    (kh, kw), (sy, sx), (ph, pw), (dy, dx) = (a[k] for k in ("kernel_size", "stride", "padding", "dilation"))
    relu = node.op == "fused_relu_max_pool2d"
    em.alloc(out, em.shape(node.type, node), node.type)
    em.emit("# -inf padding; geometry (kh, kw, sy, sx, ph, pw, dy, dx)"
            + ("; ceil_mode" if a.get("ceil_mode", False) else ""))
    rest = f"{ins[0]}, ({kh}, {kw}, {sy}, {sx}, {ph}, {pw}, {dy}, {dx}), {relu}, {out}"
    em.emit(f"op_pool({rest})", f"op_pool_s({rest})")
