"""lazyfuse: trace lazy PyTorch-style models into a shape-typed IR and compile fused kernels.

Public names are resolved lazily so that ``import lazyfuse`` stays cheap (Numba and the
backends load only when a model is compiled).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_PUBLIC: dict[str, tuple[str, str | None]] = {
    "manual_seed": ("lazyfuse.frontends.nn.init", "manual_seed"),
    "TensorSpec": ("lazyfuse.frontends.spec", "TensorSpec"),
    "Tensor": ("lazyfuse.frontends.nn.tensor", "Tensor"),
    "Graph": ("lazyfuse.ir.graph", "Graph"),
    "Node": ("lazyfuse.ir.graph", "Node"),
    "trace": ("lazyfuse.frontends.trace", "trace"),
    "infer_shapes": ("lazyfuse.api", "infer_shapes"),
    "compile": ("lazyfuse.api", "compile"),
    "summary": ("lazyfuse.api", "summary"),
    "export_onnx": ("lazyfuse.api", "export_onnx"),
    "import_onnx": ("lazyfuse.frontends.onnx.importer", "import_onnx"),
    "CompiledModule": ("lazyfuse.runtime", "CompiledModule"),
    "errors": ("lazyfuse.errors", None),
}

import sys  # noqa: E402

from lazyfuse.errors import *  # noqa: E402,F403  (the exception classes are public API)
from lazyfuse.errors import __all__ as _error_names  # noqa: E402
from lazyfuse.frontends import nn  # noqa: E402,F401  (NumPy only: cheap to import eagerly)

# `lazyfuse.nn` is the public path of `lazyfuse.frontends.nn`; registering the aliases lets
# `import lazyfuse.nn.functional as F` and `from lazyfuse.nn import Linear` work too.
for _name, _module in list(sys.modules.items()):
    if _name == "lazyfuse.frontends.nn" or _name.startswith("lazyfuse.frontends.nn."):
        sys.modules.setdefault("lazyfuse.nn" + _name[len("lazyfuse.frontends.nn"):], _module)

__all__ = sorted([*_PUBLIC, *_error_names, "nn", "__version__"])


def __getattr__(name: str) -> Any:
    try:
        module_name, attr = _PUBLIC[name]
    except KeyError:
        raise AttributeError(f"module 'lazyfuse' has no attribute {name!r}") from None
    module = importlib.import_module(module_name)
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
