"""Constructor argument checks shared by the layers (raise :class:`ConfigError`)."""

from __future__ import annotations

import numbers
from typing import Any

from lazyfuse.errors import ConfigError


def check_size(cls: str, name: str, value: Any, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ConfigError(f"{cls}: {name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def check_eps(cls: str, eps: Any) -> float:
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not eps > 0:
        raise ConfigError(f"{cls}: eps must be a float > 0, got {eps!r}")
    return float(eps)


def check_momentum(cls: str, momentum: Any) -> float | None:
    if momentum is None:
        return None
    if isinstance(momentum, bool) or not isinstance(momentum, numbers.Real) or not 0 <= momentum <= 1:
        raise ConfigError(f"{cls}: momentum must be a float in [0, 1] or None, got {momentum!r}")
    return float(momentum)
