"""Where a model's arrays live, for ``Module.to(...)``: parsing torch's device/dtype arguments.

lazyfuse keeps parameters and buffers in host memory (NumPy arrays), so ``"cpu"`` is the one device
``to()`` accepts; a GPU runs a model through a compiled backend instead (``backend="cuda"``).
torch's dtypes and devices are recognized by name, without importing torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lazyfuse.errors import ConfigError


def _torch_dtype_name(value: Any) -> str | None:
    """``"float32"`` for ``torch.float32`` (without importing torch), else ``None``."""
    text = str(value)
    if type(value).__module__ == "torch" and text.startswith("torch."):
        return text[len("torch."):]
    return None


def _check_device(where: str, device: Any) -> None:
    """Host memory is the only place lazyfuse arrays live: ``"cpu"`` is a no-op, anything else fails."""
    text = str(device)
    kind = text.partition(":")[0]
    if kind == "cpu":
        return
    if kind == "cuda":
        raise ConfigError(f"{where}: device {text!r}: lazyfuse models keep their parameters in host "
                          "memory (NumPy) and do not move; to run on a GPU, compile for it: "
                          "lazyfuse.compile(model, spec, backend='cuda')")
    raise ConfigError(f"{where}: unsupported device {text!r}; lazyfuse models live on 'cpu' "
                      "(a GPU runs them through lazyfuse.compile(..., backend='cuda'))")


def _is_device(value: Any) -> bool:
    if isinstance(value, str):
        return value.partition(":")[0] in ("cpu", "cuda", "mps", "meta", "xpu", "hip", "xla")
    return type(value).__name__ == "device" and type(value).__module__ == "torch"


def to_arguments(where: str, args: tuple, kwargs: dict) -> Any:
    """The dtype of a ``to(...)`` call (``None``: unchanged), after checking its device."""
    unknown = set(kwargs) - {"device", "dtype", "non_blocking", "copy"}
    if unknown:
        raise ConfigError(f"{where}: unexpected keyword argument(s) {', '.join(sorted(unknown))}")
    if len(args) > 2:
        raise ConfigError(f"{where}: takes at most a device and a dtype, got {len(args)} arguments")
    device, dtype = kwargs.get("device"), kwargs.get("dtype")
    for arg in args:
        if isinstance(arg, np.ndarray):  # to(other): its dtype, like torch's to(tensor)
            dtype = arg.dtype
        elif _is_device(arg):
            device = arg
        else:
            dtype = arg
    if device is not None:
        _check_device(where, device)
    name = _torch_dtype_name(dtype)
    return name if name is not None else dtype
