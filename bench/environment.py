"""The environment block of a ``lazyfuse bench`` report: what machine and software the rows are from.

CPU model and core count, the BLAS and OpenMP libraries in the process (threadpoolctl: version,
kernel set ("core"), threads), every pool's thread count, Numba's threading layer, the thread
settings from the environment, versions, the git commit of the package (if it is a checkout) and
the date.  Everything is best effort: a piece that cannot be found is None, never an error.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .cpu_fused import blas_info

PACKAGE_DIR = Path(__file__).resolve().parent.parent


def cpu_model() -> str:
    """The CPU's marketing name (/proc/cpuinfo on Linux, else :mod:`platform`)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def git_commit(path: Path = PACKAGE_DIR) -> str | None:
    """``git rev-parse HEAD`` in ``path``, or None (not a checkout, no git, any failure)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and commit else None


def _version(module: str) -> str | None:
    mod = sys.modules.get(module)
    if mod is None:
        try:
            from importlib.metadata import version

            return version(module)
        except Exception:
            return None
    return getattr(mod, "__version__", None)


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def numba_threads() -> dict[str, Any]:
    """Numba's thread count, its threading layer (None until a parallel kernel ran) and, where
    the cpu backend has it, its ``layer_choice()``."""
    import numba

    from lazyfuse.backends.numba_cpu import threads

    # numba.config, not numba.get_num_threads(): that one starts Numba's pool, after which
    # lazyfuse may no longer choose the threading layer (threads.choose_layer).
    info: dict[str, Any] = {"num_threads": numba.config.NUMBA_NUM_THREADS,
                            "threading_layer": threads.threading_layer()}
    choice = getattr(threads, "layer_choice", None)
    if callable(choice):
        try:
            info["layer_choice"] = _jsonable(choice())
        except Exception as exc:  # a report must not fail on a diagnostic
            info["layer_choice"] = f"error: {type(exc).__name__}: {exc}"
    return info


def environment() -> dict[str, Any]:
    """The environment block (see the module doc)."""
    import lazyfuse
    from lazyfuse.backends.numba_cpu import threads

    blas = blas_info()
    torch = sys.modules.get("torch")
    numba_info = numba_threads()
    pools = {str(b.get("internal_api")): b.get("num_threads") for b in blas}
    thread_counts: dict[str, Any] = {"cpu_count": os.cpu_count(), "numba": numba_info["num_threads"],
                                     "pools": pools}
    if torch is not None:
        thread_counts["torch"] = torch.get_num_threads()
    return {
        "cpu": {"model": cpu_model(), "cores": os.cpu_count(), "machine": platform.machine(),
                "platform": platform.platform()},
        "blas": blas,
        "threads": thread_counts,
        "numba": numba_info,
        "thread_env": threads.settings(),
        "versions": {"python": platform.python_version(), "numpy": np.__version__,
                     "numba": _version("numba"), "torch": _version("torch"),
                     "threadpoolctl": _version("threadpoolctl"), "lazyfuse": lazyfuse.__version__},
        "git_commit": git_commit(),
        "date": datetime.datetime.now(datetime.timezone.utc).astimezone().isoformat(timespec="seconds"),
    }


def header(env: dict[str, Any]) -> list[str]:
    """The environment as a few printed lines."""
    blas = "; ".join(f"{b.get('internal_api')} {b.get('version')} core {b.get('architecture')} "
                     f"{b.get('num_threads')} threads" for b in env["blas"]) or "unknown (no threadpoolctl)"
    v = env["versions"]
    layer = env["numba"].get("threading_layer") or "not started yet"
    choice = f", layer_choice {env['numba']['layer_choice']}" if "layer_choice" in env["numba"] else ""
    set_env = ", ".join(f"{k}={val}" for k, val in env["thread_env"].items() if val is not None) or "none"
    return [
        f"CPU: {env['cpu']['model']} ({env['cpu']['cores']} cores, {env['cpu']['machine']})",
        f"BLAS: {blas}",
        f"threads: numba {env['threads']['numba']} (layer {layer}{choice})"
        + (f", torch {env['threads']['torch']}" if "torch" in env["threads"] else "")
        + f"; thread settings: {set_env}",
        f"versions: python {v['python']}, numpy {v['numpy']}, numba {v['numba']}, torch {v['torch']}, "
        f"lazyfuse {v['lazyfuse']}; commit {env['git_commit'] or 'unknown'}; {env['date']}",
    ]
