"""Where the fused Linear+BN+ReLU layer's time beyond its GEMM goes: each part timed alone.

``python -m lazyfuse.bench.epilogue_parts [--rounds 20] [--json out.json]`` times, on x (4096, 1024)
(f32, train mode), the compiled layer, the bare GEMM, the GEMM followed by the cpu backend's
statistics kernel and by its normalize + ReLU kernel (the same kernels the layer runs), each kernel
alone on the GEMM's output, and ``np.copyto`` of that output: the memory traffic the epilogue cannot
avoid (one read for the statistics, one read and one write to normalize in place).  Parts run in
interleaved blocks whose order flips every round, each after :data:`cpu_fused.SETTLE_S` idle, and
each row is the median and quartiles over the rounds.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np


def parts(n: int = 4096, k: int = 1024) -> dict[str, Callable[[], Any]]:
    """The timed callables, by name (compiled once; state shared with nothing else)."""
    import lazyfuse as lf
    from lazyfuse import nn
    from lazyfuse.backends import module_cache
    from lazyfuse.backends.numba_cpu import codegen, threads

    threads.choose_layer()  # the layer a compiled call would pick, before the library's first use
    lib = module_cache.load_module(codegen.library_source(), "cpu")[0]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, k)).astype(np.float32)
    lf.manual_seed(0)
    model = nn.Sequential(nn.Linear(k, k), nn.BatchNorm1d(k), nn.ReLU())
    cm = lf.compile(model, lf.TensorSpec(("N", k)))
    w = np.asarray(model[0].weight)
    y, copy = np.empty((n, k), np.float32), np.empty((n, k), np.float32)
    mean, var = np.empty(k), np.empty(k)
    m, s, t = np.zeros(k, np.float32), np.ones(k, np.float32), np.zeros(k, np.float32)

    def gemm() -> None:
        np.matmul(x, w.T, out=y)

    def stats() -> None:
        lib.k_stats2d_p(y, mean, var)

    def normalize() -> None:
        lib.k_affine2d_p(y, y, m, s, t, True)

    return {
        "fused layer, train": lambda: cm(x),
        "GEMM (np.matmul)": gemm,
        "GEMM + statistics": lambda: (gemm(), stats()),
        "GEMM + statistics + normalize": lambda: (gemm(), stats(), normalize()),
        "statistics alone": stats,
        "normalize + ReLU alone, in place": normalize,
        "np.copyto of the output": lambda: np.copyto(copy, y),
    }


def measure(steps: dict[str, Callable[[], Any]], rounds: int, reps: int = 5) -> dict[str, dict[str, float]]:
    """Median and quartiles (ms per call) of each step over ``rounds`` interleaved blocks."""
    from . import cpu_fused

    for step in steps.values():
        step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for r in range(rounds):
        for name in (list(steps) if r % 2 == 0 else list(reversed(steps))):
            times[name].append(cpu_fused._time(steps[name], reps) * 1e3)
    rows = {}
    for name, values in times.items():
        q1, med, q3 = cpu_fused.quartiles(values)
        rows[name] = {"ms": med, "q1_ms": q1, "q3_ms": q3, "rounds": rounds}
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m lazyfuse.bench.epilogue_parts", description=__doc__)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--json", metavar="PATH", help="write the rows and the environment as JSON")
    args = ap.parse_args(argv)
    from . import cpu_fused
    from .environment import environment, numba_threads

    with cpu_fused.steady_state():
        rows = measure(parts(), args.rounds)
    gemm = rows["GEMM (np.matmul)"]["ms"]
    for name, row in rows.items():
        print(f"{name:34s} {row['ms']:8.3f} ms  [{row['q1_ms']:.3f}..{row['q3_ms']:.3f}]"
              f"  {row['ms'] / gemm:6.3f}x the GEMM")
    if args.json:
        env = environment()
        env["numba"] = numba_threads()
        with open(args.json, "w") as f:
            json.dump({"environment": env, "rows": rows, "date": time.strftime("%Y-%m-%d")}, f, indent=1)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
