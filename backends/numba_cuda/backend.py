"""The ``cuda`` backend object and its executable (see docs/contracts.md, "Backend protocol")."""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numba
import numpy as np
from numba import cuda

from lazyfuse.backends.module_cache import first_call, load_module
from lazyfuse.errors import CompileError
from lazyfuse.ir.graph import Graph

from .codegen import GEMM_MODES, generate
from .device import DeviceState, as_input, is_device_array, is_torch_tensor, to_device
from .kernels import FULL, SMALL, Geometry


class NumbaCUDAExecutable:
    """One generated module; a call uploads host inputs, brings the model's arrays to the device
    (:class:`.device.DeviceState`), launches ``run`` on this executable's stream, copies the running
    stats a train-mode call updated back into the model, and returns host arrays for host inputs or
    device arrays (torch CUDA tensors for torch inputs) when any input was on the device.  Calls
    of one executable are serialized (they share the stream and the device copies); each waits for
    its kernels before it returns."""

    def __init__(self, graph: Graph, geometry: Geometry | None = None, gemm: str | None = None) -> None:
        self.geometry = default_geometry() if geometry is None else geometry
        self.gemm: str = default_gemm() if gemm is None else gemm
        gen = generate(graph, self.geometry, self.gemm)
        self.source: str = gen.source
        self.module, self.path = load_module(gen.source, NumbaCUDABackend.name)
        self.cached: bool = self.path is not None
        self._args = gen.args
        self._updates = gen.updates
        self._device = DeviceState(tuple(t for _, targets in gen.updates for t in targets))
        self._lock = threading.Lock()
        self._stream: Any = None
        self._compiled = False

    @property
    def file(self) -> Path | None:
        """The generated module's file in the cache dir (None when running uncached)."""
        return self.path

    def as_input(self, obj: Any, what: str) -> Any:
        """What ``CompiledModule`` checks and passes on for a call input (see :func:`.device.as_input`)."""
        return as_input(obj, what)

    def as_output(self, result: Any, given: Sequence[Any]) -> Any:
        """Torch CUDA tensors (sharing the result's memory, on that tensor's device) when a given input
        was one."""
        device = next((a.device for a in given if is_torch_tensor(a) and a.device.type == "cuda"), None)
        if device is None:
            return result
        torch = sys.modules["torch"]
        if isinstance(result, tuple):
            return tuple(torch.as_tensor(r, device=device) if is_device_array(r) else r for r in result)
        return torch.as_tensor(result, device=device) if is_device_array(result) else result

    def sync(self) -> None:
        """Upload the model's arrays again before the next call (after in-place writes into them)."""
        with self._lock:
            self._device.sync()

    def run(self, inputs: Sequence[Any], state: Mapping[str, np.ndarray],
            training: Mapping[str | None, bool]) -> Any:
        with self._lock:
            if self._stream is None:
                self._stream = cuda.stream()
            stream = self._stream
            on_device = any(is_device_array(a) for a in inputs)
            device_state = self._device.arrays(state, stream)
            args: list[Any] = [stream]
            for kind, key in self._args:
                if kind == "input":
                    a = inputs[key]
                    args.append(a if is_device_array(a) else to_device(a, stream))
                elif kind == "state":
                    args.append(device_state[key])
                else:
                    args.append(bool(training.get(key, False)))
            if self._compiled:
                result = self.module.run(*args)
            else:
                with first_call(self.path):  # kernels compile (or load from the cache) on first launch
                    result = self.module.run(*args)
                self._compiled = True
            updated = tuple(t for path, targets in self._updates if training.get(path, False)
                            for t in targets)
            if updated:
                self._device.pull(updated, state, stream)
            if not on_device:
                result = (tuple(r.copy_to_host(stream=stream) for r in result) if isinstance(result, tuple)
                          else result.copy_to_host(stream=stream))
            stream.synchronize()
            return result


def default_geometry() -> Geometry:
    """FULL, or what ``LAZYFUSE_CUDA_TILES`` says ("full" or "small": see :data:`.kernels.SMALL`)."""
    choice = os.environ.get("LAZYFUSE_CUDA_TILES", "").strip().lower()
    if choice in ("full", "small"):
        return FULL if choice == "full" else SMALL
    if choice:
        raise CompileError(f"cuda backend: LAZYFUSE_CUDA_TILES must be 'full' or 'small', got {choice!r}")
    return FULL


def default_gemm() -> str:
    """How Linear layers multiply (see :data:`.codegen.GEMM_MODES`): ``LAZYFUSE_CUDA_GEMM`` if set,
    else cuBLAS through CuPy where CuPy is installed on a real GPU, else the Numba GEMM."""
    choice = os.environ.get("LAZYFUSE_CUDA_GEMM", "").strip().lower()
    cupy = importlib.util.find_spec("cupy") is not None
    if not choice:
        return "cublas" if cupy and not numba.config.ENABLE_CUDASIM else "numba"
    if choice not in GEMM_MODES:
        raise CompileError(f"cuda backend: LAZYFUSE_CUDA_GEMM must be one of {', '.join(GEMM_MODES)}, "
                           f"got {choice!r}")
    if choice == "cublas" and (not cupy or numba.config.ENABLE_CUDASIM):
        why = "the CUDA simulator has no cuBLAS" if numba.config.ENABLE_CUDASIM else "CuPy is not installed"
        raise CompileError(f"cuda backend: LAZYFUSE_CUDA_GEMM=cublas, but {why}; use numba (the default "
                           "here) or install CuPy for your CUDA version (cupy-cuda12x, cupy-cuda13x)")
    return choice


class NumbaCUDABackend:
    """``lazyfuse.compile(model, spec, backend="cuda")``: fused Numba CUDA kernels."""

    name = "cuda"
    pipeline = ["dce", "fuse"]  # after the API's inference stage (see lazyfuse.api.pipeline)

    def build(self, graph: Graph) -> NumbaCUDAExecutable:
        if not cuda.is_available():
            raise CompileError("cuda backend: no usable CUDA GPU here (numba.cuda.is_available() is False; "
                               "numba.cuda.detect() says why); set NUMBA_ENABLE_CUDASIM=1 before numba.cuda "
                               "is imported to run the kernels in Numba's CUDA simulator")
        return NumbaCUDAExecutable(graph)
