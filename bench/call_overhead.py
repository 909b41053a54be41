"""Per-call Python overhead of small calls, eager and compiled (not part of ``cpu_fused``).

``python -m lazyfuse.bench.call_overhead`` prints one JSON line of medians (µs per call over 25
blocks): the compiled replay path of a tiny ``Linear(4, 4)`` (batch 2, eval) and of MLPWithBN
(batch 1 and 32, eval), and eager calls of both.  Run it in fresh processes, alternating the
versions compared, on an otherwise idle machine.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable

import numpy as np

import lazyfuse as lf
from lazyfuse import nn
from lazyfuse.examples.mlp import MLPWithBN


def per_call_us(fn: Callable[[], object], calls: int, blocks: int = 25) -> float:
    """Median over ``blocks`` of the mean time of ``calls`` calls, in µs."""
    times = []
    for _ in range(blocks):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(times)


def main() -> None:
    lf.manual_seed(0)
    tiny = nn.Sequential(nn.Linear(4, 4))
    tiny_cm = lf.compile(tiny, lf.TensorSpec(("N", 4)))
    tiny.eval()
    mlp = MLPWithBN()
    mlp_cm = lf.compile(mlp, lf.TensorSpec(("N", 784)))
    mlp.eval()
    x2 = np.ones((2, 4), np.float32)
    x32 = np.random.default_rng(0).random((32, 784), dtype=np.float32)
    x1 = x32[:1].copy()
    for cm, x in ((tiny_cm, x2), (mlp_cm, x32), (mlp_cm, x1)):
        for _ in range(3):  # compile, then arm the replay path
            cm(x)
    rows = {
        "tiny_compiled_replay": per_call_us(lambda: tiny_cm(x2), 5000),
        "mlp_b1_compiled_replay": per_call_us(lambda: mlp_cm(x1), 2000),
        "mlp_b32_compiled": per_call_us(lambda: mlp_cm(x32), 500),
        "mlp_b32_eager": per_call_us(lambda: mlp(x32), 200),
        "tiny_eager": per_call_us(lambda: tiny(x2), 5000),
    }
    print(json.dumps({"lazyfuse": lf.__file__, **{k: round(v, 2) for k, v in rows.items()}}))


if __name__ == "__main__":
    main()
