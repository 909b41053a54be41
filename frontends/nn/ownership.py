"""Who holds a module: the parent link behind module paths, and the owners a change must reach.

Every module keeps, in its ``__dict__``:

- ``_parent`` / ``_name``: a weak link to the first live owner that registered it, and the name it
  has there; :func:`module_path` walks these up to the root.
- ``_owners``: every module that registered it (weakly; a submodule shared by two models has two).
- ``_version``: its state version.  :func:`bump` gives the module, and every module above it
  through all its owners, a new version whenever the module changes what it holds.
"""

from __future__ import annotations

import itertools
import weakref
from typing import Any

from . import _undo

# Versions come from one process-wide sequence, so a module never gets a number it held before
# (``next`` on a count is atomic in CPython: no lock, no two bumps handing out the same number).
new_version = itertools.count(1).__next__


def new_owners() -> dict[int, weakref.ref]:
    """An empty owner set: ``id(owner) -> weakref.ref(owner)`` (modules need not be hashable; a dead
    entry is skipped, and overwritten if a new owner gets its id)."""
    return {}


def hold(owner: Any, child: Any) -> None:
    """Record that ``owner`` holds ``child`` in its ``_modules`` (no-op for non-modules)."""
    owners = getattr(child, "__dict__", {}).get("_owners")
    if owners is not None:
        key = id(owner)
        # The entry goes when the owner dies (a temporary ``seq[1:]``): owner sets must not grow
        # with every slice, since each change walks them.
        owners[key] = weakref.ref(owner, lambda ref: owners.get(key) is ref and owners.pop(key, None))


def _still_holds(owner: Any, child: Any) -> bool:
    """Owner sets only grow (removals and undone writes leave entries behind): check the owner's
    store, by the child's own name first (almost always a hit), then by scanning."""
    modules = owner.__dict__.get("_modules")
    if modules is None:
        return False
    if modules.get(child.__dict__.get("_name")) is child:
        return True
    return any(m is child for m in modules.values())


def bump(module: Any) -> None:
    """Give ``module`` and every module holding it (transitively, each once) a new state version."""
    m = module
    for _ in range(_CHAIN):  # the usual tree: one owner per module, walked up without bookkeeping
        d = m.__dict__
        d["_version"] = new_version()
        owners = d.get("_owners")
        if not owners:
            return
        if len(owners) != 1:
            break
        for ref in owners.values():
            owner = ref()
        if owner is None or not _still_holds(owner, m):
            return
        m = owner
    _bump_all(m)  # a shared module (several owners), or a chain this deep (maybe a cycle)


# How far :func:`bump` follows single owners before it switches to the general walk.
_CHAIN = 64


def _bump_all(module: Any) -> None:
    """:func:`bump` for any ownership graph: every owner once, cycles included."""
    d = module.__dict__
    d["_version"] = new_version()
    if not d.get("_owners"):
        return
    stack = [module]
    seen = {id(module)}  # a module held twice, or a cycle of modules, is bumped once
    while stack:
        m = stack.pop()
        for ref in list(m.__dict__.get("_owners", {}).values()):
            o = ref()
            if o is None or id(o) in seen or not _still_holds(o, m):
                continue
            seen.add(id(o))
            o.__dict__["_version"] = new_version()
            stack.append(o)


def adopt(parent: Any, name: str, child: Any) -> None:
    """Make ``parent`` the path parent of ``child`` (registered as ``name``), unless another live
    owner still holds it: slicing a Sequential re-registers the children in a temporary container,
    and that must not change their paths in the original model."""
    ref = child.__dict__.get("_parent")
    current = ref() if ref is not None else None
    if current is not None and current is not parent and current._modules.get(child._name) is child:
        return
    _undo.save_item(child.__dict__, "_parent")
    _undo.save_item(child.__dict__, "_name")
    child.__dict__["_parent"] = weakref.ref(parent)
    child.__dict__["_name"] = name


def module_path(module: Any) -> str:
    """Dotted path of ``module`` from its root (``"layers.2"``); ``""`` for a root module.

    Modules learn their parent when they are registered (PyTorch modules do not know it).  A module
    registered in several live places reports the first owner that still holds it, so temporary
    containers such as ``seq[1:]`` do not change the paths in the original model.
    """
    parts: list[str] = []
    seen: set[int] = set()
    m = module
    while m is not None and id(m) not in seen:
        seen.add(id(m))
        parent_ref = m.__dict__.get("_parent")
        parent = parent_ref() if parent_ref is not None else None
        if parent is None or parent._modules.get(m._name) is not m:
            break
        parts.append(m._name)
        m = parent
    return ".".join(reversed(parts))


def describe(module: Any) -> str:
    """How error messages name a module: ``module 'fc1' (Linear)``, or ``module Linear`` for a root."""
    path = module_path(module)
    cls = type(module).__name__
    return f"module '{path}' ({cls})" if path else f"module {cls}"
