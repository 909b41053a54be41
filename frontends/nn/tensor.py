"""``Tensor``: the ndarray a model's ``forward`` sees, with the torch-style methods the tracer accepts.

An eager ``Module.__call__`` views its ndarray inputs as :class:`Tensor` and the outermost call
views the results back as plain ``np.ndarray``, so the same ``forward`` runs eagerly and traced:
``x.flatten(1)``, ``x.view(x.size(0), -1)``, ``x.reshape(x.shape[0], -1)``, ``x.relu()``,
``x.dim()``, ``x.size()``, ``+``.  Everything else is NumPy's: a ``Tensor`` *is* an ndarray (ufuncs
keep the type; ``np.asarray`` drops it), and ``nn.functional`` keeps it (see
``__lazyfuse_function__``).

Where torch and NumPy spell one name differently, the torch meaning wins when the call is
torch-shaped and NumPy's otherwise, so NumPy's own code keeps working on a ``Tensor``:
``x.size`` is the element count (an ``int``) *and* callable as ``x.size(dim)``; ``x.flatten()``
and ``x.flatten(order="F")`` are NumPy's, ``x.flatten(1)`` is torch's; ``x.view(np.float64)`` /
``x.view(np.ndarray)`` are NumPy's, ``x.view(2, -1)`` is torch's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from lazyfuse.errors import ConfigError, InputError, ShapeError
from lazyfuse.ir import numpy_math as _math

from ._checks import check_dim


class _Size(int):
    """NumPy's element count that, called like torch's ``size``, gives the shape or one dim."""

    def __new__(cls, shape: tuple[int, ...]) -> _Size:
        self = super().__new__(cls, math.prod(shape))
        self._shape = shape
        return self

    def __call__(self, dim: int | None = None) -> tuple[int, ...] | int:
        if dim is None:
            return self._shape
        rank = len(self._shape)
        d = check_dim("size", "dim", dim)
        if not -rank <= d < rank:
            raise ShapeError(f"size: dimension out of range (expected to be in range of "
                             f"[{-rank}, {rank - 1}], but got {dim}) for input of shape {self._shape}")
        return self._shape[d]


def _is_shape_arg(args: tuple) -> bool:
    """``view``'s torch form: ints (or one tuple/list of ints)."""
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        args = tuple(args[0])
    return bool(args) and all(isinstance(a, (int, np.integer)) and not isinstance(a, bool) for a in args)


class Tensor(np.ndarray):
    """An ndarray with the torch-style methods a ``forward`` may use (see the module docstring)."""

    @property  # type: ignore[override]
    def size(self) -> _Size:
        """The element count (NumPy); call it for the shape or one dim (torch): ``x.size(0)``."""
        return _Size(self.shape)

    def dim(self) -> int:
        """The number of dims (torch's ``x.dim()``, NumPy's ``x.ndim``)."""
        return self.ndim

    def numel(self) -> int:
        return math.prod(self.shape)

    def flatten(self, start_dim: Any = 0, end_dim: int = -1, order: str | None = None) -> Tensor:
        """torch's ``flatten(start_dim=0, end_dim=-1)`` (a view when possible); with ``order`` or a
        string first argument, NumPy's ``flatten(order)`` (always a copy)."""
        if order is not None or isinstance(start_dim, str):
            order = order if order is not None else start_dim
            if order not in ("C", "F", "A", "K"):
                raise ConfigError(f"flatten: order must be one of 'C', 'F', 'A', 'K' (NumPy's flatten), "
                                  f"got {order!r}; torch's flatten takes ints: flatten(start_dim, end_dim)")
            return np.ndarray.flatten(self, order)
        s, e = check_dim("flatten", "start_dim", start_dim), check_dim("flatten", "end_dim", end_dim)
        return _math.flatten(self, s, e, "flatten")

    def view(self, *args: Any, **kwargs: Any) -> Any:
        """torch's ``view(*shape)`` (ints, one ``-1``; never copies); with a dtype or an array type,
        NumPy's ``view``."""
        if kwargs or not _is_shape_arg(args):
            try:
                return np.ndarray.view(self, *args, **kwargs)
            except (TypeError, ValueError) as exc:
                raise InputError(f"view: expected ints (a shape: torch's view) or a dtype / ndarray type "
                                 f"(NumPy's view), got {', '.join(map(repr, args))}: {exc}") from None
        shape = tuple(args[0]) if len(args) == 1 and isinstance(args[0], (tuple, list)) else args
        try:
            out = np.ndarray.reshape(self, shape)
        except ValueError:
            raise ShapeError(f"view: shape {list(shape)} is invalid for input of shape "
                             f"{tuple(self.shape)}") from None
        if out.size and not np.may_share_memory(out, self):
            raise ShapeError(f"view: input of shape {tuple(self.shape)} and strides {self.strides} "
                             f"cannot be viewed as {list(shape)} without a copy; use .reshape(...)")
        return out

    def reshape(self, *args: Any, **kwargs: Any) -> Any:
        """NumPy's ``reshape`` (torch's takes the same ints and ``-1``); an impossible shape is a
        :class:`ShapeError` (a ``-1`` for an input of 0 elements too, as in torch)."""
        try:
            return np.ndarray.reshape(self, *args, **kwargs)
        except ValueError as exc:
            shape = args[0] if len(args) == 1 and isinstance(args[0], (tuple, list)) else args
            raise ShapeError(f"reshape: shape {list(shape)} is invalid for input of shape "
                             f"{tuple(self.shape)} ({exc})") from None
        except TypeError as exc:
            raise InputError(f"reshape: expected ints (the new shape), got "
                             f"{', '.join(map(repr, args))}: {exc}") from None

    def t(self) -> Any:
        """torch's ``t()`` of a 2-D tensor: its transpose (a view, as in torch)."""
        if self.ndim != 2:
            raise ShapeError(f"t(): expected a 2-D tensor, got shape {self.shape}")
        return self.T

    def relu(self) -> Any:
        """``max(x, 0)`` elementwise (NaN propagates), as ``nn.functional.relu``."""
        from .functional import relu

        return relu(self)

    def __repr__(self) -> str:
        return "Tensor(" + repr(np.asarray(self))[len("array("):]

    def __lazyfuse_function__(self, func: Callable, args: tuple, kwargs: dict) -> Any:
        """``nn.functional`` on a Tensor returns a Tensor (the function itself sees plain arrays)."""
        return as_tensors(func(*_plain(args), **{k: _plain_one(v) for k, v in kwargs.items()}))


def _plain_one(value: Any) -> Any:
    return np.asarray(value) if type(value) is Tensor else value


def _plain(args: tuple) -> tuple:
    return tuple(_plain_one(a) for a in args)


def as_tensors(value: Any, contiguous: bool = False) -> Any:
    """``value`` with plain ndarrays (also inside tuples, lists and dicts) viewed as :class:`Tensor`;
    with ``contiguous``, a non-C-contiguous one is copied to C order first (a model's inputs, taken
    by value as a compiled module takes them, so that ``view`` behaves the same in both)."""
    t = type(value)
    if t is np.ndarray or (contiguous and t is Tensor):
        if contiguous and not value.flags.c_contiguous:
            value = np.ascontiguousarray(value)
        return value.view(Tensor)
    if t is tuple or t is list:
        return t([as_tensors(v, contiguous) for v in value])  # (a list comprehension: calls are hot)
    if t is dict:
        return {k: as_tensors(v, contiguous) for k, v in value.items()}
    return value


def as_arrays(value: Any, inputs: Sequence[tuple[Any, Any]] = ()) -> Any:
    """``value`` with :class:`Tensor`\\ s (also inside tuples, lists and dicts) viewed as ``np.ndarray``;
    a Tensor that is one of ``inputs`` (pairs of the call's Tensor view and the array it views) is
    given back as that very array, so ``Identity()(x) is x`` as in torch."""
    t = type(value)
    if t is Tensor:
        for view, original in inputs:
            if value is view:
                return original
        return np.asarray(value)
    if t is tuple or t is list:
        return t([as_arrays(v, inputs) for v in value])
    if t is dict:
        return {k: as_arrays(v, inputs) for k, v in value.items()}
    return value


def input_views(args: tuple, wrapped: tuple) -> list[tuple[Any, Any]]:
    """The (Tensor view, original array) pairs of a call whose ``args`` became ``wrapped``."""
    return [(w, a) for a, w in zip(args, wrapped) if w is not a]
