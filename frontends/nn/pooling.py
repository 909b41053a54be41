"""``MaxPool2d``: the max over sliding windows of ``(N, C, H, W)`` inputs."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import functional as F
from ._conv_args import PoolArgs, pool_args
from .module import Module, describe


class MaxPool2d(Module):
    """PyTorch's MaxPool2d on batched ``(N, C, H, W)`` float inputs.

    ``kernel_size``, ``stride`` (``None``: ``kernel_size``), ``padding`` (``-inf``, at most half the
    kernel) and ``dilation`` are ints or pairs, stored as given like torch.  NaN propagates.
    ``return_indices=True`` is not supported.
    """

    def __init__(
        self,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] | None = None,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        return_indices: bool = False,
        ceil_mode: bool = False,
    ) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding = padding
        self.dilation = dilation
        self.return_indices = return_indices
        self.ceil_mode = ceil_mode
        self.pool_args(type(self).__name__)

    def pool_args(self, where: str) -> PoolArgs:
        """The normalized arguments, checked (the settings may have been reassigned)."""
        return pool_args(where, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode,
                         self.return_indices)

    def forward(self, input: Any) -> np.ndarray:
        where = f"{describe(self)}: max_pool2d"
        args = self.pool_args(where)
        x = F._input_4d(input, where)
        F._check_max_pool2d(x, args, where)
        return F._max_pool2d(x, args)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")
