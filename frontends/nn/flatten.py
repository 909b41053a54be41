"""``Flatten``: merge a range of dims (default: all but the batch dim)."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import functional as F
from .module import Module, describe


class Flatten(Module):
    """Flatten dims ``start_dim..end_dim`` into one; ``(N, 28, 28)`` becomes ``(N, 784)``."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim = int(start_dim)
        self.end_dim = int(end_dim)

    def forward(self, input: Any) -> np.ndarray:
        return F._flatten(np.asarray(input), self.start_dim, self.end_dim, f"{describe(self)}: flatten")

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"
