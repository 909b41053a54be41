"""How the passes and ``CompiledModule`` read a model's modules, whatever frontend built it.

A ``lazyfuse.nn`` module has ``local_state(kind)`` and ``settings()``.  A frontend's view of a foreign
model (the PyTorch frontend's ``TorchModel``) supplies ``local_state_of(module, kind)`` and
``settings_of(module)`` instead, for modules that lack those methods.  These two functions pick the
reader once per model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lazyfuse.frontends.nn import Module


def _foreign(model: Any, method: str) -> bool:
    return not isinstance(model, Module) and hasattr(type(model), method)


def local_state_reader(model: Any) -> Callable[[Any, str], dict[str, Any]]:
    """``read(owner, kind)``: ``owner``'s own parameters (``kind="parameter"``) or buffers by name."""
    if _foreign(model, "local_state_of"):
        return model.local_state_of
    return lambda owner, kind: owner.local_state(kind)


def settings_reader(model: Any) -> Callable[[Any], dict[str, Any]]:
    """``read(module)``: the module's plain attributes (``eps``, ``momentum``, ``in_features``, ...)."""
    if _foreign(model, "settings_of"):
        return model.settings_of
    return lambda module: module.settings()
