"""The ``scaling`` suite of ``lazyfuse bench``: how a call's time grows with the batch and with the
width, against the bare GEMM and torch eager on the same sweep (eval mode, f32).

- Linear(1024, 1024)+BN+ReLU over batch 1 ... 65536;
- Linear(w, w)+BN+ReLU at batch 4096 over width w = 256 ... 4096;
- MLPWithBN over batch 1 ... 65536.

Rows carry ``sweep`` (the panel's title), ``x`` and ``x_name`` so ``--plot`` draws each sweep as
time per call against ``x`` (log-log).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from . import cpu_fused
from .baselines import floor, torch_eager, torch_linear_bn_relu, torch_mlp
from .roofline import linear_flops, mlp_flops
from .session import Options, Session, Task, pair_cost

# Rounds (quick, full) per row; the big points take ~0.1-0.5 s a call.  A sweep is read as a curve
# over ten points, so one round per block order is enough to place each point.
ROUNDS = (2, 2)
FUSED_BATCHES = ((1, 256, 4096), (1, 16, 256, 4096, 65536))
WIDTHS = ((256, 1024), (256, 512, 1024, 2048, 4096))
MLP_BATCHES = ((1, 256, 4096), (1, 16, 256, 4096, 16384, 65536))


def scaling_tasks(options: Options) -> list[Task]:
    """One task per sweep point (see the module doc)."""
    quick = options.quick
    rounds = ROUNDS[0 if quick else 1]

    @functools.cache
    def fused(k: int) -> tuple[Any, Any]:
        model, cm, _ = cpu_fused._fused_model(False, 1, k, np.float32, backend=options.backend)
        return model, cm

    def fused_point(session: Session, n: int, k: int, sweep: str, x_value: int, x_name: str) -> list[dict]:
        model, cm = fused(k)
        x = np.random.default_rng(n + k).standard_normal((n, k)).astype(np.float32)
        w = np.asarray(model[0].weight)
        y = np.empty((n, k), np.float32)
        bases = [floor("np.matmul(x, W.T, out=y)", lambda: np.matmul(x, w.T, out=y)),
                 torch_eager(torch_linear_bn_relu(k), x, False)]
        rows = session.pair(f"linear+bn+relu eval f32 x({n},{k})", lambda: cm(x), bases, rounds,
                            work={"flops": linear_flops(n, k, k)})
        return [{**r, "sweep": sweep, "x": x_value, "x_name": x_name} for r in rows]

    @functools.cache
    def mlp() -> tuple[Any, Any]:
        import lazyfuse as lf
        from lazyfuse.examples.mlp import MLPWithBN

        lf.manual_seed(0)
        model = MLPWithBN().eval()
        return model, lf.compile(model, lf.TensorSpec(("N", 784)), backend=options.backend)

    def mlp_point(session: Session, n: int) -> list[dict]:
        model, cm = mlp()
        x = np.random.default_rng(n).standard_normal((n, 784)).astype(np.float32)
        bases = [floor("its 3 GEMMs alone (np.matmul)", cpu_fused._bare_gemms(model, x)),
                 torch_eager(torch_mlp, x, False)]
        rows = session.pair(f"MLPWithBN eval f32 batch {n} (scaling)", lambda: cm(x), bases, rounds,
                            work={"flops": mlp_flops(n)})
        return [{**r, "sweep": "MLPWithBN eval, by batch", "x": n, "x_name": "batch size"} for r in rows]

    def cost(n: int, k: int) -> float:
        return pair_cost(options, rounds, 2, call_s=2 * n * k * k / 1.5e11)

    i = 0 if quick else 1
    by_batch = "Linear(1024,1024)+BN+ReLU eval, by batch"
    by_width = "Linear(w,w)+BN+ReLU eval at batch 4096, by width"
    tasks = [Task("scaling", f"linear+bn+relu batch {n}",
                  lambda s, n=n: fused_point(s, n, 1024, by_batch, n, "batch size"), cost(n, 1024))
             for n in FUSED_BATCHES[i]]
    tasks += [Task("scaling", f"linear+bn+relu width {k}",
                   lambda s, k=k: fused_point(s, 4096, k, by_width, k, "width w (in = out features)"),
                   cost(4096, k))
              for k in WIDTHS[i]]
    tasks += [Task("scaling", f"MLPWithBN batch {n}", lambda s, n=n: mlp_point(s, n), cost(n, 300))
              for n in MLP_BATCHES[i]]
    return tasks
