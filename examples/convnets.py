"""The convolutional example models: a ``Conv2d`` before a ``LazyLinear`` whose ``in_features``
nobody wants to work out by hand (shape inference finds it from the input spec).

(``lazyfuse.examples.mlp:SimpleNet`` is another seed model of the same name, an MLP.)
"""

from __future__ import annotations

import numpy as np

from lazyfuse import nn


class SimpleNet(nn.Module):
    """Conv2d(3, 64, 5) -> reshape (B, -1) -> LazyLinear(10); on 3x32x32 images
    ``fc.in_features`` resolves to 64 * 28 * 28 = 50176."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 64, 5)
        self.fc = nn.LazyLinear(10)

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = self.conv(x)
        x = x.reshape(x.shape[0], -1)
        return self.fc(x)


class FeatureExtractor(nn.Module):
    """Conv2d(3, 32, 3) -> ReLU -> Conv2d(32, 64, 3) -> ReLU -> view (B, -1) -> LazyLinear(10);
    on 3x32x32 images ``fc.in_features`` resolves to 64 * 28 * 28 = 50176."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 3),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3),
            nn.ReLU(),
        )
        self.fc = nn.LazyLinear(10)

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = self.features(x)
        x = x.view(x.size(0), -1)
        return self.fc(x)


class ConvBNNet(nn.Module):
    """A small conv block with every fusion the backends have: LazyConv2d -> LazyBatchNorm2d -> ReLU
    (one fused kernel) -> MaxPool2d -> flatten -> LazyLinear(10)."""

    def __init__(self, channels: int = 16) -> None:
        super().__init__()
        self.conv = nn.LazyConv2d(channels, 3, padding=1)
        self.bn = nn.LazyBatchNorm2d()
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.LazyLinear(10)

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = self.pool(self.relu(self.bn(self.conv(x))))
        return self.fc(x.flatten(1))
