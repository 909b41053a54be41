"""``Flatten``: merge a range of dims (default: all but the batch dim)."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import functional as F
from ._checks import check_dim
from .module import Module, describe


class Flatten(Module):
    """Flatten dims ``start_dim..end_dim`` into one; ``(N, 28, 28)`` becomes ``(N, 784)``."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim = check_dim("Flatten", "start_dim", start_dim)
        self.end_dim = check_dim("Flatten", "end_dim", end_dim)

    def dims(self, where: str) -> tuple[int, int]:
        """``(start_dim, end_dim)``, re-checked (they may have been reassigned since construction)."""
        return check_dim(where, "start_dim", self.start_dim), check_dim(where, "end_dim", self.end_dim)

    def forward(self, input: Any) -> np.ndarray:
        where = f"{describe(self)}: flatten"
        return F._flatten(np.asarray(input), *self.dims(where), where)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"
