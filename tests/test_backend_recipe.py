"""The README's "Adding a backend" recipe, written out in this file: a backend of a dozen lines gets
tracing, inference, materialization, its own pass pipeline, input checks and the shared model
state (running statistics updated in train mode) from lazyfuse, and matches the reference backend."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pytest

import lazyfuse as lf
from lazyfuse import nn
from lazyfuse.backends import BACKENDS, register_backend
from lazyfuse.errors import ShapeError
from lazyfuse.ir import OPS, Graph, mode_module


class OpByOpExecutable:
    """Runs each node's op-table impl in graph order (the fused ops compose their parts' impls)."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.source = str(graph)

    def run(self, inputs: Sequence[np.ndarray], state: Mapping[str, np.ndarray],
            training: Mapping[str | None, bool]) -> np.ndarray:
        env = {}
        for node in self.graph.nodes:
            if node.op == "input":
                env[node] = inputs[node.attrs["index"]]
            elif node.op in ("param", "buffer"):
                env[node] = state[node.attrs["target"]]
            elif node.op == "output":
                return env[node.inputs[0]]
            else:
                mode = training.get(mode_module(node), False)
                env[node] = OPS[node.op].impl(node.attrs, *(env[i] for i in node.inputs), training=mode)
        raise AssertionError("graph without output")


class OpByOpBackend:
    name = "op-by-op"
    pipeline = ["dce", "fuse"]  # run after the API's infer_shapes and materialize_lazy

    def build(self, graph: Graph) -> OpByOpExecutable:
        return OpByOpExecutable(graph)


@pytest.fixture
def backend():
    register_backend(OpByOpBackend())
    try:
        yield "op-by-op"
    finally:
        del BACKENDS["op-by-op"]


def _compiled(backend: str) -> tuple[nn.Module, lf.CompiledModule]:
    lf.manual_seed(3)  # the lazy layers draw their initial values when compile materializes them
    model = nn.Sequential(nn.Linear(6, 5), nn.LazyBatchNorm1d(), nn.ReLU(), nn.LazyLinear(2))
    return model, lf.compile(model, lf.TensorSpec(("N", 6)), backend=backend)


def test_a_registered_backend_compiles_and_matches_the_reference(backend):
    x = np.random.default_rng(0).standard_normal((8, 6)).astype(np.float32)
    mine, cm = _compiled(backend)
    ref, cr = _compiled("reference")
    assert isinstance(cm.runner, OpByOpExecutable)
    assert "fused_linear_bn_relu" in cm.source  # its own pipeline ran: fuse
    assert not mine.has_uninitialized_params()  # the API materialized the lazy modules
    for _ in range(3):  # train mode: the running stats are the model's, updated in place
        np.testing.assert_allclose(cm(x), cr(x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mine[1].running_mean, ref[1].running_mean, rtol=1e-6)
    assert int(mine[1].num_batches_tracked) == 3
    mine.eval(), ref.eval()
    np.testing.assert_allclose(cm(x[:1]), cr(x[:1]), rtol=1e-5, atol=1e-6)


def test_the_compiled_module_checks_inputs_for_any_backend(backend):
    _, cm = _compiled(backend)
    with pytest.raises(ShapeError, match="dim 1 is 7, expected 6"):
        cm(np.zeros((4, 7), np.float32))
    assert backend in lf.backends.available_backends()
