"""The cpu backend's parallel entry ``run`` compiling in the background (backends/numba_cpu/background.py)
while large calls are answered by ``run_s``; and LAZYFUSE_BACKGROUND_COMPILE=0."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import lazyfuse as lf
from lazyfuse import nn
from lazyfuse.errors import ConfigError

FEATURES, WIDTH = 300, 48
LARGE = 128  # 128 x 300 inputs: above SMALL_MAX (2**15) elements, so the call wants run


def _model() -> nn.Module:
    lf.manual_seed(3)
    return nn.Sequential(nn.Linear(FEATURES, WIDTH), nn.BatchNorm1d(WIDTH), nn.ReLU(), nn.Linear(WIDTH, 5))


def _pair() -> tuple[lf.CompiledModule, lf.CompiledModule, list[int]]:
    """A cpu compiled module whose run_s calls are counted, and a reference twin of the same model."""
    spec = lf.TensorSpec(("N", FEATURES))
    cm, ref = lf.compile(_model(), spec, backend="cpu"), lf.compile(_model(), spec, backend="reference")
    runner, serial_calls = cm.runner, [0]
    serial = runner._serial

    def counted(*args):
        serial_calls[0] += 1
        return serial(*args)

    runner._serial = counted
    return cm, ref, serial_calls


def _inputs(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((LARGE, FEATURES)).astype(np.float32)


def _same(cm: lf.CompiledModule, ref: lf.CompiledModule, x: np.ndarray) -> None:
    np.testing.assert_allclose(cm(x), ref(x), rtol=1e-4, atol=1e-4)
    for (name, a), b in zip(cm.state_dict().items(), ref.state_dict().values()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=name)


def test_a_large_call_is_answered_by_run_s_while_run_compiles_then_by_run(monkeypatch):
    monkeypatch.delenv("LAZYFUSE_BACKGROUND_COMPILE", raising=False)
    cm, ref, serial_calls = _pair()
    assert cm.runner.entry([_inputs(0)]) == "run"
    _same(cm, ref, _inputs(0))  # train mode: running stats updated by run_s like by the reference
    assert serial_calls == [1] and cm.runner._background is not None
    assert cm.wait_compiled(timeout=120) and "run" in cm.runner._compiled
    assert len(cm.runner.module.run.signatures) >= 1
    cm.eval(), ref.eval()
    for seed in (1, 2, 2, 2):  # the same input again: CompiledModule binds and replays run now
        _same(cm, ref, _inputs(seed))
    cm.train(), ref.train()
    _same(cm, ref, _inputs(4))
    assert serial_calls == [1]  # every call after the compile went to run


def test_opting_out_compiles_run_before_the_first_large_call_returns(monkeypatch):
    monkeypatch.setenv("LAZYFUSE_BACKGROUND_COMPILE", "0")
    cm, ref, serial_calls = _pair()
    _same(cm, ref, _inputs(0))
    assert serial_calls == [0] and cm.runner._background is None and "run" in cm.runner._compiled
    assert cm.wait_compiled() is True  # nothing to wait for


def test_small_calls_start_no_background_compile(monkeypatch):
    monkeypatch.delenv("LAZYFUSE_BACKGROUND_COMPILE", raising=False)
    cm, ref, serial_calls = _pair()
    small = _inputs(0)[:8]
    assert cm.runner.entry([small]) == "run_s"
    _same(cm, ref, small)
    assert cm.runner._background is None and cm.runner._compiled == {"run_s"}


def test_a_failed_background_compile_is_raised_by_the_next_large_call(monkeypatch):
    monkeypatch.delenv("LAZYFUSE_BACKGROUND_COMPILE", raising=False)
    cm, ref, serial_calls = _pair()

    class Broken:
        def compile(self, *signature):
            raise RuntimeError("cannot compile run here")

        __call__ = compile

    monkeypatch.setattr(cm.runner.module, "run", Broken())
    _same(cm, ref, _inputs(0))  # answered by run_s
    assert cm.wait_compiled(timeout=60)
    assert isinstance(cm.runner._background.error, RuntimeError)
    with pytest.raises(RuntimeError, match="cannot compile run here"):
        cm(_inputs(1))  # compiles in the foreground now, where the error reaches the caller
    assert serial_calls == [1]


def test_a_bad_setting_is_a_config_error_before_anything_runs(monkeypatch):
    monkeypatch.setenv("LAZYFUSE_BACKGROUND_COMPILE", "sometimes")
    cm, _, serial_calls = _pair()
    before = {k: v.copy() for k, v in cm.state_dict().items()}
    with pytest.raises(ConfigError, match="LAZYFUSE_BACKGROUND_COMPILE='sometimes'"):
        cm(_inputs(0))
    assert serial_calls == [0]
    for name, value in cm.state_dict().items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)


_EXIT_SCRIPT = """
import json, sys
import numpy as np
import lazyfuse as lf
from lazyfuse import nn
lf.manual_seed(0)
model = nn.Sequential(nn.Linear(260, 40), nn.BatchNorm1d(40), nn.ReLU())
cm = lf.compile(model, lf.TensorSpec(("N", 260)), backend="cpu")
cm(np.ones((200, 260), np.float32))  # a large call; run compiles (or loads) in the background
report = {"running": cm.runner._background.running}
if sys.argv[1] == "warm":
    cm.wait_compiled()
    stats = cm.runner.module.run.stats
    report.update(hits=sum(stats.cache_hits.values()), misses=sum(stats.cache_misses.values()))
print(json.dumps(report))  # "cold" ends while run may still be compiling
"""


def test_a_process_that_exits_meanwhile_waits_and_leaves_run_in_the_disk_cache(tmp_path):
    env = dict(os.environ, LAZYFUSE_CACHE_DIR=str(tmp_path / "lf"), NUMBA_CACHE_DIR=str(tmp_path / "nb"))
    env.pop("LAZYFUSE_BACKGROUND_COMPILE")

    def once(kind: str) -> dict:
        out = subprocess.run([sys.executable, "-c", _EXIT_SCRIPT, kind], env=env, capture_output=True,
                             text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    assert once("cold")["running"] is True  # a cold compile takes seconds: still running at exit
    warm = once("warm")
    assert warm["hits"] >= 1 and warm["misses"] == 0  # the exiting process finished and saved run
