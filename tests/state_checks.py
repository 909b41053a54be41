"""The state-dict comparison the backend tests share (tests/ is on sys.path: tests/conftest.py)."""

from __future__ import annotations

from typing import Any

import numpy as np


def assert_same_state(a: Any, b: Any, **tol: float) -> None:
    """``a`` and ``b`` (models or compiled modules) hold the same state: the same keys,
    ``num_batches_tracked`` equal, every other array within ``tol`` (``assert_allclose``'s)."""
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        if k.endswith("num_batches_tracked"):
            assert int(sa[k]) == int(sb[k]), k
        else:
            np.testing.assert_allclose(sa[k], sb[k], err_msg=k, **tol)
