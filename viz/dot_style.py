"""Colours, fonts and short attribute summaries for the pictures (one place to restyle them)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from lazyfuse.ir.graph import STATE_OPS
from lazyfuse.ir.ops import OPS
from lazyfuse.ir.printer import format_value
from lazyfuse.ir.types import UNKNOWN

__all__ = ["Style", "CATEGORIES", "FUSED", "Fonts", "SVG_FONTS", "PNG_FONTS", "FONT", "MONO", "category_of",
           "attr_summary"]


@dataclass(frozen=True)
class Fonts:
    """The fonts of a picture.

    ``sans`` and ``mono`` are the ``fontname`` s Graphviz lays text out with: it places every text
    run at a position computed from that font's character widths (graphviz-pure from built-in
    width tables, which exist for a few families only: Times, Helvetica/Arial, Courier, DejaVu
    Sans, Verdana, ...; any other name is measured as Times).  ``sans_family`` and ``mono_family``
    are the CSS font-family lists the SVG then declares for them (``None``: keep what Graphviz
    wrote).  Every font in a list must be at most as wide as the one the text was laid out with,
    or a viewer that picks it draws runs into each other and text out of its box.
    """

    sans: str
    mono: str
    sans_family: str | None = None
    mono_family: str | None = None

    def declare(self, svg: str) -> str:
        """``svg`` (Graphviz output laid out with these fonts) with each text's font-family list."""
        lists = {self.sans.lower(): self.sans_family, self.mono.lower(): self.mono_family}

        def family(m: re.Match[str]) -> str:
            new = lists.get(m.group(2).split(",")[0].strip().strip("'\"").lower())
            return m.group(0) if new is None else f"{m.group(1)}{new}{m.group(3)}"

        return re.sub(r'(font-family=")([^"]*)(")', family, svg)


# SVG (and the HTML page around it): laid out with DejaVu Sans, the widest common sans-serif font
# that Graphviz has metrics for, and the one Linux viewers (rsvg, cairosvg, Inkscape, browsers)
# substitute for a font they lack.  The fallbacks are narrower: Bitstream Vera Sans has the same
# widths; Arial, Helvetica (and their metric twins Liberation Sans, Arimo) average 12% narrower,
# 16% in bold (a few characters, J and _ among them, are wider, but no ordinary label is made of
# them), so with any of them the text still fits, with a little more room.  Verdana is left out on
# purpose: it is wider than DejaVu Sans (3% on average, more in bold).  Monospaced text is laid out
# with Courier (0.600 em per character): Cousine, Liberation Mono and Courier New have those
# widths, Consolas is narrower; DejaVu Sans Mono and Menlo are 0.602 em, 0.3% wider, which the
# boxes' margins hold (a mono run is always the last on its line).
SVG_FONTS = Fonts("DejaVu Sans", "Courier",
                  "DejaVu Sans,Bitstream Vera Sans,Arial,Helvetica,sans-serif",
                  "DejaVu Sans Mono,Menlo,Consolas,Liberation Mono,Courier New,monospace")
# PNG: Graphviz draws the text itself, in the font it measured (graphviz-pure has Arimo and Cousine
# built in, with Helvetica's and Courier's widths; it has no DejaVu and would draw Times instead).
PNG_FONTS = Fonts("Helvetica", "Courier")
FONT = SVG_FONTS.sans
MONO = SVG_FONTS.mono


@dataclass(frozen=True)
class Style:
    """How one kind of op is drawn: fill, border and the legend's wording."""

    fill: str
    border: str
    legend: str


CATEGORIES: dict[str, Style] = {
    "io": Style("#f1f5f9", "#475569", "graph input / output"),
    "linear": Style("#dbeafe", "#2563eb", "linear (GEMM)"),
    "conv": Style("#e0e7ff", "#4f46e5", "convolution (im2col + GEMM)"),
    "pool": Style("#fce7f3", "#db2777", "pooling"),
    "norm": Style("#fef3c7", "#d97706", "batch norm"),
    "activation": Style("#dcfce7", "#16a34a", "activation"),
    "shape": Style("#f3e8ff", "#9333ea", "shape (flatten, reshape)"),
    "elementwise": Style("#ccfbf1", "#0d9488", "elementwise"),
    "other": Style("#f5f5f5", "#737373", "other op"),
}
FUSED = Style("#fff1f2", "#e11d48", "fused kernel (one loop nest)")

# Compute ops with a colour of their own; any other op is coloured by its kind in the op table.
_OP_CATEGORY = {
    "linear": "linear", "conv2d": "conv", "max_pool2d": "pool", "batch_norm": "norm", "relu": "activation",
    "flatten": "shape", "reshape": "shape", "add": "elementwise",
}
_KIND_CATEGORY = {"source": "io", "output": "io"}


def category_of(op: str) -> str:
    """The colour category of an op: by name for the ops above, else by its ``OPS`` kind (the graph
    input and output: ``"io"``; params, buffers and any other op, a new compute op too: ``"other"``)."""
    if op in _OP_CATEGORY:
        return _OP_CATEGORY[op]
    if op in STATE_OPS:  # params and buffers are rows of the box that uses them, not graph inputs
        return "other"
    opdef = OPS.get(op)
    return "other" if opdef is None else _KIND_CATEGORY.get(opdef.kind, "other")


def _v(attrs: dict[str, Any], key: str, marked: frozenset[str]) -> str:
    value = attrs.get(key, UNKNOWN)
    return format_value(value) + ("*" if key in marked else "")


def attr_summary(op: str, attrs: dict[str, Any], marked: frozenset[str] = frozenset()) -> str:
    """The few attributes worth a line in a node: ``784 -> 256``, ``C=256*  eps=1e-05``."""
    if op == "linear":
        bias = "" if attrs.get("bias", True) else "  (no bias)"
        return f"{_v(attrs, 'in_features', marked)} -> {_v(attrs, 'out_features', marked)}{bias}"
    if op == "batch_norm":
        parts = [f"C={_v(attrs, 'num_features', marked)}", f"eps={_v(attrs, 'eps', marked)}",
                 f"momentum={_v(attrs, 'momentum', marked)}"]
        if attrs.get("affine") is False:
            parts.append("no affine")
        if attrs.get("track_running_stats") is False:
            parts.append("batch stats only")
        return "  ".join(parts)
    if op == "conv2d":
        return _conv_summary(attrs, marked)
    if op == "max_pool2d":
        return _window_summary(attrs) + ("  ceil" if attrs.get("ceil_mode") else "")
    if op == "flatten":
        return f"dims {_v(attrs, 'start_dim', marked)}..{_v(attrs, 'end_dim', marked)}"
    if op == "reshape":
        return f"shape={_v(attrs, 'shape', marked)}"
    skip = {"index", "target", "modules", "bn_module"}
    shown = [f"{k}={_v(attrs, k, marked)}" for k in sorted(attrs) if k not in skip]
    text = "  ".join(shown[:3])
    return text + ("  ..." if len(shown) > 3 else "")


def _window_summary(attrs: dict[str, Any]) -> str:
    """``3x3`` plus the stride, padding and dilation that differ from 1 / none: ``3x3 /2 pad 1``."""
    kh, kw = attrs.get("kernel_size", (UNKNOWN, UNKNOWN))
    parts = [f"{kh}x{kw}"]
    stride = attrs.get("stride", (1, 1))
    if tuple(stride) != (1, 1):
        parts.append("/" + (str(stride[0]) if stride[0] == stride[1] else f"({stride[0]},{stride[1]})"))
    pad = tuple(attrs.get("padding", ()))
    if pad and any(pad):
        parts.append("pad " + (str(pad[0]) if len(set(pad)) == 1 else ",".join(map(str, pad))))
    dil = attrs.get("dilation", (1, 1))
    if tuple(dil) != (1, 1):
        parts.append(f"dil {dil[0]}" if dil[0] == dil[1] else f"dil ({dil[0]},{dil[1]})")
    return " ".join(parts)


def _conv_summary(attrs: dict[str, Any], marked: frozenset[str]) -> str:
    """``3* -> 64  5x5`` (+ stride/padding/dilation, groups, no bias)."""
    text = f"{_v(attrs, 'in_channels', marked)} -> {_v(attrs, 'out_channels', marked)}  "
    text += _window_summary(attrs)
    if attrs.get("groups", 1) != 1:
        text += f"  groups={attrs['groups']}"
    return text + ("" if attrs.get("bias", True) else "  (no bias)")
