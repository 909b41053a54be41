"""Small models shared by the trace/pass/backend tests.

Golden IR tests print ``models_for_tests.py:LINE`` locations: keep the line numbers of the
``forward`` bodies below stable (add new models at the end of the file).
"""

from lazyfuse import nn
from lazyfuse.frontends.nn import functional as F


class ConvLikeBN(nn.Module):  # (N, C, L) input
    def __init__(self):
        super().__init__()
        self.bn = nn.LazyBatchNorm1d()
        self.act = nn.ReLU()

    def forward(self, x):
        y = self.bn(x)
        return self.act(y)


class FlattenIntoLazy(nn.Module):  # a lazy size that would depend on the symbol L
    def __init__(self):
        super().__init__()
        self.flat = nn.Flatten()
        self.fc = nn.LazyLinear(4)

    def forward(self, x):
        return self.fc(self.flat(x))


class Mismatch(nn.Module):  # Linear(784, ...) fed 512 features
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 16)

    def forward(self, x):
        return self.fc1(x)


class Reshapes(nn.Module):  # reshape / view / flatten on symbolic dims
    def __init__(self):
        super().__init__()
        self.fc = nn.LazyLinear(4)

    def forward(self, x):
        h = x.reshape(x.shape[0], -1)
        h = h.view(h.size(0), 2, x.shape[1] * x.shape[2] // 2)
        return self.fc(F.relu(h.flatten(1)))


class Branchy(nn.Module):  # control flow on a traced value
    def __init__(self):
        super().__init__()
        self.fc = nn.LazyLinear(3)

    def forward(self, x):
        if x.sum() > 0:
            return self.fc(x)
        return x


class UsesInt(nn.Module):  # int() of a symbolic dim
    def forward(self, x):
        n = int(x.shape[0])
        return x.reshape(n, -1)


class UsesLen(nn.Module):
    def forward(self, x):
        return x.reshape(len(x), -1)


class UsesBool(nn.Module):
    def forward(self, x):
        return x if x else x


class Residual(nn.Module):  # `+`, nested module, ModuleList loop, Identity
    def __init__(self):
        super().__init__()
        self.inp = nn.LazyLinear(6)
        self.blocks = nn.ModuleList([Block(), Block()])
        self.skip = nn.Identity()
        self.head = nn.Sequential(nn.LazyBatchNorm1d(momentum=None), nn.ReLU(), nn.LazyLinear(2))

    def forward(self, x):
        h = F.relu(self.inp(x))
        for block in self.blocks:
            h = block(h) + self.skip(h)
        return self.head(h)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 6)
        self.bn = nn.BatchNorm1d(6)

    def forward(self, x):
        return F.relu(self.bn(self.fc(x)))


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.LazyLinear(4)
        self.b = nn.LazyLinear(4)

    def forward(self, x, y):
        return self.a(x) + self.b(y), self.a(x)


class Functional(nn.Module):  # nn.functional with the module's own arrays
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(5, 3)

    def forward(self, x):
        return F.relu(F.linear(x, self.fc.weight, self.fc.bias))


class Stem(nn.Module):
    """A container whose forward ends in a functional relu (issue #16's labelling report)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.LazyLinear(4)
        self.bn = nn.LazyBatchNorm1d()

    def forward(self, x):
        return F.relu(self.bn(self.fc(x)))


class ResBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return x + F.relu(self.fc(x))


class StemNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = Stem()
        self.block = ResBlock()
        self.head = nn.Sequential(nn.Linear(4, 2))

    def forward(self, x):
        return self.head(self.block(self.stem(x)))
