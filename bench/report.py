"""Printing and saving a ``lazyfuse bench`` run: the header, one line per row, the JSON document."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from .environment import header
from .roofline import describe

SCHEMA = "lazyfuse-bench/1"


def _target(row: dict[str, Any]) -> str:
    if "target" not in row:
        return ""
    return f"  target <= {row['target']:.2f} " + ("met" if row.get("met") else "NOT met")


def format_row(row: dict[str, Any]) -> str:
    """One printed line for a paired row or a compile row."""
    if "ratio" in row:
        extra = f"  (compile {row['baseline_compile_s']:.2f} s)" if "baseline_compile_s" in row else ""
        if "baseline_session_s" in row:
            extra = f"  (session {row['baseline_session_s'] * 1e3:.1f} ms)"
        return (f"{row['bench']:<46} vs {row['baseline']:<32} "
                f"{row['lazyfuse_ms']:9.3f} ms [{row.get('lazyfuse_q1_ms', row['lazyfuse_ms']):.3f}.."
                f"{row.get('lazyfuse_q3_ms', row['lazyfuse_ms']):.3f}] / "
                f"{row['baseline_ms']:9.3f} ms [{row.get('baseline_q1_ms', row['baseline_ms']):.3f}.."
                f"{row.get('baseline_q3_ms', row['baseline_ms']):.3f}]  ratio {row['ratio']:.3f} "
                f"(IQR {row['ratio_q1']:.3f}..{row['ratio_q3']:.3f}, n={row['rounds']})"
                f"{describe(row)}{extra}{_target(row)}")
    if "seconds" in row:
        samples = " / ".join(f"{v:.2f}" for v in row["samples"])
        return (f"{row['bench']:<46} median {row['seconds']:.2f} s of {samples} "
                f"(import {row['import_seconds']:.2f} s){_target(row)}")
    return json.dumps(row)


def print_header(env: dict[str, Any], options: dict[str, Any]) -> None:
    """The environment and the options, before anything is measured."""
    for line in header(env):
        print(line)
    print(f"options: {json.dumps(options)}  (ratio = lazyfuse / baseline, < 1 = lazyfuse faster)")


def peaks_line(peaks: dict[str, Any]) -> str:
    """The measured peaks (the 100 % of the roofline figures)."""
    g, c = peaks["gemm"], peaks["copy"]
    return (f"peaks: SGEMM {'x'.join(map(str, g['shape']))} {g['gflops']:.1f} GFLOP/s "
            f"(median of {g['samples']}), copy {c['gbps']:.1f} GB/s ({c['what']})")


def print_rows(rows: list[dict[str, Any]], skipped: list[dict[str, str]], error: str | None) -> None:
    """The rows grouped by suite, then the skip notes and the error that stopped the run, if any."""
    suite = None
    for row in rows:
        if row.get("suite") != suite:
            suite = row.get("suite")
            print(f"-- {suite}")
        print(format_row(row))
    reasons: dict[str, list[str]] = {}
    for s in skipped:
        reasons.setdefault(f"{s['baseline']}: {s['reason']}", []).append(s["bench"])
    for reason, benches in reasons.items():
        print(f"skipped {reason} ({len(benches)} row(s))")
    if error is not None:
        print(f"stopped early ({error}): the rows above are the tasks that finished")


def document(options: dict[str, Any], env: dict[str, Any], peaks: dict[str, Any] | None,
             rows: list[dict[str, Any]], skipped: list[dict[str, str]], error: str | None) -> dict[str, Any]:
    """The JSON document of a run."""
    doc: dict[str, Any] = {"schema": SCHEMA, "options": options, "environment": env, "peaks": peaks,
                           "rows": rows, "skipped": skipped}
    if error is not None:
        doc["error"] = error
    return doc


def save(doc: dict[str, Any], path: str | Path) -> None:
    """Write ``doc`` as indented JSON."""
    Path(path).write_text(json.dumps(doc, indent=2) + "\n")


def compare_and_save(doc: dict[str, Any], old: dict[str, Any] | None, compare_path: str | None,
                     json_path: str | None) -> dict[str, Any]:
    """A run's ``doc`` compared with the ``old`` run (the comparison printed and kept under
    ``"compare"``; not for a run that failed) and written to ``json_path`` when given."""
    from . import compare

    if old is not None and doc.get("error") is None:
        result = compare.compare(old["rows"], doc["rows"])
        doc["compare"] = {"against": str(compare_path), **result}
        for line in compare.format_comparison(result, compare_path):
            print(line)
    if json_path:
        save(doc, json_path)
        print(f"wrote {json_path}", file=sys.stderr)
    return doc
