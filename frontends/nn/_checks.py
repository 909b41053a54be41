"""Argument checks shared by the layers and their functional forms (raise :class:`ConfigError`).

``where`` prefixes the message: a class name in constructors (``"BatchNorm1d"``), the module and
op at call time (``"module 'bn' (BatchNorm1d): batch_norm"``), so both say the same thing.
"""

from __future__ import annotations

import numbers
from typing import Any

from lazyfuse.errors import ConfigError
from lazyfuse.ir.numpy_math import check_eps  # noqa: F401 - one check, shared with the reference impls


def check_size(cls: str, name: str, value: Any, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ConfigError(f"{cls}: {name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def check_momentum(where: str, momentum: Any) -> float | None:
    """``None`` or a float in [0, 1]."""
    if momentum is None:
        return None
    if isinstance(momentum, bool) or not isinstance(momentum, numbers.Real) or not 0 <= momentum <= 1:
        raise ConfigError(f"{where}: momentum must be a float in [0, 1] or None, got {momentum!r}")
    return float(momentum)


def check_dim(where: str, name: str, value: Any) -> int:
    """A dim index: an int (not a bool), like torch's ``flatten``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{where}: {name} must be an int, got {type(value).__name__} {value!r}")
    return int(value)
