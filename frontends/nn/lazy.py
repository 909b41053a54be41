"""Shared machinery of lazy modules (``LazyLinear``, ``LazyBatchNorm1d``, ``LazyConv2d``, ...).

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

from lazyfuse.errors import ConfigError, StateDictError
from lazyfuse.ir.types import dim_mul

from .module import describe
from .parameter import is_uninitialized

LazyDims = Mapping[str, Mapping[str, int]]


class LazyModuleMixin:
    """Mixin placed before the concrete class: ``class LazyLinear(LazyModuleMixin, Linear)``.

    Subclasses define ``cls_to_become``, ``lazy_dims``, ``_dims_from_input(*args)`` (validate
    the first input completely, return the dims), ``_allocate(dims, init)`` and
    ``_dims_from_state(sources)``; the concrete class defines ``_array_shapes()`` (each array's
    shape from its settings; it comes after the mixin in the MRO, so the mixin cannot declare it).

    ``lazy_dims`` is the one declaration of where each lazy size lives: size attribute -> {array
    name: the axis of that array it is}, e.g. ``{"in_features": {"weight": 1}}``.  The tracer's
    placeholder types, static materialization and ``load_state_dict`` all read it (through
    :meth:`placeholder_shapes` and :meth:`dims_from_shapes`).
    """

    cls_to_become: type | None = None
    lazy_dims: LazyDims = {}

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

    def placeholder_shapes(self, dims: Mapping[str, int | None] | None = None) -> dict[str, tuple]:
        """The shape of each uninitialized array once the lazy sizes are ``dims``; a size not given
        (all of them by default) is ``None`` in the shapes."""
        dims = dims or {}
        # A lazy class without the hook has no layout the tracer can use (it says so).
        shapes = self._array_shapes() if hasattr(self, "_array_shapes") else {}
        out: dict[str, tuple] = {}
        for name, value in self.local_state().items():
            if not is_uninitialized(value) or name not in shapes:
                continue
            shape = list(shapes[name])
            for dim, axes in self.lazy_dims.items():
                if name in axes:
                    size = dims.get(dim)
                    shape[axes[name]] = None if size is None else size // self.lazy_scale(dim)
            out[name] = tuple(shape)
        return out

    def dims_from_shapes(self, name: str, shape: tuple) -> dict[str, object]:
        """The lazy sizes array ``name`` of shape ``shape`` determines (the entries of ``shape``
        times :meth:`lazy_scale`, which may be ``None`` or symbolic; ``None`` where ``shape`` is
        too short)."""
        out: dict[str, object] = {}
        for dim, axes in self.lazy_dims.items():
            if name in axes:
                entry = shape[axes[name]] if axes[name] < len(shape) else None
                scale = self.lazy_scale(dim)
                out[dim] = entry if entry is None or scale == 1 else dim_mul(entry, scale)
        return out

    def lazy_scale(self, dim: str) -> int:
        """How many units of size ``dim`` one entry along its array axes stands for: 1, except
        where the axis holds a fraction of the size (a grouped convolution's weight axis 1 is
        ``in_channels / groups``)."""
        return 1

    def _loaded_weight(self, sources: Mapping[str, Any], prefix: str) -> Any:
        """The real ``weight`` among a state_dict's ``sources`` for this module (``None`` when every
        entry is an uninitialized marker); a :class:`StateDictError` when it is missing while
        other entries are real arrays."""
        weight = sources.get("weight")
        if weight is None and any(v is not None for v in sources.values()):
            raise StateDictError(
                f"cannot resolve {describe(self)}: '{prefix}weight' is missing or "
                "uninitialized while other entries of the module are loaded"
            )
        return weight

    # subclass hooks -------------------------------------------------------------------------
    def _dims_from_input(self, *args: Any, **kwargs: Any) -> dict[str, int]:
        raise NotImplementedError

    def _allocate(self, dims: Mapping[str, int], init: bool) -> None:
        raise NotImplementedError

    def _dims_from_state(
        self, sources: Mapping[str, np.ndarray | None], prefix: str
    ) -> dict[str, int] | None:
        """Dims implied by the real arrays in ``sources`` (``None`` = marker); ``None`` if all are markers.

        Raises :class:`StateDictError` when the arrays are inconsistent with the module.
        """
        raise NotImplementedError
