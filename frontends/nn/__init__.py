"""``lazyfuse.nn``: PyTorch-style modules that run eagerly on NumPy arrays and trace into the IR."""

from . import functional, init
from .activation import Identity, ReLU
from .batchnorm import BatchNorm1d, LazyBatchNorm1d
from .container import ModuleList, Sequential
from .flatten import Flatten
from .lazy import LazyModuleMixin
from .linear import LazyLinear, Linear
from .module import CALL_INTERCEPTOR, IncompatibleKeys, Module, describe, module_path
from .parameter import Parameter, UninitializedBuffer, UninitializedParameter, is_uninitialized
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
