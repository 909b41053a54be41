"""Progress of a ``lazyfuse bench`` run on stderr: the section, the row, the time left.

Drawn with tqdm when it is installed (the ``bench`` extra), else as one rewritten status line;
silent when stderr is not a terminal (a log file or a pipe gets nothing).  Work is counted in
estimated seconds, so the time left follows how fast the estimates are actually being worked off.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


class Progress:
    """A progress display for ``total`` estimated seconds of work."""

    def __init__(self, total: float, stream: TextIO | None = None, enabled: bool | None = None) -> None:
        self.stream = sys.stderr if stream is None else stream
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.total, self.done, self.start = max(total, 1e-9), 0.0, time.perf_counter()
        self.section, self.what = "", ""
        self._bar: Any = None
        if self.enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self._bar = tqdm(total=round(self.total, 1), file=self.stream, unit="s", leave=False,
                                 dynamic_ncols=True,
                                 bar_format="{desc} |{bar}| {percentage:3.0f}% [{elapsed}<{remaining}]")

    def set_section(self, name: str) -> None:
        """Start reporting on section ``name``."""
        self.section, self.what = name, ""
        self._show()

    def set_row(self, what: str) -> None:
        """Say which row is being measured."""
        self.what = what
        self._show()

    def advance(self, cost: float) -> None:
        """Count ``cost`` estimated seconds as done."""
        self.done = min(self.total, self.done + cost)
        if self._bar is not None:
            self._bar.update(round(self.done, 1) - self._bar.n)
        self._show()

    def left_s(self) -> float | None:
        """Estimated seconds left (None before any work is done)."""
        if self.done <= 0:
            return None
        elapsed = time.perf_counter() - self.start
        return elapsed / self.done * (self.total - self.done)

    def close(self) -> None:
        """Remove the display."""
        if self._bar is not None:
            self._bar.close()
        elif self.enabled:
            self.stream.write("\r\033[K")
            self.stream.flush()

    def _label(self) -> str:
        return f"{self.section}: {self.what}" if self.what else self.section

    def _show(self) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.set_description_str(self._label()[:70], refresh=True)
            return
        left = self.left_s()
        eta = f", ~{_clock(left)} left" if left is not None else ""
        line = f"{self._label()[:70]} [{100 * self.done / self.total:3.0f}%{eta}]"
        self.stream.write("\r\033[K" + line)
        self.stream.flush()
