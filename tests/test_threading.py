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


def test_replays_racing_checked_calls_of_other_shapes_stay_consistent():
    # Two threads alternate two input shapes (each call either replays or re-binds) with the GIL
    # switching as often as it can: a replay must never pair one shape's check with another's call.
    import sys
    import threading
    import time

    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU()).eval()
    cm = lf.compile(model, lf.TensorSpec(("N", 4)), backend="reference")
    xs = [np.ones((n, 4), np.float32) for n in (2, 3)]
    problems: list[str] = []
    stop = threading.Event()

    def work(k: int) -> None:
        i = 0
        while not stop.is_set():
            x = xs[(i // 2 + k) % 2]
            i += 1
            try:
                if cm(x).shape != (x.shape[0], 3):
                    problems.append(f"wrong shape for {x.shape}")
            except Exception as exc:  # noqa: BLE001 - any error is the finding
                problems.append(f"{type(exc).__name__}: {exc}")

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        workers = [threading.Thread(target=work, args=(k,)) for k in range(2)]
        for w in workers:
            w.start()
        time.sleep(2.0)
        stop.set()
        for w in workers:
            w.join()
    finally:
        sys.setswitchinterval(old)
    assert not problems, problems[:3]
