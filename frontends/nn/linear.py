"""``Linear`` and ``LazyLinear``: ``y = x @ W.T + b``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from lazyfuse.errors import ConfigError, DTypeError, ShapeError, StateDictError

from . import functional as F
from . import init
from ._checks import check_size
from .lazy import LazyModuleMixin
from .module import Module, _check_float_dtype, describe
from .parameter import Parameter, UninitializedParameter


class Linear(Module):
    """Affine map of the last dim: input ``(in_features,)`` or ``(*, in_features)``.

    Weight ``(out_features, in_features)`` and bias ``(out_features,)`` start as
    U(-1/sqrt(in_features), 1/sqrt(in_features)), like PyTorch.
    """

    def __init__(
        self, in_features: int, out_features: int, bias: bool = True, dtype: Any = None
    ) -> None:
        super().__init__()
        self.in_features = check_size("Linear", "in_features", in_features)
        self.out_features = check_size("Linear", "out_features", out_features)
        dt = _check_float_dtype(dtype, type(self).__name__)
        self.weight = Parameter(np.empty((self.out_features, self.in_features), dt))
        if bias:
            self.bias = Parameter(np.empty(self.out_features, dt))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Redraw weight and bias from U(-1/sqrt(in_features), 1/sqrt(in_features))."""
        bound = init.fan_in_bound(self.in_features)
        init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            init.uniform_(self.bias, -bound, bound)

    def _where(self) -> str:
        return f"{describe(self)}: linear"

    def _params(self, where: str) -> tuple[Any, Any]:
        """weight and bias (``None`` when unset); the weight must be a float32/float64 array."""
        weight = self._member("parameter", "weight", where)
        if weight is None:
            raise ConfigError(
                f"{where}: expected a weight of shape ({self.out_features}, in_features), got None"
            )
        if weight.dtype not in F.FLOAT_DTYPES:
            raise DTypeError(f"{where}: expected weight of dtype float32 or float64, got {weight.dtype}")
        return weight, self._member("parameter", "bias", where)

    def _input(self, input: Any, where: str, dtype: np.dtype) -> np.ndarray:
        x = F.as_float_input(input, where, dtype)
        if x.ndim == 0:
            raise ShapeError(
                f"{where}: expected input of shape (*, {self.in_features or 'in_features'}), "
                "got a 0-d array"
            )
        return x

    def _array_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"weight": (self.out_features, self.in_features), "bias": (self.out_features,)}

    def _check_shapes(self, weight: np.ndarray, bias: np.ndarray | None, where: str) -> None:
        want = (self.out_features, self.in_features)
        if weight.shape != want:
            raise ShapeError(
                f"{where}: expected weight of shape {want} (out_features, in_features), "
                f"got {tuple(weight.shape)}"
            )
        if bias is None:
            return
        if bias.dtype != weight.dtype:
            want_dt, got_dt = F.dtype_names(weight.dtype, bias.dtype)
            raise DTypeError(f"{where}: expected bias of dtype {want_dt} (like weight), got {got_dt}")
        if bias.shape != (self.out_features,):
            raise ShapeError(
                f"{where}: expected bias of shape ({self.out_features},) (out_features), "
                f"got {tuple(bias.shape)}"
            )

    def forward(self, input: Any) -> np.ndarray:
        where = self._where()
        weight, bias = self._params(where)
        x = self._input(input, where, weight.dtype)
        if x.shape[-1] != self.in_features:
            raise ShapeError(
                f"{where}: expected input with last dimension {self.in_features} (in_features), "
                f"got input of shape {tuple(x.shape)}"
            )
        self._check_shapes(weight, bias, where)
        return F._linear(x, weight, bias)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
        )


class LazyLinear(LazyModuleMixin, Linear):
    """A :class:`Linear` whose ``in_features`` is read from the first input's last dim.

    Until then ``in_features == 0`` and weight/bias are :class:`UninitializedParameter`.  Loading a
    state_dict with real arrays also resolves it; unlike PyTorch (which leaves ``in_features`` at 0
    in that case) we set ``in_features`` from the loaded weight, so the module is a consistent
    ``Linear`` afterwards.
    """

    cls_to_become = Linear
    lazy_dims = {"in_features": {"weight": 1}}

    def __init__(self, out_features: int, bias: bool = True, dtype: Any = None) -> None:
        Module.__init__(self)
        self.in_features = 0
        self.out_features = check_size("LazyLinear", "out_features", out_features)
        dt = _check_float_dtype(dtype, type(self).__name__)
        self.weight = UninitializedParameter(dt)
        if bias:
            self.bias = UninitializedParameter(dt)
        else:
            self.register_parameter("bias", None)

    def reset_parameters(self) -> None:
        if not self.has_uninitialized_params():
            super().reset_parameters()

    def _dims_from_input(self, input: Any) -> dict[str, int]:
        where = self._where()
        x = self._input(input, where, self._params(where)[0].dtype)
        if x.shape[-1] == 0:
            raise ShapeError(
                f"{where}: cannot infer in_features from an input of shape {tuple(x.shape)}"
                " (last dimension is 0)"
            )
        return {"in_features": int(x.shape[-1])}

    def _allocate(self, dims: Mapping[str, int], init_values: bool) -> None:
        k = dims["in_features"]
        dt = self.weight.dtype
        weight = Parameter(np.empty((self.out_features, k), dt))
        bias = Parameter(np.empty(self.out_features, dt)) if self.bias is not None else None
        if init_values:
            bound = init.fan_in_bound(k)
            init.uniform_(weight, -bound, bound)
            if bias is not None:
                init.uniform_(bias, -bound, bound)
        self.in_features = k
        self.weight = weight
        if bias is not None:
            self.bias = bias

    def _dims_from_state(self, sources: Mapping[str, Any], prefix: str) -> dict[str, int] | None:
        weight = self._loaded_weight(sources, prefix)
        if weight is None:
            return None
        if weight.ndim != 2 or weight.shape[0] != self.out_features or weight.shape[1] < 1:
            raise StateDictError(
                f"size mismatch for {prefix}weight: expected shape ({self.out_features}, in_features) "
                f"for {describe(self)}, got {tuple(weight.shape)}"
            )
        return {"in_features": int(weight.shape[1])}
