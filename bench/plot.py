"""``lazyfuse bench --plot out.png|out.svg``: the run's rows as one picture (matplotlib, Agg).

Top: time per call (log-log) for each system of every sweep, one panel per sweep: the ``mlp``
suite's batch sweep per mode, and the ``scaling`` suite's (rows with ``sweep``, ``x``, ``x_name``).
Below: every other paired row as a bar of its ratio (lazyfuse / baseline, log scale; < 1 =
lazyfuse faster) with the ratio's IQR as whiskers.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

FORMATS = (".png", ".svg")
INSTALL_HINT = "pip install 'lazyfuse[bench]'"

# Colour per kind of baseline (by label prefix), lazyfuse first.
_COLOURS = (("lazyfuse.nn", "tab:green"), ("torch.compile", "tab:red"), ("torch", "tab:orange"),
            ("onnxruntime", "tab:purple"), ("np.", "tab:gray"), ("its ", "tab:gray"))
LAZYFUSE_COLOUR = "tab:blue"
LAZYFUSE_SYSTEM = "lazyfuse compiled"
_COARSE_TICKS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100)
_FINE_TICKS = (0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.25, 1.5, 2, 3, 5, 10)
LABEL_CHARS = 84


def _short(text: str, most: int = LABEL_CHARS) -> str:
    """``text`` cut in the middle to at most ``most`` characters."""
    if len(text) <= most:
        return text
    half = (most - 1) // 2
    return text[:half] + "…" + text[len(text) - (most - 1 - half):]


class PlotError(RuntimeError):
    """The picture cannot be drawn here (no matplotlib)."""


def check_available() -> None:
    """Raise :class:`PlotError` naming the extra to install if matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PlotError(f"--plot needs matplotlib, which is not installed ({INSTALL_HINT})") from None


def colour(label: str) -> str:
    """The colour of a baseline label."""
    return next((c for prefix, c in _COLOURS if label.startswith(prefix)), "tab:brown")


Panels = dict[tuple[str, str], dict[str, dict[int, float]]]


def _panel(r: dict[str, Any]) -> tuple[str, str, int] | None:
    """``(title, x axis name, x)`` of a sweep row, or None for a row of no sweep."""
    if r.get("sweep") == "mlp" and "batch" in r:
        return f"MLPWithBN {r['mode']}: time per call", "batch size", r["batch"]
    if "sweep" in r and "x" in r:
        return r["sweep"], r.get("x_name", "x"), r["x"]
    return None


def _sweep(rows: list[dict[str, Any]]) -> Panels:
    """(title, x name) -> system -> x -> median ms; lazyfuse's time is the median over its pairings."""
    out: dict[tuple[str, str], dict[str, dict[int, list[float]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list)))
    for r in rows:
        where = _panel(r) if "ratio" in r else None
        if where is None:
            continue
        title, x_name, x = where
        by = out[(title, x_name)]
        by[f"{LAZYFUSE_SYSTEM} ({r.get('backend', 'cpu')})"][x].append(r["lazyfuse_ms"])
        by[r["baseline"]][x].append(r["baseline_ms"])
    return {key: {sys_: {b: statistics.median(v) for b, v in pts.items()} for sys_, pts in systems.items()}
            for key, systems in out.items()}


def _bars(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if "ratio" in r and _panel(r) is None]


def render(rows: list[dict[str, Any]], path: str | Path, title: str = "lazyfuse bench") -> Path:
    """Draw ``rows`` into ``path`` (.png or .svg) and return it."""
    check_available()
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    sweep, bars = _sweep(rows), _bars(rows)
    if not sweep and not bars:
        raise PlotError("--plot: the run has no paired rows to draw")
    bar_h = 0.3 * len(bars) + 1.2 if bars else 0
    n_cols = min(2, len(sweep)) or 1
    n_rows = -(-len(sweep) // n_cols)
    sweep_h = 4.2 * n_rows if sweep else 0
    out = Path(path)
    with plt.rc_context({"svg.fonttype": "none"}):  # SVG text stays text (searchable, small)
        fig = plt.figure(figsize=(13, sweep_h + bar_h + 0.6), layout="constrained")
        fig.suptitle(title)
        heights = [h for h in (sweep_h, bar_h) if h]
        parts = list(fig.subfigures(len(heights), 1, height_ratios=heights)) if len(heights) > 1 else [fig]
        if sweep:
            axes = parts[0].subplots(n_rows, n_cols, squeeze=False).ravel()
            for ax, ((title, x_name), systems) in zip(axes, sweep.items()):
                _draw_sweep(ax, title, x_name, systems)
            for ax in axes[len(sweep):]:
                ax.set_visible(False)
        if bars:
            _draw_bars(parts[-1].subplots(), bars)
        fig.savefig(out, dpi=110)
        plt.close(fig)
    return out


def _draw_sweep(ax: Any, title: str, x_name: str, systems: dict[str, dict[int, float]]) -> None:
    from matplotlib.ticker import FixedLocator, NullLocator

    every: set[int] = set()
    for name, pts in sorted(systems.items(), key=lambda kv: (not kv[0].startswith(LAZYFUSE_SYSTEM), kv[0])):
        batches = sorted(pts)
        every.update(batches)
        is_lf = name.startswith(LAZYFUSE_SYSTEM)
        ax.plot(batches, [pts[b] for b in batches], marker="o", label=name, linewidth=2.2 if is_lf else 1.4,
                color=LAZYFUSE_COLOUR if is_lf else colour(name),
                linestyle="--" if name.startswith(("its ", "np.")) else "-")
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(sorted(every)))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(lambda v, _: f"{v:g}")
    ax.set_yscale("log")
    ax.set_xlabel(x_name)
    ax.set_ylabel("ms per call (median)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)


def _draw_bars(ax: Any, rows: list[dict[str, Any]]) -> None:
    from matplotlib.ticker import FixedLocator, NullLocator

    labels = [_short(f"{r['bench']}  vs  {r['baseline']}") for r in rows]
    ratios = [r["ratio"] for r in rows]
    lo = [max(0.0, r["ratio"] - r.get("ratio_q1", r["ratio"])) for r in rows]
    hi = [max(0.0, r.get("ratio_q3", r["ratio"]) - r["ratio"]) for r in rows]
    ys = list(range(len(rows)))[::-1]
    ax.barh(ys, ratios, xerr=[lo, hi], color=[colour(r["baseline"]) for r in rows], alpha=0.85,
            error_kw={"capsize": 3, "elinewidth": 1})
    ax.axvline(1.0, color="black", linewidth=1)
    for y, r in zip(ys, rows):
        if "target" in r:
            ax.plot([r["target"]] * 2, [y - 0.4, y + 0.4], color="black", linestyle=":", linewidth=1.5)
        ax.text(max(r["ratio"], r.get("ratio_q3", r["ratio"])) * 1.04, y, f"{r['ratio']:.2f}", va="center",
                fontsize=7)
    ax.set_yticks(ys, labels, fontsize=8)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_xscale("log")
    lo_x = min(min(ratios), *(r.get("ratio_q1", r["ratio"]) for r in rows), 1.0) / 1.15
    hi_x = max(max(ratios), *(r.get("ratio_q3", r["ratio"]) for r in rows), 1.0) * 1.25
    ax.set_xlim(lo_x, hi_x)
    ticks = _FINE_TICKS if hi_x / lo_x < 8 else _COARSE_TICKS
    ax.xaxis.set_major_locator(FixedLocator([t for t in ticks if lo_x <= t <= hi_x]))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(lambda v, _: f"{v:g}")
    ax.set_xlabel("time ratio lazyfuse / baseline (< 1 = lazyfuse faster)\n"
                  "median of the paired rounds, IQR whiskers, dotted = target")
    ax.grid(True, axis="x", which="both", alpha=0.3)
