"""``lazyfuse.frontends.loader``: MODEL references and ``--input`` specs."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from lazyfuse import nn
from lazyfuse.errors import CompileError
from lazyfuse.frontends.loader import InputSpecError, ModelLoadError, load_model, parse_input, split_reference

SRC = textwrap.dedent("""\
    from lazyfuse import nn
    from helper_layers import make_head


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)
            self.head = make_head()

        def forward(self, x):
            return self.head(self.fc(x))


    class NeedsArgs(nn.Module):
        def __init__(self, width):
            super().__init__()


    class Holder:
        @staticmethod
        def build():
            return Net()


    instance = Net()
    number = 3


    def make():
        return Net()


    def fails():
        raise RuntimeError("no weights today")


    def returns_list():
        return [1]


    class Module:  # looks like torch.nn.Module by name and module path
        pass


    Module.__module__ = "torch.nn.modules.module"


    class TorchLike(Module):
        pass


    def torch_model():
        return TorchLike()
""")


@pytest.fixture()
def model_file(tmp_path: Path) -> Path:
    (tmp_path / "helper_layers.py").write_text("from lazyfuse import nn\n\n\ndef make_head():\n"
                                               "    return nn.LazyLinear(2)\n")
    path = tmp_path / "net.py"
    path.write_text(SRC)
    yield path
    sys.modules.pop("helper_layers", None)


@pytest.mark.parametrize("text, shape", [
    ("N,784", ("N", 784)), (" N , 28, 28 ", ("N", 28, 28)), ("(B,3)", ("B", 3)), ("784,", (784,)),
    ("32", (32,)), ("batch_size,L", ("batch_size", "L")),
])
def test_parse_input(text: str, shape: tuple) -> None:
    spec = parse_input(text)
    assert spec.shape == shape and spec.dtype.name == "float32"
    assert parse_input(text, "float64").dtype.name == "float64"


@pytest.mark.parametrize("text", ["", ",", "N,,3", "N,0", "N,-2", "N,3.5", "N,x-1", "1N,3"])
def test_parse_input_errors(text: str) -> None:
    with pytest.raises(InputSpecError, match="bad input spec"):
        parse_input(text)


def test_parse_input_bad_dtype() -> None:
    with pytest.raises(InputSpecError, match="float32 or float64"):
        parse_input("N,3", "int64")


def test_split_reference() -> None:
    assert split_reference("a/b.py:make") == ("a/b.py", "make")
    assert split_reference("pkg.mod:Outer.make") == ("pkg.mod", "Outer.make")
    assert split_reference("m.onnx") == ("m.onnx", None)
    with pytest.raises(ModelLoadError, match="empty MODEL"):
        split_reference("  ")


@pytest.mark.parametrize("factory", ["Net", "make", "instance", "Holder.build"])
def test_load_from_file(model_file: Path, factory: str) -> None:
    model = load_model(f"{model_file}:{factory}")
    assert isinstance(model, nn.Module) and type(model).__name__ == "Net"
    assert isinstance(model.head, nn.LazyLinear)  # the file imported its neighbour


def test_load_from_package_module() -> None:
    model = load_model("lazyfuse.examples.mlp:SimpleNet")
    assert isinstance(model, nn.Sequential)
    assert type(load_model("lazyfuse.examples.mlp:MLPWithBN")).__name__ == "MLPWithBN"


@pytest.mark.parametrize("factory, message", [
    ("Nope", r"has no attribute 'Nope' \(Module classes there: Net, NeedsArgs\)"),
    ("number", "is a int, not a module"),
    ("NeedsArgs", "cannot be called without arguments"),
    ("fails", r"make\(\)|fails\(\) failed: RuntimeError: no weights today"),
    ("returns_list", r"returned list, expected a lazyfuse.nn.Module"),
    ("Holder", "not a lazyfuse.nn.Module or torch.nn.Module subclass"),
    ("torch_model", r"returned TorchLike, expected a lazyfuse.nn.Module or a torch.nn.Module"),
    ("bad-name", "bad factory name"),
])
def test_load_errors(model_file: Path, factory: str, message: str) -> None:
    with pytest.raises(ModelLoadError, match=message):
        load_model(f"{model_file}:{factory}")


def test_load_file_errors(tmp_path: Path, model_file: Path) -> None:
    with pytest.raises(ModelLoadError, match="no such file"):
        load_model(f"{tmp_path / 'missing.py'}:Net")
    with pytest.raises(ModelLoadError, match=r"names no factory: write .*net.py:NAME \(Module classes"):
        load_model(str(model_file))
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ModelLoadError, match="not a Python file"):
        load_model(f"{tmp_path / 'notes.txt'}:x")
    broken = tmp_path / "broken.py"
    broken.write_text("def f(:\n")
    with pytest.raises(ModelLoadError, match=r"importing .*broken.py failed: SyntaxError"):
        load_model(f"{broken}:f")
    assert "_lazyfuse_model_broken" not in sys.modules


def test_load_module_errors() -> None:
    with pytest.raises(ModelLoadError, match="no module named 'no_such_pkg'"):
        load_model("no_such_pkg.models:make")
    with pytest.raises(ModelLoadError, match="bad MODEL"):
        load_model("not a model:make")


def test_onnx(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no such ONNX file"):
        load_model(str(tmp_path / "m.onnx"))
    (tmp_path / "m.onnx").write_bytes(b"\x08\x07")  # a ModelProto with an IR version and no graph
    pytest.importorskip("onnx")
    with pytest.raises(CompileError, match="is not an ONNX model"):
        load_model(str(tmp_path / "m.onnx"))
