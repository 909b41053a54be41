"""Emitters of the 2-D layers: ``Conv2d`` / ``LazyConv2d`` / ``F.conv2d`` -> ``conv2d`` and
``MaxPool2d`` / ``F.max_pool2d`` -> ``max_pool2d`` (imported by :mod:`.emitters`).

The arguments are normalized by ``nn._conv_args``, as in eager calls; an input that is not 4-D is a
trace error with eager's message.  Other disagreements (channels, a kernel larger than the input,
symbolic spatial dims) get a nominal type and are reported by the ``infer_shapes`` pass.
"""

from __future__ import annotations

from typing import Any

from lazyfuse.frontends import nn
from lazyfuse.frontends.nn import functional as F
from lazyfuse.frontends.nn._conv_args import conv_args, pool_args
from lazyfuse.ir import conv_math as cm
from lazyfuse.ir.graph import Node
from lazyfuse.ir.types import UNKNOWN, Dim, TensorType

from .locations import trace_error
from .proxy import Proxy
from .registry import traces_function, traces_module
from .tracer import Tracer

Built = tuple[list[Node | None], dict[str, Any]]


def _out(size: Dim, n: int) -> Dim:
    """A nominal output size: ``?`` for a symbolic input size, else at least 0."""
    return max(n, 0) if isinstance(size, int) else UNKNOWN


def conv_nominal(attrs: dict, x: TensorType) -> TensorType:
    """``conv2d``'s result when the shape rule rejects it: ``(N, out_channels, Ho, Wo)``."""
    pt, pb, pl, pr = attrs["padding"]
    hw = [_out(size, cm.conv_out_size(size, k, s, lo, hi, d) if isinstance(size, int) else 0)
          for size, k, s, (lo, hi), d in zip(x.shape[2:], attrs["kernel_size"], attrs["stride"],
                                              ((pt, pb), (pl, pr)), attrs["dilation"])]
    return x.with_shape((x.shape[0], attrs["out_channels"], *hw))


def pool_nominal(attrs: dict, x: TensorType) -> TensorType:
    """``max_pool2d``'s result when the shape rule rejects it: ``(N, C, Ho, Wo)``."""
    hw = [_out(size, cm.pool_out_size(size, k, s, p, d, attrs["ceil_mode"]) if isinstance(size, int) else 0)
          for size, k, s, p, d in zip(x.shape[2:], attrs["kernel_size"], attrs["stride"], attrs["padding"],
                                      attrs["dilation"])]
    return x.with_shape((x.shape[0], x.shape[1], *hw))


def _input_4d(x: Node, where: str) -> Node:
    if x.type.rank != 4:
        raise trace_error(F._not_4d(where, x.type.shape))
    return x


# ------------------------------------------------------------------------------------- modules
@traces_module(nn.Conv2d, nn.LazyConv2d, op="conv2d", nominal=conv_nominal)
def _conv2d(tr: Tracer, m: Any, x: Proxy) -> Built:
    where = f"{nn.describe(m)}: conv2d"
    args = m.conv_args(where)  # the settings may have been reassigned: eager's checks
    _input_4d(x.node, where)
    w = tr.module_node(m, "weight")
    b = tr.module_node(m, "bias")
    lazy = isinstance(m, nn.LazyModuleMixin)
    attrs = {"in_channels": UNKNOWN if lazy else m.in_channels, "out_channels": m.out_channels,
             **args.attrs(), "bias": b is not None}
    return [x.node, w, b], attrs


@traces_module(nn.MaxPool2d, op="max_pool2d", nominal=pool_nominal)
def _max_pool2d(tr: Tracer, m: Any, x: Proxy) -> Built:
    where = f"{nn.describe(m)}: max_pool2d"
    args = m.pool_args(where)
    _input_4d(x.node, where)
    return [x.node], args.attrs()


# ------------------------------------------------------------------------------------- functions
@traces_function(F.conv2d, op="conv2d", nominal=conv_nominal)
def _conv2d_function(tr: Tracer, a: dict) -> Built:
    x = _input_4d(tr.as_node(a["input"], "conv2d()"), "conv2d")
    w = tr.as_node(a["weight"], "conv2d() weight")
    b = None if a["bias"] is None else tr.as_node(a["bias"], "conv2d() bias")
    if w.type.rank != 4 or not all(isinstance(d, int) for d in (w.type.shape[0], *w.type.shape[2:])):
        raise trace_error(f"conv2d(): expected a 4D weight (out_channels, in_channels/groups, kh, kw) "
                          f"with known out_channels and kernel size, got {w.type}")
    out_c, cg, kh, kw = w.type.shape
    args = conv_args("conv2d", (kh, kw), a["stride"], a["padding"], a["dilation"], a["groups"],
                     out_channels=out_c)
    in_c = cg * args.groups if isinstance(cg, int) else UNKNOWN
    attrs = {"in_channels": in_c, "out_channels": out_c, **args.attrs(), "bias": b is not None}
    return [x, w, b], attrs


@traces_function(F.max_pool2d, op="max_pool2d", nominal=pool_nominal)
def _max_pool2d_function(tr: Tracer, a: dict) -> Built:
    args = pool_args("max_pool2d", a["kernel_size"], a["stride"], a["padding"], a["dilation"],
                     a["ceil_mode"], a["return_indices"])
    return [_input_4d(tr.as_node(a["input"], "max_pool2d()"), "max_pool2d")], args.attrs()
