"""``lf.import_onnx``: ONNX files as lazyfuse modules -- round trips (lazyfuse -> ONNX -> lazyfuse,
torch.onnx.export -> lazyfuse), fusion of imported graphs, input specs from the file, the CLI, and
clear errors for files and ops it cannot take."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lazyfuse as lf
from lazyfuse import nn
from lazyfuse.examples.mlp import DynamicMLP, MLPWithBN

onnx = pytest.importorskip("onnx")
helper = onnx.helper


def _x(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _trained_mlp() -> MLPWithBN:
    lf.manual_seed(0)
    model = MLPWithBN()
    lf.compile(model, ("N", 784), backend="reference")
    for seed in (1, 2):
        model(_x(16, 784, seed=seed) * 2 + 1)  # running stats that are not 0 / 1
    return model.eval()


@pytest.fixture(scope="module")
def mlp_file(tmp_path_factory) -> tuple[MLPWithBN, Path]:
    model = _trained_mlp()
    path = tmp_path_factory.mktemp("onnx") / "mlp.onnx"
    lf.export_onnx(model, ("N", 784), path)
    return model, path


def test_lazyfuse_to_onnx_to_lazyfuse_keeps_names_specs_and_numbers(mlp_file):
    model, path = mlp_file
    imported = lf.import_onnx(path)
    assert type(imported).__name__ == "MLPWithBN" and not imported.training  # inference semantics
    assert [s.shape for s in imported.input_specs] == [("N", 784)]
    want = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    got = imported.state_dict()
    for name, value in want.items():
        np.testing.assert_array_equal(got[name], value, err_msg=name)
    assert type(imported.fc1) is nn.Linear and type(imported.bn1) is nn.BatchNorm1d
    x = _x(5, 784)
    ref = lf.compile(model, ("N", 784), backend="reference")(x)
    np.testing.assert_allclose(imported(x), ref, rtol=1e-5, atol=1e-6)  # eager
    for backend in ("reference", "cpu"):
        cm = lf.compile(imported, backend=backend)  # the specs the file declares
        np.testing.assert_allclose(cm(x), ref, rtol=1e-5, atol=1e-6)
        assert "%x: f32[N,784]" in str(cm.graph)


def test_the_imported_gemm_batchnorm_relu_chain_fuses(mlp_file):
    _, path = mlp_file
    graph = lf.compile(lf.import_onnx(path), backend="reference").graph
    text = str(lf.compile(lf.import_onnx(path)).graph)
    assert "fused_linear_bn_relu" in text and text.count("fused_linear_bn_relu[") == 2
    assert "# mlp.onnx:" in str(graph)  # locations are the ONNX node numbers


def test_a_torch_exported_mlp_with_batchnorm_matches_torch(tmp_path):
    torch = pytest.importorskip("torch")
    from lazyfuse.examples.torch_models import TorchMLPWithBN

    torch.manual_seed(0)
    model = TorchMLPWithBN()
    model(torch.randn(16, 784) * 2 + 1)  # materialize and move the running stats
    model.eval()
    path = tmp_path / "torch_mlp.onnx"
    torch.onnx.export(model, (torch.randn(2, 784),), str(path), dynamo=False, input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": {0: "N"}})
    imported = lf.import_onnx(path)
    assert set(model.state_dict()) - {k for k in model.state_dict() if "num_batches" in k} <= set(
        imported.state_dict())
    x = _x(7, 784)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    for backend in ("reference", "cpu"):
        np.testing.assert_allclose(lf.compile(imported, backend=backend)(x), want, rtol=1e-5, atol=1e-5)


def test_gemm_with_transposed_a(tmp_path):
    """``transA=1``: A arrives (K, M); the importer traces its transpose (the IR's transpose op)."""
    w = np.random.default_rng(6).standard_normal((5, 4)).astype(np.float32)
    node = helper.make_node("Gemm", ["x", "w"], ["y"], transA=1, transB=1, name="g")
    float_ = onnx.TensorProto.FLOAT
    graph = helper.make_graph([node], "ta", [helper.make_tensor_value_info("x", float_, [4, "N"])],
                              [helper.make_tensor_value_info("y", float_, ["N", 5])],
                              initializer=[onnx.numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(tmp_path / "ta.onnx"))
    cm = lf.compile(lf.import_onnx(tmp_path / "ta.onnx"))
    x = _x(4, 3)
    np.testing.assert_allclose(cm(x), x.T @ w.T, rtol=1e-5, atol=1e-6)
    assert "transpose" in str(cm.graph)


def test_the_other_ops_and_generic_names(tmp_path):
    """Gemm with transB=0 / alpha / beta, MatMul + Add, Flatten on axis 0 and 2, Reshape with 0 and
    -1, Identity, Constant, and initializer names that are not Python names."""
    rng = np.random.default_rng(3)
    w1 = rng.standard_normal((12, 6)).astype(np.float32)  # (K, N): transB = 0
    c1 = rng.standard_normal((6,)).astype(np.float32)
    w2 = rng.standard_normal((6, 4)).astype(np.float32)
    b2 = rng.standard_normal((4,)).astype(np.float32)
    nodes = [
        helper.make_node("Flatten", ["x"], ["f"], axis=2, name="flat"),  # (N, 3, 4) -> (3N, 4)
        helper.make_node("Constant", [], ["shape"], value=onnx.numpy_helper.from_array(
            np.array([0, -1], np.int64)), name="const"),
        helper.make_node("Reshape", ["x", "shape"], ["r"], name="reshape"),  # (N, 12)
        helper.make_node("Gemm", ["r", "onnx::W/1", "c:1"], ["g"], alpha=0.5, beta=2.0, name="gemm"),
        helper.make_node("Relu", ["g"], ["a"], name="relu"),
        helper.make_node("MatMul", ["a", "w2"], ["m"], name="mm"),
        helper.make_node("Add", ["m", "b2"], ["s"], name="add"),
        helper.make_node("Identity", ["s"], ["y"], name="id"),
        helper.make_node("Flatten", ["x"], ["z"], axis=0, name="flat0"),
    ]
    inits = [onnx.numpy_helper.from_array(a, n) for a, n in
             ((w1, "onnx::W/1"), (c1, "c:1"), (w2, "w2"), (b2, "b2"))]
    float_ = onnx.TensorProto.FLOAT
    outputs = [helper.make_tensor_value_info(name, float_, shape)
               for name, shape in (("y", ["N", 4]), ("f", None), ("z", None))]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", float_, ["N", 3, 4])], outputs,
                              initializer=inits)
    path = tmp_path / "ops.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    imported = lf.import_onnx(path)
    x = _x(2, 3, 4)
    h = np.maximum(x.reshape(2, 12) @ w1 * 0.5 + 2.0 * c1, 0)
    want = (h @ w2 + b2, x.reshape(6, 4), x.reshape(1, 24))
    for got in (imported(x), lf.compile(imported, backend="reference")(x)):
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
    assert {"onnx__W_1", "c_1", "w2", "b2"} <= set(imported.state_dict())  # names made Python names


def test_dump_and_viz_take_an_onnx_file_without_input(mlp_file, tmp_path):
    _, path = mlp_file
    exe = [sys.executable, "-m", "lazyfuse"]
    out = subprocess.run([*exe, "dump", str(path), "--stage", "optimized"], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert "fused_linear_bn_relu" in out.stdout and "(%x: f32[N,784])" in out.stdout
    svg = tmp_path / "g.svg"
    out = subprocess.run([*exe, "viz", str(path), "-o", str(svg)], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0 and svg.read_bytes().startswith(b"<"), out.stderr


def _model_with(node, inits=(), inputs=None, opset=17, domain_opsets=()):
    inputs = inputs or [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 4])]
    graph = helper.make_graph([node], "bad", inputs,
                              [helper.make_tensor_value_info(node.output[0], onnx.TensorProto.FLOAT, None)],
                              initializer=list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset), *domain_opsets])


BN = [onnx.numpy_helper.from_array(np.ones(4, np.float32), n) for n in ("s", "b", "m", "v")]


@pytest.mark.parametrize("model, words", [
    (_model_with(helper.make_node("Sigmoid", ["x"], ["y"], name="sig")),
     ["'sig' (Sigmoid)", "not supported"]),
    (_model_with(helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], training_mode=1,
                                  name="bn"), BN), ["'bn' (BatchNormalization)", "training_mode=1"]),
    (_model_with(helper.make_node("Gemm", ["x", "x"], ["y"], name="g")),
     ["'g' (Gemm)", "must be an initializer"]),
    (_model_with(helper.make_node("Transpose", ["x"], ["y"], perm=[0, 1], name="t")), ["perm=[0, 1]"]),
    (_model_with(helper.make_node("Relu", ["x"], ["y"]), opset=3), ["opset 3 is not supported"]),
    (_model_with(helper.make_node("Relu", ["x"], ["y"]), domain_opsets=[helper.make_opsetid("com.x", 1)]),
     ["domain 'com.x'"]),
])
def test_unsupported_models_are_clear_errors(tmp_path, model, words):
    path = tmp_path / "bad.onnx"
    onnx.save(model, str(path))
    with pytest.raises(lf.CompileError) as info:
        lf.import_onnx(path)
    for w in words:
        assert w in str(info.value)


@pytest.mark.parametrize("content", [b"", b"not an onnx file at all", None])
def test_missing_truncated_and_foreign_files_are_clear_errors(tmp_path, mlp_file, content):
    path = tmp_path / "x.onnx"
    if content is None:  # truncated: the first kilobytes of a real file
        path.write_bytes(mlp_file[1].read_bytes()[:3000])
    else:
        path.write_bytes(content)
    with pytest.raises(lf.CompileError, match="import_onnx: .*(not a readable ONNX model|not an ONNX model)"):
        lf.import_onnx(path)
    with pytest.raises(lf.CompileError, match="no such file"):
        lf.import_onnx(tmp_path / "missing.onnx")


def test_an_imported_module_deep_copies_and_trains_with_pytorch_semantics(mlp_file):
    _, path = mlp_file
    imported = lf.import_onnx(path)
    twin = copy.deepcopy(imported)
    before = imported.bn1.running_mean.copy()
    cm = lf.compile(twin).train()
    cm(_x(8, 784))
    assert not np.array_equal(twin.bn1.running_mean, before)  # the copy trains, with momentum 0.1
    np.testing.assert_array_equal(imported.bn1.running_mean, before)  # the original is untouched
    assert twin.bn1.momentum == pytest.approx(0.1) and twin.bn1.eps == pytest.approx(1e-5)


def test_dynamic_mlp_round_trip(tmp_path):
    lf.manual_seed(4)
    model = DynamicMLP()
    lf.export_onnx(model, ("N", 784), tmp_path / "d.onnx")
    imported = lf.import_onnx(tmp_path / "d.onnx")
    x = _x(3, 784)
    want = lf.compile(model, ("N", 784))(x)
    np.testing.assert_allclose(lf.compile(imported)(x), want, rtol=1e-5, atol=1e-6)
