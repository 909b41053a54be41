"""The GPU side of ``lazyfuse bench --backend cuda``'s environment: torch with CUDA, who runs cuBLAS,
and the device, driver, toolkit and CUDA package versions a run records (best effort)."""

from __future__ import annotations

import functools
import importlib.util
import os
from collections.abc import Callable
from typing import Any


@functools.cache
def torch_cuda() -> Any:
    """``torch`` when it is installed and sees a GPU, else None; its FP32 matmuls keep full
    precision (no TF32), like the Numba kernels."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    return torch


def cublas_provider() -> str | None:
    """What runs cuBLAS here: ``"torch"`` (with CUDA), ``"cupy"`` or None."""
    if torch_cuda() is not None:
        return "torch"
    return "cupy" if importlib.util.find_spec("cupy") is not None else None


def _try(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception:  # a report must not fail on a diagnostic
        return None


def _dotted(version: Any) -> str | None:
    return ".".join(map(str, version)) if isinstance(version, tuple) else None


CUDA_DISTRIBUTIONS = ("numba-cuda", "cuda-bindings", "cupy-cuda13x", "cupy-cuda12x")


def _dist_version(name: str) -> str | None:
    from importlib.metadata import version

    return _try(lambda: version(name))


def _torch_info() -> dict[str, Any] | None:
    if importlib.util.find_spec("torch") is None:
        return None
    torch = torch_cuda()
    if torch is None:
        import torch
    return {"version": torch.__version__, "cuda": torch.version.cuda, "gpu": torch.cuda.is_available(),
            "allow_tf32": torch.backends.cuda.matmul.allow_tf32}


def cuda_environment() -> dict[str, Any]:
    """The GPU, its driver and toolkit versions and the CUDA Python packages (best effort)."""
    import numba
    from numba import cuda

    dev = cuda.get_current_device()
    name = getattr(dev, "name", "unknown")
    memory = _try(lambda: cuda.current_context().get_memory_info().total)
    return {
        "device": name.decode() if isinstance(name, bytes) else str(name),
        "compute_capability": _try(lambda: list(dev.compute_capability)),
        "multiprocessors": _try(lambda: dev.MULTIPROCESSOR_COUNT),
        "memory_gib": round(memory / 2**30, 1) if isinstance(memory, int) else None,
        "driver_cuda_version": _try(lambda: _dotted(cuda.cudadrv.driver.get_version())),
        "runtime_cuda_version": _try(lambda: _dotted(cuda.runtime.get_version())),
        "simulator": bool(numba.config.ENABLE_CUDASIM),
        "cublas": cublas_provider(),
        "versions": {"numba": numba.__version__, **{d: _dist_version(d) for d in CUDA_DISTRIBUTIONS}},
        "torch": _try(_torch_info),
        "env": {k: os.environ.get(k) for k in ("CUDA_VISIBLE_DEVICES", "LAZYFUSE_CUDA_TILES", "CUPY_TF32")},
    }


def gpu_line(env: dict[str, Any]) -> str:
    """The GPU block of the environment as one line."""
    v, t = env.get("versions", {}), env.get("torch") or {}
    cc = ".".join(map(str, env.get("compute_capability") or ["?"]))
    cupy = v.get("cupy-cuda13x") or v.get("cupy-cuda12x")
    return (f"GPU: {env.get('device')} (compute {cc}, {env.get('multiprocessors')} SMs, "
            f"{env.get('memory_gib')} GiB); CUDA driver {env.get('driver_cuda_version')}, toolkit "
            f"{env.get('runtime_cuda_version')}; numba {v.get('numba')}, numba-cuda {v.get('numba-cuda')}, "
            f"cuda-bindings {v.get('cuda-bindings')}, cupy {cupy}, torch {t.get('version')} (CUDA "
            f"{t.get('cuda')}); cuBLAS via {env.get('cublas')}")
