"""Parameter initialization and the module-level random generator behind ``lazyfuse.manual_seed``."""

from __future__ import annotations

import math

import numpy as np

_generator: np.random.Generator = np.random.default_rng()


def manual_seed(seed: int) -> np.random.Generator:
    """Reseed the generator every ``lazyfuse.nn`` initializer draws from; returns it."""
    global _generator
    _generator = np.random.default_rng(seed)
    return _generator


def get_generator() -> np.random.Generator:
    """The generator initializers draw from (replaced by :func:`manual_seed`)."""
    return _generator


def fan_in_bound(fan_in: int) -> float:
    """PyTorch's Linear init bound: ``kaiming_uniform_(a=sqrt(5))`` reduces to ``1/sqrt(fan_in)``."""
    return 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0


def uniform_(array: np.ndarray, low: float, high: float) -> np.ndarray:
    """Fill ``array`` in place with draws from U(low, high); returns it."""
    array[...] = _generator.uniform(low, high, size=array.shape)
    return array


def zeros_(array: np.ndarray) -> np.ndarray:
    """Fill ``array`` with zeros in place."""
    array[...] = 0
    return array


def ones_(array: np.ndarray) -> np.ndarray:
    """Fill ``array`` with ones in place."""
    array[...] = 1
    return array
