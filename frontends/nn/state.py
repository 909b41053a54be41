"""``load_state_dict``: validate everything, then copy in place (atomic)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from lazyfuse.errors import StateDictError

from . import _undo
from .lazy import LazyModuleMixin
from .module import IncompatibleKeys, Module, describe
from .ownership import bump
from .parameter import is_uninitialized


def _shape(a: np.ndarray) -> tuple[int, ...]:
    return tuple(int(d) for d in a.shape)


def _local_entries(mod: Module) -> dict[str, tuple[dict, Any]]:
    """name -> (store, current value) for the module's own parameters and persistent buffers."""
    out: dict[str, tuple[dict, Any]] = {}
    for name, value in mod._parameters.items():
        if value is not None:
            out[name] = (mod._parameters, value)
    for name, value in mod._buffers.items():
        if value is not None and name not in mod._non_persistent_buffers:
            out[name] = (mod._buffers, value)
    return out


def _convert(value: Any) -> np.ndarray | None:
    """``None`` for an uninitialized marker, else an ndarray (raises on junk)."""
    if is_uninitialized(value):
        return None
    return np.asarray(value)


def load_state_dict(root: Module, state_dict: Mapping[str, Any], strict: bool = True) -> IncompatibleKeys:
    """Load ``state_dict`` into ``root``.

    Rules: with ``strict``, missing and unexpected keys are errors; shape mismatches always are.
    Initialized targets get the values copied in place (``np.copyto``, same-kind casting), so any
    holder of the arrays sees them; each module written into gets a new ``state_version`` (a backend
    that keeps copies of the arrays, like ``cuda``, uploads them again).  A lazy module whose
    placeholders receive real arrays is resolved from their shapes (all its placeholders must be
    covered).  Errors are collected and raised together as one :class:`StateDictError` before
    anything is written.
    """
    if not isinstance(state_dict, Mapping):
        raise StateDictError(f"expected a mapping of name -> array, got {type(state_dict).__name__}")
    errors: list[str] = []
    expected: set[str] = set()
    plans: list[tuple[Module, dict | None, list[tuple[dict, str, np.ndarray]]]] = []

    for mod_prefix, mod in root.named_modules():
        pre = f"{mod_prefix}." if mod_prefix else ""
        entries = _local_entries(mod)
        expected.update(pre + n for n in entries)
        sources: dict[str, np.ndarray | None] = {}
        for name in entries:
            if pre + name in state_dict:
                try:
                    sources[name] = _convert(state_dict[pre + name])
                except Exception as exc:  # any junk value is a user error
                    errors.append(f"cannot convert '{pre}{name}' to an array: {exc}")
        if not sources:
            continue
        dims = None
        lazy_targets = [n for n, (_, v) in entries.items() if is_uninitialized(v)]
        if lazy_targets and isinstance(mod, LazyModuleMixin):
            try:
                dims = mod._dims_from_state(sources, pre)
            except StateDictError as exc:
                errors.append(str(exc))
                continue
        shapes = mod.placeholder_shapes(dims) if dims is not None else {}
        if dims is not None:
            uncovered = [pre + n for n in lazy_targets if sources.get(n) is None]
            if uncovered:
                errors.append(
                    f"cannot resolve {describe(mod)} from the state_dict: "
                    f"{', '.join(uncovered)} missing or uninitialized"
                )
                continue
        copies: list[tuple[dict, str, np.ndarray]] = []
        for name, src in sources.items():
            store, target = entries[name]
            key = pre + name
            if src is None:
                if is_uninitialized(target):
                    continue  # an unresolved entry onto an unresolved module: nothing to do
                errors.append(
                    f"cannot load the uninitialized entry '{key}' into the initialized array "
                    f"of shape {_shape(target)} in {describe(mod)}"
                )
                continue
            if is_uninitialized(target):
                if dims is None:
                    errors.append(f"cannot load '{key}' into the uninitialized {describe(mod)}")
                    continue
                want = shapes[name]
            else:
                want = _shape(target)
            if _shape(src) != want:
                errors.append(
                    f"size mismatch for {key}: copying an array of shape {_shape(src)} from the "
                    f"state_dict, the shape in the current model ({describe(mod)}) is {want}"
                )
                continue
            if src.dtype.kind not in "biuf" or not np.can_cast(src.dtype, target.dtype, "same_kind"):
                errors.append(
                    f"dtype mismatch for {key}: cannot copy {src.dtype} into {target.dtype} ({describe(mod)})"
                )
                continue
            copies.append((store, name, src))
        plans.append((mod, dims, copies))

    missing = [k for k in root.state_dict() if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    if strict:
        if missing:
            errors.insert(0, "Missing key(s) in state_dict: " + ", ".join(f'"{k}"' for k in missing) + ".")
        if unexpected:
            errors.insert(
                0, "Unexpected key(s) in state_dict: " + ", ".join(f'"{k}"' for k in unexpected) + "."
            )
    if errors:
        raise StateDictError(
            f"Error(s) in loading state_dict for {type(root).__name__} (nothing was loaded):\n\t"
            + "\n\t".join(errors)
        )

    for mod, dims, copies in plans:
        if dims is not None:
            mod._materialize(dims, init=False)
        for store, name, src in copies:
            _undo.save_array(store[name])
            np.copyto(store[name], src, casting="same_kind")
        if copies:
            bump(mod)
    return IncompatibleKeys(missing, unexpected)
