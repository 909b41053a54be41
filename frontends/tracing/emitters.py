"""The built-in emitters: how each ``lazyfuse.nn`` layer, ``nn.functional`` function and traced-value
method becomes an op.  Registration order is the order the tracer's hints list them in."""

from __future__ import annotations

from typing import Any

from lazyfuse.frontends import nn
from lazyfuse.frontends.nn import functional as F
from lazyfuse.frontends.nn._checks import check_dim, check_eps, check_momentum
from lazyfuse.ir.graph import Node
from lazyfuse.ir.types import UNKNOWN, Sym, TensorType

from .locations import trace_error
from .proxy import Proxy
from .registry import PASS_THROUGH, register_module, traces_function, traces_method, traces_module
from .symint import unwrap_dim
from .tracer import Tracer

Built = tuple[list[Node | None], dict[str, Any]]


# ------------------------------------------------------------------------------------- nominal types
def linear_nominal(attrs: dict, x: TensorType) -> TensorType:
    """``linear``'s result when its sizes disagree with the input: ``(*, out_features)``."""
    return x.with_shape(x.shape[:-1] + (attrs["out_features"],))


def same_as_input(attrs: dict, x: TensorType) -> TensorType:
    return x


# ------------------------------------------------------------------------------------- methods
@traces_method("reshape", "view", op="reshape")
def _reshape(tr: Tracer, x: Proxy, *shape: Any) -> Built:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    dims = []
    for d in shape:
        d = unwrap_dim(d)
        if isinstance(d, bool) or not isinstance(d, (int, Sym)):
            raise trace_error(f"reshape/view dims must be ints or dims of x.shape, got {d!r}")
        dims.append(d)
    return [x.node], {"shape": tuple(dims)}


@traces_method("flatten", op="flatten")
def _flatten_method(tr: Tracer, x: Proxy, start_dim: int = 0, end_dim: int = -1) -> Built:
    return [x.node], {"start_dim": int(start_dim), "end_dim": int(end_dim)}


@traces_method("relu", op="relu")
def _relu_method(tr: Tracer, x: Proxy) -> Built:
    return [x.node], {}


@traces_method("t", op="transpose")
def _t_method(tr: Tracer, x: Proxy) -> Built:
    if x.node.type.rank != 2:
        raise trace_error(f"t(): expected a 2-D tensor, got {x.node.type}")
    return [x.node], {}


# ------------------------------------------------------------------------------------- modules
@traces_module(nn.Linear, nn.LazyLinear, op="linear", nominal=linear_nominal)
def _linear(tr: Tracer, m: Any, x: Proxy) -> Built:
    lazy = nn.is_uninitialized(m.weight)
    w = tr.module_node(m, "weight")
    b = tr.module_node(m, "bias")
    attrs = {"in_features": UNKNOWN if lazy else m.in_features, "out_features": m.out_features,
             "bias": b is not None}
    return [x.node, w, b], attrs


@traces_module(nn.BatchNorm1d, nn.LazyBatchNorm1d, nn.BatchNorm2d, nn.LazyBatchNorm2d, op="batch_norm",
               nominal=same_as_input)
def _batch_norm(tr: Tracer, m: Any, x: Proxy) -> Built:
    # eps and momentum may have been reassigned since construction: the constructor's checks
    where = f"{nn.describe(m)}: batch_norm"
    eps, momentum = check_eps(where, m.eps), check_momentum(where, m.momentum)
    # The op takes ranks 2 to 4; the module class decides which (BatchNorm1d: 2 or 3, 2d: 4).
    problem = m.rank_problem(x.node.type.rank)
    if problem is not None:
        raise trace_error(f"{where}: {problem}")
    lazy = isinstance(m, nn.LazyModuleMixin)  # also with no arrays to size (affine=False, no stats)
    names = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    ins = [tr.module_node(m, n) for n in names]
    attrs = {
        "num_features": UNKNOWN if lazy else m.num_features,
        "eps": eps,
        "momentum": momentum,
        "affine": bool(m.affine),
        "track_running_stats": bool(m.track_running_stats),
    }
    return [x.node, *ins], attrs


@traces_module(nn.ReLU, op="relu")
def _relu_module(tr: Tracer, m: Any, x: Proxy) -> Built:
    return [x.node], {}


@traces_module(nn.Flatten, op="flatten")
def _flatten_module(tr: Tracer, m: Any, x: Proxy) -> Built:
    start, end = m.dims(f"{nn.describe(m)}: flatten")
    return [x.node], {"start_dim": start, "end_dim": end}


register_module(nn.Identity, emitter=PASS_THROUGH)


# ------------------------------------------------------------------------------------- functions
@traces_function(F.relu, op="relu")
def _relu_function(tr: Tracer, a: dict) -> Built:
    return [tr.as_node(a["input"], "relu()")], {}


@traces_function(F.linear, op="linear", nominal=linear_nominal)
def _linear_function(tr: Tracer, a: dict) -> Built:
    x = tr.as_node(a["input"], "linear()")
    w = tr.as_node(a["weight"], "linear() weight")
    b = None if a["bias"] is None else tr.as_node(a["bias"], "linear() bias")
    wshape = w.type.shape
    if len(wshape) != 2:
        raise trace_error(f"linear(): expected a 2D weight, got {w.type}")
    return [x, w, b], {"in_features": wshape[1], "out_features": wshape[0], "bias": b is not None}


@traces_function(F.batch_norm, op="batch_norm", nominal=same_as_input)
def _batch_norm_function(tr: Tracer, a: dict) -> Built:
    x = tr.as_node(a["input"], "batch_norm()")
    if a["running_mean"] is not None or a["running_var"] is not None or a["training"] is not True:
        # The op's running-stat update needs num_batches_tracked, which the functional form lacks.
        raise trace_error("functional batch_norm is traced only with training=True and no running "
                          "statistics; use nn.BatchNorm1d / nn.BatchNorm2d for running statistics")
    w = None if a["weight"] is None else tr.as_node(a["weight"], "batch_norm() weight")
    b = None if a["bias"] is None else tr.as_node(a["bias"], "batch_norm() bias")
    if (w is None) != (b is None):
        raise trace_error("batch_norm(): pass both weight and bias or neither")
    c = x.type.shape[1] if x.type.rank >= 2 else UNKNOWN
    momentum, eps = F.check_bn_factors("batch_norm", a["momentum"], a["eps"])
    attrs = {"num_features": c, "eps": eps, "momentum": momentum,
             "affine": w is not None, "track_running_stats": False}
    return [x, w, b], attrs


@traces_function(F.flatten, op="flatten")
def _flatten_function(tr: Tracer, a: dict) -> Built:
    x = tr.as_node(a["input"], "flatten()")
    start = check_dim("flatten", "start_dim", a["start_dim"])
    end = check_dim("flatten", "end_dim", a["end_dim"])
    return [x], {"start_dim": start, "end_dim": end}


# The 2-D layers (conv2d, max_pool2d) register after the ones above, in the hints' order too.
from . import conv_emitters as _conv_emitters  # noqa: E402, F401
