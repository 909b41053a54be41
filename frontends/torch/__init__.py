"""The PyTorch frontend: a real ``torch.nn.Module`` in, the same :class:`~lazyfuse.ir.graph.Graph`
out as the ``lazyfuse.nn`` tracer builds.

:func:`trace_torch` reads the module with ``torch.fx`` (the supported layers stay leaves, so fx runs
no hooks and initializes nothing) and converts each fx node through the op table
(:mod:`.convert`); :class:`~.model.TorchModel` is how the passes and ``CompiledModule`` see the
torch model: its arrays as zero-copy NumPy views, its lazy modules materialized in place from the
inferred graph exactly as torch's first forward would.  torch stays optional: nothing here imports
it until a torch object is given.
"""

from __future__ import annotations

import sys
from typing import Any

from lazyfuse.errors import CompileError


def is_torch_module(obj: Any) -> bool:
    """Whether ``obj`` is a ``torch.nn.Module`` (False, without importing torch, when torch is not
    loaded: then no object can be one)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.nn.Module)


def require_torch() -> Any:
    """The ``torch`` module, or a :class:`CompileError` saying how to install it."""
    try:
        import torch
    except ImportError as exc:
        raise CompileError("the PyTorch frontend needs torch: pip install 'lazyfuse[torch]' "
                           f"(or pip install torch==2.13.0 for the CPU wheel) ({exc})") from None
    return torch


def trace_torch(module: Any, *specs: Any) -> Any:
    """``lf.trace`` for a ``torch.nn.Module`` (see :mod:`.convert`)."""
    from .convert import trace_torch as _trace

    return _trace(module, *specs)


def torch_model(module: Any) -> Any:
    """The :class:`~.model.TorchModel` view of ``module`` (one per module, as long as it lives)."""
    from .model import view

    return view(module)
