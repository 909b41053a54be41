"""``lazyfuse bench --backend cuda``: the ``cuda`` backend against cuBLAS, its own bare GEMM, a device
copy and torch on the GPU, all float32, paired in one process like the CPU suites.

Suites: ``gemm`` (the backend's bare Numba GEMM, x (N, 1024) @ W.T, vs cuBLAS SGEMM through
``torch.matmul`` when torch has CUDA, else ``cupy.matmul``, sharing the same device memory), ``fused``
(Linear(1024,1024)+BatchNorm1d+ReLU, train and eval, vs that bare GEMM and torch eager /
torch.compile on CUDA) and ``bn`` (BatchNorm1d on (64, 256, 2048), train and eval, vs a
device-to-device copy of the same bytes).  Rows are :func:`lazyfuse.bench.cpu_fused.paired` rows
(block order flipping every round, per-side median and IQR of per-call time, median per-round
ratio with its IQR) plus throughput figures: TFLOP/s or GB/s of both sides and the throughput
ratio lazyfuse/baseline (> 1 = lazyfuse faster).  Every timed step waits for the GPU: a lazyfuse
call synchronizes its stream before returning, the baselines synchronize the device.

The floors (cuBLAS, the bare GEMM, the copy) always run; ``--baselines`` picks torch and
torch.compile.  It refuses to run in Numba's CUDA simulator (never timed) and without a GPU.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lazyfuse.errors import LazyFuseError

from . import report, roofline
from .baselines import Baseline, Step, Unavailable, torch_linear_bn_relu
from .cuda_environment import cublas_provider, cuda_environment, gpu_line, torch_cuda
from .session import Options, Session, Task, pair_cost

SUITES = ("gemm", "bn", "fused")  # "all" runs them in this order: the torch.compile rows last
WIDTH = 1024  # K and C of the GEMM and of the fused Linear
BATCHES = ((1024, 4096), (4096, 16384, 65536))  # rows of x: (quick, full)
BN_SHAPES = ((16, 256, 2048), (64, 256, 2048))  # (quick, full)
ROUNDS = (6, 20)  # per row, even (both block orders equally often): (quick, full)
BLOCK_S = (0.02, 0.05)  # target length of one timed block: (quick, full)
PEAK_GEMM_N = 8192  # the cuBLAS SGEMM peak: N x N x N
PEAK_COPY_BYTES = 512 * 2**20  # the copy-bandwidth peak: one array of this size, read and written
PEAK_COST_S = 5.0
TORCH_COMPILE_COST_S = 30.0  # progress estimate of one torch.compile of a row

# Targets, as time ratios lazyfuse/baseline (a row's target is met when ratio <= target).
GEMM_TARGET = 2.0  # the Numba GEMM reaches >= 0.5x cuBLAS's throughput
FUSED_TRAIN_TARGET = 1.15  # train Linear+BN+ReLU (3 kernels) <= 1.15x the bare GEMM
BN_TARGET = 1 / 0.7  # BatchNorm1d moves its bytes at >= 0.7x the copy bandwidth
MAX_REL_DIFF = 1e-4  # |Numba GEMM - cuBLAS| / max |cuBLAS| above this is reported as a mismatch

FLOOR = "floor"  # the key of the baselines that always run


class CudaBenchError(LazyFuseError):
    """The CUDA suite cannot do what was asked here (no numba-cuda, the simulator, no GPU, no plot)."""


# ------------------------------------------------------------------------------ can it run here?
def _has_numba_cuda() -> bool:
    return importlib.util.find_spec("numba_cuda") is not None


def _simulator_on() -> bool:
    """``NUMBA_ENABLE_CUDASIM`` set, or Numba's config already loaded with it."""
    try:
        from_env = int(os.environ.get("NUMBA_ENABLE_CUDASIM", "0") or 0)
    except ValueError:
        from_env = 0  # Numba ignores a non-integer value too
    numba = sys.modules.get("numba")
    return bool(from_env or getattr(getattr(numba, "config", None), "ENABLE_CUDASIM", 0))


def _no_gpu() -> str | None:
    from numba import cuda

    if cuda.is_available():
        return None
    try:
        cuda.get_current_device()
        detail = "numba.cuda.is_available() is False"
    except Exception as exc:
        detail = " ".join(str(exc).split()).rstrip(" :") or type(exc).__name__
    return (f"--backend cuda: no usable CUDA GPU here ({detail}); run it on a machine with an NVIDIA GPU "
            "(bench/gpu_check.sh)")


def unavailable() -> str | None:
    """Why ``--backend cuda`` cannot measure here (one line), or None when it can."""
    if not _has_numba_cuda():
        return "--backend cuda needs NVIDIA's numba-cuda package: pip install 'lazyfuse[cuda]'"
    if _simulator_on():
        return ("--backend cuda: NUMBA_ENABLE_CUDASIM is on, so the kernels would run in Numba's CUDA "
                "simulator, which is never timed; unset it to benchmark on a GPU")
    from lazyfuse.backends import get_backend

    try:
        get_backend("cuda")
    except LazyFuseError as exc:
        return f"--backend cuda: {' '.join(str(exc).split())}"
    return _no_gpu()


# ------------------------------------------------------------------------------ options, session
@dataclass(frozen=True)
class CudaOptions(Options):
    """:class:`Options` of a GPU run: no idle settle before a block (no CPU pools to calm down;
    an idle GPU only clocks down), shorter blocks."""

    backend: str = "cuda"

    @property
    def settle_s(self) -> float:
        return 0.0

    @property
    def block_s(self) -> float:
        return BLOCK_S[0 if self.quick else 1]


class CudaSession(Session):
    """A :class:`Session` whose floors (key :data:`FLOOR`) run whatever ``--baselines`` says."""

    def wants(self, key: str) -> bool:
        return key == FLOOR or super().wants(key)


# ------------------------------------------------------------------------------ cuBLAS, torch
def _torch_required() -> Any:
    if torch_cuda() is None:
        raise Unavailable("torch is installed without a usable CUDA device" if importlib.util.find_spec(
            "torch") else "torch is not installed")
    return torch_cuda()


def _matmul(x: Any, w: Any) -> tuple[Step, Any]:
    """A step computing ``out = x @ w.T`` with cuBLAS on the device arrays ``x`` and ``w`` (shared,
    not copied) and waiting for the device; returns the step and ``out``."""
    provider = cublas_provider()
    if provider == "torch":
        torch = _torch_required()
        tx, tw = torch.as_tensor(x, device="cuda"), torch.as_tensor(w, device="cuda")
        out = torch.empty((tx.shape[0], tw.shape[0]), dtype=tx.dtype, device="cuda")

        def torch_step() -> Any:
            torch.matmul(tx, tw.T, out=out)
            torch.cuda.synchronize()

        return torch_step, out
    if provider == "cupy":
        import cupy

        cx, cw = cupy.asarray(x), cupy.asarray(w)
        out = cupy.empty((cx.shape[0], cw.shape[0]), dtype=cx.dtype)
        device = cupy.cuda.Device()

        def cupy_step() -> Any:
            cupy.matmul(cx, cw.T, out=out)
            device.synchronize()

        return cupy_step, out
    raise Unavailable("cuBLAS needs torch with CUDA or CuPy, and neither is importable here "
                      "(pip install cupy-cuda13x, or cupy-cuda12x for a CUDA 12 driver)")


def _cublas_label() -> str:
    return {"torch": "cuBLAS SGEMM (torch.matmul)", "cupy": "cuBLAS SGEMM (cupy.matmul)"}.get(
        str(cublas_provider()), "cuBLAS SGEMM")


def rel_diff(got: Any, want: Any) -> float:
    """``max |got - want| / max |want|`` of two device arrays (Numba, CuPy, torch: anything with
    ``__cuda_array_interface__``)."""
    from numba import cuda

    a, b = (cuda.as_cuda_array(v).copy_to_host().astype(np.float64) for v in (got, want))
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-30))


def _torch_step(torch: Any, model: Any, tx: Any) -> Step:
    def step() -> Any:
        with torch.no_grad():
            y = model(tx)
        torch.cuda.synchronize()
        return y

    return step


def _first_line(exc: Exception) -> str:
    return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:200]}"


def torch_eager_cuda(make_model: Callable[[Any], Any], x: Any, train: bool) -> Baseline:
    """``make_model(torch)`` on the GPU, eager, under ``no_grad``, on the same device memory as ``x``."""

    def make() -> tuple[Step, dict[str, Any]]:
        torch = _torch_required()
        model = make_model(torch).cuda().train(train)
        return _torch_step(torch, model, torch.as_tensor(x, device="cuda")), {"torch": torch.__version__}

    return Baseline("torch", "torch eager (CUDA)", make)


def torch_compiled_cuda(make_model: Callable[[Any], Any], x: Any, train: bool) -> Baseline:
    """``torch.compile(model, dynamic=False)`` on the GPU; the first call (the compile) is timed apart
    as ``baseline_compile_s``, after a reset of Dynamo's caches."""

    def make() -> tuple[Step, dict[str, Any]]:
        torch = _torch_required()
        try:
            torch._dynamo.reset()
            compiled = torch.compile(make_model(torch).cuda().train(train), dynamic=False)
            step = _torch_step(torch, compiled, torch.as_tensor(x, device="cuda"))
            start = time.perf_counter()
            step()
            seconds = time.perf_counter() - start
        except Exception as exc:  # no Triton, no compiler: skip the row, say why
            raise Unavailable(f"torch.compile failed here: {_first_line(exc)}") from None
        return step, {"baseline_compile_s": seconds, "torch": torch.__version__}

    return Baseline("torch.compile", "torch.compile (CUDA)", make)


# ------------------------------------------------------------------------------ what is measured
class Workbench:
    """The compiled modules and device inputs the suites share, each built on first use."""

    def __init__(self, width: int = WIDTH) -> None:
        self.width = width
        self._inputs: dict[tuple[int, ...], Any] = {}
        self._models: dict[str, tuple[Any, Any]] = {}

    def x(self, shape: tuple[int, ...]) -> Any:
        """A float32 device array of ``shape`` (standard normal, seeded by the shape)."""
        if shape not in self._inputs:
            from numba import cuda

            rng = np.random.default_rng(sum(shape))
            self._inputs[shape] = cuda.to_device(rng.standard_normal(shape, dtype=np.float32))
        return self._inputs[shape]

    def model(self, kind: str, *dims: int, gemm: str = "numba") -> tuple[Any, Any]:
        """(model, compiled for backend cuda) of ``kind``: "gemm" (Linear(width, width, bias=False)),
        "fused" (Linear(width, width) -> BatchNorm1d -> ReLU) or "bn" (BatchNorm1d on (N, *dims)),
        its Linear layers multiplying as ``gemm`` says (``LAZYFUSE_CUDA_GEMM``: "numba", the backend's
        own GEMM, is what these rows measure; "cublas" its cuBLAS split)."""
        key = f"{kind}{dims}{gemm}"
        if key not in self._models:
            import lazyfuse as lf
            from lazyfuse import nn

            lf.manual_seed(0)
            w = self.width
            model = {"gemm": lambda: nn.Linear(w, w, bias=False), "bn": lambda: nn.BatchNorm1d(dims[0]),
                     "fused": lambda: nn.Sequential(nn.Linear(w, w), nn.BatchNorm1d(w), nn.ReLU())}[kind]()
            spec = lf.TensorSpec(("N", *(dims or (w,))), "float32")
            before = os.environ.get("LAZYFUSE_CUDA_GEMM")
            os.environ["LAZYFUSE_CUDA_GEMM"] = gemm  # the default is cuBLAS wherever CuPy is installed
            try:
                cm = lf.compile(model, spec, backend="cuda")
            finally:
                if before is None:
                    del os.environ["LAZYFUSE_CUDA_GEMM"]
                else:
                    os.environ["LAZYFUSE_CUDA_GEMM"] = before
            self._models[key] = (model, cm)
        return self._models[key]

    @functools.cached_property
    def weight(self) -> Any:
        """The bare GEMM's weight (width, width) on the device."""
        from numba import cuda

        return cuda.to_device(np.ascontiguousarray(self.model("gemm")[0].weight, dtype=np.float32))


@dataclass
class Case:
    """One row group: the lazyfuse step, the baselines it is paired with, its work."""

    bench: str
    cand: Step
    bases: list[Baseline]
    work: dict[str, int] = field(default_factory=dict)


def gemm_case(wb: Workbench, n: int) -> Case:
    """The bare Numba GEMM on x (n, width) vs cuBLAS on the same device arrays; the baseline's
    extra fields hold ``max_rel_diff``, the two results' disagreement."""
    _, cm = wb.model("gemm")
    x, w, k = wb.x((n, wb.width)), wb.weight, wb.width
    cm(x)  # compile before anything is timed

    def make() -> tuple[Step, dict[str, Any]]:
        try:
            step, out = _matmul(x, w)
            step()
        except Unavailable:
            raise
        except Exception as exc:  # a CuPy built for another CUDA, an out-of-memory: skip, say why
            raise Unavailable(f"cuBLAS failed here: {_first_line(exc)}") from None
        return step, {"cublas": cublas_provider(), "max_rel_diff": rel_diff(cm(x), out)}

    base = Baseline(FLOOR, _cublas_label(), make, GEMM_TARGET)
    return Case(f"Numba GEMM f32 x({n},{k}) @ W.T({k},{k})", lambda: cm(x), [base],
                {"flops": roofline.linear_flops(n, k, k)})


def fused_case(wb: Workbench, n: int, train: bool, gemm: str = "numba") -> Case:
    """Linear+BN+ReLU on x (n, width) in train or eval mode vs the GEMM it runs on (the bare Numba
    GEMM, or cuBLAS for ``gemm="cublas"``: the backend's cuBLAS split) and torch on CUDA."""
    model, cm = wb.model("fused", gemm=gemm)
    model.train(train)
    x, k = wb.x((n, wb.width)), wb.width
    cm(x)  # compile before anything is timed
    target = FUSED_TRAIN_TARGET if train else None
    if gemm == "cublas":
        floor = Baseline(FLOOR, _cublas_label(), lambda: (_matmul(x, wb.weight)[0], {}), target)
    else:
        _, bare = wb.model("gemm")
        bare(x)
        floor = Baseline(FLOOR, "bare Numba GEMM (Linear, no bias)", lambda: ((lambda: bare(x)), {}), target)
    bases = [floor]
    if gemm == "numba":  # torch once per shape and mode: the Numba-GEMM rows carry it
        make_torch = torch_linear_bn_relu(k)
        bases += [torch_eager_cuda(make_torch, x, train), torch_compiled_cuda(make_torch, x, train)]
    split = " (cuBLAS split)" if gemm == "cublas" else ""
    return Case(f"linear+bn+relu{split} {'train' if train else 'eval'} f32 x({n},{k})", lambda: cm(x), bases,
                {"flops": roofline.linear_flops(n, k, k)})


def bn_case(wb: Workbench, shape: tuple[int, int, int], train: bool) -> Case:
    """BatchNorm1d alone on ``shape`` vs a device-to-device copy of its input (and torch eager)."""
    from numba import cuda

    model, cm = wb.model("bn", shape[1], shape[2])
    model.train(train)
    x = wb.x(shape)
    dst = cuda.device_array_like(x)
    cm(x)  # compile before anything is timed

    def copy() -> None:
        dst.copy_to_device(x)
        cuda.synchronize()

    bases = [Baseline(FLOOR, "device copy (numba copy_to_device)", lambda: (copy, {}), BN_TARGET),
             torch_eager_cuda(lambda torch: torch.nn.BatchNorm1d(shape[1]), x, train)]
    return Case(f"BatchNorm1d {'train' if train else 'eval'} f32 {shape}", lambda: cm(x), bases,
                {"bytes": 2 * x.nbytes})


# ------------------------------------------------------------------------------ the plan
def _rounds(options: Options) -> int:
    return ROUNDS[0 if options.quick else 1]


def _task(suite: str, label: str, build: Callable[[], Case], options: Options, rows: int,
          extra_cost: float = 0.0) -> Task:
    rounds = _rounds(options)

    def run(session: Session) -> list[dict[str, Any]]:
        session.status(f"{label}: compile and warm up")
        case = build()
        return session.pair(case.bench, case.cand, case.bases, rounds, work=case.work)

    return Task(suite, label, run, pair_cost(options, rounds, rows) + extra_cost)


def _torch_rows(options: Options, keys: tuple[str, ...]) -> int:
    """Rows the selected torch baselines add (estimate: torch installed counts as usable)."""
    return sum(k in options.baselines for k in keys) if importlib.util.find_spec("torch") else 0


def plan(suites: list[str], options: Options) -> list[Task]:
    """The tasks of ``suites`` (names from :data:`SUITES`) in order; nothing touches the GPU until
    a task runs."""
    wb = Workbench(WIDTH)
    batches, bn_shape = BATCHES[0 if options.quick else 1], BN_SHAPES[0 if options.quick else 1]
    compiles = _torch_rows(options, ("torch.compile",)) * TORCH_COMPILE_COST_S
    tasks: list[Task] = []
    for suite in suites:
        if suite == "gemm":
            tasks += [_task("gemm", f"Numba GEMM batch {n}", lambda n=n: gemm_case(wb, n), options, 1)
                      for n in batches]
        elif suite == "fused":
            rows = 1 + _torch_rows(options, ("torch", "torch.compile"))
            tasks += [_task("fused", f"linear+bn+relu {m} batch {n}",
                            lambda n=n, t=(m == "train"): fused_case(wb, n, t), options, rows, compiles)
                      for n in batches for m in ("train", "eval")]
            if importlib.util.find_spec("cupy") is not None:  # the backend's default where CuPy is
                tasks += [_task("fused", f"linear+bn+relu (cuBLAS split) {m} batch {n}",
                                lambda n=n, t=(m == "train"): fused_case(wb, n, t, "cublas"), options, 1)
                          for n in batches for m in ("train", "eval")]
        elif suite == "bn":
            rows = 1 + _torch_rows(options, ("torch",))
            tasks += [_task("bn", f"BatchNorm1d {m} {bn_shape}",
                            lambda t=(m == "train"): bn_case(wb, bn_shape, t), options, rows)
                      for m in ("train", "eval")]
        else:
            raise ValueError(f"unknown cuda suite {suite!r}; choose from {', '.join(SUITES)}")
    return tasks


def options_block(suites: list[str], options: Options) -> dict[str, Any]:
    """The JSON options of a GPU run."""
    return {"suites": suites, "backend": "cuda", "quick": options.quick, "baselines": list(options.baselines),
            "settle_s": options.settle_s, "block_s": options.block_s, "rounds": _rounds(options),
            "width": WIDTH, "batches": list(BATCHES[0 if options.quick else 1]),
            "bn_shape": list(BN_SHAPES[0 if options.quick else 1])}


# ------------------------------------------------------------------------------ peaks, figures
def measure_peaks(samples: int, gemm_n: int | None = None, copy_bytes: int | None = None) -> dict[str, Any]:
    """cuBLAS's SGEMM rate (``gemm``, None without a cuBLAS provider) and the device-to-device copy
    bandwidth (``copy``) of this GPU now: the 100 % of the roofline figures."""
    from numba import cuda

    n = PEAK_GEMM_N if gemm_n is None else gemm_n
    nbytes = PEAK_COPY_BYTES if copy_bytes is None else copy_bytes
    rng = np.random.default_rng(0)
    peaks: dict[str, Any] = {"gemm": None}
    try:
        a = cuda.to_device(rng.random((n, n), dtype=np.float32))
        b = cuda.to_device(rng.random((n, n), dtype=np.float32))
        step, _ = _matmul(a, b)
        s = roofline._median_s(step, samples)
        peaks["gemm"] = {"shape": [n, n, n], "dtype": "float32", "samples": samples, "ms": s * 1e3,
                         "gflops": 2 * n**3 / s / 1e9, "what": f"{_cublas_label()}, no TF32"}
        del a, b, step
    except Exception as exc:  # no cuBLAS provider here, or it failed: the rows carry rates only
        peaks["gemm_skipped"] = str(exc) if isinstance(exc, Unavailable) else _first_line(exc)
    src = cuda.to_device(np.ones(max(1, nbytes // 4), np.float32))
    dst = cuda.device_array_like(src)

    def copy() -> None:
        dst.copy_to_device(src)
        cuda.synchronize()

    s = roofline._median_s(copy, samples)
    moved = 2 * src.nbytes
    peaks["copy"] = {"bytes": moved, "samples": samples, "ms": s * 1e3, "gbps": moved / s / 1e9,
                     "what": f"device copy of {src.nbytes / 2**20:.0f} MiB (read + write)"}
    return peaks


def peaks_line(peaks: dict[str, Any]) -> str:
    """The measured peaks in one line."""
    g, c = peaks.get("gemm"), peaks["copy"]
    gemm = (f"{g['what']} {'x'.join(map(str, g['shape']))} {g['gflops'] / 1e3:.1f} TFLOP/s "
            f"(median of {g['samples']})" if g else f"no SGEMM peak ({peaks.get('gemm_skipped')})")
    return f"peaks: {gemm}, copy {c['gbps']:.0f} GB/s ({c['what']})"


def finish_row(row: dict[str, Any], peaks: dict[str, Any] | None) -> dict[str, Any]:
    """Add both sides' TFLOP/s or GB/s, the throughput ratio lazyfuse/baseline (> 1 = lazyfuse
    faster) with its IQR, and the roofline figures where the run measured the peak."""
    if "ratio" not in row:
        return row
    row = dict(row)
    unit, work, scale = (("tflops", row["flops"], 1e12) if "flops" in row else
                         ("gbps", row["bytes"], 1e9) if "bytes" in row else (None, 0, 1.0))
    if unit:
        for side in ("lazyfuse", "baseline"):
            row[f"{side}_{unit}"] = work / (row[f"{side}_ms"] * 1e-3) / scale
    row["throughput_ratio"] = 1 / row["ratio"]
    row["throughput_ratio_q1"], row["throughput_ratio_q3"] = 1 / row["ratio_q3"], 1 / row["ratio_q1"]
    peak = (peaks or {}).get("gemm" if "flops" in row else "copy")
    return roofline.annotate(row, peaks) if peak else row


def throughput_line(row: dict[str, Any]) -> str:
    """``bench vs baseline: a TFLOP/s vs b TFLOP/s, 0.52x its throughput (IQR ..)`` and the target."""
    unit, name = ("tflops", "TFLOP/s") if "lazyfuse_tflops" in row else ("gbps", "GB/s")
    if f"lazyfuse_{unit}" not in row:
        return ""
    target = ""
    if "target" in row:
        target = f"  target >= {1 / row['target']:.2f}x " + ("met" if row.get("met") else "NOT met")
    diff = row.get("max_rel_diff")
    check = "" if diff is None else f"  max rel diff {diff:.1e}" + (
        "  MISMATCH" if diff > MAX_REL_DIFF else "")
    return (f"{row['bench']} vs {row['baseline']}: {row[f'lazyfuse_{unit}']:.1f} vs "
            f"{row[f'baseline_{unit}']:.1f} {name}, {row['throughput_ratio']:.2f}x its throughput "
            f"(IQR {row['throughput_ratio_q1']:.2f}..{row['throughput_ratio_q3']:.2f}){target}{check}")


# ------------------------------------------------------------------------------ the command
def _report(args: argparse.Namespace, opts: dict[str, Any], env: dict[str, Any], peaks: dict[str, Any] | None,
            session: Session, error: str | None, old: dict[str, Any] | None) -> dict[str, Any]:
    """Print the rows and their throughput, compare, save the JSON; returns the document."""

    rows = [finish_row(r, peaks) for r in session.rows]
    if peaks:
        print(peaks_line(peaks))
    report.print_rows(rows, session.skipped, error)
    lines = [line for line in map(throughput_line, rows) if line]
    if lines:
        print("-- throughput (lazyfuse / baseline, > 1 = lazyfuse faster)")
        print("\n".join(lines))
    doc = report.compare_and_save(report.document(opts, env, peaks, rows, session.skipped, error),
                                  old, args.compare, args.json)
    return doc


def run(args: argparse.Namespace, suites: list[str], options: Options, old: dict[str, Any] | None) -> int:
    """``lazyfuse bench --backend cuda`` after the command's checks; returns the exit status."""
    from .environment import environment
    from .progress import Progress

    reason = unavailable()
    if reason is not None:
        raise CudaBenchError(reason)
    options = CudaOptions(quick=options.quick, baselines=options.baselines)
    tasks = plan(suites, options)
    progress = Progress(sum(t.cost for t in tasks) + PEAK_COST_S)
    session = CudaSession(options, progress)
    opts = options_block(suites, options)
    env = environment()
    env["cuda"] = cuda_environment()
    report.print_header(env, opts)
    print(gpu_line(env["cuda"]))
    sys.stdout.flush()
    peaks, error = None, None
    try:
        progress.set_section("peaks: cuBLAS SGEMM rate and device copy bandwidth")
        peaks = measure_peaks(samples=3 if options.quick else 5)
        progress.advance(PEAK_COST_S)
        session.run(tasks)
    except BaseException as exc:  # Ctrl-C included: what was measured is still reported and saved
        error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        progress.close()
        doc = _report(args, opts, env, peaks, session, error, old)
    if args.plot:
        from . import plot

        try:
            plot.render(doc["rows"], args.plot, title=f"lazyfuse bench (cuda): {env['cuda']['device']}")
        except plot.PlotError as exc:
            raise CudaBenchError(str(exc)) from None
        print(f"wrote {args.plot}", file=sys.stderr)
    return 1 if args.fail_on_regression and doc.get("compare", {}).get("regressions") else 0
