"""Shared pytest configuration: keep every cache inside the checkout."""

import os
import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("LAZYFUSE_CACHE_DIR", str(_ROOT / ".cache" / "lazyfuse"))
os.environ.setdefault("NUMBA_CACHE_DIR", str(_ROOT / ".cache" / "numba"))

# A first large call compiles the cpu backend's parallel entry before it returns, so the tests that
# call with large inputs check the parallel kernels, not the serial ones that answer by default while
# it compiles in the background (tests/test_background_compile.py checks that default).
os.environ.setdefault("LAZYFUSE_BACKGROUND_COMPILE", "0")
# Every pass run by the tests is followed by the IR verifier (PassContext reads this).
os.environ.setdefault("LAZYFUSE_VERIFY", "1")
# Test helper modules (models_for_tests.py, marks.py) are imported by name; there is no tests/__init__.py.
sys.path.insert(0, str(Path(__file__).resolve().parent))
