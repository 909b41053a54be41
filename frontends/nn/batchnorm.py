"""``BatchNorm1d`` / ``LazyBatchNorm1d`` over ``(N, C)`` or ``(N, C, L)`` inputs and ``BatchNorm2d`` /
``LazyBatchNorm2d`` over ``(N, C, H, W)``: one implementation, the classes differ in the ranks
they accept."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from lazyfuse.errors import ConfigError, DTypeError, ShapeError, StateDictError

from . import _undo, init
from . import functional as F
from ._checks import check_eps, check_momentum, check_size
from .lazy import LazyModuleMixin
from .module import Module, _check_float_dtype, describe
from .parameter import Parameter, UninitializedBuffer, UninitializedParameter, is_uninitialized

_STAT_KINDS = {"weight": "parameter", "bias": "parameter", "running_mean": "buffer", "running_var": "buffer"}
_STAT_NAMES = tuple(_STAT_KINDS)


class _BatchNorm(Module):
    """Per-channel (dim 1) normalization with learnable affine and running stats, like PyTorch.

    Train mode normalizes with the batch's biased variance and feeds the unbiased one into
    ``running_var``; ``momentum=None`` uses a cumulative average (factor ``1/num_batches_tracked``).
    Eval mode uses the running stats (batch stats when ``track_running_stats=False``).
    Subclasses set ``input_ranks``, the input ranks they accept.
    """

    input_ranks: tuple[int, ...] = ()

    @classmethod
    def rank_problem(cls, ndim: int) -> str | None:
        """torch's message for an input of rank ``ndim`` this class does not take (else ``None``);
        the tracer's emitter raises the same one."""
        if ndim in cls.input_ranks:
            return None
        return f"expected {' or '.join(f'{r}D' for r in cls.input_ranks)} input (got {ndim}D input)"

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        dtype: Any = None,
        *,
        bias: bool = True,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        self.num_features = check_size(name, "num_features", num_features)
        self._configure(name, eps, momentum, affine, track_running_stats)
        dt = _check_float_dtype(dtype, name)
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
            init.zeros_(self.running_mean)
            init.ones_(self.running_var)
            init.zeros_(self.num_batches_tracked)

    def reset_parameters(self) -> None:
        """Reset running stats and set weight to ones, bias to zeros (in place)."""
        self.reset_running_stats()
        if self.weight is not None:
            init.ones_(self.weight)
        if self.bias is not None:
            init.zeros_(self.bias)

    def _where(self) -> str:
        return f"{describe(self)}: batch_norm"

    def _state(self, where: str) -> dict[str, Any]:
        """weight, bias and the running stats by name (``None`` when unset)."""
        return {name: self._member(kind, name, where) for name, kind in _STAT_KINDS.items()}

    @staticmethod
    def _state_dtype(state: dict[str, Any], where: str) -> np.dtype | None:
        """The float32/float64 dtype every set array in ``state`` shares (a DTypeError otherwise)."""
        first: tuple[str, np.dtype] | None = None
        for name, value in state.items():
            if value is None:
                continue
            if value.dtype not in F.FLOAT_DTYPES:
                raise DTypeError(f"{where}: expected {name} of dtype float32 or float64, got {value.dtype}")
            if first is None:
                first = (name, value.dtype)
            elif value.dtype != first[1]:
                want, got = F.dtype_names(first[1], value.dtype)
                raise DTypeError(f"{where}: expected {name} of dtype {want} (like {first[0]}), got {got}")
        return None if first is None else first[1]

    def _uses_batch_stats(self, mean: Any, var: Any) -> bool:
        return self.training or (mean is None and var is None)

    def _checked(self, input: Any, where: str) -> tuple[np.ndarray, dict[str, Any], float, float | None]:
        """Every check the first/any call needs, before any state is touched: the input array,
        the state arrays, eps and momentum (re-checked: they may have been reassigned)."""
        eps, momentum = check_eps(where, self.eps), check_momentum(where, self.momentum)
        state = self._state(where)
        x = F.as_float_input(input, where, self._state_dtype(state, where))
        problem = self.rank_problem(x.ndim)
        if problem is not None:
            raise ShapeError(f"{where}: {problem}")
        if self._uses_batch_stats(state["running_mean"], state["running_var"]):
            F.check_batch_size(x, where)
        return x, state, eps, momentum

    def _array_shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: (self.num_features,) for name in _STAT_NAMES} | {"num_batches_tracked": ()}

    def _check_shapes(self, state: dict[str, Any], where: str) -> None:
        for name, value in state.items():
            if value is not None and value.shape != (self.num_features,):
                raise ShapeError(
                    f"{where}: expected {name} of shape ({self.num_features},) (num_features), "
                    f"got {tuple(value.shape)}"
                )

    def _counter(self, where: str) -> np.ndarray:
        """``num_batches_tracked``, checked for a training step that counts it."""
        nbt = self._member("buffer", "num_batches_tracked", where)
        if nbt is None:
            raise ConfigError(
                f"{where}: expected num_batches_tracked to be a 0-d int64 array when training with "
                "track_running_stats=True, got None"
            )
        if nbt.dtype != np.int64:
            raise DTypeError(f"{where}: expected num_batches_tracked of dtype int64, got {nbt.dtype}")
        if nbt.shape != ():
            raise ShapeError(f"{where}: expected num_batches_tracked of shape (), got {tuple(nbt.shape)}")
        return nbt

    def forward(self, input: Any) -> np.ndarray:
        where = self._where()
        x, state, eps, momentum = self._checked(input, where)
        if x.shape[1] != self.num_features:
            raise ShapeError(
                f"{where}: expected input with {self.num_features} channels at dim 1 "
                f"(num_features), got input of shape {tuple(x.shape)}"
            )
        self._check_shapes(state, where)
        stats = not self.training or self.track_running_stats
        mean, var = (state["running_mean"], state["running_var"]) if stats else (None, None)
        if (mean is None) != (var is None):
            unset = "running_mean" if mean is None else "running_var"
            raise ConfigError(
                f"{where}: expected running_mean and running_var to be both arrays or both None, "
                f"got {unset}=None"
            )
        update = self.training and self.track_running_stats
        factor = 0.0
        if update:
            nbt = self._counter(where)
            F.check_writable(where, {"running_mean": mean, "running_var": var, "num_batches_tracked": nbt})
            factor = momentum if momentum is not None else 1.0 / float(nbt + 1)
        y = F._batch_norm(x, mean, var, state["weight"], state["bias"],
                          self._uses_batch_stats(mean, var), factor, eps)
        if update:
            _undo.save_array(nbt)
            np.add(nbt, 1, out=nbt)
        return y

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
            f"bias={self.bias is not None}, track_running_stats={self.track_running_stats}"
        )


class BatchNorm1d(_BatchNorm):
    """PyTorch's BatchNorm1d over ``(N, C)`` or ``(N, C, L)`` inputs (statistics over N and L)."""

    input_ranks = (2, 3)


class BatchNorm2d(_BatchNorm):
    """PyTorch's BatchNorm2d over ``(N, C, H, W)`` inputs (statistics over N, H and W)."""

    input_ranks = (4,)


class _LazyBatchNorm(LazyModuleMixin):
    """The lazy side of the batch norms: ``num_features`` is read from the first input's dim 1.

    Until then ``num_features == 0`` and weight/bias/running stats are placeholders
    (``num_batches_tracked`` is a real 0-d array, like PyTorch).  Loading a state_dict with real
    arrays resolves it and, unlike PyTorch, sets ``num_features`` from the loaded shapes.  Unlike
    PyTorch, a first call that fails (for example one sample in train mode) leaves the module lazy.
    Placed before the concrete class: ``class LazyBatchNorm1d(_LazyBatchNorm, BatchNorm1d)``.
    """

    # With affine=False and track_running_stats=False there is no array to read it from: then
    # static materialization takes it from the op's inferred attribute.
    lazy_dims = {"num_features": dict.fromkeys(_STAT_NAMES, 0)}

    def __init__(
        self,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        dtype: Any = None,
        *,
        bias: bool = True,
    ) -> None:
        Module.__init__(self)
        self.num_features = 0
        self._configure(type(self).__name__, eps, momentum, affine, track_running_stats)
        dt = _check_float_dtype(dtype, type(self).__name__)
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
        where = self._where()
        x = self._checked(input, where)[0]
        if x.shape[1] == 0:
            raise ShapeError(
                f"{where}: cannot infer num_features from an input of shape "
                f"{tuple(x.shape)} (dim 1 is 0)"
            )
        return {"num_features": int(x.shape[1])}

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


class LazyBatchNorm1d(_LazyBatchNorm, BatchNorm1d):
    """A :class:`BatchNorm1d` whose ``num_features`` is read from the first input's dim 1 (see
    :class:`_LazyBatchNorm`)."""

    cls_to_become = BatchNorm1d


class LazyBatchNorm2d(_LazyBatchNorm, BatchNorm2d):
    """A :class:`BatchNorm2d` whose ``num_features`` is read from the first input's dim 1 (see
    :class:`_LazyBatchNorm`)."""

    cls_to_become = BatchNorm2d
