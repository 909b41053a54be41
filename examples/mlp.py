"""The example models from the docs, written like PyTorch models with ``lazyfuse.nn``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lazyfuse import nn


class MLPWithBN(nn.Module):
    """MNIST-style MLP with batch norm; accepts ``(N, 28, 28)`` or ``(N, 784)``.

    Only ``fc1`` is sized up front; the other layers learn their input size lazily.
    """

    def __init__(self) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(784, 256)
        self.bn1 = nn.LazyBatchNorm1d()
        self.relu1 = nn.ReLU()
        self.fc2 = nn.LazyLinear(128)
        self.bn2 = nn.LazyBatchNorm1d()
        self.relu2 = nn.ReLU()
        self.fc3 = nn.LazyLinear(10)

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = self.flatten(x)
        x = self.relu1(self.bn1(self.fc1(x)))
        x = self.relu2(self.bn2(self.fc2(x)))
        return self.fc3(x)


class DynamicNetwork(nn.Module):
    """Linear(20, 64) -> LazyBatchNorm1d -> ReLU -> Linear(64, 32) -> LazyBatchNorm1d -> ReLU."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(20, 64),
            nn.LazyBatchNorm1d(),
            nn.ReLU(),
            nn.Linear(64, 32),
            nn.LazyBatchNorm1d(),
            nn.ReLU(),
        )

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self.layers(x)


class DynamicMLP(nn.Module):
    """LazyLinear layers ``fc0 .. fc{n}`` created in a loop, ReLU between them (functional)."""

    def __init__(self, hidden_sizes: Sequence[int] = (128, 64), num_classes: int = 10) -> None:
        super().__init__()
        sizes = [*hidden_sizes, num_classes]
        self.num_layers = len(sizes)
        for i, size in enumerate(sizes):
            setattr(self, f"fc{i}", nn.LazyLinear(size))

    def forward(self, x: np.ndarray) -> np.ndarray:
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
            if i < self.num_layers - 1:
                x = nn.functional.relu(x)
        return x


def SimpleNet() -> nn.Sequential:  # noqa: N802 - a factory named like the model it builds
    """LazyLinear(32) -> ReLU -> LazyLinear(1)."""
    return nn.Sequential(nn.LazyLinear(32), nn.ReLU(), nn.LazyLinear(1))
