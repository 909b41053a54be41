"""``lazyfuse bench --compare OLD.json``: each row's change against a previous run.

Rows are matched by name and baseline.  A paired row compares its ratio (lazyfuse time over the
baseline's, measured in alternating blocks, so machine load cancels out); a compile row compares
its seconds.  The noise band is the sum of both runs' relative half-IQRs (at least
:data:`MIN_BAND`): a change beyond it is ``slower`` or ``faster``, one inside it ``same``.  The old
file may be any JSON with a ``rows`` list: ``lazyfuse bench``'s or bench/cpu_fused.py's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MIN_BAND = 0.02


class CompareFileError(ValueError):
    """The --compare file is missing or is not a benchmark JSON."""


def load(path: str | Path) -> dict[str, Any]:
    """The previous run in ``path``; :class:`CompareFileError` if it cannot be one."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise CompareFileError(f"--compare {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CompareFileError(f"--compare {path}: cannot read it ({exc})") from None
    except json.JSONDecodeError as exc:
        raise CompareFileError(f"--compare {path}: not JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
        raise CompareFileError(f"--compare {path}: not a benchmark JSON (no 'rows' list)")
    if not any(_metric(r) for r in data["rows"] if isinstance(r, dict)):
        raise CompareFileError(f"--compare {path}: no row with a ratio or seconds to compare")
    return data


def _key(row: dict[str, Any]) -> tuple[str, str | None]:
    return str(row.get("bench")), row.get("baseline")


def _metric(row: dict[str, Any]) -> tuple[str, float, float, float] | None:
    """``(name, median, q1, q3)`` of the compared quantity, or None."""
    try:
        if "ratio" in row:
            m = float(row["ratio"])
            return "ratio", m, float(row.get("ratio_q1", m)), float(row.get("ratio_q3", m))
        if "seconds" in row:
            m = float(row["seconds"])
            return "seconds", m, float(row.get("seconds_q1", m)), float(row.get("seconds_q3", m))
    except (TypeError, ValueError):
        return None
    return None


def _half_iqr(med: float, q1: float, q3: float) -> float:
    return (q3 - q1) / 2 / med if med > 0 else 0.0


def compare(old_rows: list[dict[str, Any]], new_rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-row changes (new over old, minus 1), their bands and verdicts, and the rows found in
    only one of the runs."""
    old = {_key(r): r for r in old_rows if isinstance(r, dict) and _metric(r)}
    out: list[dict[str, Any]] = []
    only_new = []
    for row in new_rows:
        new_m = _metric(row)
        if new_m is None:
            continue
        prev = old.pop(_key(row), None)
        prev_m = _metric(prev) if prev is not None else None
        if prev_m is None or prev_m[0] != new_m[0] or prev_m[1] <= 0:
            only_new.append(list(_key(row)))
            continue
        what, new_med, n1, n3 = new_m
        _, old_med, o1, o3 = prev_m
        change = new_med / old_med - 1
        band = max(MIN_BAND, _half_iqr(old_med, o1, o3) + _half_iqr(new_med, n1, n3))
        verdict = "slower" if change > band else "faster" if change < -band else "same"
        out.append({"bench": row.get("bench"), "baseline": row.get("baseline"), "metric": what,
                    "old": old_med, "new": new_med, "change": change, "band": band, "verdict": verdict})
    return {"rows": out, "only_new": only_new, "only_old": [list(k) for k in old],
            "regressions": sum(r["verdict"] == "slower" for r in out)}


def format_comparison(result: dict[str, Any], old_name: str) -> list[str]:
    """The comparison as printed lines."""
    lines = [f"compared with {old_name} (ratio = lazyfuse / baseline; band = both runs' half-IQRs):"]
    for r in result["rows"]:
        what = f"{r['bench']} vs {r['baseline']}" if r["baseline"] else r["bench"]
        lines.append(f"  {what[:90]:<90} {r['metric']} {r['old']:.3f} -> {r['new']:.3f} "
                     f"{100 * r['change']:+6.1f}% (band ±{100 * r['band']:.1f}%) {r['verdict']}")
    if result["only_new"]:
        lines.append(f"  {len(result['only_new'])} row(s) not in {old_name}")
    if result["only_old"]:
        lines.append(f"  {len(result['only_old'])} row(s) of {old_name} not measured in this run")
    n = result["regressions"]
    lines.append(f"  {n or 'no'} regression(s) beyond the noise band")
    return lines
