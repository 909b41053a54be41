"""A module's member stores (``_parameters`` / ``_buffers`` / ``_modules``) and their read-only view.

A :class:`_MemberDict` counts every change in its owner's state version, direct writes such as
``module._parameters[name] = p`` included, and lets a failing eager call undo them.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Mapping
from typing import Any

from . import _undo
from .ownership import bump, hold


class _MemberDict(dict):
    """A member store; ``holds_modules`` for ``_modules``, whose entries learn their new owner."""

    # Class defaults: stores pickled by older versions are rebuilt without ``__init__``.
    _owner: weakref.ref | None = None
    holds_modules = False

    def __init__(self, owner: Any = None, holds_modules: bool = False, items: Any = ()) -> None:
        super().__init__(items)
        self.bind(owner, holds_modules)

    def bind(self, owner: Any, holds_modules: bool) -> None:
        """Make ``owner`` the module whose version this store's changes bump."""
        self._owner = weakref.ref(owner) if owner is not None else None
        self.holds_modules = holds_modules

    @property
    def owner(self) -> Any:
        """The module holding this store (``None`` while it is being unpickled or copied)."""
        return self._owner() if self._owner is not None else None

    def __reduce__(self) -> tuple:
        # Without the owner link (a weakref): the owning module binds the copy in __setstate__.
        return (type(self), (None, self.holds_modules), None, None, iter(self.items()))

    def _changed(self, added: Any = ()) -> None:
        owner = self.owner
        if owner is None:
            return
        if self.holds_modules:
            for value in added:
                hold(owner, value)
        bump(owner)

    def _save(self, key: Any) -> None:
        _undo.save_item(self, key, self.owner)

    def __setitem__(self, key: str, value: Any) -> None:
        self._save(key)
        super().__setitem__(key, value)
        self._changed((value,))

    def __delitem__(self, key: str) -> None:
        self._save(key)
        super().__delitem__(key)
        self._changed()

    def pop(self, *args: Any) -> Any:
        if args:
            self._save(args[0])
        try:
            return super().pop(*args)
        finally:
            self._changed()

    def popitem(self) -> tuple[str, Any]:
        _undo.save_items(self, self.owner)
        try:
            return super().popitem()
        finally:
            self._changed()

    def setdefault(self, key: str, default: Any = None) -> Any:
        self._save(key)
        try:
            return super().setdefault(key, default)
        finally:
            self._changed((self.get(key),))

    def update(self, *args: Any, **kwargs: Any) -> None:
        items = dict(*args, **kwargs)  # once: the arguments may be an iterator
        for key in items:
            self._save(key)
        try:
            super().update(items)
        finally:
            self._changed(items.values())

    def __ior__(self, other: Any) -> _MemberDict:
        self.update(other)
        return self

    def clear(self) -> None:
        _undo.save_items(self, self.owner)
        super().clear()
        self._changed()


def bound_store(owner: Any, store: Any, holds_modules: bool) -> _MemberDict:
    """``store`` (from ``__setstate__``) as a :class:`_MemberDict` bound to ``owner``.

    A plain dict (pickled before the stores counted changes) is converted; a store still bound to
    another live module (``copy.copy`` shares the stores) is copied, so that each module's changes
    count for that module only.
    """
    bound = store.owner if type(store) is _MemberDict else None
    if type(store) is not _MemberDict or (bound is not None and bound is not owner):
        return _MemberDict(owner, holds_modules, store)
    store.bind(owner, holds_modules)
    return store


class StateView(Mapping):
    """A read-only view of one module's parameters and buffers by name (``Module.local_state()``)."""

    __slots__ = ("_parameters", "_buffers")

    def __init__(self, parameters: dict, buffers: dict) -> None:
        self._parameters = parameters
        self._buffers = buffers

    def __getitem__(self, name: str) -> Any:
        if name in self._parameters:
            return self._parameters[name]
        return self._buffers[name]

    def get(self, name: str, default: Any = None) -> Any:
        if name in self._parameters:
            return self._parameters[name]
        return self._buffers.get(name, default)

    def __contains__(self, name: object) -> bool:
        return name in self._parameters or name in self._buffers

    def __iter__(self) -> Iterator[str]:
        yield from self._parameters
        yield from self._buffers

    def __len__(self) -> int:
        return len(self._parameters) + len(self._buffers)

    def __repr__(self) -> str:
        return f"StateView({dict(self)!r})"
