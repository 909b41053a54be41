"""The NumPy math of the layer ops, shared by eager ``nn.functional`` and the op table's impls.

A leaf module: it imports only numpy, the stdlib and :mod:`lazyfuse.errors`, so the IR can run the
ops without importing a frontend.  The checks here are the ones both sides make, with one wording.
In-place writes (BatchNorm's running statistics) call ``before_write(array)`` first; eager code
points it at its undo journal.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import numpy as np

from lazyfuse.errors import ConfigError, DTypeError, ShapeError, StateError

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

BeforeWrite = Callable[[np.ndarray], None]


def shape_of(a: np.ndarray) -> tuple[int, ...]:
    """``a.shape`` as plain ints (for messages)."""
    return tuple(int(d) for d in a.shape)


# ------------------------------------------------------------------------------------------ checks
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


def values_per_channel(shape: tuple[int, ...]) -> int:
    """How many values BatchNorm's statistics see per channel (dim 1) of an ``(N, C, *)`` shape."""
    return math.prod(shape[:1] + tuple(shape[2:]))


def check_batch_size(x: np.ndarray, where: str) -> None:
    """Training BN needs more than one value per channel; none at all (an empty batch) is allowed,
    like PyTorch: the output is empty and the running stats stay as they are."""
    if values_per_channel(x.shape) == 1:
        raise ShapeError(
            f"{where}: expected more than 1 value per channel when training, got input size {shape_of(x)}"
        )


def check_eps(where: str, eps: Any) -> float:
    """A finite ``eps > 0`` as float."""
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not 0 < eps < math.inf:
        raise ConfigError(f"{where}: eps must be a finite float > 0, got {eps!r}")
    return float(eps)


def check_bn_factors(where: str, momentum: Any, eps: Any) -> tuple[float, float]:
    """``batch_norm``'s momentum (any real factor, as in torch) and eps (finite, > 0) as floats."""
    if isinstance(momentum, bool) or not isinstance(momentum, (int, float)):
        raise ConfigError(f"{where}: momentum must be a float factor, got {momentum!r}")
    return float(momentum), check_eps(where, eps)


# -------------------------------------------------------------------------------------------- math
def linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """``x @ weight.T + bias`` as one GEMM over the flattened leading dims (checked inputs)."""
    w = np.asarray(weight)
    out = x.reshape(math.prod(x.shape[:-1]), x.shape[-1]) @ w.T
    if bias is not None:
        out += np.asarray(bias)
    return out.reshape(x.shape[:-1] + (w.shape[0],))


def relu(x: np.ndarray, inplace: bool = False) -> np.ndarray:
    """``max(x, 0)``; NaN propagates."""
    if inplace:
        return np.maximum(x, 0, out=x)
    return np.maximum(x, x.dtype.type(0))


def flatten(x: np.ndarray, start_dim: int, end_dim: int, where: str) -> np.ndarray:
    """Merge dims ``start_dim..end_dim`` (a view when possible); bad dims raise :class:`ShapeError`."""
    rank = max(x.ndim, 1)  # a 0-d input counts as rank 1 for the dim checks, like PyTorch

    def norm(d: int) -> int:
        if not -rank <= d < rank:
            raise ShapeError(
                f"{where}: dimension out of range (expected to be in range of [{-rank}, {rank - 1}], "
                f"but got {d}) for input of shape {shape_of(x)}"
            )
        return d % rank

    s, e = norm(start_dim), norm(end_dim)
    if s > e:
        raise ShapeError(f"{where}: start_dim ({start_dim}) cannot come after end_dim ({end_dim})")
    if x.ndim == 0:
        return x.reshape(1)
    merged = math.prod(x.shape[s : e + 1])
    return x.reshape(x.shape[:s] + (merged,) + x.shape[e + 1 :])


def batch_norm(
    x: np.ndarray,
    running_mean: np.ndarray | None,
    running_var: np.ndarray | None,
    weight: np.ndarray | None,
    bias: np.ndarray | None,
    training: bool,
    momentum: float,
    eps: float,
    before_write: BeforeWrite | None = None,
) -> np.ndarray:
    """Normalize a checked input over every axis but 1; statistics accumulate in float64.

    In training with running stats, they are updated in place (unbiased variance) after
    ``before_write`` saw each of them.  An empty batch gives an empty output and updates nothing.
    """
    c = x.shape[1]
    axes = (0,) + tuple(range(2, x.ndim))
    bshape = (1, c) + (1,) * (x.ndim - 2)
    n = values_per_channel(x.shape)
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
        if before_write is not None:
            before_write(running_mean)
            before_write(running_var)
        np.copyto(running_mean, new_mean, casting="same_kind")
        np.copyto(running_var, new_var, casting="same_kind")
    return y


def checked_batch_norm(
    input: Any,
    running_mean: np.ndarray | None,
    running_var: np.ndarray | None,
    weight: np.ndarray | None = None,
    bias: np.ndarray | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
    before_write: BeforeWrite | None = None,
) -> np.ndarray:
    """``nn.functional.batch_norm``: every check first, then :func:`batch_norm`, so a failed call
    changes nothing."""
    where = "batch_norm"
    x = as_float_input(input, where)
    if x.ndim < 2:
        raise ShapeError(f"{where}: expected an input of shape (N, C, *), got shape {shape_of(x)}")
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
                f"{where}: expected {name} of shape ({c},) for input of shape {shape_of(x)}, "
                f"got {shape_of(arr)}"
            )
    if training:
        check_batch_size(x, where)
        check_writable(where, {"running_mean": running_mean, "running_var": running_var})
    return batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps, before_write)


__all__ = [
    "FLOAT_DTYPES", "shape_of", "as_float_input", "dtype_names", "check_writable", "check_batch_size",
    "values_per_channel", "check_eps", "check_bn_factors", "linear", "relu", "flatten", "batch_norm",
    "checked_batch_norm",
]
