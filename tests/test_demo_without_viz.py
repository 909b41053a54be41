"""``python -m lazyfuse.examples.demo`` where the ``viz`` extra is not installed.

The extra installs graphviz-pure, which holds no Python module, only the ``graphviz-pure``
executable (in the environment's ``bin/``); lazyfuse finds it on ``PATH`` or next to the running
Python (``lazyfuse.viz.find_dot``).  So "not installed" is made real: a fresh virtual environment
whose ``bin/`` has no ``graphviz-pure`` and which sees this environment's packages through a
``.pth`` file, and a ``PATH`` without any ``graphviz-pure`` or ``dot``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

HINT = "pip install 'lazyfuse[viz]'"


def _venv_without_graphviz(where: Path) -> Path:
    """A virtual environment that imports this one's packages but has none of its programs."""
    r = subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], capture_output=True,
                       text=True, timeout=120)
    if r.returncode != 0:
        pytest.skip(f"cannot create a virtual environment: {r.stderr.strip()}")
    python = where / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    # addsitedir also runs the .pth files there (the editable install of lazyfuse is one)
    (Path(site) / "_lazyfuse_test_parent.pth").write_text(
        "".join(f"import site; site.addsitedir({d!r})\n" for d in sorted(ours)))
    return python


def _path_without_graphviz() -> str:
    def has_dot(d: str) -> bool:
        return any((Path(d) / name).exists() for name in ("graphviz-pure", "graphviz-pure.exe", "dot",
                                                          "dot.exe"))

    return os.pathsep.join(d for d in os.environ.get("PATH", "").split(os.pathsep) if d and not has_dot(d))


def test_demo_runs_to_the_end_without_graphviz(tmp_path: Path) -> None:
    python = _venv_without_graphviz(tmp_path / "venv")
    env = {k: v for k, v in os.environ.items() if k != "LAZYFUSE_DOT"}
    env["PATH"] = _path_without_graphviz()
    check = subprocess.run([str(python), "-c", "from lazyfuse.viz import find_dot; find_dot()"],
                           capture_output=True, text=True, env=env, timeout=120)
    assert check.returncode != 0 and "GraphvizNotFoundError" in check.stderr, \
        "graphviz is still found: " + check.stdout + check.stderr

    out = tmp_path / "out"
    r = subprocess.run([str(python), "-m", "lazyfuse.examples.demo", str(out)], capture_output=True,
                       text=True, env=env, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stdout.splitlines()
    # said up front, before anything ran, and naming the extra to install
    assert lines[0].startswith("note: no Graphviz") and HINT in lines[0], lines[:3]
    assert "skipped the .svg and .html pictures" in r.stdout
    # the rest ran: compiled vs eager, then the picture's source instead of the picture
    assert len([ln for ln in lines if "max |compiled - eager|" in ln]) == 4  # 3 MLP steps + the conv model
    assert (out / "mlp_optimized.dot").read_text().startswith('digraph "MLPWithBN"')
    assert not (out / "mlp_optimized.svg").exists() and not (out / "mlp_optimized.html").exists()
