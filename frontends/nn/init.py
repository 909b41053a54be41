"""Parameter initialization and the module-level random generator behind ``lazyfuse.manual_seed``."""

from __future__ import annotations

import math

import numpy as np

from lazyfuse.errors import ConfigError

from . import _undo

_generator: np.random.Generator = np.random.default_rng()
_SEED_MIN, _SEED_MAX = -(2**63), 2**64 - 1  # torch.manual_seed's range


def manual_seed(seed: int) -> np.random.Generator:
    """Reseed the generator every ``lazyfuse.nn`` initializer draws from; returns it.

    Like ``torch.manual_seed``, ``seed`` is an int in [-2**63, 2**64 - 1] and a negative seed
    stands for its 64-bit two's complement (``-1`` seeds as ``2**64 - 1``).
    """
    global _generator
    seed = _check_seed(seed)
    _save_generator()
    _generator = np.random.default_rng(seed)
    return _generator


def _check_seed(seed: object) -> int:
    """``seed`` as a non-negative 64-bit int, or a :class:`ConfigError` naming what was given."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, (bool, np.bool_)):
        raise ConfigError(f"manual_seed: seed must be an int, got {type(seed).__name__} {seed!r}")
    if not _SEED_MIN <= int(seed) <= _SEED_MAX:
        raise ConfigError(f"manual_seed: seed must be in [-2**63, 2**64 - 1], got {seed}")
    return int(seed) % 2**64


def get_generator() -> np.random.Generator:
    """The generator initializers draw from (replaced by :func:`manual_seed`)."""
    return _generator


def _save_generator() -> None:
    """Let a failing eager call put the generator (object and state) back as it was."""

    def make():
        gen, state = _generator, _generator.bit_generator.state

        def restore() -> None:
            global _generator
            _generator = gen
            gen.bit_generator.state = state

        return restore

    _undo.save(("generator",), make)


def fan_in_bound(fan_in: int) -> float:
    """PyTorch's Linear init bound: ``kaiming_uniform_(a=sqrt(5))`` reduces to ``1/sqrt(fan_in)``."""
    return 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0


def uniform_(array: np.ndarray, low: float, high: float) -> np.ndarray:
    """Fill ``array`` in place with draws from U(low, high); returns it."""
    _save_generator()
    _undo.save_array(array)
    array[...] = _generator.uniform(low, high, size=array.shape)
    return array


def zeros_(array: np.ndarray) -> np.ndarray:
    """Fill ``array`` with zeros in place."""
    _undo.save_array(array)
    array[...] = 0
    return array


def ones_(array: np.ndarray) -> np.ndarray:
    """Fill ``array`` with ones in place."""
    _undo.save_array(array)
    array[...] = 1
    return array
