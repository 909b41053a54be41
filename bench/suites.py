"""The suites of ``lazyfuse bench``: each a list of :class:`~lazyfuse.bench.session.Task`.

``fused``: Linear(1024,1024)+BN+ReLU, train and eval, on x (4096, 1024); ``mlp``: the examples'
MLPWithBN over a batch sweep, eval and train; ``bn``: BatchNorm1d alone on (N, C) and (N, C, L);
``conv``: bench/conv.py's sections (FeatureExtractor, and one conv layer against its GEMM);
``compile``: MLPWithBN compile + first call in fresh processes, cold and warm.  Row names and
baseline labels are the ones bench/cpu_fused.py and bench/conv.py use, so a JSON of theirs can
be compared with (``--compare``).
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable
from typing import Any

import numpy as np

from . import conv, cpu_fused
from .baselines import floor, frameworks, numpy_eager, torch_frontend, torch_linear_bn_relu, torch_mlp
from .roofline import linear_flops, mlp_flops
from .scaling import ROUNDS as SCALING_ROUNDS
from .scaling import scaling_tasks
from .session import Options, Session, Task, pair_cost

SUITES = ("fused", "mlp", "bn", "conv", "scaling", "compile")

# Rounds per row (even, so both block orders occur equally often): (quick, full).  The full run's
# counts keep it near ten minutes on the 2-core test machine with the scaling sweep in it: each
# block starts after 0.2 s idle, ~2100 blocks in all (bench/RESULTS.md, "Twelfth session").
ROUNDS = {"fused": (4, 24), "mlp": (4, 6), "bn": (4, 8), "conv": (4, 12), "scaling": SCALING_ROUNDS}
FUSED_SHAPES = ((1024, 512), (4096, 1024))  # (N, K) of x, quick and full
MLP_BATCHES = {"eval": ((8, 256), (1, 8, 32, 256, 1024, 4096)),
               "train": ((8, 256), (2, 8, 32, 256, 1024, 4096))}
# Batches whose rows also pair the lazyfuse.nn model with the same model written in torch, compiled
# by the PyTorch frontend (the torch path must add nothing per call); quick runs: batch 8.
FRONTEND_BATCHES = (8, 32, 4096)
BN_SHAPES = (((4096, 256), (16, 128, 512)), ((32768, 1024), (64, 256, 2048)))


def _rounds(options: Options, suite: str) -> int:
    return ROUNDS[suite][0 if options.quick else 1]


def _n_baselines(options: Options, numpy_rows: int = 2) -> int:
    """Rows per configuration (for the time estimate): the NumPy ones plus one per selected
    framework that is installed."""
    installed = {k: importlib.util.find_spec(k.split(".")[0]) is not None
                 for k in ("torch", "torch.compile", "onnxruntime")}
    return (numpy_rows if "numpy" in options.baselines else 0) + sum(
        k in options.baselines and found for k, found in installed.items())


def fused_tasks(options: Options) -> list[Task]:
    """Linear+BN+ReLU, train then eval, vs the bare GEMM, NumPy eager and the frameworks."""
    n, k = FUSED_SHAPES[0 if options.quick else 1]
    rounds = _rounds(options, "fused")

    def measure(session: Session, train: bool) -> list[dict[str, Any]]:
        model, cm, x = cpu_fused._fused_model(train, n, k, np.float32, backend=options.backend)
        w = np.asarray(model[0].weight)
        y = np.empty((n, k), np.float32)
        tag = f"linear+bn+relu {'train' if train else 'eval'} f32 x({n},{k})"
        bases = [floor("np.matmul(x, W.T, out=y)", lambda: np.matmul(x, w.T, out=y), 1.08 if train else 1.03),
                 numpy_eager(model, x),
                 *frameworks(torch_linear_bn_relu(k), x, train, torch_target=0.75 if train else 0.9)]
        return session.pair(tag, lambda: cm(x), bases, rounds, work={"flops": linear_flops(n, k, k)})

    cost = pair_cost(options, rounds, _n_baselines(options), call_s=0.005 if options.quick else 0.05)
    return [Task("fused", f"linear+bn+relu {mode}", lambda s, t=(mode == "train"): measure(s, t), cost)
            for mode in ("train", "eval")]


def mlp_tasks(options: Options) -> list[Task]:
    """MLPWithBN (one compiled module for every batch size) over the batch sweep, eval and train."""
    rounds = _rounds(options, "mlp")

    @functools.cache
    def compiled() -> tuple[Any, Any]:
        import lazyfuse as lf
        from lazyfuse.examples.mlp import MLPWithBN

        lf.manual_seed(0)
        model = MLPWithBN()
        return model, lf.compile(model, lf.TensorSpec(("N", 784)), backend=options.backend)

    def measure(session: Session, mode: str, batch: int) -> list[dict[str, Any]]:
        model, cm = compiled()
        model.train(mode == "train")
        x = np.random.default_rng(batch).standard_normal((batch, 784)).astype(np.float32)
        bases = [floor("its 3 GEMMs alone (np.matmul)", cpu_fused._bare_gemms(model, x)),
                 numpy_eager(model, x),
                 *frameworks(torch_mlp, x, mode == "train",
                             torch_target=0.5 if (mode, batch) == ("eval", 32) else None)]
        if batch in FRONTEND_BATCHES:
            bases.append(torch_frontend(x, mode == "train", options.backend))
        rows = session.pair(f"MLPWithBN {mode} f32 batch {batch}", lambda: cm(x), bases, rounds,
                            work={"flops": mlp_flops(batch)})
        return [{**r, "sweep": "mlp", "mode": mode, "batch": batch} for r in rows]

    cost = pair_cost(options, rounds, _n_baselines(options))
    return [Task("mlp", f"MLPWithBN {mode} batch {b}", lambda s, m=mode, b=b: measure(s, m, b), cost)
            for mode, (quick, full) in MLP_BATCHES.items() for b in (quick if options.quick else full)]


def bn_tasks(options: Options) -> list[Task]:
    """BatchNorm1d alone on (N, C) and (N, C, L), train and eval, vs a copy of its input."""
    rounds = _rounds(options, "bn")

    def measure(session: Session, shape: tuple[int, ...], train: bool) -> list[dict[str, Any]]:
        import lazyfuse as lf
        from lazyfuse import nn

        model = nn.BatchNorm1d(shape[1]).train(train)
        cm = lf.compile(model, lf.TensorSpec(("N", *shape[1:])), backend=options.backend)
        x = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
        dst = np.empty_like(x)
        target = cpu_fused.BN_TARGET if train and len(shape) == 3 else None
        bases = [floor("np.copyto (same array)", lambda: np.copyto(dst, x), target), numpy_eager(model, x),
                 *frameworks(lambda torch: torch.nn.BatchNorm1d(shape[1]), x, train)]
        tag = f"BatchNorm1d {'train' if train else 'eval'} f32 {shape}"
        return session.pair(tag, lambda: cm(x), bases, rounds, work={"bytes": 2 * x.nbytes})

    shapes = BN_SHAPES[0 if options.quick else 1]
    cost = pair_cost(options, rounds, _n_baselines(options), call_s=0.001 if options.quick else 0.02)
    return [Task("bn", f"BatchNorm1d {'train' if t else 'eval'} {s}", lambda ss, s=s, t=t: measure(ss, s, t),
                 cost) for s in shapes for t in (True, False)]


def _feature_extractor_flops(batch: int) -> int:
    return batch * (2 * 32 * 27 * 30 * 30 + 2 * 64 * 288 * 28 * 28 + 2 * 64 * 28 * 28 * 10)


def conv_tasks(options: Options) -> list[Task]:
    """FeatureExtractor (eval, train) vs NumPy eager and the frameworks, then bench/conv.py's conv
    layer section (vs its bare GEMM and torch eager)."""
    rounds = _rounds(options, "conv")

    def feature_extractor(session: Session) -> list[dict[str, Any]]:
        import lazyfuse as lf
        from lazyfuse.examples.convnets import FeatureExtractor

        lf.manual_seed(0)
        model = FeatureExtractor()
        cm = lf.compile(model, lf.TensorSpec(("N", 3, 32, 32)), backend=options.backend)
        x = np.random.default_rng(0).standard_normal((conv.BATCH, 3, 32, 32)).astype(np.float32)
        rows = []
        for train in (False, True):
            model.train(train)
            bases = [numpy_eager(model, x),
                     *frameworks(lambda torch: conv._torch_feature_extractor(torch, model), x, train, 1.2)]
            tag = f"FeatureExtractor {'train' if train else 'eval'} f32 x({conv.BATCH},3,32,32)"
            rows += session.pair(tag, lambda: cm(x), bases, rounds,
                                 work={"flops": _feature_extractor_flops(conv.BATCH)})
        return rows

    def layer(session: Session) -> list[dict[str, Any]]:
        session.status("Conv2d(32,64,3)+ReLU vs its GEMM and torch eager")
        rows = conv.bench_conv_layer(rounds, backend=options.backend, with_torch=session.wants("torch"))
        flops = 2 * 64 * 288 * conv.BATCH * 28 * 28
        keep = [r for r in rows if session.wants("torch" if r["baseline"].startswith("torch") else "numpy")]
        return [{**r, "flops": flops} for r in keep]

    fe_rows = 2 * _n_baselines(options, numpy_rows=1)
    tasks = [Task("conv", "FeatureExtractor", feature_extractor,
                  pair_cost(options, rounds, fe_rows, call_s=0.02))]
    if any(k in options.baselines for k in ("numpy", "torch")):
        tasks.append(Task("conv", "Conv2d(32,64,3)+ReLU layer", layer, pair_cost(options, rounds, 3, 0.015)))
    return tasks


def compile_tasks(options: Options) -> list[Task]:
    """MLPWithBN compile + first call in fresh processes (cold caches, then warm), and the cold first
    small call followed by the first large one."""
    samples = 1 if options.quick else 5

    def measure(session: Session) -> list[dict[str, Any]]:
        session.status(f"{samples} cold + warm fresh-process compile(s)")
        rows = cpu_fused.bench_compile(samples, backend=options.backend)
        for r in rows:
            r["seconds_q1"], _, r["seconds_q3"] = cpu_fused.quartiles(r["samples"])
        return rows

    return [Task("compile", "MLPWithBN compile + first call", measure, samples * 10.0)]


BUILDERS: dict[str, Callable[[Options], list[Task]]] = {
    "fused": fused_tasks, "mlp": mlp_tasks, "bn": bn_tasks, "conv": conv_tasks, "scaling": scaling_tasks,
    "compile": compile_tasks}


def plan(suites: list[str], options: Options) -> list[Task]:
    """The tasks of ``suites`` in order."""
    return [task for name in suites for task in BUILDERS[name](options)]
