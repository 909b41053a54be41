"""Eager NumPy implementations of the layer ops, with PyTorch's signatures.

Each public function dispatches on ``__lazyfuse_function__``: if the type of any argument defines
it, the call is handed to that argument (the tracer's Proxy records it instead of computing).
The ``_``-prefixed versions take an already-validated input and a ``where`` prefix for messages;
modules call them with their own path.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from lazyfuse.errors import ConfigError, DTypeError, ShapeError, StateError

from . import _undo
from ._checks import check_dim, check_eps

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _overridable(fn: Callable) -> Callable:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        for arg in itertools.chain(args, kwargs.values()):
            if hasattr(type(arg), "__lazyfuse_function__"):
                return arg.__lazyfuse_function__(wrapper, args, kwargs)
        return fn(*args, **kwargs)

    return wrapper


def as_float_input(
    x: Any, where: str, expected: np.dtype | None = None, what: str = "module's"
) -> np.ndarray:
    """``x`` as a float32/float64 ndarray, or a :class:`DTypeError` naming expected vs got."""
    arr = np.asarray(x)
    if arr.dtype not in FLOAT_DTYPES:
        raise DTypeError(
            f"{where}: expected a float32 or float64 input array, got dtype {arr.dtype}"
            + (" (cast it with .astype(np.float32))" if arr.dtype.kind in "biu" else "")
        )
    if expected is not None and arr.dtype != expected:
        want, got = dtype_names(np.dtype(expected), arr.dtype)
        raise DTypeError(
            f"{where}: expected {want} input to match the {what} {want} parameters, got {got} "
            f"input; cast the input (x.astype(np.{np.dtype(expected).name})) or convert the module "
            f"(.to(np.{arr.dtype.name}))"
        )
    return arr


def dtype_names(a: np.dtype, b: np.dtype) -> tuple[str, str]:
    """Names that tell ``a`` and ``b`` apart: ``float32`` vs ``float64``, but ``'<f4'`` vs
    ``'>f4'`` when only the byte order differs."""
    if a.name == b.name and a != b:
        return repr(a.str), repr(b.str)
    return a.name, b.name


def check_writable(where: str, arrays: dict[str, np.ndarray | None]) -> None:
    """Arrays an op updates in place must be writable (checked before anything is written)."""
    for name, arr in arrays.items():
        if isinstance(arr, np.ndarray) and not arr.flags.writeable:
            raise StateError(
                f"{where}: expected a writable {name} (a train-mode call updates it in place), "
                "got a read-only array; use a writable copy (np.array(...)) or eval mode"
            )


def _shape(a: np.ndarray) -> tuple[int, ...]:
    return tuple(int(d) for d in a.shape)


# ---------------------------------------------------------------------------------------- linear
def _linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    w = np.asarray(weight)
    out = x.reshape(-1, x.shape[-1]) @ w.T
    if bias is not None:
        out += np.asarray(bias)
    return out.reshape(x.shape[:-1] + (w.shape[0],))


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


def _relu(x: np.ndarray, inplace: bool = False) -> np.ndarray:
    if inplace:
        return np.maximum(x, 0, out=x)
    return np.maximum(x, x.dtype.type(0))


@_overridable
def relu(input: Any, inplace: bool = False) -> np.ndarray:
    """``max(input, 0)`` elementwise (NaN propagates, like PyTorch)."""
    x = np.asarray(input)
    _check_relu_dtype(x, "relu")
    return _relu(x, inplace)


# ---------------------------------------------------------------------------------------- flatten
def _flatten(x: np.ndarray, start_dim: int, end_dim: int, where: str) -> np.ndarray:
    rank = max(x.ndim, 1)  # a 0-d input counts as rank 1 for the dim checks, like PyTorch

    def norm(d: int) -> int:
        if not -rank <= d < rank:
            raise ShapeError(
                f"{where}: dimension out of range (expected to be in range of [{-rank}, {rank - 1}], "
                f"but got {d}) for input of shape {_shape(x)}"
            )
        return d % rank

    s, e = norm(start_dim), norm(end_dim)
    if s > e:
        raise ShapeError(f"{where}: start_dim ({start_dim}) cannot come after end_dim ({end_dim})")
    if x.ndim == 0:
        return x.reshape(1)
    merged = math.prod(x.shape[s : e + 1])
    return x.reshape(x.shape[:s] + (merged,) + x.shape[e + 1 :])


@_overridable
def flatten(input: Any, start_dim: int = 0, end_dim: int = -1) -> np.ndarray:
    """Merge dims ``start_dim..end_dim`` into one (a view when possible)."""
    s, e = check_dim("flatten", "start_dim", start_dim), check_dim("flatten", "end_dim", end_dim)
    return _flatten(np.asarray(input), s, e, "flatten")


# ---------------------------------------------------------------------------------------- batch_norm
def check_batch_size(x: np.ndarray, where: str) -> None:
    """Training BN needs more than one value per channel; none at all (an empty batch) is allowed,
    like PyTorch: the output is empty and the running stats stay as they are."""
    n = math.prod(x.shape[:1] + x.shape[2:])
    if n == 1:
        raise ShapeError(
            f"{where}: expected more than 1 value per channel when training, got input size {_shape(x)}"
        )


def _batch_norm(
    x: np.ndarray,
    running_mean: np.ndarray | None,
    running_var: np.ndarray | None,
    weight: np.ndarray | None,
    bias: np.ndarray | None,
    training: bool,
    momentum: float,
    eps: float,
) -> np.ndarray:
    """Normalize over every axis but 1.  Statistics are accumulated in float64 for accuracy."""
    c = x.shape[1]
    axes = (0,) + tuple(range(2, x.ndim))
    bshape = (1, c) + (1,) * (x.ndim - 2)
    n = math.prod(x.shape[:1] + x.shape[2:])
    if training and n == 0:  # an empty batch has no statistics: nothing to normalize or update
        return np.empty(x.shape, x.dtype)
    if training:
        mean = x.mean(axis=axes, dtype=np.float64)
        centered = x - mean.reshape(bshape)
        var = np.mean(centered * centered, axis=axes)
    else:
        mean = np.asarray(running_mean, dtype=np.float64)
        var = np.asarray(running_var, dtype=np.float64)
    scale = 1.0 / np.sqrt(var + eps)
    if weight is not None:
        scale = scale * np.asarray(weight, dtype=np.float64)
    shift = -mean * scale
    if bias is not None:
        shift = shift + np.asarray(bias, dtype=np.float64)
    y = (x * scale.reshape(bshape) + shift.reshape(bshape)).astype(x.dtype, copy=False)
    if training and running_mean is not None:
        unbiased = var * (n / (n - 1))
        new_mean = (1.0 - momentum) * np.asarray(running_mean, dtype=np.float64) + momentum * mean
        new_var = (1.0 - momentum) * np.asarray(running_var, dtype=np.float64) + momentum * unbiased
        _undo.save_array(running_mean)
        _undo.save_array(running_var)
        np.copyto(running_mean, new_mean, casting="same_kind")
        np.copyto(running_var, new_var, casting="same_kind")
    return y


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
    where = "batch_norm"
    x = as_float_input(input, where)
    if x.ndim < 2:
        raise ShapeError(f"{where}: expected an input of shape (N, C, *), got shape {_shape(x)}")
    if (running_mean is None) != (running_var is None):
        raise ConfigError(f"{where}: running_mean and running_var must both be arrays or both be None")
    if not training and running_mean is None:
        raise ConfigError(f"{where}: running_mean and running_var are required when training=False")
    momentum, eps = check_bn_factors(where, momentum, eps)
    c = x.shape[1]
    for name, arr in (
        ("running_mean", running_mean),
        ("running_var", running_var),
        ("weight", weight),
        ("bias", bias),
    ):
        if arr is None:
            continue
        if not isinstance(arr, np.ndarray):
            raise ConfigError(f"{where}: {name} must be a numpy array, got {type(arr).__name__}")
        if arr.dtype != x.dtype:
            raise DTypeError(
                f"{where}: expected {name} of dtype {x.dtype.name} (the input's), got {arr.dtype}"
            )
        if arr.shape != (c,):
            raise ShapeError(
                f"{where}: expected {name} of shape ({c},) for input of shape {_shape(x)}, got {_shape(arr)}"
            )
    if training:
        check_batch_size(x, where)
        check_writable(where, {"running_mean": running_mean, "running_var": running_var})
    return _batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps)


def check_bn_factors(where: str, momentum: Any, eps: Any) -> tuple[float, float]:
    """``batch_norm``'s momentum (any real factor, as in torch) and eps (finite, > 0) as floats."""
    if isinstance(momentum, bool) or not isinstance(momentum, (int, float)):
        raise ConfigError(f"{where}: momentum must be a float factor, got {momentum!r}")
    return float(momentum), check_eps(where, eps)
