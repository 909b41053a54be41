"""Elementwise modules: ``ReLU`` and ``Identity``."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import functional as F
from .module import Module, describe


class ReLU(Module):
    """``max(x, 0)`` elementwise; ``inplace=True`` overwrites the input array."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = bool(inplace)

    def forward(self, input: Any) -> np.ndarray:
        x = np.asarray(input)
        F._check_relu_dtype(x, f"{describe(self)}: relu")
        return F._relu(x, self.inplace)

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class Identity(Module):
    """Returns its input unchanged; constructor arguments are accepted and ignored (like PyTorch)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()

    def forward(self, input: Any) -> Any:
        return input
