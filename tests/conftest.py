"""Shared pytest configuration: keep every cache inside the checkout."""

import os
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("LAZYFUSE_CACHE_DIR", str(_ROOT / ".cache" / "lazyfuse"))
os.environ.setdefault("NUMBA_CACHE_DIR", str(_ROOT / ".cache" / "numba"))
