"""``BatchNorm1d`` and ``LazyBatchNorm1d`` over ``(N, C)`` or ``(N, C, L)`` inputs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from lazyfuse.errors import ShapeError, StateDictError

from . import functional as F
from ._checks import check_eps, check_momentum, check_size
from .lazy import LazyModuleMixin
from .module import Module, _check_float_dtype, describe
from .parameter import Parameter, UninitializedBuffer, UninitializedParameter, is_uninitialized

_STAT_NAMES = ("weight", "bias", "running_mean", "running_var")


class BatchNorm1d(Module):
    """PyTorch's BatchNorm1d: per-channel normalization with learnable affine and running stats.

    Train mode normalizes with the batch's biased variance and feeds the unbiased one into
    ``running_var``; ``momentum=None`` uses a cumulative average (factor ``1/num_batches_tracked``).
    Eval mode uses the running stats (batch stats when ``track_running_stats=False``).
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        dtype: Any = np.float32,
        *,
        bias: bool = True,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        self.num_features = check_size(name, "num_features", num_features)
        self._configure(name, eps, momentum, affine, track_running_stats)
        dt = _check_float_dtype(dtype)
        c = self.num_features
        self._register_state(
            lambda: Parameter(np.ones(c, dt)),
            lambda: Parameter(np.zeros(c, dt)),
            lambda: np.zeros(c, dt),
            lambda: np.ones(c, dt),
            bias,
        )

    def _configure(self, name: str, eps: Any, momentum: Any, affine: Any, track: Any) -> None:
        self.eps = check_eps(name, eps)
        self.momentum = check_momentum(name, momentum)
        self.affine = bool(affine)
        self.track_running_stats = bool(track)

    def _register_state(self, weight, bias, mean, var, use_bias: bool) -> None:
        if self.affine:
            self.weight = weight()
            if use_bias:
                self.bias = bias()
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if self.track_running_stats:
            self.register_buffer("running_mean", mean())
            self.register_buffer("running_var", var())
            self.register_buffer("num_batches_tracked", np.zeros((), np.int64))
        else:
            for buf in ("running_mean", "running_var", "num_batches_tracked"):
                self.register_buffer(buf, None)

    def reset_running_stats(self) -> None:
        """Zero ``running_mean`` and ``num_batches_tracked``, fill ``running_var`` with ones (in place)."""
        if self.track_running_stats:
            self.running_mean[...] = 0
            self.running_var[...] = 1
            self.num_batches_tracked[...] = 0

    def reset_parameters(self) -> None:
        """Reset running stats and set weight to ones, bias to zeros (in place)."""
        self.reset_running_stats()
        if self.weight is not None:
            self.weight[...] = 1
        if self.bias is not None:
            self.bias[...] = 0

    def _where(self) -> str:
        return f"{describe(self)}: batch_norm"

    def _state_dtype(self) -> np.dtype | None:
        for name in _STAT_NAMES:
            value = getattr(self, name)
            if value is not None:
                return value.dtype
        return None

    def _uses_batch_stats(self) -> bool:
        return self.training or self.running_mean is None

    def _input(self, input: Any) -> np.ndarray:
        """Every check the first/any call needs, before any state is touched."""
        where = self._where()
        x = F.as_float_input(input, where, self._state_dtype())
        if x.ndim not in (2, 3):
            raise ShapeError(f"{where}: expected 2D or 3D input (got {x.ndim}D input)")
        if self._uses_batch_stats():
            F.check_batch_size(x, where)
        return x

    def forward(self, input: Any) -> np.ndarray:
        x = self._input(input)
        if x.shape[1] != self.num_features:
            raise ShapeError(
                f"{self._where()}: expected input with {self.num_features} channels at dim 1 "
                f"(num_features), got input of shape {tuple(x.shape)}"
            )
        update = self.training and self.track_running_stats
        factor = 0.0
        if update:
            factor = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked + 1)
        stats = not self.training or self.track_running_stats
        y = F._batch_norm(
            x,
            self.running_mean if stats else None,
            self.running_var if stats else None,
            self.weight,
            self.bias,
            self._uses_batch_stats(),
            factor,
            self.eps,
        )
        if update:
            np.add(self.num_batches_tracked, 1, out=self.num_batches_tracked)
        return y

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
            f"bias={self.bias is not None}, track_running_stats={self.track_running_stats}"
        )


class LazyBatchNorm1d(LazyModuleMixin, BatchNorm1d):
    """A :class:`BatchNorm1d` whose ``num_features`` is read from the first input's dim 1.

    Until then ``num_features == 0`` and weight/bias/running stats are placeholders
    (``num_batches_tracked`` is a real 0-d array, like PyTorch).  Loading a state_dict with real
    arrays resolves it and, unlike PyTorch, sets ``num_features`` from the loaded shapes.  Unlike
    PyTorch, a first call that fails (for example one sample in train mode) leaves the module lazy.
    """

    cls_to_become = BatchNorm1d
    lazy_dims = ("num_features",)

    def __init__(
        self,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        dtype: Any = np.float32,
        *,
        bias: bool = True,
    ) -> None:
        Module.__init__(self)
        self.num_features = 0
        self._configure("LazyBatchNorm1d", eps, momentum, affine, track_running_stats)
        dt = _check_float_dtype(dtype)
        self._register_state(
            lambda: UninitializedParameter(dt),
            lambda: UninitializedParameter(dt),
            lambda: UninitializedBuffer(dt),
            lambda: UninitializedBuffer(dt),
            bias,
        )

    def reset_parameters(self) -> None:
        if not self.has_uninitialized_params():
            super().reset_parameters()

    def reset_running_stats(self) -> None:
        if not self.has_uninitialized_params():
            super().reset_running_stats()

    def _dims_from_input(self, input: Any) -> dict[str, int]:
        x = self._input(input)
        if x.shape[1] == 0:
            raise ShapeError(
                f"{self._where()}: cannot infer num_features from an input of shape "
                f"{tuple(x.shape)} (dim 1 is 0)"
            )
        return {"num_features": int(x.shape[1])}

    def _shapes_for(self, dims: Mapping[str, int]) -> dict[str, tuple[int, ...]]:
        c = dims["num_features"]
        return {name: (c,) for name in _STAT_NAMES if getattr(self, name) is not None}

    def _allocate(self, dims: Mapping[str, int], init_values: bool) -> None:
        c = dims["num_features"]
        new: dict[str, np.ndarray] = {}
        for name, fill in zip(_STAT_NAMES, (1, 0, 0, 1)):
            old = getattr(self, name)
            if is_uninitialized(old):
                arr = np.full(c, fill, old.dtype) if init_values else np.empty(c, old.dtype)
                new[name] = Parameter(arr) if name in ("weight", "bias") else arr
        self.num_features = c
        for name, arr in new.items():
            setattr(self, name, arr)

    def _dims_from_state(self, sources: Mapping[str, Any], prefix: str) -> dict[str, int] | None:
        real = {n: v for n, v in sources.items() if n in _STAT_NAMES and v is not None}
        if not real:
            return None
        sizes = set()
        for name, arr in real.items():
            if arr.ndim != 1:
                raise StateDictError(
                    f"size mismatch for {prefix}{name}: expected a 1-D array (num_features,) "
                    f"for {describe(self)}, got shape {tuple(arr.shape)}"
                )
            sizes.add(int(arr.shape[0]))
        if len(sizes) != 1 or 0 in sizes:
            shapes = ", ".join(f"{prefix}{n}: {tuple(a.shape)}" for n, a in real.items())
            raise StateDictError(f"inconsistent num_features for {describe(self)}: {shapes}")
        return {"num_features": sizes.pop()}
