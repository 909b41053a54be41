"""Roofline figures: a row's achieved GFLOP/s or GB/s against peaks measured in the same run.

The peaks are what this machine reaches right now with NumPy's BLAS and memory system: a large
square SGEMM (``GEMM_N``³, median of a few) for compute-bound rows and ``np.copyto`` of a large
array for memory-bound ones.  A row carries its work as ``flops`` (GEMM-bound rows) or ``bytes``
(the minimum traffic: each input read once, the output written once) and :func:`annotate` adds
``roofline`` with both sides' rates and their percentage of the peak.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

GEMM_N = 2048
COPY_BYTES = 256 * 2**20  # per array: well past any last-level cache


def _median_s(fn: Callable[[], Any], samples: int) -> float:
    """Median seconds of one call of ``fn`` over ``samples`` calls, after one untimed call."""
    fn()
    times = []
    for _ in range(samples):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure_peaks(samples: int = 5, gemm_n: int | None = None,
                  copy_bytes: int | None = None) -> dict[str, Any]:
    """The peak SGEMM rate and copy bandwidth of this machine now (see the module doc)."""
    n = GEMM_N if gemm_n is None else gemm_n
    nbytes = COPY_BYTES if copy_bytes is None else copy_bytes
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), np.float32)
    gemm_s = _median_s(lambda: np.matmul(a, b, out=c), samples)
    src = np.ones(max(1, nbytes // 4), np.float32)
    dst = np.empty_like(src)
    copy_s = _median_s(lambda: np.copyto(dst, src), samples)
    moved = 2 * src.nbytes  # read once, written once
    return {
        "gemm": {"shape": [n, n, n], "dtype": "float32", "samples": samples, "ms": gemm_s * 1e3,
                 "gflops": 2 * n**3 / gemm_s / 1e9, "what": "np.matmul(a, b, out=c)"},
        "copy": {"bytes": moved, "samples": samples, "ms": copy_s * 1e3, "gbps": moved / copy_s / 1e9,
                 "what": f"np.copyto of {src.nbytes / 2**20:.0f} MiB (read + write)"},
    }


def linear_flops(n: int, k: int, m: int) -> int:
    """FLOPs of ``x (n, k) @ W.T (k, m)``."""
    return 2 * n * k * m


MLP_LAYERS = ((784, 256), (256, 128), (128, 10))  # the examples' MLPWithBN: (in, out) per Linear


def mlp_flops(batch: int) -> int:
    """FLOPs of MLPWithBN's three GEMMs at ``batch`` rows."""
    return sum(linear_flops(batch, k, m) for k, m in MLP_LAYERS)


def annotate(row: dict[str, Any], peaks: dict[str, Any] | None) -> dict[str, Any]:
    """Add ``row["roofline"]`` from its ``flops`` or ``bytes`` and the measured ``peaks``."""
    if not peaks or "lazyfuse_ms" not in row:
        return row
    if "flops" in row:
        kind, work, peak, unit = "compute", row["flops"], peaks["gemm"]["gflops"], "gflops"
    elif "bytes" in row:
        kind, work, peak, unit = "memory", row["bytes"], peaks["copy"]["gbps"], "gbps"
    else:
        return row
    fig: dict[str, Any] = {"kind": kind, f"peak_{unit}": peak}
    for side in ("lazyfuse", "baseline"):
        ms = row.get(f"{side}_ms")
        if ms:
            rate = work / (ms * 1e-3) / 1e9
            fig[f"{side}_{unit}"] = rate
            fig[f"{side}_pct_of_peak"] = 100 * rate / peak
    row["roofline"] = fig
    return row


def describe(row: dict[str, Any]) -> str:
    """``' 123 GFLOP/s (81% of peak)'`` for the lazyfuse side, or '' without roofline figures."""
    fig = row.get("roofline")
    if not fig or "lazyfuse_pct_of_peak" not in fig:
        return ""
    if fig["kind"] == "compute":
        return f"  {fig['lazyfuse_gflops']:.1f} GFLOP/s ({fig['lazyfuse_pct_of_peak']:.0f}% of peak GEMM)"
    return f"  {fig['lazyfuse_gbps']:.1f} GB/s ({fig['lazyfuse_pct_of_peak']:.0f}% of copy bandwidth)"
