"""``lazyfuse bench``: run benchmark suites against baselines, print, save, plot and compare them.

:func:`add_arguments` fills the subcommand's parser (``lazyfuse.cli`` registers it) and
:func:`run` executes it.  Everything that can be checked is checked before anything is measured:
the suites, the baselines, the backend, the --json/--plot paths, matplotlib, the --compare file.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from lazyfuse.cli import UsageError
from lazyfuse.errors import LazyFuseError

from .baselines import BASELINES
from .session import Options

SUITE_NAMES = ("fused", "mlp", "bn", "conv", "scaling", "compile")
BACKENDS = ("cpu", "reference", "cuda")

DESCRIPTION = """\
Benchmark lazyfuse against the same-BLAS GEMM, NumPy eager (lazyfuse.nn), torch eager,
torch.compile and onnxruntime, in one process, in paired blocks whose order flips every round.
Each row reports both sides' medians and quartiles, the median per-round time ratio (lazyfuse /
baseline, < 1 = lazyfuse faster) with its IQR, and roofline figures against a peak SGEMM rate and
copy bandwidth measured in the same run."""

EPILOG = """\
suites: fused (Linear+BN+ReLU), mlp (MLPWithBN batch sweep), bn (BatchNorm1d), conv
(FeatureExtractor, one conv layer), scaling (batch 1..65536 and width 256..4096 sweeps vs the
bare GEMM and torch eager), compile (cold/warm compile in fresh processes), all.
With --backend cuda (on an NVIDIA GPU, never in Numba's CUDA simulator): gemm (the Numba GEMM vs
cuBLAS), fused (Linear+BN+ReLU vs that GEMM and torch on CUDA), bn (BatchNorm1d vs a device copy),
all; its floors (cuBLAS, the bare GEMM, the copy) always run, --baselines picks torch and
torch.compile.  bench/gpu_check.sh runs it, and the CUDA tests, in one command.

examples:
  lazyfuse bench --quick
  lazyfuse bench --suite fused,bn --json run.json
  lazyfuse bench --suite mlp --plot mlp.png --baselines numpy,torch
  lazyfuse bench --json new.json --compare old.json --fail-on-regression
  lazyfuse bench --backend cuda --json gpu.json

A baseline that cannot run here (no torch, torch.compile failing, no onnxruntime) is skipped with
a note.  --quick takes about a minute and carries no targets; the full run about ten minutes.
Progress goes to stderr when it is a terminal (drawn with tqdm if installed).
"""


class BenchError(LazyFuseError):
    """``lazyfuse bench`` cannot do what was asked here (exit status 1)."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``lazyfuse bench``."""
    p.add_argument("--suite", default="all", metavar="NAME[,NAME]",
                   help=f"what to run: {', '.join(SUITE_NAMES)} or all (default), a comma list")
    p.add_argument("--backend", choices=BACKENDS, default="cpu",
                   help="the backend lazyfuse's side runs on (default: cpu)")
    p.add_argument("--quick", action="store_true", help="small shapes, few rounds, no targets (~1 min)")
    p.add_argument("--baselines", default=",".join(BASELINES), metavar="NAME[,NAME]",
                   help=f"systems to pair with: {', '.join(BASELINES)} (default: all)")
    p.add_argument("--json", metavar="PATH", help="write options, environment, peaks and rows as JSON")
    p.add_argument("--plot", metavar="PATH", help="draw the rows into a .png or .svg (needs matplotlib)")
    p.add_argument("--compare", metavar="OLD.json", help="each row's change against a previous --json")
    p.add_argument("--fail-on-regression", action="store_true",
                   help="exit 1 when a row got slower than --compare's beyond the noise band")
    p.add_argument("--debug", action="store_true", help="show the Python traceback of an error")


def _names(text: str, known: tuple[str, ...], flag: str, everything: str | None = None) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise UsageError(f"{flag} needs at least one of: {', '.join(known)}")
    if everything is not None and everything in names:
        return list(known)
    unknown = [n for n in names if n not in known]
    if unknown:
        choices = ", ".join(known) + (f" or {everything}" if everything else "")
        raise UsageError(f"{flag}: unknown {', '.join(unknown)}; choose from {choices}")
    return list(dict.fromkeys(names))


def _check_writable(flag: str, path: str) -> None:
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if p.is_dir():
        raise UsageError(f"{flag} {path}: is a folder, expected a file name")
    if not parent.is_dir():
        raise UsageError(f"{flag} {path}: folder {parent} does not exist")
    if not os.access(p if p.exists() else parent, os.W_OK):
        raise UsageError(f"{flag} {path}: not writable")


def _check_backend(name: str) -> None:
    """--backend cuda needs numba-cuda, a GPU, and the simulator off (it is never timed)."""
    if name != "cuda":
        return
    from . import cuda_suite

    reason = cuda_suite.unavailable()
    if reason is not None:
        raise BenchError(reason)


def _suite_names(args: argparse.Namespace) -> list[str]:
    if args.backend != "cuda":
        return _names(args.suite, SUITE_NAMES, "--suite", everything="all")
    from .cuda_suite import SUITES

    return _names(args.suite, SUITES, "--suite (with --backend cuda)", everything="all")


def _validate(args: argparse.Namespace) -> tuple[list[str], Options, dict[str, Any] | None]:
    from . import compare, plot

    suites = _suite_names(args)
    baselines = _names(args.baselines, BASELINES, "--baselines")
    if args.fail_on_regression and not args.compare:
        raise UsageError("--fail-on-regression needs --compare OLD.json")
    if args.json:
        _check_writable("--json", args.json)
    if args.plot:
        if Path(args.plot).suffix.lower() not in plot.FORMATS:
            raise UsageError(f"--plot {args.plot}: the file name must end in .png or .svg")
        _check_writable("--plot", args.plot)
        try:
            plot.check_available()
        except plot.PlotError as exc:
            raise BenchError(str(exc)) from None
    old = None
    if args.compare:
        try:
            old = compare.load(args.compare)
        except compare.CompareFileError as exc:
            raise UsageError(str(exc)) from None
    _check_backend(args.backend)
    return suites, Options(quick=args.quick, backend=args.backend, baselines=tuple(baselines)), old


def _options_block(suites: list[str], options: Options) -> dict[str, Any]:
    from .suites import ROUNDS

    return {"suites": suites, "backend": options.backend, "quick": options.quick,
            "baselines": list(options.baselines), "settle_s": options.settle_s, "block_s": options.block_s,
            "rounds": {k: v[0 if options.quick else 1] for k, v in ROUNDS.items() if k in suites}}


def run(args: argparse.Namespace) -> int:
    """Execute ``lazyfuse bench``; returns the exit status (1 for a regression with
    --fail-on-regression)."""
    from . import cpu_fused, report, roofline
    from .environment import environment, numba_threads
    from .progress import Progress
    from .session import Session
    from .suites import plan

    suites, options, old = _validate(args)
    if options.backend == "cuda":
        from . import cuda_suite

        return cuda_suite.run(args, suites, options, old)
    tasks = plan(suites, options)
    wants_peaks = any(t.suite != "compile" for t in tasks)
    peak_cost = 4.0 if wants_peaks else 0.0
    progress = Progress(sum(t.cost for t in tasks) + peak_cost)
    session = Session(options, progress)
    opts = _options_block(suites, options)
    env = environment()
    report.print_header(env, opts)
    sys.stdout.flush()
    peaks, error = None, None
    try:
        with cpu_fused.steady_state():
            if wants_peaks:
                progress.set_section("peaks: SGEMM rate and copy bandwidth")
                peaks = roofline.measure_peaks(samples=3 if options.quick else 5)
                progress.advance(peak_cost)
            session.run(tasks)
    except BaseException as exc:  # Ctrl-C included: what was measured is still reported and saved
        error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        progress.close()
        env["numba"] = numba_threads()  # the threading layer is known once a parallel kernel ran
        rows = [roofline.annotate(r, peaks) for r in session.rows]
        if peaks:
            print(report.peaks_line(peaks))
        report.print_rows(rows, session.skipped, error)
        doc = report.compare_and_save(report.document(opts, env, peaks, rows, session.skipped, error),
                                      old, args.compare, args.json)
    if args.plot:
        from . import plot

        kind = f"{options.backend}{', quick' if options.quick else ''}"
        title = f"lazyfuse bench ({kind}): {env['cpu']['model']}"
        try:
            plot.render(rows, args.plot, title=title)
        except plot.PlotError as exc:
            raise BenchError(str(exc)) from None
        print(f"wrote {args.plot}", file=sys.stderr)
    if args.fail_on_regression and doc.get("compare", {}).get("regressions"):
        return 1
    return 0
