"""The systems ``lazyfuse bench`` pairs lazyfuse with, each built on demand.

A :class:`Baseline` names an option key (``--baselines``), the row's label and a ``make`` that
builds the timed step; ``make`` raises :class:`Unavailable` when the system is missing or fails
here (no torch, ``torch.compile`` without a working compiler, no onnxruntime), and the row is then
skipped with that reason.  Keys: ``numpy`` (the same-BLAS floor, ``np.matmul``/``np.copyto``, and
``lazyfuse.nn`` eager, which runs on NumPy), ``torch`` (eager), ``torch.compile`` and
``onnxruntime``.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

BASELINES = ("numpy", "torch", "torch.compile", "onnxruntime")

Step = Callable[[], Any]


class Unavailable(Exception):
    """A baseline that cannot run here; the message says why (it becomes the skip note)."""


@dataclass
class Baseline:
    """One system to pair with: ``make()`` returns the step and extra row fields."""

    key: str
    label: str
    make: Callable[[], tuple[Step, dict[str, Any]]]
    target: float | None = None



def torch_linear_bn_relu(k: int) -> Callable[[Any], Any]:
    """A maker of torch's Linear(k, k) -> BatchNorm1d(k) -> ReLU (the fused layer's twin)."""
    return lambda torch: torch.nn.Sequential(torch.nn.Linear(k, k), torch.nn.BatchNorm1d(k), torch.nn.ReLU())


def torch_mlp(torch: Any) -> Any:
    """The examples' MLPWithBN in torch (Flatten first, a no-op on (N, 784) inputs)."""
    t = torch.nn
    return t.Sequential(t.Flatten(), t.Linear(784, 256), t.BatchNorm1d(256), t.ReLU(), t.Linear(256, 128),
                        t.BatchNorm1d(128), t.ReLU(), t.Linear(128, 10))

def torch_or_none() -> Any:
    """``torch`` with all cores for its intra-op pool, or None when it is not installed."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(os.cpu_count() or 1)
    return torch


def _threads(torch: Any) -> str:
    return f"{torch.get_num_threads()} threads" if torch is not None else "not installed"


def floor(label: str, fn: Step, target: float | None = None) -> Baseline:
    """A NumPy floor (the bare GEMM or copy doing the row's unavoidable work)."""
    return Baseline("numpy", label, lambda: (fn, {}), target)


def numpy_eager(model: Any, *inputs: np.ndarray) -> Baseline:
    """The lazyfuse.nn model run eagerly (NumPy ops, one call per module)."""
    return Baseline("numpy", "lazyfuse.nn eager (NumPy)", lambda: (lambda: model(*inputs), {}))


def torch_eager(make_model: Callable[[Any], Any], x: np.ndarray, train: bool,
                target: float | None = None) -> Baseline:
    """``make_model(torch)`` run eagerly under ``no_grad``; the label matches cpu_fused's rows."""
    torch = torch_or_none()

    def make() -> tuple[Step, dict[str, Any]]:
        if torch is None:
            raise Unavailable("torch is not installed (pip install 'lazyfuse[torch]')")
        return _torch_step(torch, make_model(torch).train(train), torch.from_numpy(x)), {}

    return Baseline("torch", f"torch eager ({_threads(torch)})", make, target)


def torch_compiled(make_model: Callable[[Any], Any], x: np.ndarray, train: bool) -> Baseline:
    """``torch.compile(model, dynamic=False)``; its first call (the compile) is timed apart and
    reported as ``baseline_compile_s``.  Dynamo's caches are reset first, so every row compiles
    once for its own shape (and never hits the recompile limit, which falls back to eager)."""
    torch = torch_or_none()

    def make() -> tuple[Step, dict[str, Any]]:
        if torch is None:
            raise Unavailable("torch is not installed (pip install 'lazyfuse[torch]')")
        try:
            torch._dynamo.reset()
            compiled = torch.compile(make_model(torch).train(train), dynamic=False)
            step = _torch_step(torch, compiled, torch.from_numpy(x))
            start = time.perf_counter()
            step()
            seconds = time.perf_counter() - start
        except Exception as exc:  # a missing compiler, an unsupported op: skip the row, say why
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            raise Unavailable(f"torch.compile failed here: {type(exc).__name__}: {first}") from None
        return step, {"baseline_compile_s": seconds}

    return Baseline("torch.compile", f"torch.compile ({_threads(torch)})", make)


def torch_frontend(x: np.ndarray, train: bool, backend: str) -> Baseline:
    """The examples' MLPWithBN written in torch (``TorchMLPWithBN``, lazy layers and all), compiled by
    lazyfuse's PyTorch frontend and called on a torch tensor: against the ``lazyfuse.nn`` model's
    compiled call, a ratio of 1 means the torch path adds nothing per call."""
    torch = torch_or_none()

    def make() -> tuple[Step, dict[str, Any]]:
        if torch is None:
            raise Unavailable("torch is not installed (pip install 'lazyfuse[torch]')")
        import warnings

        import lazyfuse as lf
        from lazyfuse.examples.torch_models import TorchMLPWithBN

        torch.manual_seed(0)
        cm = lf.compile(TorchMLPWithBN().train(train), lf.TensorSpec(("N", 784)), backend=backend)
        tx = torch.from_numpy(x)
        with warnings.catch_warnings():  # the one GradientWarning, then calls run without no_grad
            warnings.simplefilter("ignore", lf.GradientWarning)
            cm(tx)
        return (lambda: cm(tx)), {}

    return Baseline("torch", "lazyfuse on the torch model (PyTorch frontend)", make)


def onnxruntime_session(make_model: Callable[[Any], Any], x: np.ndarray, train: bool) -> Baseline:
    """The torch model exported to ONNX (TorchScript exporter) and run by onnxruntime's CPU
    provider; inference graphs only, so train rows are skipped.  The session's creation (graph
    optimization included) is timed apart, as ``baseline_session_s``."""

    def make() -> tuple[Step, dict[str, Any]]:
        try:
            import onnxruntime as ort
        except ImportError:
            raise Unavailable("onnxruntime is not installed (pip install onnxruntime)") from None
        if train:
            raise Unavailable("onnxruntime runs inference graphs only (eval rows)")
        torch = torch_or_none()
        if torch is None:
            raise Unavailable("the ONNX export needs torch, which is not installed")
        buf = io.BytesIO()
        try:
            torch.onnx.export(make_model(torch).eval(), (torch.from_numpy(x),), buf, dynamo=False,
                              input_names=["x"], output_names=["y"])
            start = time.perf_counter()
            sess = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
            seconds = time.perf_counter() - start
        except Exception as exc:
            raise Unavailable(f"ONNX export or session failed: {type(exc).__name__}: {exc}") from None
        feed = {"x": x}
        return (lambda: sess.run(None, feed)), {"onnxruntime": ort.__version__, "baseline_session_s": seconds}

    return Baseline("onnxruntime", "onnxruntime (CPU provider)", make)


def frameworks(make_model: Callable[[Any], Any], x: np.ndarray, train: bool,
               torch_target: float | None = None) -> list[Baseline]:
    """torch eager, torch.compile and onnxruntime on the same torch model."""
    return [torch_eager(make_model, x, train, torch_target), torch_compiled(make_model, x, train),
            onnxruntime_session(make_model, x, train)]


def _torch_step(torch: Any, model: Any, tx: Any) -> Step:
    def step() -> Any:
        with torch.no_grad():
            return model(tx)

    return step
