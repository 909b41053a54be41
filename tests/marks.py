"""Shared pytest marks (imported by name: the tests dir is on ``sys.path``, see conftest.py)."""

import pytest

import lazyfuse as lf


def _has_graphviz() -> bool:
    from lazyfuse.viz import find_dot

    try:
        find_dot()
    except lf.LazyFuseError:
        return False
    return True


needs_graphviz = pytest.mark.skipif(not _has_graphviz(), reason="no Graphviz (pip install lazyfuse[viz])")
