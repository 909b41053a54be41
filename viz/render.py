"""Find a Graphviz ``dot`` program and run it.

Order: ``$LAZYFUSE_DOT`` (a path or command name), then ``graphviz-pure`` (the pip package that
``lazyfuse[viz]`` installs: a self-contained Rust port of Graphviz 16.1 with bundled fonts, which
writes the same bytes on every platform, so committed pictures and tests are reproducible), then
a system ``dot``.  ``graphviz-pure`` is looked up on ``PATH`` and next to the running Python, since
a virtual environment's ``bin/`` is often not on ``PATH`` when its console script runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from lazyfuse.errors import LazyFuseError

__all__ = ["GraphvizError", "GraphvizNotFoundError", "find_dot", "run_dot", "FORMATS"]

FORMATS = ("svg", "png")


class GraphvizError(LazyFuseError, RuntimeError):
    """Graphviz failed to lay out or render a picture."""


class GraphvizNotFoundError(GraphvizError):
    """No ``dot`` program was found."""


def _script_dirs() -> list[Path]:
    dirs = [Path(sys.executable).parent]
    for scheme in (None, f"{os.name}_user"):
        try:
            path = sysconfig.get_path("scripts", scheme) if scheme else sysconfig.get_path("scripts")
        except KeyError:
            continue
        if path:
            dirs.append(Path(path))
    return dirs


def find_dot() -> str:
    """The path of the ``dot`` program to use (see the module docstring for the order)."""
    env = os.environ.get("LAZYFUSE_DOT", "").strip()
    if env:
        found = shutil.which(env)
        if found is None:
            raise GraphvizNotFoundError(f"LAZYFUSE_DOT={env!r} is not an executable program")
        return found
    found = shutil.which("graphviz-pure")
    if found:
        return found
    for d in _script_dirs():
        for name in ("graphviz-pure", "graphviz-pure.exe"):
            cand = d / name
            if cand.is_file() and os.access(cand, os.X_OK):
                return str(cand)
    found = shutil.which("dot")
    if found:
        return found
    raise GraphvizNotFoundError(
        "Graphviz is needed to draw pictures and none was found: pip install 'lazyfuse[viz]' "
        "(installs graphviz-pure) or install the system graphviz package; or write a .dot file")


def run_dot(dot_source: str, fmt: str, timeout: float = 120.0) -> bytes:
    """Lay out ``dot_source`` with ``dot`` and return the ``fmt`` (``svg`` or ``png``) bytes."""
    if fmt not in FORMATS:
        raise GraphvizError(f"unsupported picture format {fmt!r}; expected one of {', '.join(FORMATS)}")
    exe = find_dot()
    try:
        proc = subprocess.run([exe, f"-T{fmt}"], input=dot_source.encode("utf-8"), capture_output=True,
                              timeout=timeout, check=False)
    except OSError as exc:
        raise GraphvizError(f"could not run {exe}: {exc}") from exc
    except subprocess.TimeoutExpired:
        raise GraphvizError(f"{exe} did not finish within {timeout:.0f}s") from None
    if proc.returncode != 0 or not proc.stdout:
        err = proc.stderr.decode("utf-8", "replace").strip() or f"exit status {proc.returncode}"
        raise GraphvizError(f"{Path(exe).name} failed: {err}")
    return proc.stdout
