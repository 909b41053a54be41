"""``lf.export_onnx``: lazy models exported from a spec alone, checked by onnx.checker (full) and run by
onnxruntime against lazyfuse's reference backend in eval mode."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import lazyfuse as lf
from lazyfuse import nn
from lazyfuse.examples.convnets import FeatureExtractor
from lazyfuse.examples.mlp import DynamicMLP, MLPWithBN

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def _run_onnx(path: Path, *inputs: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {i.name: x for i, x in zip(sess.get_inputs(), inputs)})[0]


def _trained(model: nn.Module, *shapes: tuple[int, ...]) -> None:
    """Two train-mode steps, so BatchNorm exports running statistics that are not 0 / 1."""
    rng = np.random.default_rng(7)
    for _ in range(2):
        model(*(rng.standard_normal(s).astype(np.float32) * 3 + 1 for s in shapes))


def _check_same(model: nn.Module, specs: tuple, path: Path, *inputs: np.ndarray, opset: int = 18) -> None:
    proto = lf.export_onnx(model, specs if len(specs) > 1 else specs[0], path, opset=opset)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    model.eval()
    want = lf.compile(model, *specs, backend="reference")(*inputs)
    got = _run_onnx(path, *inputs)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert proto.opset_import[0].version == opset


def test_a_lazy_model_exports_from_its_spec_alone(tmp_path):
    lf.manual_seed(0)
    model = MLPWithBN()
    assert model.has_uninitialized_params()
    proto = lf.export_onnx(model, ("N", 784), tmp_path / "mlp.onnx")
    assert not model.has_uninitialized_params() and type(model.fc2) is nn.Linear  # materialized
    graph = onnx.load(str(tmp_path / "mlp.onnx")).graph
    dims = [[d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in graph.input]
    assert dims == [["N", 784]]
    outs = [[d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in graph.output]
    assert outs == [["N", 10]]
    names = {t.name for t in graph.initializer}
    state = {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}
    assert names == state  # by state_dict names; num_batches_tracked is not read in inference
    assert [n.op_type for n in graph.node] == ["Flatten", "Gemm", "BatchNormalization", "Relu", "Gemm",
                                               "BatchNormalization", "Relu", "Gemm"]
    fc1 = next(n for n in graph.node if n.name == "fc1")
    assert fc1.op_type == "Gemm" and fc1.doc_string.startswith("mlp.py:") and "fc1:Linear" in fc1.doc_string
    assert proto.producer_name == "lazyfuse"


@pytest.mark.parametrize("opset", [14, 18])
def test_mlp_with_trained_batchnorm_matches_onnxruntime(tmp_path, opset):
    lf.manual_seed(1)
    model = MLPWithBN()
    lf.compile(model, ("N", 784), backend="reference")  # materialize, then train eagerly
    _trained(model, (16, 784))
    x = np.random.default_rng(0).standard_normal((5, 784)).astype(np.float32)
    _check_same(model, (("N", 784),), tmp_path / "mlp.onnx", x, opset=opset)


def test_models_with_functional_relu_and_convolutions_match_onnxruntime(tmp_path):
    lf.manual_seed(2)
    x = np.random.default_rng(1).standard_normal((3, 784)).astype(np.float32)
    _check_same(DynamicMLP(), (("N", 784),), tmp_path / "dyn.onnx", x)
    images = np.random.default_rng(2).standard_normal((2, 3, 32, 32)).astype(np.float32)
    _check_same(FeatureExtractor(), (("N", 3, 32, 32),), tmp_path / "conv.onnx", images)


class _Mixed(nn.Module):
    """Linear on (N, L, C) (MatMul + Add), BN without affine, flatten from dim 2, reshape with -1, add,
    a strided padded conv and a ceil-mode max pool."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 4)
        self.fc_nobias = nn.Linear(4, 4, bias=False)
        self.bn = nn.BatchNorm1d(5, affine=False)
        self.conv = nn.Conv2d(2, 3, 3, stride=2, padding=(1, 2))
        self.bn2 = nn.BatchNorm2d(3)
        self.pool = nn.MaxPool2d(2, ceil_mode=True, padding=1)

    def forward(self, x, img):
        h = self.bn(self.fc(x))  # (N, 5, 4): BatchNorm over the 5 channels
        h = self.fc_nobias(h) + h  # MatMul alone, then Add
        h = h.flatten(1).reshape(h.shape[0], 2, -1).flatten(0, 1)  # (N, 20) -> (N, 2, 10) -> (2N, 10)
        c = self.pool(nn.functional.relu(self.bn2(self.conv(img))))
        return h, c


def test_every_exported_op_matches_onnxruntime(tmp_path):
    lf.manual_seed(3)
    model = _Mixed()
    _trained(model, (8, 5, 6), (8, 2, 9, 11))
    x = np.random.default_rng(3).standard_normal((4, 5, 6)).astype(np.float32)
    img = np.random.default_rng(4).standard_normal((4, 2, 9, 11)).astype(np.float32)
    path = tmp_path / "mixed.onnx"
    lf.export_onnx(model, (("N", 5, 6), ("N", 2, 9, 11)), path)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    model.eval()
    want = lf.compile(model, ("N", 5, 6), ("N", 2, 9, 11), backend="reference")(x, img)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"x": x, "img": img})
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"MatMul", "Transpose", "Add", "BatchNormalization", "Reshape", "Conv", "MaxPool", "Relu"} <= ops


class _Transposed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 4)

    def forward(self, x):
        return self.fc(x).t().relu()  # (4, N): Transpose


def test_a_transpose_exports_and_imports_back(tmp_path):
    lf.manual_seed(5)
    model = _Transposed()
    x = np.random.default_rng(5).standard_normal((6, 3)).astype(np.float32)
    _check_same(model, (("N", 3),), tmp_path / "t.onnx", x)
    assert "Transpose" in {n.op_type for n in onnx.load(str(tmp_path / "t.onnx")).graph.node}
    back = lf.compile(lf.import_onnx(tmp_path / "t.onnx"))  # Transpose is not an imported op
    np.testing.assert_allclose(back(x), model(x), rtol=1e-5, atol=1e-6)


def test_a_torch_model_exports_too(tmp_path):
    torch = pytest.importorskip("torch")
    from lazyfuse.examples.torch_models import TorchMLPWithBN

    torch.manual_seed(0)
    model = TorchMLPWithBN().eval()
    lf.export_onnx(model, ("N", 784), tmp_path / "t.onnx")
    assert type(model.fc2) is torch.nn.Linear  # materialized in the torch model
    x = torch.randn(6, 784)
    with torch.no_grad():
        want = model(x).numpy()
    np.testing.assert_allclose(_run_onnx(tmp_path / "t.onnx", x.numpy()), want, rtol=1e-5, atol=1e-5)


def test_batchnorm_without_running_stats_is_a_clear_error(tmp_path):
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4, track_running_stats=False))
    with pytest.raises(lf.CompileError, match="track_running_stats=False normalizes by batch statistics"):
        lf.export_onnx(model, ("N", 3), tmp_path / "bn.onnx")
    assert not (tmp_path / "bn.onnx").exists()


@pytest.mark.parametrize("opset", [3, 99, True, "18"])
def test_a_bad_opset_is_a_clear_error(tmp_path, opset):
    with pytest.raises(lf.CompileError, match="opset must be an int from 14"):
        lf.export_onnx(nn.Linear(2, 2), ("N", 2), tmp_path / "x.onnx", opset=opset)


def test_an_unwritable_path_is_a_clear_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(lf.CompileError, match="cannot write"):
        lf.export_onnx(nn.Linear(2, 2), ("N", 2), tmp_path / "file" / "x.onnx")
