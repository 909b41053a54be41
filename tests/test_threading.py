"""Several threads calling one compiled model: no crash, results equal to serial calls."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import lazyfuse as lf
from lazyfuse import nn
from lazyfuse.backends.numba_cpu import threads


@pytest.fixture(scope="module")
def compiled():
    lf.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 8))
    return model, lf.compile(model, lf.TensorSpec(("N", 16)), backend="cpu")


def _inputs(k):
    rng = np.random.default_rng(k)
    # 16384 x 64 values (PAR_MIN) take the parallel kernels, 5 x 64 the serial ones.
    return [rng.standard_normal((n, 16)).astype(np.float32) for n in (16384, 5, 16384, 3)]


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_four_threads_match_serial_results(compiled, train):
    model, cm = compiled
    model.train(train)
    xs = [x for k in range(4) for x in _inputs(k)] * 5
    start_nbt = int(model[1].num_batches_tracked)
    serial = [cm(x) for x in xs]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(cm, xs))
    for a, b in zip(serial, parallel):
        np.testing.assert_array_equal(a, b)  # outputs depend only on the input (and eval state)
    if train:  # every running-stat update happened exactly once
        assert int(model[1].num_batches_tracked) == start_nbt + 2 * len(xs)
    assert threads.threading_layer() is not None
    model.train()
