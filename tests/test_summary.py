"""lf.summary: per-layer output types and parameter counts of a lazy model, nothing allocated."""

from __future__ import annotations

import models_for_tests as M
import pytest
from test_trace import assert_same, snapshot

import lazyfuse as lf
from lazyfuse import nn
from lazyfuse.errors import InferenceError


def mlp():
    from lazyfuse.examples.mlp import MLPWithBN

    return MLPWithBN()


def test_summary_of_a_lazy_model_before_allocation(monkeypatch):
    def no_alloc(self, **dims):
        raise AssertionError("summary must not materialize")

    monkeypatch.setattr(nn.LazyLinear, "materialize", no_alloc)
    monkeypatch.setattr(nn.LazyBatchNorm1d, "materialize", no_alloc)
    model = mlp()
    before = snapshot(model)
    text = lf.summary(model, lf.TensorSpec(("N", 28, 28)))
    assert_same(before, snapshot(model))
    assert model.has_uninitialized_params() and type(model.fc2) is nn.LazyLinear
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines()[1:]}
    assert rows["flatten"] == ["Flatten", "f32[N,784]", "0"]
    assert rows["fc1"] == ["Linear", "f32[N,256]", "200,960"]
    assert rows["bn1"] == ["LazyBatchNorm1d", "f32[N,256]", "512", "num_features=256"]
    assert rows["fc2"] == ["LazyLinear", "f32[N,128]", "32,896", "in_features=256"]
    assert rows["bn2"] == ["LazyBatchNorm1d", "f32[N,128]", "256", "num_features=128"]
    assert rows["fc3"] == ["LazyLinear", "f32[N,10]", "1,290", "in_features=128"]
    assert text.splitlines()[1].split() == ["Module", "Type", "Output", "Params", "Lazy", "sizes"]
    assert "MLPWithBN" in text.splitlines()[0] and "f32[N,28,28]" in text.splitlines()[0]
    assert text.splitlines()[-1] == "Total params: 235,914"


def test_summary_total_matches_the_materialized_model():
    model = mlp()
    text = lf.summary(model, ("N", 784))
    lf.infer_shapes(lf.trace(model, ("N", 784)))
    total = sum(p.size for p in model.parameters())
    assert text.splitlines()[-1] == f"Total params: {total:,}"
    # Once materialized nothing is lazy: no "Lazy sizes" column.
    assert lf.summary(model, ("N", 784)).splitlines()[1].split() == ["Module", "Type", "Output", "Params"]


def test_summary_shows_simplenets_50176_before_anything_is_allocated():
    """The seeds' SimpleNet: Conv2d(3, 64, 5) on 3x32x32, reshape, LazyLinear(10)."""
    from lazyfuse.examples.convnets import SimpleNet

    model = SimpleNet()
    text = lf.summary(model, ("N", 3, 32, 32))
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines()[3:-2]}
    assert rows["conv"] == ["Conv2d", "f32[N,64,28,28]", "4,864"]
    assert rows["fc"] == ["LazyLinear", "f32[N,10]", "501,770", "in_features=50176"]
    assert nn.is_uninitialized(model.fc.weight) and model.fc.in_features == 0


def test_summary_of_functional_layers_and_shared_params():
    text = lf.summary(M.TwoInputs(), ("N", 3), ("N", 2))
    # `a` is called twice; its 16 parameters are counted once.
    assert text.splitlines()[-1] == "Total params: 28"


def test_summary_reports_inference_errors_and_changes_nothing():
    model = M.FlattenIntoLazy()
    before = snapshot(model)
    with pytest.raises(InferenceError, match="symbol L"):
        lf.summary(model, ("N", 3, "L"))
    assert_same(before, snapshot(model))


def test_containers_come_before_their_children_with_everything_below_them():
    model = M.StemNet()
    text = lf.summary(model, ("N", 3))
    rows = [line.split() for line in text.splitlines()[3:-2]]
    assert rows == [
        ["stem", "Stem", "f32[N,4]", "24"],  # inferred from the spec, nothing allocated
        ["stem.fc", "LazyLinear", "f32[N,4]", "16", "in_features=3"],
        ["stem.bn", "LazyBatchNorm1d", "f32[N,4]", "8", "num_features=4"],
        ["block", "ResBlock", "f32[N,4]", "20"],  # its output is the residual add's
        ["block.fc", "Linear", "f32[N,4]", "20"],
        ["head", "Sequential", "f32[N,2]", "10"],
        ["head.0", "Linear", "f32[N,2]", "10"],
    ]
    assert nn.is_uninitialized(model.stem.fc.weight)
