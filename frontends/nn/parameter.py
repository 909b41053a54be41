"""``Parameter`` (an ndarray subclass) and the placeholders lazy modules hold before resolution."""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np

from lazyfuse.errors import UninitializedParameterError

RESOLVE_HINT = "run a forward pass or lazyfuse.infer_shapes(lazyfuse.trace(model, spec)) to resolve it"


class Parameter(np.ndarray):
    """A trainable array registered on a module; a view of the data it is built from.

    Arithmetic on a parameter returns plain ``np.ndarray`` results, so layer outputs never
    masquerade as parameters.
    """

    def __new__(cls, data: Any, dtype: Any = None) -> Parameter:
        return np.asarray(data, dtype=dtype).view(cls)

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        inputs = tuple(np.asarray(x) if isinstance(x, Parameter) else x for x in inputs)
        if out is not None:
            kwargs["out"] = tuple(np.asarray(o) if isinstance(o, Parameter) else o for o in out)
        result = getattr(ufunc, method)(*inputs, **kwargs)
        if out is not None:
            return out[0] if len(out) == 1 else out
        return result

    def __repr__(self) -> str:
        return "Parameter(" + repr(np.asarray(self)) + ")"


class _Uninitialized:
    """A dtype-only placeholder; any attempt to use it as an array raises.

    It remembers its owner (weakly) and its attribute name so that the error can name the module
    path; the owner link is dropped on pickling/deepcopy and re-bound by the owning module.
    """

    kind = "tensor"

    def __init__(self, dtype: Any = np.float32) -> None:
        self._dtype = np.dtype(dtype)
        self._owner: weakref.ref | None = None
        self._name: str | None = None

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    def _bind(self, owner: Any, name: str) -> None:
        self._owner = weakref.ref(owner)
        self._name = name

    def _error(self, action: str) -> UninitializedParameterError:
        owner = self._owner() if self._owner is not None else None
        if owner is None:
            what = f"an uninitialized {self.kind}"
        else:
            from .module import module_path

            path = module_path(owner)
            target = f"{path}.{self._name}" if path else self._name
            where = f"module '{path}' ({type(owner).__name__})" if path else f"module {type(owner).__name__}"
            what = f"{self.kind} '{target}' of {where} is uninitialized (its shape is not known yet)"
        return UninitializedParameterError(f"cannot {action}: {what}; {RESOLVE_HINT}")

    def __getstate__(self) -> dict:
        return {"_dtype": self._dtype, "_owner": None, "_name": self._name}

    def __repr__(self) -> str:
        return f"<{type(self).__name__}(dtype={self._dtype.name})>"

    # --- everything that would need data or a shape raises ---
    def __array__(self, *args: Any, **kwargs: Any):
        raise self._error("convert it to an array")

    @property
    def shape(self):
        raise self._error("read its shape")

    @property
    def ndim(self):
        raise self._error("read its rank")

    @property
    def size(self):
        raise self._error("read its size")

    @property
    def T(self):
        raise self._error("transpose it")

    def __len__(self) -> int:
        raise self._error("take its length")

    def __iter__(self):
        raise self._error("iterate over it")

    def __getitem__(self, key):
        raise self._error("index it")

    def __setitem__(self, key, value):
        raise self._error("write into it")

    def __bool__(self) -> bool:
        raise self._error("take its truth value")

    def __getattr__(self, name: str) -> Any:
        # Only reached for names the placeholder lacks: ndarray methods and attributes (.sum(),
        # .copy(), .nbytes) raise the same error as every other use; anything else stays an
        # AttributeError (pickle and copy probe for optional dunders).
        if not name.startswith("_") and hasattr(np.ndarray, name):
            raise self._error(f"use '.{name}'")
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __float__(self) -> float:
        raise self._error("convert it to float")

    def __int__(self) -> int:
        raise self._error("convert it to int")


def _make_raiser(op: str):
    def raiser(self, *args: Any, **kwargs: Any):
        raise self._error(f"use it in '{op}'")

    raiser.__name__ = op
    return raiser


for _op in (
    "add radd sub rsub mul rmul truediv rtruediv floordiv rfloordiv pow rpow matmul rmatmul "
    "neg pos abs iadd isub imul itruediv lt le gt ge"
).split():
    setattr(_Uninitialized, f"__{_op}__", _make_raiser(f"__{_op}__"))

# numpy must not try to treat the placeholder as a scalar object array; return NotImplemented from
# its binary operators so Python calls the raising reflected operator above.
_Uninitialized.__array_ufunc__ = None


class UninitializedParameter(_Uninitialized):
    """Placeholder for a lazy module's parameter whose shape is not known yet."""

    kind = "parameter"


class UninitializedBuffer(_Uninitialized):
    """Placeholder for a lazy module's buffer whose shape is not known yet."""

    kind = "buffer"


def is_uninitialized(x: Any) -> bool:
    """True for an :class:`UninitializedParameter` or :class:`UninitializedBuffer`."""
    return isinstance(x, _Uninitialized)
