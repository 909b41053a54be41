"""``CallCache``: what one compiled call found out about the model, reused while nothing changed.

A compiled call reads the model's arrays and ``training`` flags, checks them, and runs.  While the
model's ``state_version`` is unchanged all of that holds again, so the next call reuses it; when the
inputs also look like the last call's (same shapes, strides, dtypes), the call goes straight to the
backend's call bound to this state (``bound``), skipping the input checks too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

InputSignature = tuple[tuple[tuple[int, ...], tuple[int, ...], np.dtype], ...]


def input_signature(arrays: Sequence[np.ndarray]) -> InputSignature:
    """Shape, strides and dtype of each input: equal signatures take the same compiled code."""
    return tuple((a.shape, a.strides, a.dtype) for a in arrays)


@dataclass(slots=True)
class CallCache:
    """The model state one compiled call used, valid while ``model.state_version == version``.

    ``state`` maps each param/buffer target to its array, ``training`` each module path the graph
    follows to its flag, ``updated`` holds the buffers a call in this mode updates in place.
    ``seen`` is the last checked call's input signature; ``replay`` the pair (signature, backend
    call with state and flags fixed for such inputs), made on the second checked call in a row with
    that signature (calls whose shapes keep changing never pay for binding).  ``replay`` is one
    tuple, read once and replaced whole, so a call racing another thread's never sees a signature
    with another signature's call.
    """

    version: int
    state: dict[str, np.ndarray]
    training: dict[str | None, bool]
    updated: tuple[np.ndarray, ...]
    seen: InputSignature | None = None
    replay: tuple[InputSignature, Callable[[Sequence[np.ndarray]], Any]] | None = None
    # Each array the model holds (the Parameter objects, not the views in ``state``) with the shape
    # it was checked at: ``p.shape = ...`` reshapes it in place without moving ``state_version``.
    shapes: tuple[tuple[np.ndarray, tuple[int, ...]], ...] = ()

    def reshaped(self) -> bool:
        """Whether a state array's shape changed in place since it was checked."""
        for a, shape in self.shapes:
            if a.shape != shape:
                return True
        return False

    def has_read_only_state(self) -> bool:
        return any(a is not None and not a.flags.writeable for a in self.state.values())
