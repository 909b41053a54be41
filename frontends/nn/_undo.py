"""The undo journal that makes a failed eager call change nothing.

The outermost eager ``Module.__call__`` of a thread (or task) opens a :class:`Journal`.  Every write
lazyfuse makes while it is open -- module attributes and classes, member-store entries, in-place
buffer updates, initializer draws -- first saves the value it is about to replace, once per entry.
If the call raises, the journal puts those entries back and the error propagates.  A call that
succeeds pays only for saving what it actually wrote, and an undo touches only the entries this
call wrote, never other entries another thread may be writing.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import Any

import numpy as np

MISSING = object()


class Journal:
    """Saved values keyed by object id (and entry name); the records hold the objects, so their
    ids stay unique while the journal is open."""

    __slots__ = ("arrays", "items", "orders", "classes", "members", "others", "modules")

    def __init__(self) -> None:
        self.arrays: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.items: dict[tuple[int, Any], tuple[dict, Any, Any]] = {}
        self.orders: dict[int, tuple[dict, tuple]] = {}
        self.classes: dict[int, tuple[Any, type]] = {}
        self.members: dict[tuple[int, Any], tuple[set, Any, bool]] = {}
        self.others: dict[Any, Callable[[], None]] = {}
        # The modules whose held state a restore changes: their state versions move on undo.
        self.modules: dict[int, Any] = {}

    def undo(self) -> None:
        """Put every saved entry back as it was before the call."""
        for array, saved in self.arrays.values():
            if array.flags.writeable:
                np.copyto(array, saved)
        for mapping, key, old in self.items.values():
            if old is MISSING:
                dict.pop(mapping, key, None)
            elif mapping.get(key, MISSING) is not old:
                dict.__setitem__(mapping, key, old)
        for mapping, order in self.orders.values():
            _restore_order(mapping, order)
        for obj, cls in self.classes.values():
            object.__setattr__(obj, "__class__", cls)
        for names, name, was_in in self.members.values():
            (names.add if was_in else names.discard)(name)
        for restore in self.others.values():
            restore()
        if self.modules:
            from .ownership import bump  # ownership.py imports this file

            for module in self.modules.values():
                bump(module)  # the raw writes above did not count themselves


def _restore_order(mapping: dict, order: tuple) -> None:
    """Re-inserted keys go last in a dict: put them back in ``order`` (parameter order matters)."""
    known = set(order)
    want = [k for k in order if k in mapping] + [k for k in mapping if k not in known]
    if list(mapping) != want:
        items = [(k, mapping[k]) for k in want]
        dict.clear(mapping)
        dict.update(mapping, items)


_ACTIVE: contextvars.ContextVar[Journal | None] = contextvars.ContextVar(
    "lazyfuse_undo_journal", default=None
)


def active() -> bool:
    """True inside an eager call that will be undone on failure."""
    return _ACTIVE.get() is not None


def call_undoable(fn: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
    """``fn(*args, **kwargs)`` with a journal open; on any exception undo its writes and re-raise."""
    journal = Journal()
    token = _ACTIVE.set(journal)
    try:
        return fn(*args, **kwargs)
    except BaseException:
        _ACTIVE.reset(token)
        token = None
        journal.undo()
        raise
    finally:
        if token is not None:
            _ACTIVE.reset(token)


def save_array(array: Any) -> None:
    """Before an in-place write into ``array`` (running statistics, initializers)."""
    journal = _ACTIVE.get()
    if journal is not None and id(array) not in journal.arrays and isinstance(array, np.ndarray):
        journal.arrays[id(array)] = (array, array.copy())


def _touch(journal: Journal, owner: Any) -> None:
    if owner is not None:
        journal.modules.setdefault(id(owner), owner)


def save_item(mapping: dict, key: Any, owner: Any = None) -> None:
    """Before ``mapping[key]`` is set or deleted (a member store or a module's ``__dict__``);
    ``owner`` is the module whose held state that changes (if any)."""
    journal = _ACTIVE.get()
    if journal is None:
        return
    _touch(journal, owner)
    if (id(mapping), key) in journal.items:
        return
    journal.items[(id(mapping), key)] = (mapping, key, mapping.get(key, MISSING))
    if id(mapping) not in journal.orders:
        journal.orders[id(mapping)] = (mapping, tuple(mapping))


def save_items(mapping: dict, owner: Any = None) -> None:
    """Before a write that may touch every entry (``clear``, ``popitem``)."""
    if _ACTIVE.get() is not None:
        for key in list(mapping):
            save_item(mapping, key, owner)


def save_class(obj: Any) -> None:
    """Before ``obj.__class__`` is reassigned (a lazy module becoming its concrete class)."""
    journal = _ACTIVE.get()
    if journal is not None and id(obj) not in journal.classes:
        journal.classes[id(obj)] = (obj, type(obj))
        _touch(journal, obj)


def save_member(names: set, name: Any, owner: Any = None) -> None:
    """Before ``name`` is added to or discarded from the set ``names`` (held by module ``owner``)."""
    journal = _ACTIVE.get()
    if journal is None:
        return
    _touch(journal, owner)
    if (id(names), name) not in journal.members:
        journal.members[(id(names), name)] = (names, name, name in names)


def save(key: Any, make_restorer: Callable[[], Callable[[], None]]) -> None:
    """Before any other write: register ``make_restorer()`` under ``key``, once per call."""
    journal = _ACTIVE.get()
    if journal is not None and key not in journal.others:
        journal.others[key] = make_restorer()
