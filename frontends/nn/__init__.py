"""``lazyfuse.nn``: PyTorch-style modules that run eagerly on NumPy arrays and trace into the IR."""

from . import functional, init
from .activation import Identity, ReLU
from .batchnorm import BatchNorm1d, BatchNorm2d, LazyBatchNorm1d, LazyBatchNorm2d
from .container import ModuleList, Sequential
from .conv import Conv2d, LazyConv2d
from .flatten import Flatten
from .lazy import LazyModuleMixin
from .linear import LazyLinear, Linear
from .module import CALL_INTERCEPTOR, IncompatibleKeys, Module, describe, module_path
from .parameter import Parameter, UninitializedBuffer, UninitializedParameter, is_uninitialized
from .pooling import MaxPool2d
from .tensor import Tensor

__all__ = [
    "functional",
    "init",
    "Module",
    "Parameter",
    "Tensor",
    "UninitializedParameter",
    "UninitializedBuffer",
    "is_uninitialized",
    "LazyModuleMixin",
    "Linear",
    "LazyLinear",
    "BatchNorm1d",
    "LazyBatchNorm1d",
    "BatchNorm2d",
    "LazyBatchNorm2d",
    "Conv2d",
    "LazyConv2d",
    "MaxPool2d",
    "ReLU",
    "Identity",
    "Flatten",
    "Sequential",
    "ModuleList",
    "CALL_INTERCEPTOR",
    "IncompatibleKeys",
    "module_path",
    "describe",
]
