"""The random-model parity property of tests/test_parity_torch.py on the ``cuda`` backend: random
fusible models, several train steps then eval (batches 0-4, C- and Fortran-ordered inputs, inputs
with |mean| >> std), outputs and the whole state_dict compared with torch after every step.  The
small launch geometry (8 x 8 tiles, 8-row chunks) makes even these tiny batches cross tile edges."""

from __future__ import annotations

import os

import parity_models as P
import pytest
from hypothesis import given, settings

pytest.importorskip("torch")
import test_parity_torch as T  # noqa: E402  (tests/ is on sys.path: tests/conftest.py)

CUDA_EXAMPLES = int(os.environ.get("LAZYFUSE_PARITY_EXAMPLES", "0")) // 5 or 100


@pytest.fixture(autouse=True)
def small_tiles(monkeypatch):
    monkeypatch.setenv("LAZYFUSE_CUDA_TILES", "small")


@settings(max_examples=CUDA_EXAMPLES, **T.COMMON)
@given(P.model_descs(max_layers=4, min_layers=2, fusible=True))
def test_cuda_matches_torch(desc):
    T.check_parity(desc, ("cuda",))


@pytest.mark.parametrize("name", sorted(T.FUSED_CHAINS))
def test_every_fused_chain_matches_torch(name):
    desc, fused = T.FUSED_CHAINS[name]
    lazy, init_state = T.materialized(desc)
    _, cm = T.backend_model(desc, lazy, init_state, "cuda")
    assert fused <= {n.op for n in cm.graph.nodes}, str(cm.graph)
    T.check_parity(desc, ("cuda",))
