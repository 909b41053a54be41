"""``lazyfuse bench``: options and their errors, suite selection, the JSON it writes, --compare,
--fail-on-regression, --plot and the progress display.

No speed is asserted: the block timer is faked (as in test_bench.py) and the suites run at tiny
sizes, so these tests check what is measured and reported, not how fast anything is."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from lazyfuse import cli
from lazyfuse.bench import (
    baselines,
    command,
    compare,
    cpu_fused,
    environment,
    plot,
    progress,
    roofline,
    suites,
)
from lazyfuse.bench.session import Options, Session, Task

ENV_KEYS = {"cpu", "blas", "threads", "numba", "thread_env", "versions", "git_commit", "date"}
SIDE_KEYS = {f"{side}_{stat}" for side in ("lazyfuse", "baseline") for stat in ("ms", "q1_ms", "q3_ms")}
ROW_KEYS = {"bench", "baseline", "suite", "backend", "ratio", "ratio_q1", "ratio_q3", "rounds", "reps",
            *SIDE_KEYS}


_git_commit = environment.git_commit


@pytest.fixture(autouse=True)
def no_git(monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment block's commit, without running git."""
    monkeypatch.setattr(environment, "git_commit", lambda: "0" * 40)


@pytest.fixture
def fake_timer(monkeypatch: pytest.MonkeyPatch) -> list:
    """Every block takes 1 ms; the tiny peaks are measured for real. Returns the timed callables."""
    timed: list = []

    def fake_time(fn, reps):
        timed.append(fn)
        return 1e-3

    monkeypatch.setattr(cpu_fused, "_time", fake_time)
    monkeypatch.setattr(roofline, "GEMM_N", 64)
    monkeypatch.setattr(roofline, "COPY_BYTES", 2**16)
    return timed


@pytest.fixture
def tiny(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny shapes for the fused, mlp and bn suites."""
    monkeypatch.setattr(suites, "FUSED_SHAPES", ((8, 16), (16, 16)))
    monkeypatch.setattr(suites, "MLP_BATCHES", {"eval": ((2, 4), (2, 4)), "train": ((4,), (4,))})
    monkeypatch.setattr(suites, "BN_SHAPES", (((8, 4), (2, 4, 3)), ((8, 4), (2, 4, 3))))


def bench(*args: str) -> int:
    return cli.main(["bench", *args])


def _err_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.startswith("lazyfuse: error: ") and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err
    return err


# ------------------------------------------------------------------------------ options and errors
@pytest.mark.parametrize("args, code, needle", [
    (["--suite", "nope"], 2,
     "--suite: unknown nope; choose from fused, mlp, bn, conv, scaling, compile or all"),
    (["--suite", ","], 2, "--suite needs at least one of"),
    (["--baselines", "numpy,jax"], 2, "--baselines: unknown jax"),
    (["--backend", "tpu"], 2, "invalid choice: 'tpu'"),
    (["--json", "no/such/dir/out.json"], 2, "--json no/such/dir/out.json: folder no/such/dir does not exist"),
    (["--plot", "no/such/dir/out.png"], 2, "folder no/such/dir does not exist"),
    (["--plot", "out.pdf"], 2, "must end in .png or .svg"),
    (["--fail-on-regression"], 2, "--fail-on-regression needs --compare"),
    (["--compare", "missing.json"], 2, "--compare missing.json: no such file"),
])
def test_usage_errors_are_one_line_and_measure_nothing(args, code, needle, fake_timer, capsys, monkeypatch):
    monkeypatch.setattr(suites, "plan", lambda *a: pytest.fail("planned a run despite the error"))
    assert bench(*args) == code
    assert needle in _err_line(capsys)
    assert fake_timer == []


def test_a_folder_as_json_path_and_bad_compare_files(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert bench("--json", str(tmp_path)) == 2 and "is a folder" in _err_line(capsys)
    (tmp_path / "bad.json").write_text("{not json")
    assert bench("--compare", "bad.json") == 2 and "--compare bad.json: not JSON" in _err_line(capsys)
    (tmp_path / "list.json").write_text("[1, 2]")
    assert bench("--compare", "list.json") == 2 and "no 'rows' list" in _err_line(capsys)
    (tmp_path / "empty.json").write_text('{"rows": [{"bench": "x"}]}')
    assert bench("--compare", "empty.json") == 2 and "no row with a ratio or seconds" in _err_line(capsys)


def test_missing_matplotlib_names_the_extra(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now raises ImportError
    assert bench("--plot", "out.png") == 1
    assert "pip install 'lazyfuse[bench]'" in _err_line(capsys)


def test_cuda_backend_says_why_it_cannot_run_here(fake_timer, capsys, monkeypatch):
    """Here numba-cuda is installed and there is no GPU (the simulator is off in this process)."""
    from lazyfuse.bench import cuda_suite

    monkeypatch.delenv("NUMBA_ENABLE_CUDASIM", raising=False)
    reason = cuda_suite.unavailable()
    if reason is None:
        pytest.skip("a usable GPU is here: the suite would run")
    monkeypatch.setattr(cuda_suite, "plan", lambda *a: pytest.fail("planned a run despite the error"))
    assert bench("--backend", "cuda") == 1
    err = _err_line(capsys)
    assert reason in err
    if not cuda_suite._has_numba_cuda():
        assert "pip install 'lazyfuse[cuda]'" in err
    elif not cuda_suite._simulator_on():
        assert "--backend cuda: no usable CUDA GPU here (" in err and "bench/gpu_check.sh" in err
    assert fake_timer == []


def test_cuda_backend_names_the_missing_package_and_refuses_the_simulator(capsys, monkeypatch):
    from lazyfuse.bench import cuda_suite

    monkeypatch.setattr(cuda_suite, "plan", lambda *a: pytest.fail("planned a run despite the error"))
    monkeypatch.setattr(cuda_suite, "_has_numba_cuda", lambda: False)
    assert bench("--backend", "cuda", "--quick") == 1
    err = _err_line(capsys)
    assert "--backend cuda needs NVIDIA's numba-cuda package: pip install 'lazyfuse[cuda]'" in err
    monkeypatch.setattr(cuda_suite, "_has_numba_cuda", lambda: True)
    monkeypatch.setenv("NUMBA_ENABLE_CUDASIM", "1")  # read before numba.cuda is imported: nothing loads
    assert bench("--backend", "cuda") == 1
    assert "Numba's CUDA simulator, which is never timed" in _err_line(capsys)
    assert bench("--backend", "cuda", "--suite", "mlp") == 2
    err = _err_line(capsys)
    assert "--suite (with --backend cuda): unknown mlp; choose from gemm, bn, fused or all" in err


def test_cuda_plan_is_lazy_and_sized_by_quick():
    from lazyfuse.bench import cuda_suite

    quick = cuda_suite.CudaOptions(quick=True)
    assert quick.settle_s == 0.0 and quick.block_s < cuda_suite.CudaOptions().block_s
    labels = [t.label for t in cuda_suite.plan(list(cuda_suite.SUITES), quick)]
    assert labels[:2] == ["Numba GEMM batch 1024", "Numba GEMM batch 4096"]
    assert "BatchNorm1d train (16, 256, 2048)" in labels and labels[-1] == "linear+bn+relu eval batch 4096"
    full = cuda_suite.plan(["fused"], cuda_suite.CudaOptions())
    assert [t.label for t in full][-2:] == ["linear+bn+relu train batch 65536",
                                            "linear+bn+relu eval batch 65536"]
    assert all(t.cost > 0 and t.suite == "fused" for t in full)


def _cuda_baseline(key: str, label: str, target: float | None = None, missing: bool = False):
    def make():
        if missing:
            raise baselines.Unavailable(f"{label} is missing")
        return (lambda: None), {"max_rel_diff": 1e-7}

    return baselines.Baseline(key, label, make, target)


@pytest.mark.parametrize("quick", [False, True])
def test_cuda_rows_always_pair_the_floors_and_carry_throughput(quick, fake_timer):
    from lazyfuse.bench import cuda_suite

    session = cuda_suite.CudaSession(cuda_suite.CudaOptions(quick=quick, baselines=("torch.compile",)))
    session.suite = "gemm"
    bases = [_cuda_baseline(cuda_suite.FLOOR, "cuBLAS SGEMM", cuda_suite.GEMM_TARGET),
             _cuda_baseline("torch", "torch eager (CUDA)"),
             _cuda_baseline("torch.compile", "torch.compile (CUDA)", missing=True)]
    (row,) = session.pair("Numba GEMM f32 x(8,16)", lambda: None, bases, rounds=2, work={"flops": 10**9},
                          reps=1)
    assert ROW_KEYS <= set(row) and row["baseline"] == "cuBLAS SGEMM" and row["backend"] == "cuda"
    assert session.skipped == [{"suite": "gemm", "bench": "Numba GEMM f32 x(8,16)",
                                "baseline": "torch.compile (CUDA)",
                                "reason": "torch.compile (CUDA) is missing"}]
    peaks = {"gemm": {"gflops": 4000.0}, "copy": {"gbps": 1000.0}}
    done = cuda_suite.finish_row(row, peaks)
    assert done["lazyfuse_tflops"] == pytest.approx(1.0) == done["baseline_tflops"]
    assert done["throughput_ratio"] == pytest.approx(1.0) and done["max_rel_diff"] == 1e-7
    assert done["roofline"]["lazyfuse_pct_of_peak"] == pytest.approx(25.0)
    line = cuda_suite.throughput_line(done)
    assert "1.0 vs 1.0 TFLOP/s, 1.00x its throughput" in line
    assert ("target >= 0.50x met" in line) is (not quick) and "MISMATCH" not in line
    copy = cuda_suite.finish_row({**{k: v for k, v in row.items() if k != "flops"}, "bytes": 2 * 10**6}, None)
    assert "roofline" not in copy and copy["lazyfuse_gbps"] == pytest.approx(2.0)


def test_cuda_command_prints_and_saves_a_gpu_run(monkeypatch, tmp_path, capsys):
    """The dispatch of --backend cuda, with the GPU parts faked (no GPU here)."""
    from lazyfuse.bench import cuda_suite
    from lazyfuse.bench.markdown import table

    gpu = {"device": "Fake GPU", "compute_capability": [9, 0], "multiprocessors": 132, "memory_gib": 139.8,
           "versions": {"numba-cuda": "0.30.4"}, "cublas": "cupy"}
    peaks = {"gemm": {"shape": [64, 64, 64], "samples": 1, "gflops": 50000.0, "what": "cuBLAS SGEMM"},
             "copy": {"gbps": 4000.0, "what": "device copy"}}
    row = {**_row("Numba GEMM f32 x(4096,1024) @ W.T(1024,1024)", 1.6, 1.5, 1.7), "baseline": "cuBLAS SGEMM",
           "lazyfuse_ms": 0.5, "baseline_ms": 0.3125, "flops": 2 * 4096 * 1024 * 1024, "target": 2.0,
           "met": True}
    monkeypatch.setattr(cuda_suite, "unavailable", lambda: None)
    monkeypatch.setattr(cuda_suite, "cuda_environment", lambda: gpu)
    monkeypatch.setattr(cuda_suite, "measure_peaks", lambda samples: peaks)
    monkeypatch.setattr(cuda_suite, "plan", lambda names, options: [
        Task("gemm", "canned", lambda session: [dict(row)], 1.0)])
    monkeypatch.setattr(suites, "plan", lambda *a: pytest.fail("ran the CPU suites"))
    out = tmp_path / "gpu.json"
    assert bench("--backend", "cuda", "--suite", "gemm", "--json", str(out)) == 0
    printed = capsys.readouterr().out
    assert "GPU: Fake GPU (compute 9.0, 132 SMs, 139.8 GiB)" in printed
    assert "peaks: cuBLAS SGEMM 64x64x64 50.0 TFLOP/s" in printed
    assert "-- throughput" in printed and "0.62x its throughput" in printed
    doc = json.loads(out.read_text())
    assert doc["environment"]["cuda"] == gpu and doc["peaks"] == peaks
    assert doc["options"]["backend"] == "cuda" and doc["options"]["suites"] == ["gemm"]
    (saved,) = doc["rows"]
    assert saved["suite"] == "gemm" and saved["backend"] == "cuda"
    assert saved["lazyfuse_tflops"] == pytest.approx(2 * 4096 * 1024 * 1024 / 0.5e-3 / 1e12)
    assert saved["throughput_ratio"] == pytest.approx(1 / 1.6) and saved["roofline"]["kind"] == "compute"
    assert ("| Numba GEMM f32 x(4096,1024) @ W.T(1024,1024) | cuBLAS SGEMM | 0.500 ms | 0.312 ms | 1.600"
            in table(doc))


def test_help_lists_the_options_and_examples(capsys):
    assert bench("--help") == 0
    out = capsys.readouterr().out
    for option in ("--suite", "--backend", "--quick", "--json", "--plot", "--compare", "--fail-on-regression",
                   "--baselines", "lazyfuse bench --quick"):
        assert option in out


# ------------------------------------------------------------------------------ suite selection
def test_plan_runs_the_chosen_suites_in_order():
    quick = Options(quick=True)
    assert {t.suite for t in suites.plan(["bn"], quick)} == {"bn"}
    tasks = suites.plan(["compile", "fused"], quick)
    assert [t.suite for t in tasks] == ["compile", "fused", "fused"]
    assert all(t.cost > 0 for t in tasks)
    mlp = suites.plan(["mlp"], Options())
    assert [t.label for t in mlp][:2] == ["MLPWithBN eval batch 1", "MLPWithBN eval batch 8"]
    assert "MLPWithBN train batch 4096" in [t.label for t in mlp]


def test_all_expands_to_every_suite(monkeypatch, capsys):
    seen = []

    def fake_plan(names, options):
        seen.append((names, options))
        return []

    monkeypatch.setattr(suites, "plan", fake_plan)
    monkeypatch.setattr(roofline, "measure_peaks", lambda samples: pytest.fail("no suite needs peaks"))
    assert bench("--suite", "all", "--baselines", "torch,numpy", "--backend", "reference") == 0
    names, options = seen[0]
    assert names == list(suites.SUITES) == list(command.SUITE_NAMES)
    assert options.baselines == ("torch", "numpy") and options.backend == "reference"


# ------------------------------------------------------------------------------ the JSON
def test_json_holds_environment_peaks_and_full_rows(fake_timer, tiny, tmp_path, capsys):
    out = tmp_path / "run.json"
    assert bench("--suite", "fused,bn", "--baselines", "numpy,torch", "--json", str(out)) == 0
    doc = json.loads(out.read_text())
    assert doc["schema"] == "lazyfuse-bench/1" and "error" not in doc
    env = doc["environment"]
    assert ENV_KEYS <= set(env)
    assert env["cpu"]["model"] and env["cpu"]["cores"] >= 1
    assert {"python", "numpy", "numba", "torch", "lazyfuse"} <= set(env["versions"])
    assert "threading_layer" in env["numba"] and env["threads"]["cpu_count"] >= 1
    assert doc["peaks"]["gemm"]["shape"] == [64, 64, 64] and doc["peaks"]["gemm"]["gflops"] > 0
    assert doc["peaks"]["copy"]["gbps"] > 0
    assert doc["options"]["suites"] == ["fused", "bn"] and doc["options"]["quick"] is False
    rows = doc["rows"]
    assert {r["suite"] for r in rows} == {"fused", "bn"}
    for r in rows:
        assert ROW_KEYS <= set(r), sorted(ROW_KEYS - set(r))
        assert r["ratio"] == pytest.approx(1.0) and r["lazyfuse_q1_ms"] == pytest.approx(1.0)
        assert r["backend"] == "cpu"
    fused = [r for r in rows if r["suite"] == "fused"]
    assert {r["baseline"] for r in fused} >= {"np.matmul(x, W.T, out=y)", "lazyfuse.nn eager (NumPy)"}
    assert any(r["baseline"].startswith("torch eager") for r in fused)
    gemm_train = next(r for r in fused if "train" in r["bench"] and r["baseline"].startswith("np.matmul"))
    assert gemm_train["target"] == 1.08 and gemm_train["met"] is True  # full-size rows keep their targets
    assert gemm_train["flops"] == 2 * 16 * 16 * 16
    fig = gemm_train["roofline"]
    assert fig["kind"] == "compute" and fig["lazyfuse_gflops"] == pytest.approx(2 * 16**3 / 1e-3 / 1e9)
    assert fig["lazyfuse_pct_of_peak"] == pytest.approx(100 * fig["lazyfuse_gflops"] / fig["peak_gflops"])
    bn = next(r for r in rows if r["suite"] == "bn" and r["bench"] == "BatchNorm1d train f32 (2, 4, 3)"
              and r["baseline"] == "np.copyto (same array)")
    assert bn["bytes"] == 2 * 2 * 4 * 3 * 4 and bn["roofline"]["kind"] == "memory"
    assert bn["roofline"]["lazyfuse_gbps"] > 0 and bn["target"] == pytest.approx(1 / 0.6)
    skipped = {s["baseline"].split()[0] for s in doc["skipped"]}
    assert "torch.compile" not in skipped  # not selected, so not skipped either
    printed = capsys.readouterr().out
    assert "CPU: " in printed and "peaks: SGEMM 64x64x64" in printed and "GFLOP/s" in printed


def test_quick_rows_carry_no_targets(fake_timer, tiny, tmp_path, capsys):
    out = tmp_path / "quick.json"
    assert bench("--quick", "--suite", "fused,mlp,bn", "--baselines", "numpy", "--json", str(out)) == 0
    rows = json.loads(out.read_text())["rows"]
    assert rows and not any("target" in r or "met" in r for r in rows)
    assert "NOT met" not in capsys.readouterr().out and "target" not in json.dumps(rows)
    sweep = [r for r in rows if r.get("sweep") == "mlp"]
    assert sorted({(r["mode"], r["batch"]) for r in sweep}) == [("eval", 2), ("eval", 4), ("train", 4)]


def test_reference_backend_and_missing_or_failing_frameworks_are_skipped(fake_timer, tiny, tmp_path,
                                                                          monkeypatch):
    torch = baselines.torch_or_none()
    if torch is None:
        pytest.skip("torch is not installed")

    def broken_compile(*args, **kwargs):
        raise RuntimeError("no C++ compiler\nmore detail")

    monkeypatch.setattr(torch, "compile", broken_compile)
    out = tmp_path / "ref.json"
    assert bench("--quick", "--suite", "fused", "--backend", "reference", "--json", str(out)) == 0
    doc = json.loads(out.read_text())
    assert {r["backend"] for r in doc["rows"]} == {"reference"}
    reasons = {s["baseline"].split(" (")[0]: s["reason"] for s in doc["skipped"]}
    assert reasons["torch.compile"] == "torch.compile failed here: RuntimeError: no C++ compiler"
    assert "onnxruntime" in reasons  # not installed here, or train rows: skipped with a note either way
    monkeypatch.setattr(baselines, "torch_or_none", lambda: None)
    assert bench("--quick", "--suite", "bn", "--baselines", "torch", "--json", str(out)) == 0
    doc = json.loads(out.read_text())
    assert doc["rows"] == [] and {s["reason"] for s in doc["skipped"]} == {
        "torch is not installed (pip install 'lazyfuse[torch]')"}


def test_compile_rows_get_quartiles_of_their_samples(monkeypatch):
    canned = [{"bench": "MLPWithBN compile+first call (cold, new process)", "seconds": 2.0,
               "samples": [1.0, 2.0, 3.0, 4.0, 5.0], "import_seconds": 0.1, "target": 3.0, "met": True}]
    monkeypatch.setattr(cpu_fused, "bench_compile", lambda samples, backend: [dict(r) for r in canned])
    session = Session(Options(quick=True))
    session.run(suites.plan(["compile"], session.options))
    (row,) = session.rows
    assert row["seconds_q1"] < 3.0 < row["seconds_q3"] and row["suite"] == "compile"
    assert "target" not in row  # quick


def test_paired_reports_each_sides_quartiles(monkeypatch):
    def cand():
        pass

    def base():
        pass

    times = {cand: [1.0, 2.0, 3.0, 4.0], base: [2.0, 2.0, 2.0, 2.0]}
    monkeypatch.setattr(cpu_fused, "_time", lambda fn, reps: times[fn].pop(0))
    row = cpu_fused.paired("x", cand, base, "b", rounds=4, reps=3)
    assert row["lazyfuse_q1_ms"] < row["lazyfuse_ms"] == 2500.0 < row["lazyfuse_q3_ms"]
    assert row["baseline_q1_ms"] == row["baseline_q3_ms"] == 2000.0 and row["reps"] == 3


# ------------------------------------------------------------------------------ --compare
def _row(name: str, ratio: float, q1: float, q3: float) -> dict:
    return {"bench": name, "baseline": "base", "lazyfuse_ms": ratio, "baseline_ms": 1.0, "ratio": ratio,
            "ratio_q1": q1, "ratio_q3": q3, "rounds": 4}


def test_compare_uses_both_runs_iqrs_as_the_noise_band():
    old = [_row("a", 1.0, 0.95, 1.05), _row("b", 1.0, 0.99, 1.01), _row("gone", 1.0, 1.0, 1.0),
           {"bench": "compile", "seconds": 2.0, "samples": [2.0]}]
    new = [_row("a", 1.08, 1.03, 1.13), _row("b", 0.9, 0.89, 0.91), _row("new", 1.0, 1.0, 1.0),
           {"bench": "compile", "seconds": 2.5, "samples": [2.5]}]
    result = compare.compare(old, new)
    verdicts = {r["bench"]: r["verdict"] for r in result["rows"]}
    # a: +8 % inside the 5 % + 4.6 % band; b: -10 % beyond ~2 %; compile: +25 % beyond the 2 % floor
    assert verdicts == {"a": "same", "b": "faster", "compile": "slower"}
    band_a = next(r for r in result["rows"] if r["bench"] == "a")["band"]
    assert band_a == pytest.approx(0.05 + 0.05 / 1.08)
    assert result["regressions"] == 1 and result["only_new"] == [["new", "base"]]
    assert result["only_old"] == [["gone", "base"]]


def _fixed_run(monkeypatch, rows: list[dict]) -> None:
    """Make the command's run produce exactly ``rows`` (no measurement, no peaks)."""
    monkeypatch.setattr(suites, "plan", lambda names, options: [
        Task("compile", "canned", lambda session: [dict(r) for r in rows], 1.0)])


@pytest.mark.parametrize("new_ratio, flags, code", [
    (1.5, ["--fail-on-regression"], 1),  # slower beyond the band: exit 1
    (1.5, [], 0),  # reported, but not failing without the flag
    (1.01, ["--fail-on-regression"], 0),  # inside the band
    (0.5, ["--fail-on-regression"], 0),  # faster
])
def test_fail_on_regression_exit_codes(new_ratio, flags, code, monkeypatch, tmp_path, capsys):
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"rows": [_row("r", 1.0, 0.98, 1.02)]}))
    _fixed_run(monkeypatch, [_row("r", new_ratio, new_ratio - 0.02, new_ratio + 0.02)])
    out = tmp_path / "new.json"
    assert bench("--suite", "compile", "--compare", str(old), "--json", str(out), *flags) == code
    text = capsys.readouterr().out
    verdict = "slower" if new_ratio > 1.1 else "faster" if new_ratio < 0.9 else "same"
    assert f"compared with {old}" in text and verdict in text
    saved = json.loads(out.read_text())["compare"]
    assert saved["against"] == str(old) and saved["rows"][0]["verdict"] == verdict


def test_compare_reads_cpu_fused_json(monkeypatch, tmp_path, capsys):
    """A JSON of bench/cpu_fused.py (``info`` + ``rows``) is a valid --compare file."""
    rows = [_row("linear+bn+relu train f32 x(4096,1024)", 1.03, 1.02, 1.04)]
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"info": {"machine": "x86_64"}, "rows": rows}))
    _fixed_run(monkeypatch, rows)
    assert bench("--suite", "compile", "--compare", str(old), "--fail-on-regression") == 0
    assert "+0.0%" in capsys.readouterr().out


# ------------------------------------------------------------------------------ --plot
def _plot_rows() -> list[dict]:
    rows = []
    for mode, batches in (("eval", (1, 32, 1024)), ("train", (2, 32, 1024))):
        for base in ("torch eager (2 threads)", "its 3 GEMMs alone (np.matmul)"):
            for b in batches:
                rows.append({**_row(f"MLPWithBN {mode} f32 batch {b}", 1.0, 0.9, 1.1), "baseline": base,
                             "lazyfuse_ms": 0.01 * b, "baseline_ms": 0.02 * b, "sweep": "mlp", "mode": mode,
                             "batch": b})
    rows.append({**_row("linear+bn+relu train f32 x(4096,1024)", 1.03, 1.0, 1.06), "target": 1.08})
    rows.append({**_row("BatchNorm1d train f32 (64, 256, 2048)", 1.5, 1.4, 1.6), "baseline": "np.copyto"})
    return rows


def test_plot_writes_a_png_and_an_svg(tmp_path):
    pytest.importorskip("matplotlib")
    png = plot.render(_plot_rows(), tmp_path / "b.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = plot.render(_plot_rows(), tmp_path / "b.svg")
    text = svg.read_text()
    assert "<svg" in text and "MLPWithBN eval: time per call" in text and "batch size" in text


def test_plot_option_draws_the_run(monkeypatch, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    _fixed_run(monkeypatch, _plot_rows())
    out = tmp_path / "run.png"
    assert bench("--suite", "compile", "--plot", str(out)) == 0
    assert out.read_bytes()[:4] == b"\x89PNG" and f"wrote {out}" in capsys.readouterr().err


# ------------------------------------------------------------------------------ progress, environment
def test_progress_is_silent_off_a_terminal_and_works_without_tqdm(monkeypatch):
    quiet = io.StringIO()
    p = progress.Progress(10, stream=quiet)  # StringIO is not a terminal
    p.set_section("fused")
    p.advance(5)
    p.close()
    assert quiet.getvalue() == ""
    monkeypatch.setitem(sys.modules, "tqdm", None)
    shown = io.StringIO()
    p = progress.Progress(10, stream=shown, enabled=True)
    p.set_section("bn: BatchNorm1d train")
    p.set_row("vs np.copyto")
    p.advance(5)
    assert "bn: BatchNorm1d train: vs np.copyto [ 50%, ~" in shown.getvalue() and "left]" in shown.getvalue()
    p.close()


def test_environment_is_best_effort(monkeypatch):
    from lazyfuse.backends.numba_cpu import threads

    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")

    monkeypatch.setattr(environment.subprocess, "run", no_git)
    assert _git_commit() is None
    monkeypatch.setattr(environment, "git_commit", _git_commit)
    monkeypatch.setattr(threads, "layer_choice", lambda: 1 / 0, raising=False)
    assert environment.numba_threads()["layer_choice"].startswith("error: ZeroDivisionError")
    monkeypatch.delattr(threads, "layer_choice", raising=False)
    env = environment.environment()
    assert "layer_choice" not in env["numba"] and env["git_commit"] is None
    lines = environment.header(env)
    assert lines[0].startswith("CPU: ") and "commit unknown" in lines[-1]


def test_the_command_module_is_imported_by_the_cli_only_as_a_parser():
    """Building the ``lazyfuse`` parser must stay cheap: no torch, no matplotlib, no numba."""
    import subprocess

    code = ("import sys; from lazyfuse import cli; cli.build_parser(); "
            "print(sorted(m for m in ('torch', 'matplotlib', 'numba', 'tqdm') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parent)
    assert out.stdout.strip() == "[]"


def test_the_environment_block_does_not_start_numbas_pool():
    """Reading the environment must leave lazyfuse free to choose Numba's threading layer (a
    ``numba.get_num_threads()`` would start the pool on Numba's default layer)."""
    import subprocess
    import sys

    code = ("from lazyfuse.bench.environment import environment; environment(); "
            "from lazyfuse.backends.numba_cpu import threads; print(threads.threading_layer())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "None"


def test_markdown_table_of_a_run():
    from lazyfuse.bench.markdown import table

    blas = [{"user_api": "blas", "internal_api": "openblas", "version": "0.3", "architecture": "Haswell"}]
    env = {"cpu": {"model": "CPU X", "cores": 2}, "git_commit": "abcdef123", "date": "2026-12-03T00:00:00",
           "blas": blas, "numba": {"threading_layer": "workqueue", "layer_choice": {"chosen_by": "lazyfuse"}}}
    fused = {"bench": "fused train", "baseline": "np.matmul", "lazyfuse_ms": 48.61, "baseline_ms": 46.0,
             "ratio": 1.0331, "ratio_q1": 1.01, "ratio_q3": 1.05, "target": 1.08, "met": True,
             "roofline": {"lazyfuse_gflops": 176.4, "lazyfuse_pct_of_peak": 58.2}}
    cold = {"bench": "compile cold", "seconds": 2.95, "samples": [2.9, 3.0], "target": 3.0, "met": True}
    text = table({"environment": env, "rows": [fused, cold]})
    assert text.splitlines()[0] == ("CPU X, 2 cores; openblas 0.3 (Haswell); Numba layer workqueue "
                                    "(chosen by lazyfuse); commit abcdef1, 2026-12-03")
    assert ("| fused train | np.matmul | 48.6 ms | 46.0 ms | 1.033 (1.01–1.05) | 176 GFLOP/s (58 %) "
            "| ≤ 1.08 ✓ |") in text
    assert "| compile cold | | median 2.95 s of 2 | | | | ≤ 3 s ✓ |" in text


def test_scaling_sweeps_are_plot_panels_not_bars():
    from lazyfuse.bench import plot
    from lazyfuse.bench.scaling import scaling_tasks
    from lazyfuse.bench.session import Options

    rows = [{"bench": f"b{x}", "baseline": base, "lazyfuse_ms": x / 10, "baseline_ms": x / 5, "ratio": 0.5,
             "ratio_q1": 0.4, "ratio_q3": 0.6, "sweep": "Linear eval, by width", "x": x, "x_name": "width"}
            for x in (256, 1024) for base in ("np.matmul", "torch eager")]
    rows.append({"bench": "other", "baseline": "np.copyto", "lazyfuse_ms": 1.0, "baseline_ms": 1.0,
                 "ratio": 1.0, "ratio_q1": 1.0, "ratio_q3": 1.0})
    panels = plot._sweep(rows)
    assert list(panels) == [("Linear eval, by width", "width")]
    assert panels[("Linear eval, by width", "width")]["torch eager"] == {256: 51.2, 1024: 204.8}
    assert [r["bench"] for r in plot._bars(rows)] == ["other"]
    quick = [t.label for t in scaling_tasks(Options(quick=True, backend="cpu", baselines=("numpy", "torch")))]
    assert quick[:3] == ["linear+bn+relu batch 1", "linear+bn+relu batch 256", "linear+bn+relu batch 4096"]
    assert "linear+bn+relu width 1024" in quick and quick[-1] == "MLPWithBN batch 4096"
