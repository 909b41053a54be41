"""Shared machinery of lazy modules (``LazyLinear``, ``LazyBatchNorm1d``).

A lazy module holds :class:`UninitializedParameter` / :class:`UninitializedBuffer` placeholders and a
zero size attribute until its size is known: from the first eager input, from static shape
inference (``materialize(**dims)``), or from ``load_state_dict`` with real arrays.  It then allocates
its arrays and switches ``__class__`` to ``cls_to_become`` (``LazyLinear`` becomes ``Linear``).
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np

from lazyfuse.errors import ConfigError

from .module import describe


class LazyModuleMixin:
    """Mixin placed before the concrete class: ``class LazyLinear(LazyModuleMixin, Linear)``.

    Subclasses define ``cls_to_become``, ``lazy_dims`` (the size attribute names),
    ``_dims_from_input(*args)`` (validate the first input completely, return the dims),
    ``_allocate(dims, init)``, ``_shapes_for(dims)`` and ``_dims_from_state(sources)``.
    """

    cls_to_become: type | None = None
    lazy_dims: tuple[str, ...] = ()

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        # Everything is validated before anything is allocated, so a failing first call leaves the
        # module lazy and the random generator untouched.
        dims = self._dims_from_input(*args, **kwargs)
        self.materialize(**dims)
        return self.forward(*args, **kwargs)  # now the concrete class's forward

    def materialize(self, **dims: int) -> Any:
        """Allocate and initialize exactly like an eager first forward would, then become
        ``cls_to_become``.  Returns the (same) module."""
        if set(dims) != set(self.lazy_dims):
            raise ConfigError(
                f"{describe(self)}: materialize expects keyword argument(s) {', '.join(self.lazy_dims)}, "
                f"got {', '.join(sorted(dims)) or 'none'}"
            )
        for name, value in dims.items():
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ConfigError(
                    f"{describe(self)}: materialize: {name} must be a positive int, got {value!r}"
                )
        self._materialize({k: int(v) for k, v in dims.items()}, init=True)
        return self

    def _materialize(self, dims: Mapping[str, int], init: bool) -> None:
        self._allocate(dims, init)
        self.__class__ = self.cls_to_become

    # subclass hooks -------------------------------------------------------------------------
    def _dims_from_input(self, *args: Any, **kwargs: Any) -> dict[str, int]:
        raise NotImplementedError

    def _allocate(self, dims: Mapping[str, int], init: bool) -> None:
        raise NotImplementedError

    def _shapes_for(self, dims: Mapping[str, int]) -> dict[str, tuple[int, ...]]:
        raise NotImplementedError

    def _dims_from_state(
        self, sources: Mapping[str, np.ndarray | None], prefix: str
    ) -> dict[str, int] | None:
        """Dims implied by the real arrays in ``sources`` (``None`` = marker); ``None`` if all are markers.

        Raises :class:`StateDictError` when the arrays are inconsistent with the module.
        """
        raise NotImplementedError
