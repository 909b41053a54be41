"""The example models of :mod:`lazyfuse.examples.mlp` written in PyTorch (needs the ``torch`` extra),
for the PyTorch frontend: ``lf.compile(TorchMLPWithBN(), ("N", 784))`` sizes their lazy layers in
the torch model itself, from the spec alone."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class TorchMLPWithBN(nn.Module):
    """MLPWithBN in torch: only ``fc1`` is sized up front; the rest is lazy."""

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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.flatten(x)
        x = self.relu1(self.bn1(self.fc1(x)))
        x = self.relu2(self.bn2(self.fc2(x)))
        return self.fc3(x)


class TorchDynamicNetwork(nn.Module):
    """Linear(20, 64) -> LazyBatchNorm1d -> ReLU -> Linear(64, 32) -> LazyBatchNorm1d -> ReLU."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(20, 64), nn.LazyBatchNorm1d(), nn.ReLU(),
                                    nn.Linear(64, 32), nn.LazyBatchNorm1d(), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class TorchDynamicMLP(nn.Module):
    """LazyLinear layers in a ``ModuleList`` built in a loop, ``F.relu`` between them."""

    def __init__(self, hidden_sizes: Sequence[int] = (128, 64), num_classes: int = 10) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.LazyLinear(size) for size in (*hidden_sizes, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.view(x.size(0), -1)
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = nn.functional.relu(x)
        return x
