"""Arrays across the host/device line: call inputs, outputs, and device copies of model state."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import numpy as np
from numba import cuda

from lazyfuse.errors import InputError


def is_device_array(obj: Any) -> bool:
    """A Numba device array (real or simulated) or any object with ``__cuda_array_interface__``."""
    return bool(getattr(obj, "__cuda_ndarray__", False)) or hasattr(obj, "__cuda_array_interface__")


def is_torch_tensor(obj: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.Tensor)


def as_input(obj: Any, what: str) -> Any:
    """A call input as the backend takes it: a device array in place (a Numba device array as is;
    CuPy arrays, torch CUDA tensors and other ``__cuda_array_interface__`` objects wrapped without a
    copy, after the producer's stream finished, as Numba does by default), or a host array.

    A non-contiguous device array is an :class:`InputError` (the kernels index dense rows; copying
    it on the device is the caller's choice: ``.contiguous()``, ``cupy.ascontiguousarray``); so is a
    device array in the memory of another GPU than the current one."""
    if is_torch_tensor(obj):
        obj = obj.detach()  # torch refuses __cuda_array_interface__ on a tensor that requires grad
    if getattr(obj, "__cuda_ndarray__", False):
        arr = obj
    elif hasattr(obj, "__cuda_array_interface__"):
        if is_torch_tensor(obj) and obj.device.index not in (None, cuda.get_current_device().id):
            raise InputError(f"{what} is on {obj.device}, and lazyfuse's cuda backend runs on device "
                             f"{cuda.get_current_device().id}: move it with .to('cuda:"
                             f"{cuda.get_current_device().id}') or select that device")
        arr = cuda.as_cuda_array(obj)
    else:
        return np.asarray(obj)
    owner = device_of(arr) if arr.size else None
    if owner is not None and owner != cuda.get_current_device().id:
        raise InputError(f"{what} is in the memory of GPU {owner}, and lazyfuse's cuda backend runs on GPU "
                         f"{cuda.get_current_device().id}: copy it there first, or select GPU {owner} "
                         "(numba.cuda.select_device) before compiling")
    if arr.size and not arr.is_c_contiguous():
        raise InputError(f"{what} is a non-contiguous device array (shape {tuple(arr.shape)}, strides "
                         f"{tuple(arr.strides)}); the cuda backend takes C-contiguous device arrays: make a "
                         "contiguous copy first (x.contiguous(), cupy.ascontiguousarray(x))")
    return arr


def device_of(arr: Any) -> int | None:
    """The GPU whose memory holds the device array ``arr``, as the CUDA driver says
    (``CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL``); None where it cannot say (the simulator has no
    pointers)."""
    try:
        from cuda.bindings import driver

        pointer = arr.__cuda_array_interface__["data"][0]
        err, ordinal = driver.cuPointerGetAttribute(
            driver.CUpointer_attribute.CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL, pointer)
        return int(ordinal) if int(err) == 0 else None
    except Exception:  # an older driver binding, no interface: no check rather than a wrong one
        return None


def to_device(arr: np.ndarray, stream: Any) -> Any:
    """A device copy of the host array ``arr`` (a 0-d array becomes shape (1,))."""
    return cuda.to_device(np.ascontiguousarray(arr).reshape(arr.shape or (1,)), stream=stream)


class DeviceState:
    """The device copies of a compiled graph's parameters and buffers; the model's arrays stay the
    source of truth.

    All arrays are uploaded on the first call, after :meth:`sync`, and whenever the state mapping
    differs from the last one (``CompiledModule`` fetches a new one when the model's
    ``state_version`` moved: assignment, ``load_state_dict``, a changed module).  The small
    ``watched`` buffers (running stats) are also compared with what the device holds on every call,
    and uploaded again when they differ, so writes to them from anywhere (an eager forward, another
    compiled module of the model) are seen.  In-place writes into parameters are not: call
    :meth:`sync` (``cm.sync()``) after them."""

    def __init__(self, watched: tuple[str, ...]) -> None:
        self.watched = watched
        self._source: Mapping[str, np.ndarray] | None = None
        self._device: dict[str, Any] = {}
        self._held: dict[str, np.ndarray] = {}  # what the device copy of a watched buffer holds

    def sync(self) -> None:
        """Upload everything again before the next call."""
        self._source = None

    def arrays(self, state: Mapping[str, np.ndarray], stream: Any) -> dict[str, Any]:
        """Device copies of ``state`` by target, current with the host arrays (see the class)."""
        if state is not self._source:
            self._device = {t: to_device(a, stream) for t, a in state.items()}
            self._held = {t: np.array(state[t]) for t in self.watched}
            self._source = state
            return self._device
        for t in self.watched:
            host = state[t]
            if not np.array_equal(host, self._held[t], equal_nan=True):
                self._device[t].copy_to_device(np.ascontiguousarray(host).reshape(host.shape or (1,)),
                                               stream=stream)
                self._held[t] = np.array(host)
        return self._device

    def pull(self, targets: tuple[str, ...], state: Mapping[str, np.ndarray], stream: Any) -> None:
        """Copy the device values of ``targets`` (updated by a train-mode call) into the model's
        arrays (``state``), synchronously; the device and host copies then agree."""
        strided = []
        for t in targets:
            host = state[t]
            if host.flags.c_contiguous:
                self._device[t].copy_to_host(host.reshape(host.shape or (1,)), stream=stream)
            else:  # a strided view as the buffer: through a dense copy
                strided.append((host, self._device[t].copy_to_host(stream=stream)))
        stream.synchronize()
        for host, dense in strided:
            np.copyto(host, dense.reshape(host.shape))
        for t in targets:
            self._held[t] = np.array(state[t])
