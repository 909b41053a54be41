"""One ``lazyfuse bench`` run: its options, its planned tasks, and the rows and notes they produce.

A suite is a list of :class:`Task` (one measured configuration each, with a cost estimate for the
progress display).  :meth:`Session.pair` measures a candidate against each selected
:class:`~lazyfuse.bench.baselines.Baseline` with :func:`lazyfuse.bench.cpu_fused.paired`, skipping
with a note the ones that cannot run here.  A quick run keeps no targets: its shapes and rounds are
not the ones the targets were set for.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import cpu_fused
from .baselines import BASELINES, Baseline, Step, Unavailable
from .progress import Progress

# Seconds of idle time before each timed block (see cpu_fused.SETTLE_S): a quick run trades the
# full settle for speed, so its numbers are indicative only.
SETTLE_QUICK_S = 0.1


@dataclass(frozen=True)
class Options:
    """What to run: ``quick`` (small shapes, few rounds), the lazyfuse backend, the baselines."""

    quick: bool = False
    backend: str = "cpu"
    baselines: tuple[str, ...] = BASELINES

    @property
    def settle_s(self) -> float:
        return SETTLE_QUICK_S if self.quick else cpu_fused.SETTLE_S

    @property
    def block_s(self) -> float:
        """Target length of one timed block; small calls repeat until they fill it."""
        return 0.01 if self.quick else 0.05


@dataclass
class Task:
    """One configuration of a suite: ``run(session)`` returns its rows; ``cost`` estimates seconds."""

    suite: str
    label: str
    run: Callable[[Session], list[dict[str, Any]]]
    cost: float = 1.0


def pair_cost(options: Options, rounds: int, rows: int, call_s: float = 0.0) -> float:
    """Estimated seconds of ``rows`` paired rows of ``rounds`` rounds whose calls take ``call_s``."""
    return rows * (rounds * 2 * (options.settle_s + max(call_s, options.block_s)) + 0.5)


@dataclass
class Session:
    """The state of one run (see the module doc)."""

    options: Options
    progress: Progress | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    suite: str = ""

    def wants(self, key: str) -> bool:
        """Whether baseline ``key`` was selected."""
        return key in self.options.baselines

    def skip(self, bench: str, baseline: str, reason: str) -> None:
        """Record a row that was not measured, and why."""
        self.skipped.append({"suite": self.suite, "bench": bench, "baseline": baseline, "reason": reason})

    def status(self, what: str) -> None:
        if self.progress is not None:
            self.progress.set_row(what)

    def pair(self, bench: str, cand: Step, baselines: Sequence[Baseline], rounds: int,
             work: dict[str, int] | None = None, reps: int | None = None) -> list[dict[str, Any]]:
        """Rows of ``cand`` paired with each selected baseline; ``work`` is ``{"flops": n}`` or
        ``{"bytes": n}`` for the roofline figures, ``reps`` calls per block (default: enough to
        fill :attr:`Options.block_s`)."""
        rows = []
        for base in baselines:
            if not self.wants(base.key):
                continue
            self.status(f"{bench} vs {base.label}")
            try:
                step, extra = base.make()
            except Unavailable as exc:
                self.skip(bench, base.label, str(exc))
                continue
            n = reps if reps is not None else calibrate((cand, step), self.options.block_s)
            row = cpu_fused.paired(bench, cand, step, base.label, rounds, reps=n, target=base.target)
            rows.append(self.finish({**row, **extra, **(work or {})}))
        return rows

    def finish(self, row: dict[str, Any]) -> dict[str, Any]:
        """Tag a row with its suite and backend; drop full-size targets from quick rows."""
        row = {"suite": self.suite, "backend": self.options.backend, **row}
        if self.options.quick:
            row.pop("target", None)
            row.pop("met", None)
        return row

    def run(self, tasks: Sequence[Task]) -> None:
        """Run ``tasks`` in order, appending to :attr:`rows`; a failure or Ctrl-C stops the run and
        propagates, with the rows measured so far kept."""
        with settle(self.options.settle_s):
            for task in tasks:
                self.suite = task.suite
                if self.progress is not None:
                    self.progress.set_section(f"{task.suite}: {task.label}")
                self.rows += [self.finish(r) if "suite" not in r else r for r in task.run(self)]
                if self.progress is not None:
                    self.progress.advance(task.cost)


def calibrate(steps: Sequence[Step], block_s: float, most: int = 10_000) -> int:
    """Calls per block so that the slowest of ``steps`` fills about ``block_s`` seconds."""
    slowest = 0.0
    for step in steps:
        step()
        start = time.perf_counter()
        step()
        slowest = max(slowest, time.perf_counter() - start)
    return max(1, min(most, math.ceil(block_s / max(slowest, 1e-9)))) if slowest < block_s else 1


@contextlib.contextmanager
def settle(seconds: float) -> Iterator[None]:
    """Use ``seconds`` as :data:`cpu_fused.SETTLE_S` inside the block."""
    old, cpu_fused.SETTLE_S = cpu_fused.SETTLE_S, seconds
    try:
        yield
    finally:
        cpu_fused.SETTLE_S = old
