"""Eager NumPy implementations of the layer ops, with PyTorch's signatures.

Each public function dispatches on ``__lazyfuse_function__``: if the type of any argument defines
it, the call is handed to that argument (the tracer's Proxy records it instead of computing).
The ``_``-prefixed versions take an already-validated input and a ``where`` prefix for messages;
modules call them with their own path.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable
from typing import Any

import numpy as np

from lazyfuse.errors import DTypeError, ShapeError
from lazyfuse.ir import conv_math as _conv_math
from lazyfuse.ir import numpy_math as _math
from lazyfuse.ir.numpy_math import (  # noqa: F401 - re-exported: layers call them as F.<name>
    FLOAT_DTYPES,
    as_float_input,
    check_batch_size,
    check_bn_factors,
    check_writable,
    dtype_names,
)
from lazyfuse.ir.numpy_math import shape_of as _shape

from . import _undo
from ._checks import check_dim
from ._conv_args import ConvArgs, PoolArgs, conv_args, pool_args

# The math itself is shared with the op table's reference impls (lazyfuse.ir.numpy_math).
_linear = _math.linear
_relu = _math.relu
_flatten = _math.flatten


def _overridable(fn: Callable) -> Callable:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        for arg in itertools.chain(args, kwargs.values()):
            if hasattr(type(arg), "__lazyfuse_function__"):
                return arg.__lazyfuse_function__(wrapper, args, kwargs)
        return fn(*args, **kwargs)

    return wrapper


# ---------------------------------------------------------------------------------------- linear
def _float_weight(weight: Any, where: str) -> np.ndarray:
    """A functional form's ``weight`` as a float32/float64 array (a :class:`DTypeError` otherwise)."""
    w = np.asarray(weight)
    if w.dtype not in FLOAT_DTYPES:
        raise DTypeError(f"{where}: expected a float32 or float64 weight, got dtype {w.dtype}")
    return w


@_overridable
def linear(input: Any, weight: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """``input @ weight.T + bias`` for input ``(in,)`` or ``(*, in)`` and weight ``(out, in)``."""
    where = "linear"
    w = _float_weight(weight, where)
    x = as_float_input(input, where, w.dtype, what="weight's")
    if w.ndim != 2:
        raise ShapeError(f"{where}: expected a 2D weight (out_features, in_features), got shape {_shape(w)}")
    if x.ndim == 0 or x.shape[-1] != w.shape[1]:
        raise ShapeError(
            f"{where}: expected input with last dimension {w.shape[1]} (in_features), "
            f"got input of shape {_shape(x)}"
        )
    if bias is not None:
        b = np.asarray(bias)
        if b.dtype != w.dtype:
            raise DTypeError(f"{where}: expected a {w.dtype.name} bias, got dtype {b.dtype}")
        if b.shape != (w.shape[0],):
            raise ShapeError(f"{where}: expected bias of shape ({w.shape[0]},), got {_shape(b)}")
    return _linear(x, w, bias)


# ---------------------------------------------------------------------------------------- relu
def _check_relu_dtype(x: np.ndarray, where: str) -> None:
    if x.dtype.kind not in "iuf":
        raise DTypeError(f"{where}: expected a real numeric (integer or float) input, got dtype {x.dtype}")


@_overridable
def relu(input: Any, inplace: bool = False) -> np.ndarray:
    """``max(input, 0)`` elementwise (NaN propagates, like PyTorch)."""
    x = np.asarray(input)
    _check_relu_dtype(x, "relu")
    return _relu(x, inplace)


# ---------------------------------------------------------------------------------------- flatten
@_overridable
def flatten(input: Any, start_dim: int = 0, end_dim: int = -1) -> np.ndarray:
    """Merge dims ``start_dim..end_dim`` into one (a view when possible)."""
    s, e = check_dim("flatten", "start_dim", start_dim), check_dim("flatten", "end_dim", end_dim)
    return _flatten(np.asarray(input), s, e, "flatten")


# ---------------------------------------------------------------------------------------- batch_norm
# The shared math with the undo journal saving the running stats before they are updated.
_batch_norm = functools.partial(_math.batch_norm, before_write=_undo.save_array)


@_overridable
def batch_norm(
    input: Any,
    running_mean: np.ndarray | None,
    running_var: np.ndarray | None,
    weight: np.ndarray | None = None,
    bias: np.ndarray | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> np.ndarray:
    """Batch normalization over dim 1 of an ``(N, C, *)`` input.

    ``momentum`` is the exponential-average factor for the running stats, which are updated in
    place (unbiased variance) only when ``training`` and only after every check passed.
    """
    return _math.checked_batch_norm(input, running_mean, running_var, weight, bias, training,
                                    momentum, eps, before_write=_undo.save_array)


# ---------------------------------------------------------------------------------------- conv2d
def _input_4d(input: Any, where: str, dtype: np.dtype | None = None, what: str = "module's") -> np.ndarray:
    """A float32/float64 ``(N, C, H, W)`` array; the 2-D ops take batched inputs only."""
    x = as_float_input(input, where, dtype, what)
    if x.ndim != 4:
        raise ShapeError(_not_4d(where, _shape(x)))
    return x


def _not_4d(where: str, shape: tuple) -> str:
    """The message for an input of ``shape`` (ints, or a traced value's dims) that is not 4-D."""
    hint = ""
    if len(shape) == 3:
        hint = "; unbatched (C, H, W) inputs are not supported: add the batch dim (x[None])"
    text = f"({shape[0]},)" if len(shape) == 1 else f"({', '.join(map(str, shape))})"
    return f"{where}: expected a 4D input (N, C, H, W), got input of shape {text}{hint}"


def _check_conv2d(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, args: ConvArgs,
                  where: str) -> None:
    """The checks every conv2d call makes on a 4-D input and weight of one dtype: channels, bias,
    and that the dilated kernel fits the padded input."""
    c = weight.shape[1] * args.groups
    if x.shape[1] != c:
        raise ShapeError(
            f"{where}: expected input with {c} channels at dim 1 (weight of shape {_shape(weight)}, "
            f"groups={args.groups}), got input of shape {_shape(x)}"
        )
    if bias is not None:
        if bias.dtype != weight.dtype:
            want, got = dtype_names(weight.dtype, bias.dtype)
            raise DTypeError(f"{where}: expected bias of dtype {want} (like weight), got {got}")
        if bias.shape != (weight.shape[0],):
            raise ShapeError(f"{where}: expected bias of shape ({weight.shape[0]},) (out_channels), "
                             f"got {_shape(bias)}")
    pt, pb, pl, pr = args.padding
    padded = (x.shape[2] + pt + pb, x.shape[3] + pl + pr)
    span = tuple(d * (k - 1) + 1 for k, d in zip(weight.shape[2:], args.dilation))
    if span[0] > padded[0] or span[1] > padded[1]:
        raise ShapeError(
            f"{where}: kernel size {_shape(weight)[2:]} (dilated: {span}) can't be greater than the "
            f"padded input size {padded}, got input of shape {_shape(x)}"
        )


def _conv2d(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, args: ConvArgs) -> np.ndarray:
    return _conv_math.conv2d(x, weight, bias, args.stride, args.padding, args.dilation, args.groups)


@_overridable
def conv2d(input: Any, weight: np.ndarray, bias: np.ndarray | None = None, stride: Any = 1,
           padding: Any = 0, dilation: Any = 1, groups: int = 1) -> np.ndarray:
    """2-D cross-correlation of ``input`` (N, C, H, W) with ``weight`` (O, C/groups, kh, kw).

    ``stride`` / ``dilation``: an int or a pair; ``padding``: an int, a pair, ``"valid"`` or
    ``"same"`` (stride 1 only; an even kernel pads one more at the bottom / right, like torch).
    """
    where = "conv2d"
    w = _float_weight(weight, where)
    x = _input_4d(input, where, w.dtype, what="weight's")
    if w.ndim != 4:
        raise ShapeError(f"{where}: expected a 4D weight (out_channels, in_channels/groups, kh, kw), "
                         f"got shape {_shape(w)}")
    args = conv_args(where, tuple(w.shape[2:]), stride, padding, dilation, groups, out_channels=w.shape[0])
    b = None if bias is None else np.asarray(bias)
    _check_conv2d(x, w, b, args, where)
    return _conv2d(x, w, b, args)


# ---------------------------------------------------------------------------------------- max_pool2d
def _check_max_pool2d(x: np.ndarray, args: PoolArgs, where: str) -> None:
    ho, wo = (_conv_math.pool_out_size(size, k, s, p, d, args.ceil_mode) for size, k, s, p, d in
              zip(x.shape[2:], args.kernel_size, args.stride, args.padding, args.dilation))
    if ho < 1 or wo < 1:
        raise ShapeError(
            f"{where}: output size ({ho}, {wo}) is too small, got input of shape {_shape(x)} "
            f"(kernel_size={args.kernel_size}, stride={args.stride}, padding={args.padding}, "
            f"dilation={args.dilation})"
        )


def _max_pool2d(x: np.ndarray, args: PoolArgs) -> np.ndarray:
    return _conv_math.max_pool2d(x, args.kernel_size, args.stride, args.padding, args.dilation,
                                 args.ceil_mode)


@_overridable
def max_pool2d(input: Any, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1,
               ceil_mode: bool = False, return_indices: bool = False) -> np.ndarray:
    """Max over each ``kernel_size`` window of ``input`` (N, C, H, W); ``stride=None`` means
    ``kernel_size``, padding is ``-inf`` (at most half the kernel), NaN propagates."""
    where = "max_pool2d"
    args = pool_args(where, kernel_size, stride, padding, dilation, ceil_mode, return_indices)
    x = _input_4d(input, where)
    _check_max_pool2d(x, args, where)
    return _max_pool2d(x, args)
