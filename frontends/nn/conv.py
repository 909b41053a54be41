"""``Conv2d`` and ``LazyConv2d``: 2-D cross-correlation of ``(N, C, H, W)`` inputs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from lazyfuse.errors import ConfigError, DTypeError, ShapeError, StateDictError

from . import functional as F
from . import init
from ._checks import check_size
from ._conv_args import ConvArgs, check_padding_mode, conv_args, conv_padding, pair
from .lazy import LazyModuleMixin
from .module import Module, _check_float_dtype, describe
from .parameter import Parameter, UninitializedParameter


def _init_uniform(weight: np.ndarray, bias: np.ndarray | None, fan_in: int) -> None:
    """PyTorch's conv init: ``kaiming_uniform_(a=sqrt(5))`` is U(+-1/sqrt(fan_in)); the bias uses
    the same bound.  The weight is drawn first, then the bias."""
    bound = init.fan_in_bound(fan_in)
    init.uniform_(weight, -bound, bound)
    if bias is not None:
        init.uniform_(bias, -bound, bound)


class Conv2d(Module):
    """PyTorch's Conv2d on ``(N, C, H, W)`` inputs (batched only: add the batch dim with ``x[None]``).

    ``kernel_size``, ``stride``, ``dilation``: an int or a pair; ``padding``: an int, a pair,
    ``"valid"`` or ``"same"`` (stride 1 only).  Weight ``(out_channels, in_channels/groups, kh, kw)``
    and bias ``(out_channels,)`` start as U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with
    ``fan_in = in_channels/groups * kh * kw``, like PyTorch.  Only ``padding_mode="zeros"`` is
    supported.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        dtype: Any = None,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        self.in_channels = check_size(name, "in_channels", in_channels, 1)
        self._configure(name, out_channels, kernel_size, stride, padding, dilation, groups, padding_mode)
        dt = _check_float_dtype(dtype, name)
        kh, kw = self.kernel_size
        self.weight = Parameter(np.empty((self.out_channels, self.in_channels // self.groups, kh, kw), dt))
        if bias:
            self.bias = Parameter(np.empty(self.out_channels, dt))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def _configure(self, name: str, out_channels: Any, kernel_size: Any, stride: Any, padding: Any,
                   dilation: Any, groups: Any, padding_mode: Any) -> None:
        """Check and store the settings as torch does (pairs as tuples, a padding string as is)."""
        self.out_channels = check_size(name, "out_channels", out_channels, 1)
        self.kernel_size = pair(name, "kernel_size", kernel_size, 1)
        self.stride = pair(name, "stride", stride, 1)
        self.padding = conv_padding(name, padding)
        self.dilation = pair(name, "dilation", dilation, 1)
        self.padding_mode = check_padding_mode(name, padding_mode)
        self.groups = conv_args(name, self.kernel_size, self.stride, self.padding, self.dilation, groups,
                                self.in_channels or None, self.out_channels).groups

    def conv_args(self, where: str) -> ConvArgs:
        """The normalized arguments, re-checked (the settings may have been reassigned)."""
        check_padding_mode(where, self.padding_mode)
        return conv_args(where, self.kernel_size, self.stride, self.padding, self.dilation, self.groups,
                         self.in_channels or None, self.out_channels)

    def reset_parameters(self) -> None:
        """Redraw weight, then bias, from U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
        args = self.conv_args(type(self).__name__)
        kh, kw = args.kernel_size
        _init_uniform(self.weight, self.bias, self.in_channels // args.groups * kh * kw)

    def _where(self) -> str:
        return f"{describe(self)}: conv2d"

    def _params(self, where: str) -> tuple[Any, Any]:
        """weight and bias (``None`` when unset); the weight must be a float32/float64 array."""
        weight = self._member("parameter", "weight", where)
        if weight is None:
            raise ConfigError(f"{where}: expected a weight of shape (out_channels, in_channels/groups, "
                              "kh, kw), got None")
        if weight.dtype not in F.FLOAT_DTYPES:
            raise DTypeError(f"{where}: expected weight of dtype float32 or float64, got {weight.dtype}")
        return weight, self._member("parameter", "bias", where)

    def _array_shapes(self) -> dict[str, tuple[int, ...]]:
        args = self.conv_args(type(self).__name__)
        return {"weight": (self.out_channels, self.in_channels // args.groups, *args.kernel_size),
                "bias": (self.out_channels,)}

    def _check_shapes(self, weight: np.ndarray, args: ConvArgs, where: str) -> None:
        want = (self.out_channels, self.in_channels // args.groups, *args.kernel_size)
        if weight.shape != want:
            raise ShapeError(
                f"{where}: expected weight of shape {want} (out_channels, in_channels/groups, "
                f"kh, kw), got {tuple(weight.shape)}"
            )

    def forward(self, input: Any) -> np.ndarray:
        where = self._where()
        args = self.conv_args(where)
        weight, bias = self._params(where)
        x = F._input_4d(input, where, weight.dtype)
        self._check_shapes(weight, args, where)
        F._check_conv2d(x, weight, bias, args, where)
        return F._conv2d(x, weight, bias, args)

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s


class LazyConv2d(LazyModuleMixin, Conv2d):
    """A :class:`Conv2d` whose ``in_channels`` is read from the first input's dim 1.

    Until then ``in_channels == 0`` and weight/bias are :class:`UninitializedParameter`.  Static
    shape inference (``materialize(in_channels=...)``) and ``load_state_dict`` with real arrays
    also resolve it; unlike PyTorch, loading sets ``in_channels`` from the loaded weight.
    """

    cls_to_become = Conv2d
    lazy_dims = {"in_channels": {"weight": 1}}

    def __init__(
        self,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        dtype: Any = None,
    ) -> None:
        Module.__init__(self)
        name = type(self).__name__
        self.in_channels = 0
        self._configure(name, out_channels, kernel_size, stride, padding, dilation, groups, padding_mode)
        dt = _check_float_dtype(dtype, name)
        self.weight = UninitializedParameter(dt)
        if bias:
            self.bias = UninitializedParameter(dt)
        else:
            self.register_parameter("bias", None)

    def lazy_scale(self, dim: str) -> int:
        return self.groups  # the weight's axis 1 is in_channels / groups

    def reset_parameters(self) -> None:
        if not self.has_uninitialized_params():
            super().reset_parameters()

    def _dims_from_input(self, input: Any) -> dict[str, int]:
        where = self._where()
        args = self.conv_args(where)
        x = F._input_4d(input, where, self._params(where)[0].dtype)
        c = int(x.shape[1])
        if c == 0:
            raise ShapeError(f"{where}: cannot infer in_channels from an input of shape {tuple(x.shape)} "
                             "(dim 1 is 0)")
        if c % args.groups:
            raise ShapeError(f"{where}: expected input channels divisible by groups={args.groups} "
                             f"(in_channels), got input of shape {tuple(x.shape)}")
        # The kernel must fit before anything is drawn: a failing first call stays lazy.
        probe = np.empty((self.out_channels, c // args.groups, *args.kernel_size), x.dtype)
        F._check_conv2d(x, probe, None, args, where)
        return {"in_channels": c}

    def _allocate(self, dims: Mapping[str, int], init_values: bool) -> None:
        c = dims["in_channels"]
        args = conv_args(describe(self), self.kernel_size, self.stride, self.padding, self.dilation,
                         self.groups, c, self.out_channels)
        dt = self.weight.dtype
        weight = Parameter(np.empty((self.out_channels, c // args.groups, *args.kernel_size), dt))
        bias = Parameter(np.empty(self.out_channels, dt)) if self.bias is not None else None
        if init_values:
            _init_uniform(weight, bias, c // args.groups * args.kernel_size[0] * args.kernel_size[1])
        self.in_channels = c
        self.weight = weight
        if bias is not None:
            self.bias = bias

    def _dims_from_state(self, sources: Mapping[str, Any], prefix: str) -> dict[str, int] | None:
        weight = self._loaded_weight(sources, prefix)
        if weight is None:
            return None
        want = (self.out_channels, "in_channels/groups", *self.kernel_size)
        if weight.ndim != 4 or weight.shape[0] != self.out_channels or weight.shape[1] < 1 \
                or tuple(weight.shape[2:]) != self.kernel_size:
            raise StateDictError(
                f"size mismatch for {prefix}weight: expected shape ({', '.join(map(str, want))}) "
                f"for {describe(self)}, got {tuple(weight.shape)}"
            )
        return {"in_channels": int(weight.shape[1]) * self.groups}
