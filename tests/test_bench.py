"""The benchmark harness (``bench/cpu_fused.py``): its pairing, its OpenBLAS-core section and its report.

No speed is asserted here (speed claims come from benchmark runs, see bench/RESULTS.md); these tests
check that the harness measures what it says: which blocks it runs in which order, how it turns
times into rows, and that a forced OpenBLAS core is the one in use."""

from __future__ import annotations

import json

import pytest

from lazyfuse.bench import cpu_fused


def _fake_timer(monkeypatch, seconds: dict):
    """Replace the block timer: each callable takes the next of its listed times; returns the log of
    the blocks in the order they ran."""
    log = []

    def fake_time(fn, reps):
        log.append(fn)
        return seconds[fn].pop(0)

    monkeypatch.setattr(cpu_fused, "_time", fake_time)
    return log


def test_paired_alternates_the_block_order_and_reports_the_median_ratio(monkeypatch):
    def cand():
        pass

    def base():
        pass

    log = _fake_timer(monkeypatch, {cand: [2.0, 3.0, 1.0, 6.0], base: [1.0, 1.0, 1.0, 2.0]})
    row = cpu_fused.paired("x", cand, base, "base", rounds=4, target=2.5)
    assert log == [cand, base, base, cand, cand, base, base, cand]  # A B, B A, A B, B A
    # per-round ratios 2, 3, 1, 3: median 2.5; medians of the times 2.5 ms and 1.0 ms
    assert row["ratio"] == pytest.approx(2.5)
    assert row["lazyfuse_ms"] == pytest.approx(2500.0) and row["baseline_ms"] == pytest.approx(1000.0)
    assert row["ratio_q1"] <= row["ratio"] <= row["ratio_q3"]
    assert row["target"] == 2.5 and row["met"] is True and row["rounds"] == 4


def test_paired_says_when_a_target_is_missed(monkeypatch):
    def cand():
        pass

    def base():
        pass

    _fake_timer(monkeypatch, {cand: [3.0, 3.0], base: [1.0, 1.0]})
    row = cpu_fused.paired("x", cand, base, "base", rounds=2, target=1.08)
    assert row["ratio"] == pytest.approx(3.0) and row["met"] is False


@pytest.fixture(scope="module")
def core_rows():
    if not any(i.get("internal_api") == "openblas" for i in cpu_fused.blas_info()):
        pytest.skip("NumPy's BLAS is not OpenBLAS (or threadpoolctl is missing)")
    return cpu_fused.bench_blas_cores(1, quick=True)


def test_blas_cores_measure_each_core_the_cpu_can_run(core_rows):
    flags = cpu_fused._cpu_flags()
    requested = [r["requested"] for r in core_rows]
    assert requested[0] is None  # OpenBLAS's own pick: the reference of the ratios
    assert core_rows[0]["gemm_vs_unset"] == 1.0 and core_rows[0]["gemm32_vs_unset"] == 1.0
    assert ("Haswell" in requested) == ({"avx2", "fma"} <= flags)
    assert ("SkylakeX" in requested) == ({"avx512f", "avx512bw", "avx512dq", "avx512vl"} <= flags)
    for r in core_rows:
        assert r["gemm_ms"] > 0 and r["gemm32_us"] > 0 and r["gemm_vs_unset"] > 0
        if r["requested"] is not None:
            assert r["core"] == r["requested"]  # the variable reached OpenBLAS in the child process


def test_blas_cores_is_empty_without_openblas(monkeypatch):
    monkeypatch.setattr(cpu_fused, "blas_info", lambda: [{"internal_api": "mkl"}])
    assert cpu_fused.bench_blas_cores(1, quick=True) == []


def test_main_prints_every_kind_of_row_and_writes_json(monkeypatch, tmp_path, capsys):
    rows = [
        {"bench": "fused", "baseline": "gemm", "lazyfuse_ms": 1.0, "baseline_ms": 1.0, "ratio": 1.0,
         "ratio_q1": 0.9, "ratio_q3": 1.1, "rounds": 2, "target": 1.08, "met": True},
        {"bench": "compile", "seconds": 2.0, "samples": [2.0], "import_seconds": 0.1, "target": 3.0,
         "met": True},
        {"bench": "bare GEMMs, OPENBLAS_CORETYPE=Haswell", "requested": "Haswell", "core": "Haswell",
         "samples": 1, "gemm_shape": [8, 4, 4], "gemm_ms": 1.5, "gemm32_us": 80.0, "gemm_vs_unset": 1.1,
         "gemm32_vs_unset": 0.9},
    ]
    monkeypatch.setattr(cpu_fused, "sections", lambda quick: [lambda: rows[:2], lambda: rows[2:]])
    out = tmp_path / "out.json"
    cpu_fused.main(["--json", str(out)])
    text = capsys.readouterr().out
    assert "ratio 1.000" in text and "target <= 1.08 met" in text
    assert "median 2.00 s" in text
    assert "core Haswell: GEMM (8, 4, 4) 1.50 ms (80.0 us at 32x784x256), vs unset 1.100 (0.900)" in text
    saved = json.loads(out.read_text())
    assert saved["rows"] == rows and "blas" in saved["info"] and "error" not in saved


def test_a_run_that_stops_early_still_reports_and_saves_the_finished_sections(monkeypatch, tmp_path, capsys):
    row = {"bench": "compile", "seconds": 2.0, "samples": [2.0], "import_seconds": 0.1, "target": 3.0,
           "met": True}

    def broken():
        raise RuntimeError("section failed")

    monkeypatch.setattr(cpu_fused, "sections", lambda quick: [lambda: [row], broken, lambda: [row]])
    out = tmp_path / "out.json"
    with pytest.raises(RuntimeError, match="section failed"):
        cpu_fused.main(["--json", str(out)])
    assert "stopped early (RuntimeError: section failed)" in capsys.readouterr().out
    saved = json.loads(out.read_text())
    assert saved["rows"] == [row] and saved["error"] == "RuntimeError: section failed"


def test_run_is_every_section_in_order(monkeypatch):
    parts = [lambda: [{"n": 1}], lambda: [{"n": 2}, {"n": 3}]]
    monkeypatch.setattr(cpu_fused, "sections", lambda quick: parts)
    assert cpu_fused.run() == [{"n": 1}, {"n": 2}, {"n": 3}]


def test_conv_bench_rows_time_what_they_name(monkeypatch):
    """bench/conv.py with a fake timer: the GEMM-part row issues exactly the block GEMMs of the
    generated module's own block size, of the whole (O, K) @ (K, N*P) GEMM's size; the FeatureExtractor
    rows check lazyfuse against torch before timing."""
    from lazyfuse.bench import conv

    calls = []

    def fake_time(fn, reps):
        calls.append(fn)
        fn()
        return 1.0

    monkeypatch.setattr(cpu_fused, "_time", fake_time)
    rows = conv.bench_conv_layer(rounds=2)
    names = [r["bench"] for r in rows]
    assert names[0].startswith("Conv2d(32,64,3)+ReLU eval") and names[1].startswith("conv GEMM part: ")
    gemm_row = rows[1]
    nblk, cols = (int(s) for s in gemm_row["bench"].split(": ")[1].split(" block GEMMs 64x288 @ 288x"))
    assert (nblk - 1) * cols < conv.BATCH * 28 * 28 <= nblk * cols and gemm_row["target"] == 1.1
    assert all(r["ratio"] == 1.0 and r["rounds"] == 2 for r in rows)
    fe = conv.bench_feature_extractor(rounds=2)
    assert [r["bench"].split()[1] for r in fe] == ["eval", "train"] and all(r["target"] == 1.2 for r in fe)


def test_epilogue_parts_time_every_part_on_small_shapes(monkeypatch, tmp_path):
    from lazyfuse.bench import epilogue_parts

    monkeypatch.setattr(cpu_fused, "SETTLE_S", 0.0)
    steps = epilogue_parts.parts(n=64, k=32)
    rows = epilogue_parts.measure(steps, rounds=2, reps=1)
    assert list(rows) == list(steps) and len(rows) == 7
    for name, row in rows.items():
        assert 0 < row["q1_ms"] <= row["ms"] <= row["q3_ms"] and row["rounds"] == 2, name
