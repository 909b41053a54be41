"""A ``lazyfuse bench`` JSON document as Markdown: the README's benchmark table is generated from a
real run with ``python -m lazyfuse.bench.markdown run.json``."""

from __future__ import annotations

import argparse
import json
from typing import Any


def _ms(v: float) -> str:
    return f"{v:.3f} ms" if v < 10 else f"{v:.1f} ms"


def _target(row: dict[str, Any]) -> str:
    if "target" not in row:
        return ""
    unit = " s" if "seconds" in row else ""
    return f"≤ {round(row['target'], 2):g}{unit} " + ("✓" if row.get("met") else "✗")


def row_line(row: dict[str, Any]) -> str:
    """One table line: a paired row (both medians, ratio with IQR) or a compile row (seconds)."""
    if "ratio" in row:
        rate = ""
        roof = row.get("roofline") or {}
        for key, unit in (("lazyfuse_gflops", "GFLOP/s"), ("lazyfuse_gbps", "GB/s")):
            if key in roof:
                rate = f"{roof[key]:.0f} {unit} ({roof.get('lazyfuse_pct_of_peak', 0):.0f} %)"
        compile_s = f" (+{row['baseline_compile_s']:.1f} s compile)" if "baseline_compile_s" in row else ""
        if "baseline_session_s" in row:
            compile_s = f" (+{row['baseline_session_s'] * 1e3:.1f} ms session)"
        ratio = f"{row['ratio']:.3f} ({row['ratio_q1']:.2f}–{row['ratio_q3']:.2f})"
        return (f"| {row['bench']} | {row['baseline']}{compile_s} | {_ms(row['lazyfuse_ms'])} | "
                f"{_ms(row['baseline_ms'])} | {ratio} | {rate} | {_target(row)} |")
    if "seconds" in row:
        return (f"| {row['bench']} | | median {row['seconds']:.2f} s of {len(row['samples'])} | | | | "
                f"{_target(row)} |")
    return ""


def table(doc: dict[str, Any]) -> str:
    """The rows of a run as one Markdown table, with a line on where and how it was measured."""
    env = doc.get("environment", {})
    numba = env.get("numba", {})
    choice = (numba.get("layer_choice") or {}).get("chosen_by")
    blas = next((b for b in env.get("blas", []) if b.get("user_api") == "blas"), {})
    head = (f"{env.get('cpu', {}).get('model', '?')}, {env.get('cpu', {}).get('cores', '?')} cores; "
            f"{blas.get('internal_api', '?')} {blas.get('version', '')} ({blas.get('architecture', '?')}); "
            f"Numba layer {numba.get('threading_layer')} (chosen by {choice}); "
            f"commit {str(env.get('git_commit'))[:7]}, {env.get('date', '?')[:10]}")
    lines = [head, "", "| benchmark | baseline | lazyfuse | baseline | ratio (IQR) | "
             "lazyfuse rate (% of peak) | target |", "|---|---|---|---|---|---|---|"]
    lines += [line for line in map(row_line, doc.get("rows", [])) if line]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m lazyfuse.bench.markdown", description=__doc__)
    ap.add_argument("json", help="a lazyfuse bench --json document")
    args = ap.parse_args(argv)
    with open(args.json) as f:
        print(table(json.load(f)))


if __name__ == "__main__":
    main()
