"""``lazyfuse dump`` / ``lazyfuse viz`` run as the installed command, in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from marks import needs_graphviz

import lazyfuse as lf
from lazyfuse import cli

MODEL_SRC = textwrap.dedent("""\
    from lazyfuse import nn


    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(8, 16)
            self.bn = nn.LazyBatchNorm1d()
            self.act = nn.ReLU()
            self.head = nn.LazyLinear(4)

        def forward(self, x):
            return self.head(self.act(self.bn(self.fc1(x))))


    class FlattenLazy(nn.Module):
        def __init__(self):
            super().__init__()
            self.flat = nn.Flatten()
            self.fc = nn.LazyLinear(4)

        def forward(self, x):
            return self.fc(self.flat(x))


    def make():
        return Tiny()


    def not_a_module():
        return 42


    def two_inputs():
        class TwoIn(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(8, 4)

            def forward(self, x, y):
                return self.fc(x) + self.fc(y)

        return TwoIn()


    def exits():
        import sys
        sys.exit(0)
""")

GOLDEN_INFERRED = """\
graph @Tiny[N](%x: f32[N,8]) -> (f32[N,4]) {
  @fc1.weight: f32[16,8] = param
  @fc1.bias: f32[16] = param
  @bn.weight: f32[16] = param
  @bn.bias: f32[16] = param
  @bn.running_mean: f32[16] = buffer
  @bn.running_var: f32[16] = buffer
  @bn.num_batches_tracked: i64[] = buffer
  @head.weight: f32[4,16] = param
  @head.bias: f32[4] = param
  %fc1: f32[N,16] = linear[bias=true, in_features=8, out_features=16](%x, @fc1.weight, @fc1.bias)  # tiny.py:13 fc1:Linear
  %bn: f32[N,16] = batch_norm[affine=true, eps=1e-05, momentum=0.1, num_features=16, track_running_stats=true](%fc1, @bn.weight, @bn.bias, @bn.running_mean, @bn.running_var, @bn.num_batches_tracked)  # tiny.py:13 bn:LazyBatchNorm1d
  %act: f32[N,16] = relu(%bn)  # tiny.py:13 act:ReLU
  %head: f32[N,4] = linear[bias=true, in_features=16, out_features=4](%act, @head.weight, @head.bias)  # tiny.py:13 head:LazyLinear
  return (%head)
}
"""  # noqa: E501


def _command() -> list[str]:
    exe = Path(sys.executable).parent / "lazyfuse"
    if exe.is_file():
        return [str(exe)]
    found = shutil.which("lazyfuse")
    return [found] if found else [sys.executable, "-m", "lazyfuse"]


def run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*_command(), *args], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("cli")
    (d / "tiny.py").write_text(MODEL_SRC)
    return d


def test_dump_text_golden_and_json_round_trip(work: Path) -> None:
    text = run("dump", "tiny.py:Tiny", "--input", "N,8", cwd=work)
    assert text.returncode == 0, text.stderr
    assert text.stdout == GOLDEN_INFERRED
    assert lf.Graph.parse(text.stdout) is not None
    js = run("dump", "tiny.py:make", "--input", "N,8", "--format", "json", cwd=work)
    assert js.returncode == 0, js.stderr
    json.loads(js.stdout)
    assert str(lf.Graph.from_json(js.stdout)) + "\n" == GOLDEN_INFERRED


def test_dump_traced_keeps_lazy_dims(work: Path) -> None:
    r = run("dump", "tiny.py:Tiny", "--input", "N,8", "--stage", "traced", "--dtype", "float64", cwd=work)
    assert r.returncode == 0, r.stderr
    assert "(%x: f64[N,8])" in r.stdout and "num_features=?" in r.stdout
    assert "@head.weight: f32[4,?] = param" in r.stdout


def test_dump_optimized_print_after_all_and_marks(work: Path) -> None:
    r = run("dump", "tiny.py:Tiny", "--input", "N,8", "--stage", "optimized", "--print-after", "all",
            "--mark-dims", cwd=work)
    assert r.returncode == 0, r.stderr
    banners = [ln for ln in r.stderr.splitlines() if ln.startswith("// ----- IR after")]
    passes = ("infer_shapes", "materialize_lazy", "dce", "fuse")
    assert banners == [f"// ----- IR after {p} -----" for p in passes]
    out = r.stdout
    assert out.startswith("// dims:")
    assert "%fc1_bn_act: f32[N,16] = fused_linear_bn_relu[" in out
    assert 'modules=("fc1", "bn", "act")' in out
    assert "num_features=16*" in out and "@head.weight: f32[4,16*] = param" in out
    assert "in_features=8," in out  # declared, not marked


def test_dump_dot_and_summary(work: Path) -> None:
    dot = run("dump", "tiny.py:Tiny", "--input", "B,8", "--format", "dot", "--stage", "optimized", cwd=work)
    assert dot.returncode == 0, dot.stderr
    assert dot.stdout.startswith('digraph "Tiny"') and "f32[B,16]" in dot.stdout
    assert "fused_linear_bn_relu" in dot.stdout and "style=dashed" in dot.stdout
    s = run("dump", "tiny.py:Tiny", "--input", "N,8", "--summary", cwd=work)
    assert s.returncode == 0, s.stderr
    assert "LazyLinear" in s.stdout and "f32[N,4]" in s.stdout
    assert "Total params: 244" in s.stdout  # 8*16+16 + 2*16 + 16*4+4 = 244, computed before allocation


TORCH_SRC = textwrap.dedent("""\
    import torch


    class TorchTiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = torch.nn.Linear(8, 16)
            self.bn = torch.nn.LazyBatchNorm1d()
            self.act = torch.nn.ReLU()
            self.head = torch.nn.LazyLinear(4)

        def forward(self, x):
            return self.head(self.act(self.bn(self.fc1(x))))
""")


def test_a_torch_factory_dumps_the_same_ir_as_the_lazyfuse_model(work: Path) -> None:
    pytest.importorskip("torch")
    (work / "tiny_torch.py").write_text(TORCH_SRC)
    r = run("dump", "tiny_torch.py:TorchTiny", "--input", "N,8", cwd=work)
    assert r.returncode == 0, r.stderr
    assert r.stdout == GOLDEN_INFERRED.replace("@Tiny", "@TorchTiny").replace("tiny.py", "tiny_torch.py")
    s = run("dump", "tiny_torch.py:TorchTiny", "--input", "N,8", "--summary", cwd=work)
    assert s.returncode == 0, s.stderr
    assert "num_features=16" in s.stdout and "in_features=16" in s.stdout and "Total params: 244" in s.stdout
    o = run("dump", "tiny_torch.py:TorchTiny", "--input", "N,8", "--stage", "optimized", cwd=work)
    assert o.returncode == 0 and "%fc1_bn_act: f32[N,16] = fused_linear_bn_relu[" in o.stdout, o.stderr


def test_export_writes_an_onnx_file_of_the_lazy_model(work: Path) -> None:
    onnx = pytest.importorskip("onnx")
    r = run("export", "tiny.py:Tiny", "--input", "N,8", "-o", "tiny.onnx", cwd=work)
    assert r.returncode == 0, r.stderr
    assert "wrote tiny.onnx" in r.stderr and "opset 18" in r.stderr
    model = onnx.load(str(work / "tiny.onnx"))
    onnx.checker.check_model(model, full_check=True)
    assert [n.op_type for n in model.graph.node] == ["Gemm", "BatchNormalization", "Relu", "Gemm"]
    bad = run("export", "tiny.py:Tiny", "--input", "N,8", "-o", "tiny.txt", cwd=work)
    assert bad.returncode == 2 and "must end in .onnx" in bad.stderr
    old = run("export", "tiny.py:Tiny", "--input", "N,8", "-o", "x.onnx", "--opset", "9", cwd=work)
    assert old.returncode == 1 and "opset must be an int from 14" in old.stderr


def test_dump_backend_source(work: Path) -> None:
    r = run("dump", "tiny.py:Tiny", "--input", "N,8", "--backend-source", cwd=work)
    assert r.returncode == 0, r.stderr
    assert "@njit" in r.stdout and "def run(" in r.stdout


def test_dump_cuda_backend_source_needs_no_gpu(work: Path) -> None:
    pytest.importorskip("numba_cuda")
    r = run("dump", "tiny.py:Tiny", "--input", "N,8", "--backend-source", "cuda", cwd=work)
    assert r.returncode == 0, r.stderr
    assert "@cuda.jit(cache=True)" in r.stdout and "def run(stream, " in r.stdout
    assert "fused_linear_bn_relu" in r.stdout or "fused_linear_relu" in r.stdout
    bad = run("dump", "tiny.py:Tiny", "--input", "N,8", "--backend-source", "tpu", cwd=work)
    assert bad.returncode == 2 and "invalid choice: 'tpu'" in bad.stderr


@needs_graphviz
def test_viz_svg_png_html(work: Path) -> None:
    r = run("viz", "tiny.py:Tiny", "--input", "N,8", "-o", "g.svg", cwd=work)
    assert r.returncode == 0, r.stderr
    root = ET.parse(work / "g.svg").getroot()
    text = "".join(root.itertext())
    assert "f32[N,16]" in text and "f32[N,4]" in text and "linear" in text
    r = run("viz", "tiny.py:Tiny", "--input", "N,8", "--stage", "optimized", "-o", "g.png", cwd=work)
    assert r.returncode == 0, r.stderr
    assert (work / "g.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = run("viz", "tiny.py:Tiny", "--input", "N,8", "--stage", "optimized", "-o", "g.html", cwd=work)
    assert r.returncode == 0, r.stderr
    page = (work / "g.html").read_text()
    assert "<svg" in page and "fused_linear_bn_relu" in page
    assert "linear[bias=true, in_features=16, out_features=4](%fc1_bn_act" in page  # hover text
    assert "http://" not in page.replace("http://www.w3.org", "")  # self-contained
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("headless Chromium is not installed")
    dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                          (work / "g.html").as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0 and "<svg" in dom.stdout


def test_viz_without_graphviz_fails_cleanly(work: Path) -> None:
    r = run("viz", "tiny.py:Tiny", "--input", "N,8", "-o", "x.svg", cwd=work,
            env={"LAZYFUSE_DOT": "no-such-dot-program"})
    assert r.returncode == 1
    assert r.stderr.startswith("lazyfuse: error:") and "Traceback" not in r.stderr
    assert not (work / "x.svg").exists()


@pytest.mark.parametrize("args, code, needle", [
    (["dump", "missing.py:Tiny", "--input", "N,8"], 1, "no such file: missing.py"),
    (["dump", "tiny.py", "--input", "N,8"], 1, "Module classes there: Tiny, FlattenLazy"),
    (["dump", "tiny.py:Nope", "--input", "N,8"], 1, "has no attribute 'Nope'"),
    (["dump", "tiny.py:not_a_module", "--input", "N,8"], 1, "returned int, expected a lazyfuse.nn.Module"),
    (["dump", "tiny.py:Tiny", "--input", "N,eight"], 1, "in_features mismatch"),
    (["dump", "tiny.py:Tiny", "--input", "N,8-1"], 2, "bad input spec 'N,8-1'"),
    (["dump", "tiny.py:Tiny"], 2, "at least one --input"),
    (["dump", "tiny.py:Tiny", "--input", "N,7"], 1, "in_features mismatch: expected 8"),
    (["dump", "tiny.py:FlattenLazy", "--input", "N,3,L"], 1, "give symbol L a concrete size"),
    (["dump", "model.onnx", "--input", "N,8"], 1, "model.onnx is not an ONNX model"),
    (["dump", "tiny.py:Tiny", "--input", "N,8", "--print-after", "fuse"], 2, "not run at stage inferred"),
    (["viz", "tiny.py:Tiny", "--input", "N,8", "-o", "g.pdf"], 2, ".svg, .png, .html or .dot"),
    (["dump", "tiny.py:two_inputs", "--input", "N,8"], 1,
     "model TwoIn's forward takes 2 input(s), got 1 spec(s)"),
    (["dump", "tiny.py:Tiny", "--input", "N,8", "--input", "N,8", "--summary"], 1,
     "model Tiny's forward takes 1 input(s), got 2 spec(s)"),
    (["dump", "tiny.py:exits", "--input", "N,8"], 1, "tiny.py:exits: the model's code called sys.exit(0)"),
    (["viz", "exit_on_import.py:f", "--input", "N,8", "-o", "g.svg"], 1,
     "the model's code called sys.exit('bye')"),
])
def test_errors(work: Path, args: list[str], code: int, needle: str) -> None:
    (work / "model.onnx").write_bytes(b"\x08\x07")
    (work / "exit_on_import.py").write_text("import sys\nsys.exit('bye')\n")
    r = run(*args, cwd=work)
    assert r.returncode == code, (r.stdout, r.stderr)
    assert r.stderr.startswith("lazyfuse: error: "), r.stderr
    assert needle in r.stderr
    assert "Traceback" not in r.stderr


def test_debug_shows_the_traceback(work: Path) -> None:
    r = run("dump", "tiny.py:Tiny", "--input", "N,7", "--debug", cwd=work)
    assert r.returncode == 1 and "Traceback" in r.stderr and "InferenceError" in r.stderr


def test_help_has_examples(work: Path) -> None:
    for sub in ("dump", "viz"):
        r = run(sub, "--help", cwd=work)
        assert r.returncode == 0 and "examples:" in r.stdout and f"lazyfuse {sub} examples/mlp.py" in r.stdout


# In-process checks (no subprocess needed): the unexpected-error path and usage handling.
def test_unexpected_error_is_one_line_with_debug_hint(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    def boom(args: object) -> int:
        raise RuntimeError("kaput")

    monkeypatch.setattr(cli, "cmd_dump", boom)
    assert cli.main(["dump", "x.py:f", "--input", "N,3"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lazyfuse: error: unexpected RuntimeError: kaput") and "--debug" in err
    assert "Traceback" not in err


def test_no_command_and_unknown_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    assert cli.main(["dump", "x.py:f", "--input", "N,3", "--bogus"]) == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_only_argparse_exits_count_as_help(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "quits.py").write_text("import sys\n\ndef f():\n    sys.exit(0)\n")
    assert cli.main(["dump", f"{tmp_path / 'quits.py'}:f", "--input", "N,3"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("lazyfuse: error: ") and "sys.exit(0)" in captured.err
    assert len(captured.err.strip().splitlines()) == 1 and "Traceback" not in captured.err
    assert cli.main(["--version"]) == 0 and cli.main(["dump", "--help"]) == 0
    assert "lazyfuse" in capsys.readouterr().out
