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
@_overridable
def linear(input: Any, weight: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """``input @ weight.T + bias`` for input ``(in,)`` or ``(*, in)`` and weight ``(out, in)``."""
    where = "linear"
    w = np.asarray(weight)
    if w.dtype not in FLOAT_DTYPES:
        raise DTypeError(f"{where}: expected a float32 or float64 weight, got dtype {w.dtype}")
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
