"""Argument normalization of the 2-D layers, shared by ``Conv2d`` / ``MaxPool2d``, their
``nn.functional`` forms and the tracer's emitters (raise :class:`ConfigError`).

``where`` prefixes each message, as in :mod:`._checks`: the class name in constructors, the module
and op at call time, the function name in ``nn.functional``.  The normalized forms are the op
attributes of ``conv2d`` / ``max_pool2d``: int pairs, convolution padding as ``(top, bottom,
left, right)``.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

from lazyfuse.errors import ConfigError
from lazyfuse.ir.conv_math import same_padding

Pair = tuple[int, int]
Pad4 = tuple[int, int, int, int]

PADDING_STRINGS = ("same", "valid")
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def _is_int(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, numbers.Integral)


def pair(where: str, name: str, value: Any, minimum: int) -> Pair:
    """An int or a pair (tuple / list) of ints, each ``>= minimum``, as a tuple of two ints."""
    items = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(items) != 2 or not all(_is_int(v) and v >= minimum for v in items):
        raise ConfigError(f"{where}: {name} must be an int >= {minimum} or a pair of them, got {value!r}")
    return int(items[0]), int(items[1])


def conv_padding(where: str, padding: Any) -> Pair | str:
    """Convolution padding as ``Conv2d`` stores it (like torch): ``'same'``, ``'valid'`` or a pair."""
    if isinstance(padding, str):
        if padding not in PADDING_STRINGS:
            raise ConfigError(f"{where}: invalid padding string {padding!r}, should be one of "
                              "'same', 'valid'")
        return padding
    return pair(where, "padding", padding, 0)


def check_padding_mode(where: str, mode: Any) -> str:
    """Only ``'zeros'`` is implemented; the other torch modes say so, anything else lists them."""
    if not isinstance(mode, str) or mode not in PADDING_MODES:
        raise ConfigError(f"{where}: padding_mode must be one of {', '.join(map(repr, PADDING_MODES))}, "
                          f"got {mode!r}")
    if mode != "zeros":
        raise ConfigError(f"{where}: padding_mode={mode!r} is not supported yet (only 'zeros')")
    return mode


def check_groups(where: str, groups: Any, in_channels: int | None = None,
                 out_channels: int | None = None) -> int:
    """A positive ``groups`` dividing the channel counts given (``None``: not known / not checked)."""
    if not _is_int(groups) or groups < 1:
        raise ConfigError(f"{where}: groups must be a positive int, got {groups!r}")
    for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
        if value is not None and value % groups:
            raise ConfigError(f"{where}: {name} must be divisible by groups, got {name}={value} and "
                              f"groups={groups}")
    return int(groups)


@dataclass(frozen=True)
class ConvArgs:
    """Normalized ``conv2d`` arguments (the op's attrs but the channel counts and ``bias``)."""

    kernel_size: Pair
    stride: Pair
    padding: Pad4
    dilation: Pair
    groups: int

    def attrs(self) -> dict[str, Any]:
        return {"kernel_size": self.kernel_size, "stride": self.stride, "padding": self.padding,
                "dilation": self.dilation, "groups": self.groups}


def conv_args(where: str, kernel_size: Any, stride: Any, padding: Any, dilation: Any, groups: Any,
              in_channels: int | None = None, out_channels: int | None = None) -> ConvArgs:
    """Check and normalize convolution arguments; ``padding='same'`` needs stride 1 (as in torch);
    ``groups`` must divide the channel counts given."""
    kernel = pair(where, "kernel_size", kernel_size, 1)
    st = pair(where, "stride", stride, 1)
    dil = pair(where, "dilation", dilation, 1)
    pad = conv_padding(where, padding)
    g = check_groups(where, groups, in_channels, out_channels)
    if pad == "same":
        if st != (1, 1):
            raise ConfigError(f"{where}: padding='same' is not supported for strided convolutions, "
                              f"got stride={st}")
        pad4 = same_padding(kernel, dil)
    elif pad == "valid":
        pad4 = (0, 0, 0, 0)
    else:
        pad4 = (pad[0], pad[0], pad[1], pad[1])
    return ConvArgs(kernel, st, pad4, dil, g)


@dataclass(frozen=True)
class PoolArgs:
    """Normalized ``max_pool2d`` arguments (the op's attrs)."""

    kernel_size: Pair
    stride: Pair
    padding: Pair
    dilation: Pair
    ceil_mode: bool

    def attrs(self) -> dict[str, Any]:
        return {"kernel_size": self.kernel_size, "stride": self.stride, "padding": self.padding,
                "dilation": self.dilation, "ceil_mode": self.ceil_mode}


def pool_args(where: str, kernel_size: Any, stride: Any, padding: Any, dilation: Any, ceil_mode: Any,
              return_indices: Any) -> PoolArgs:
    """Check and normalize max-pooling arguments (``stride=None`` means ``kernel_size``)."""
    if return_indices:
        raise ConfigError(f"{where}: return_indices=True is not supported (the IR has no indices output)")
    kernel = pair(where, "kernel_size", kernel_size, 1)
    st = kernel if stride is None else pair(where, "stride", stride, 1)
    pad = pair(where, "padding", padding, 0)
    dil = pair(where, "dilation", dilation, 1)
    if pad[0] > kernel[0] // 2 or pad[1] > kernel[1] // 2:
        raise ConfigError(f"{where}: pad should be at most half of kernel size, got padding={pad} and "
                          f"kernel_size={kernel}")
    if not isinstance(ceil_mode, (bool, numbers.Integral)):
        raise ConfigError(f"{where}: ceil_mode must be a bool, got {ceil_mode!r}")
    return PoolArgs(kernel, st, pad, dil, bool(ceil_mode))
