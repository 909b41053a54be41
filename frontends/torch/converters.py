"""The PyTorch frontend's tables: which torch layer, function or tensor method becomes which op.

One entry per torch name, like the ``lazyfuse.nn`` tracer's emitters (and with their nominal types
and argument checks): a converter takes the :class:`~.convert.Converter`, the converted arguments,
and returns a node (or, for sizes, a dim or a :class:`~.convert.Shape`).
"""

from __future__ import annotations

import builtins
import operator
from collections.abc import Callable
from typing import Any

from lazyfuse.frontends.nn._checks import check_dim, check_eps, check_momentum
from lazyfuse.frontends.nn._conv_args import conv_args, pool_args
from lazyfuse.frontends.tracing.conv_emitters import conv_nominal, pool_nominal
from lazyfuse.frontends.tracing.emitters import linear_nominal, same_as_input
from lazyfuse.ir.graph import Node
from lazyfuse.ir.types import UNKNOWN, Sym

from . import require_torch
from .convert import Converter, Shape
from .model import is_uninitialized

ModuleConverter = Callable[[Converter, Any, str, Node], Any]


# ------------------------------------------------------------------------------------- modules
def _linear(cv: Converter, m: Any, path: str, x: Node) -> Node:
    w, b = cv.module_array(m, path, "weight"), cv.module_array(m, path, "bias")
    attrs = {"in_features": UNKNOWN if is_uninitialized(m.weight) else m.in_features,
             "out_features": m.out_features, "bias": b is not None}
    return cv.emit("linear", [x, w, b], attrs, path, type(m).__name__, linear_nominal)


def _batch_norm(cv: Converter, m: Any, path: str, x: Node) -> Node:
    cls = type(m).__name__
    where = f"module '{path}' ({cls}): batch_norm"
    eps, momentum = check_eps(where, m.eps), check_momentum(where, m.momentum)
    ranks = (4,) if "2d" in cls else (2, 3)
    if x.type.rank not in ranks:
        raise cv.error(f"{where}: expected {' or '.join(f'{r}D' for r in ranks)} input (got "
                       f"{x.type.rank}D input)")
    torch = require_torch()
    lazy = isinstance(m, torch.nn.modules.lazy.LazyModuleMixin)
    names = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    ins = [cv.module_array(m, path, n) for n in names]
    attrs = {"num_features": UNKNOWN if lazy else m.num_features, "eps": eps, "momentum": momentum,
             "affine": bool(m.affine), "track_running_stats": bool(m.track_running_stats)}
    return cv.emit("batch_norm", [x, *ins], attrs, path, cls, same_as_input)


def _relu(cv: Converter, m: Any, path: str, x: Node) -> Node:
    out = cv.emit("relu", [x], {}, path, type(m).__name__)
    return cv.alias(cv.fx_node.args[0], out) if m.inplace else out


def _flatten(cv: Converter, m: Any, path: str, x: Node) -> Node:
    where = f"module '{path}' (Flatten)"
    attrs = {"start_dim": check_dim(where, "start_dim", m.start_dim),
             "end_dim": check_dim(where, "end_dim", m.end_dim)}
    return cv.emit("flatten", [x], attrs, path, "Flatten")


def _identity(cv: Converter, m: Any, path: str, x: Node) -> Node:
    return x


def _conv2d(cv: Converter, m: Any, path: str, x: Node) -> Node:
    cls = type(m).__name__
    where = f"module '{path}' ({cls}): conv2d"
    if m.padding_mode != "zeros":
        raise cv.error(f"{where}: padding_mode={m.padding_mode!r} is not supported (only 'zeros')")
    args = conv_args(where, m.kernel_size, m.stride, m.padding, m.dilation, m.groups,
                     out_channels=m.out_channels)
    if x.type.rank != 4:
        raise cv.error(f"{where}: expected a 4D input (N, C, H, W), got {x.type}")
    w, b = cv.module_array(m, path, "weight"), cv.module_array(m, path, "bias")
    attrs = {"in_channels": UNKNOWN if is_uninitialized(m.weight) else m.in_channels,
             "out_channels": m.out_channels, **args.attrs(), "bias": b is not None}
    return cv.emit("conv2d", [x, w, b], attrs, path, cls, conv_nominal)


def _max_pool2d(cv: Converter, m: Any, path: str, x: Node) -> Node:
    where = f"module '{path}' (MaxPool2d): max_pool2d"
    args = pool_args(where, m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode, m.return_indices)
    if x.type.rank != 4:
        raise cv.error(f"{where}: expected a 4D input (N, C, H, W), got {x.type}")
    return cv.emit("max_pool2d", [x], args.attrs(), path, "MaxPool2d", pool_nominal)


_MODULES: dict[str, ModuleConverter] = {
    "Linear": _linear, "LazyLinear": _linear,
    "BatchNorm1d": _batch_norm, "LazyBatchNorm1d": _batch_norm,
    "BatchNorm2d": _batch_norm, "LazyBatchNorm2d": _batch_norm,
    "ReLU": _relu, "Flatten": _flatten, "Identity": _identity,
    "Conv2d": _conv2d, "LazyConv2d": _conv2d, "MaxPool2d": _max_pool2d,
}


def module_converter(module: Any) -> ModuleConverter | None:
    """The converter of ``module``'s class: a ``torch.nn`` class by name (fx keeps only those as
    leaves; a user's subclass is traced through its ``forward``)."""
    cls = type(module)
    if not cls.__module__.startswith("torch.nn"):
        return None
    return _MODULES.get(cls.__name__)


def supported_modules() -> str:
    return ", ".join(_MODULES)


def placeholder_shape(owner: Any, name: str) -> tuple[int | None, ...] | None:
    """The known dims (None: lazy) of an uninitialized parameter or buffer of a torch lazy class."""
    cls = type(owner).__name__
    if cls == "LazyLinear":
        return {"weight": (owner.out_features, None), "bias": (owner.out_features,)}.get(name)
    if cls in ("LazyBatchNorm1d", "LazyBatchNorm2d") and name != "num_batches_tracked":
        return (None,)
    if cls == "LazyConv2d":
        return {"weight": (owner.out_channels, None, *owner.kernel_size),
                "bias": (owner.out_channels,)}.get(name)
    return None


# ------------------------------------------------------------------------------------- functions
def _relu_fn(cv: Converter, x: Any, inplace: bool = False) -> Node:
    out = cv.emit("relu", [_operand(cv, x, "relu() input")], {})
    return cv.alias(cv.fx_node.args[0], out) if inplace else out


def _relu_inplace_fn(cv: Converter, x: Any) -> Node:
    return _relu_fn(cv, x, inplace=True)


def _linear_fn(cv: Converter, x: Any, weight: Any, bias: Any = None) -> Node:
    xn = cv.tensor(cv.fx_node.args[0], "linear() input")
    w = _operand(cv, weight, "linear() weight")
    b = None if bias is None else _operand(cv, bias, "linear() bias")
    if w.type.rank != 2:
        raise cv.error(f"linear(): expected a 2D weight, got {w.type}")
    attrs = {"in_features": w.type.shape[1], "out_features": w.type.shape[0], "bias": b is not None}
    return cv.emit("linear", [xn, w, b], attrs, nominal=linear_nominal)


def _operand(cv: Converter, value: Any, what: str) -> Node:
    if not isinstance(value, Node):
        raise cv.error(f"{what}: expected a tensor of the model, got {type(value).__name__}")
    return value


def _flatten_fn(cv: Converter, x: Any, start_dim: int = 0, end_dim: int = -1) -> Node:
    xn = _operand(cv, x, "flatten() input")
    attrs = {"start_dim": check_dim("flatten", "start_dim", start_dim),
             "end_dim": check_dim("flatten", "end_dim", end_dim)}
    return cv.emit("flatten", [xn], attrs)


def _add(cv: Converter, x: Any, other: Any, alpha: Any = 1) -> Node:
    if alpha != 1:
        raise cv.error(f"add(): alpha={alpha!r} is not supported (only 1)")
    return cv.emit("add", [_operand(cv, x, "'+' left operand"), _operand(cv, other, "'+' right operand")], {})


def _batch_norm_fn(cv: Converter, x: Any, running_mean: Any, running_var: Any, weight: Any = None,
                   bias: Any = None, training: bool = False, momentum: float = 0.1,
                   eps: float = 1e-5) -> Node:
    xn = _operand(cv, x, "batch_norm() input")
    if running_mean is not None or running_var is not None or training is not True:
        raise cv.error("functional batch_norm is traced only with training=True and no running statistics "
                       "(fx fixes self.training when it traces); use nn.BatchNorm1d / nn.BatchNorm2d for "
                       "running statistics")
    w = None if weight is None else _operand(cv, weight, "batch_norm() weight")
    b = None if bias is None else _operand(cv, bias, "batch_norm() bias")
    if (w is None) != (b is None):
        raise cv.error("batch_norm(): pass both weight and bias or neither")
    attrs = {"num_features": xn.type.shape[1] if xn.type.rank >= 2 else UNKNOWN,
             "eps": check_eps("batch_norm()", eps), "momentum": check_momentum("batch_norm()", momentum),
             "affine": w is not None, "track_running_stats": False}
    return cv.emit("batch_norm", [xn, w, b], attrs, nominal=same_as_input)


def _getattr(cv: Converter, x: Any, name: str) -> Any:
    if name == "shape" and isinstance(x, Node):
        return Shape(x)
    raise cv.error(f"attribute .{name} of a traced value is not supported (only .shape)")


def _getitem(cv: Converter, x: Any, index: Any) -> Any:
    if isinstance(x, Shape):
        return cv.dim(x.node, index)
    raise cv.error("indexing a tensor is not supported (the IR has no slicing op); only x.shape[i]")


def function_converter(target: Any) -> Callable[..., Any] | None:
    torch = require_torch()
    F = torch.nn.functional
    table: dict[Any, Callable[..., Any]] = {
        F.relu: _relu_fn, torch.relu: _relu_fn, torch.relu_: _relu_inplace_fn, F.relu_: _relu_inplace_fn,
        F.linear: _linear_fn, torch.flatten: _flatten_fn, F.batch_norm: _batch_norm_fn, torch.t: _t_m,
        operator.add: _add, torch.add: _add,
        builtins.getattr: _getattr, operator.getitem: _getitem,
    }
    try:
        return table.get(target)
    except TypeError:  # an unhashable target
        return None


# ------------------------------------------------------------------------------------- methods
def _relu_m(cv: Converter, x: Any) -> Node:
    return cv.emit("relu", [_operand(cv, x, "relu()")], {})


def _relu_inplace_m(cv: Converter, x: Any) -> Node:
    return cv.alias(cv.fx_node.args[0], _relu_m(cv, x))


def _reshape_m(cv: Converter, x: Any, *shape: Any) -> Node:
    xn = _operand(cv, x, "reshape()/view()")
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    dims = []
    for d in shape:
        if isinstance(d, bool) or not isinstance(d, (int, Sym)):
            raise cv.error(f"reshape/view dims must be ints or sizes of a tensor (x.shape[0], x.size(0)), "
                           f"got {d!r}")
        dims.append(d)
    return cv.emit("reshape", [xn], {"shape": tuple(dims)})


def _t_m(cv: Converter, x: Any) -> Node:
    xn = _operand(cv, x, "t()")
    if xn.type.rank != 2:
        raise cv.error(f"t(): expected a 2-D tensor, got {xn.type}")
    return cv.emit("transpose", [xn], {})


def _size_m(cv: Converter, x: Any, dim: Any = None) -> Any:
    xn = _operand(cv, x, "size()")
    return Shape(xn) if dim is None else cv.dim(xn, dim)


def _dim_m(cv: Converter, x: Any) -> int:
    return _operand(cv, x, "dim()").type.rank


def _add_inplace_m(cv: Converter, x: Any, other: Any, alpha: Any = 1) -> Node:
    return cv.alias(cv.fx_node.args[0], _add(cv, x, other, alpha))


_METHODS: dict[str, Callable[..., Any]] = {
    "relu": _relu_m, "relu_": _relu_inplace_m, "flatten": _flatten_fn, "reshape": _reshape_m,
    "view": _reshape_m, "size": _size_m, "t": _t_m, "dim": _dim_m, "add": _add, "add_": _add_inplace_m,
}


def method_converter(name: str) -> Callable[..., Any] | None:
    return _METHODS.get(name)
