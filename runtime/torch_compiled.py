"""``TorchCompiledModule``: ``lazyfuse.compile`` of a ``torch.nn.Module``.

A :class:`CompiledModule` over the PyTorch frontend's view of the model (its tensors as zero-copy
NumPy arrays), which also takes and gives torch tensors: a CPU tensor in is read in place
(``detach().numpy()``), and when any input is a tensor the outputs are tensors sharing the result's
memory (``torch.from_numpy``); NumPy inputs give NumPy outputs.  With ``backend="cuda"`` a CUDA
tensor in is read in place on the device and CUDA tensors come out (zero-copy, through
``__cuda_array_interface__``).  Calls are forward only: they build
no autograd graph, and when grad mode is on and a parameter or an input requires grad, the first
such call warns (:class:`~lazyfuse.errors.GradientWarning`) that gradients do not flow through it.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

import numpy as np

from lazyfuse.errors import GradientWarning, InputError

from .compiled import CompiledModule, _recompile

_GRAD_MESSAGE = ("lazyfuse calls are forward only: this call builds no autograd graph, so no gradient "
                 "flows back to the inputs or parameters (its outputs do not require grad); call it under "
                 "torch.no_grad() or torch.inference_mode() to say that is intended")


class TorchCompiledModule(CompiledModule):
    """See the module docstring; ``torch_module`` is the compiled torch model."""

    def __init__(self, torch_module: Any, model: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(model, *args, **kwargs)
        self.torch_module = torch_module
        self._warned = False

    def __reduce__(self) -> tuple:
        return (_recompile, (self._rebuild, self.torch_module, self.specs, self.backend))

    def __call__(self, *arrays: Any, **named: Any) -> Any:
        torch = sys.modules["torch"]
        if not named and (self._warned or not torch.is_grad_enabled()):
            # The usual call, kept cheap: NumPy arrays and CPU tensors that need no grad.
            tensors = False
            for a in arrays:
                if type(a) is np.ndarray:
                    continue
                if type(a) is torch.Tensor and a.is_cpu and not a.requires_grad:
                    tensors = True
                    continue
                break
            else:
                if not tensors:
                    return super().__call__(*arrays)
                if len(arrays) == 1:
                    return _as_tensors(torch, super().__call__(arrays[0].numpy()))
                return _as_tensors(torch, super().__call__(
                    *[a if type(a) is np.ndarray else a.numpy() for a in arrays]))
        return self._checked_call(torch, arrays, named)

    def _checked_call(self, torch: Any, arrays: tuple, named: dict) -> Any:
        """Any other call: tensors on another device are an error, the grad warning is due."""
        tensors = False
        grad = torch.is_grad_enabled() and not self._warned
        wants_grad = False

        def unwrap(a: Any, what: str) -> Any:
            nonlocal tensors, wants_grad
            if not isinstance(a, torch.Tensor):
                return a
            tensors = True
            wants_grad |= grad and a.requires_grad
            if a.device.type == "cuda" and self.backend == "cuda":
                return a.detach()  # the backend reads it on the device and answers with CUDA tensors
            if a.device.type != "cpu":
                raise InputError(f"compiled {self.graph.name}: {what} is on {a.device}; the "
                                 f"{self.backend} backend takes CPU tensors: pass x.cpu(), or compile the "
                                 "model with backend='cuda' for CUDA tensors")
            return a.detach().numpy()

        inputs = [unwrap(a, f"input #{i}") for i, a in enumerate(arrays)]
        kw = {k: unwrap(v, f"input {k!r}") for k, v in named.items()}
        if grad and (wants_grad or any(p.requires_grad for p in self.torch_module.parameters())):
            self._warned = True
            warnings.warn(_GRAD_MESSAGE, GradientWarning, stacklevel=3)
        out = super().__call__(*inputs, **kw)
        return _as_tensors(torch, out) if tensors else out


def _as_tensors(torch: Any, out: Any) -> Any:
    """Host outputs as tensors sharing the arrays' memory (device outputs are tensors already)."""
    if type(out) is tuple:
        return tuple(_as_tensors(torch, o) for o in out)
    return torch.from_numpy(out) if isinstance(out, np.ndarray) else out
