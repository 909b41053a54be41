"""ONNX's own node tests for the ops lazyfuse imports, run through a small backend adapter.

The cases come from ``onnx.backend.test.case.node.collect_testcases`` (the Python definitions inside
the onnx wheel, which generate each model and its input/output data in memory: this onnx ships no
``data/node`` folder, so ``BackendTest``'s file loader finds none; nothing is downloaded).  The
adapter (:class:`LazyfuseBackend`, ``prepare`` / ``run_model`` / ``supports_device`` like an
``onnx.backend.base.Backend``) imports the model with ``lf.import_onnx`` and runs it compiled on the
reference backend.  lazyfuse holds weights as parameters, and the node tests pass them as graph
inputs, so at run time the adapter turns the inputs in weight positions (Gemm's B and C, MatMul's B,
BatchNormalization's scale / B / mean / var, Reshape's shape) into initializers with the test's
values.  :data:`EXCLUDED` lists each case that cannot pass, with the reason; the others must.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

import lazyfuse as lf

onnx = pytest.importorskip("onnx")
from onnx.backend.base import Backend, BackendRep  # noqa: E402

OPS = ("Relu", "Add", "Flatten", "Gemm", "MatMul", "BatchNormalization", "Reshape", "Identity", "Constant")
_PATTERN = re.compile(r"^test_(relu|add|flatten|gemm|matmul|batchnorm|reshape|identity|constant)(_|$)")
# Operand positions that lazyfuse holds as parameters (the adapter makes them initializers).
_WEIGHTS = {"Gemm": (1, 2), "MatMul": (1,), "BatchNormalization": (1, 2, 3, 4), "Reshape": (1,)}

EXCLUDED = {
    **{f"test_add_{t}": "integer tensors: lazyfuse runs float32 / float64" for t in
       ("int8", "int16", "uint8", "uint16", "uint32", "uint64")},
    "test_batchnorm_example_training_mode": "BatchNormalization training_mode=1 is refused (inference only)",
    "test_batchnorm_epsilon_training_mode": "BatchNormalization training_mode=1 is refused (inference only)",
    "test_constant": "a graph without inputs (its output is a constant): nothing to trace",
    "test_constant_pad": "Pad, not Constant (the name matches the pattern)",
    "test_constant_pad_axes": "Pad, not Constant",
    "test_constant_pad_negative_axes": "Pad, not Constant",
    "test_gemm_default_matrix_bias": "Gemm with a 2-D C (one bias per element): linear's bias is per column",
    "test_matmul_3d": "MatMul with a 3-D B: linear's weight is 2-D",
    "test_matmul_4d": "MatMul with a 4-D B: linear's weight is 2-D",
    "test_matmul_bcast": "MatMul with a 4-D B: linear's weight is 2-D",
    "test_matmul_1d_3d": "MatMul of a 1-D A: linear takes (*, K) inputs",
    "test_matmul_4d_1d": "MatMul with a 1-D B: linear's weight is 2-D",
    "test_matmul_1d_1d": "MatMul of two vectors: linear takes (*, K) inputs",
    "test_identity_sequence": "sequence values: lazyfuse has tensors only",
    "test_identity_opt": "optional values: lazyfuse has tensors only",
    "test_relu_expanded_ver18": "the expanded function uses CastLike and Max, ops lazyfuse does not import",
    "test_reshape_allowzero_reordered": "Reshape allowzero=1 (a literal 0 dim) is refused",
}


def _freeze(model, inputs: list[np.ndarray]):
    """``model`` with the inputs in weight positions made initializers of the given values."""
    graph = model.graph
    values = dict(zip([i.name for i in graph.input], inputs))
    frozen = {n.input[k] for n in graph.node for k in _WEIGHTS.get(n.op_type, ())
              if k < len(n.input) and n.input[k] in values}
    out = onnx.ModelProto()
    out.CopyFrom(model)
    keep = [i for i in out.graph.input if i.name not in frozen]
    del out.graph.input[:]
    out.graph.input.extend(keep)
    out.graph.initializer.extend(onnx.numpy_helper.from_array(np.asarray(values[n]), n)
                                 for n in sorted(frozen))
    return out, [values[i.name] for i in keep]


class LazyfuseRep(BackendRep):
    def __init__(self, model) -> None:
        self.model = model

    def run(self, inputs, **kwargs):
        frozen, data = _freeze(self.model, list(inputs))
        module = lf.import_onnx(frozen)
        out = lf.compile(module, backend="reference")(*data)
        return out if isinstance(out, tuple) else (out,)


class LazyfuseBackend(Backend):
    """An ``onnx.backend.base.Backend`` over ``lf.import_onnx`` + ``lf.compile(backend="reference")``."""

    @classmethod
    def prepare(cls, model, device: str = "CPU", **kwargs) -> LazyfuseRep:
        return LazyfuseRep(model)

    @classmethod
    def run_model(cls, model, inputs, device: str = "CPU", **kwargs):
        return cls.prepare(model, device).run(inputs)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device == "CPU"


def _cases():
    from onnx.backend.test.case import node

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the case generators' own NumPy warnings (log(0), ...)
        return [c for c in node.collect_testcases(None) if _PATTERN.match(c.name)]


CASES = _cases()


@pytest.mark.parametrize("name", sorted(EXCLUDED))
def test_an_excluded_case_fails_with_a_lazyfuse_error(name):
    """Each exclusion is real: the case is refused with a lazyfuse error, never a crash."""
    case = next(c for c in CASES if c.name == name)
    with pytest.raises(lf.LazyFuseError):
        LazyfuseBackend.prepare(case.model).run(case.data_sets[0][0])


def test_every_case_is_run_or_excluded_with_a_reason():
    names = {c.name for c in CASES}
    assert set(EXCLUDED) <= names, set(EXCLUDED) - names  # no stale exclusions
    run = names - set(EXCLUDED)
    assert len(run) >= 30, sorted(run)  # README, ONNX import: how many pass


@pytest.mark.parametrize("case", [c for c in CASES if c.name not in EXCLUDED], ids=lambda c: c.name)
def test_onnx_node_case(case):
    assert LazyfuseBackend.supports_device("CPU")
    rep = LazyfuseBackend.prepare(case.model)
    for inputs, outputs in case.data_sets:
        got = rep.run(inputs)
        assert len(got) == len(outputs)
        for g, want in zip(got, outputs):
            np.testing.assert_allclose(g, want, rtol=case.rtol, atol=case.atol)
