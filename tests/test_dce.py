"""The dce pass: unused values go, inputs and running-stat updates stay."""

from __future__ import annotations

import numpy as np

import lazyfuse as lf
from lazyfuse import nn
from lazyfuse.passes.manager import PassContext, run_passes


class Unused(nn.Module):
    def __init__(self, track=True):
        super().__init__()
        self.dead = nn.Linear(3, 4)
        self.bn = nn.BatchNorm1d(3, track_running_stats=track)
        self.live = nn.Linear(3, 2)

    def forward(self, x, y):
        nn.functional.relu(self.dead(x))  # result dropped
        self.bn(x)  # result dropped, but it updates running stats in train mode
        return self.live(x)


def run_dce(model):
    g = lf.infer_shapes(lf.trace(model, ("N", 3), ("N", 5)))
    return run_passes(g, ["dce"], PassContext(verify=True))


def test_unused_nodes_and_their_params_are_removed():
    g = run_dce(Unused())
    names = [n.name for n in g.nodes]
    assert "dead" not in names and "relu" not in names
    assert "dead.weight" not in names and "dead.bias" not in names
    assert [n.name for n in g.inputs] == ["x", "y"]  # unused input y stays: it is the signature
    assert "live" in names


def test_batch_norm_with_running_stats_is_kept():
    g = run_dce(Unused(track=True))
    assert "bn" in [n.name for n in g.nodes]
    g = run_dce(Unused(track=False))
    assert "bn" not in [n.name for n in g.nodes]


def test_dce_keeps_eager_semantics_of_dropped_batch_norm():
    eager, compiled_model = Unused(), Unused()
    compiled_model.load_state_dict(eager.state_dict())
    cm = lf.compile(compiled_model, ("N", 3), ("N", 5), backend="reference")
    x = np.random.default_rng(0).standard_normal((6, 3)).astype(np.float32)
    y = np.zeros((6, 5), np.float32)
    np.testing.assert_allclose(cm(x, y), eager(x, y), rtol=1e-6)
    np.testing.assert_allclose(compiled_model.bn.running_mean, eager.bn.running_mean, rtol=1e-6)
    assert int(compiled_model.bn.num_batches_tracked) == 1


def test_dce_on_a_clean_graph_changes_nothing():
    model = nn.Sequential(nn.Linear(3, 2), nn.ReLU())
    g = lf.infer_shapes(lf.trace(model, ("N", 3)))
    text = str(g)
    assert str(run_passes(g, ["dce"], PassContext(verify=True))) == text
