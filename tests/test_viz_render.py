"""``lazyfuse viz``'s SVG rasterized with cairosvg, as a viewer with only the DejaVu fonts draws it.

Graphviz places every text run at a fixed position computed from the widths of the font it laid
the text out with; a viewer that draws a wider font makes runs collide and text spill out of its
box.  Here each ``<text>`` of the picture is rendered alone, in DejaVu Sans (or DejaVu Sans Mono
for monospaced text: what rsvg, cairosvg or a browser on Linux substitute for a font they lack),
and the ink found in the raster must lie inside the text's box (a node's shape; for a cluster's
label or a borderless node, the cluster around it) and inside the picture, and no two texts' ink
may overlap.
"""

from __future__ import annotations

import io
import re
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import numpy as np
import pytest
from marks import needs_graphviz
from test_cli import _command

try:
    import cairocffi
    import cairosvg
    from PIL import Image
except (ImportError, OSError) as exc:  # cairocffi raises OSError when libcairo is missing
    pytest.skip(f"cairosvg cannot be imported ({exc}); pip install -e '.[test]' installs it, and it needs "
                "the cairo library (libcairo2)", allow_module_level=True)

SVG_NS = "http://www.w3.org/2000/svg"
XML_SPACE = "{http://www.w3.org/XML/1998/namespace}space"
SANS, MONO = "DejaVu Sans", "DejaVu Sans Mono"
SCALE = 4.0  # raster pixels per SVG unit (pt)
INK = 24  # alpha (of 255) above which a pixel counts as ink


def _advance(family: str, text: str) -> float:
    surface = cairocffi.ImageSurface(cairocffi.FORMAT_ARGB32, 1, 1)
    ctx = cairocffi.Context(surface)
    ctx.select_font_face(family)
    ctx.set_font_size(1000)
    return ctx.text_extents(text)[4]


def _dejavu_missing() -> str | None:
    """Why cairo would not draw DejaVu Sans / DejaVu Sans Mono for those names (``None``: it does)."""
    if abs(_advance(SANS, "M") - 862.8) > 3 or abs(_advance(SANS, "i") - 277.8) > 3:
        return f"cairo does not find the {SANS} font (apt-get install fonts-dejavu-core)"
    if abs(_advance(MONO, "i") - 602.1) > 3:
        return f"cairo does not find the {MONO} font (apt-get install fonts-dejavu-core)"
    return None


pytestmark = [needs_graphviz, pytest.mark.skipif(_dejavu_missing() is not None,
                                                 reason=str(_dejavu_missing()))]


@pytest.fixture(scope="module")
def viz_svg(tmp_path_factory: pytest.TempPathFactory):
    """``viz_svg(model, spec, stage)``: the SVG that ``lazyfuse viz`` writes (each made once)."""
    made: dict[tuple[str, str, str], str] = {}

    def make(model: str, spec: str, stage: str) -> str:
        if (model, spec, stage) not in made:
            work = tmp_path_factory.mktemp("viz")
            out = work / f"{stage}.svg"
            r = subprocess.run([*_command(), "viz", model, "--input", spec, "--stage", stage, "-o", str(out)],
                               capture_output=True, text=True, timeout=300, cwd=work)
            assert r.returncode == 0, r.stderr
            made[model, spec, stage] = out.read_text()
        return made[model, spec, stage]

    return make


# ------------------------------------------------------------------------------------------ geometry
@dataclass(frozen=True)
class Box:
    x0: float
    y0: float
    x1: float
    y1: float

    def inset(self, d: float) -> Box:
        return Box(self.x0 + d, self.y0 + d, self.x1 - d, self.y1 - d)

    def contains(self, other: Box) -> bool:
        return self.x0 <= other.x0 and self.y0 <= other.y0 and other.x1 <= self.x1 and other.y1 <= self.y1

    def overlaps(self, other: Box, tol: float) -> bool:
        return (min(self.x1, other.x1) - max(self.x0, other.x0) > tol
                and min(self.y1, other.y1) - max(self.y0, other.y0) > tol)

    @property
    def area(self) -> float:
        return (self.x1 - self.x0) * (self.y1 - self.y0)

    def __str__(self) -> str:
        return f"[{self.x0:.1f},{self.y0:.1f} .. {self.x1:.1f},{self.y1:.1f}]"


def _tag(el: ET.Element) -> str:
    return el.tag.rsplit("}", 1)[-1]


class Transform:
    """graph0's ``transform`` (Graphviz writes ``scale(sx sy) rotate(0) translate(tx ty)``)."""

    def __init__(self, text: str) -> None:
        def nums(name: str, default: tuple[float, float]) -> tuple[float, float]:
            m = re.search(name + r"\(([-\d.eE+]+)[ ,]+([-\d.eE+]+)\)", text)
            return (float(m.group(1)), float(m.group(2))) if m else default

        assert re.sub(r"(scale|translate)\([^)]*\)|rotate\(0\)|\s", "", text) == "", text
        self.text = text
        self.s = nums("scale", (1.0, 1.0))
        self.t = nums("translate", (0.0, 0.0))

    def point(self, x: float, y: float) -> tuple[float, float]:
        return self.s[0] * (x + self.t[0]), self.s[1] * (y + self.t[1])


def _shape_box(el: ET.Element, tr: Transform) -> Box | None:
    tag = _tag(el)
    if tag in ("path", "polygon", "polyline"):
        raw = el.get("d") if tag == "path" else el.get("points")
        vals = [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?", raw or "")]
        pts = [tr.point(x, y) for x, y in zip(vals[0::2], vals[1::2])]
    elif tag == "ellipse":
        cx, cy, rx, ry = (float(el.get(k)) for k in ("cx", "cy", "rx", "ry"))
        pts = [tr.point(cx - rx, cy - ry), tr.point(cx + rx, cy + ry)]
    else:
        return None
    if not pts:
        return None
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    return Box(min(xs), min(ys), max(xs), max(ys))


def _outline(group: ET.Element, tr: Transform) -> tuple[Box, float] | None:
    """The biggest shape drawn by a node or cluster group (its border), with its stroke width."""
    best: tuple[Box, float] | None = None
    for el in group.iter():
        if el.get("stroke") in (None, "none", "transparent"):
            continue
        box = _shape_box(el, tr)
        if box is not None and (best is None or box.area > best[0].area):
            best = (box, float(el.get("stroke-width", "1")))
    return best


# ------------------------------------------------------------------------------------------ raster
@dataclass
class Text:
    owner: str  # "node n3", "cluster cluster_n2", "edge n2->n3", "graph"
    text: str
    el: ET.Element
    ink: Box | None = None


def _mono(family: str) -> bool:
    first = family.split(",")[0].strip().strip("'\"").lower()
    return first in ("monospace", "courier", "courier new", "menlo", "consolas", "cousine") or "mono" in first


def _render_alone(t: Text, tr: Transform) -> Box | None:
    """The ink box (SVG units, viewport coordinates) of ``t`` drawn alone in DejaVu."""
    el = ET.fromstring(ET.tostring(t.el))
    el.set("font-family", MONO if _mono(el.get("font-family", "")) else SANS)
    size = float(el.get("font-size", "14"))
    ax, ay = tr.point(float(el.get("x", "0")), float(el.get("y", "0")))
    reach = (len(t.text) + 4) * size
    x0, y0, w, h = ax - reach, ay - 3 * size, 2 * reach, 6 * size
    svg = (f'<svg xmlns="{SVG_NS}" width="{w * SCALE:.0f}" height="{h * SCALE:.0f}" '
           f'viewBox="{x0:.3f} {y0:.3f} {w:.3f} {h:.3f}"><g transform="{tr.text}">'
           f'{ET.tostring(el, encoding="unicode")}</g></svg>')
    png = cairosvg.svg2png(bytestring=svg.encode("utf-8"))
    alpha = np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"))[:, :, 3]
    ys, xs = np.nonzero(alpha > INK)
    if xs.size == 0:
        return None
    rows, cols = alpha.shape
    assert 0 < xs.min() and xs.max() < cols - 1 and 0 < ys.min() and ys.max() < rows - 1, \
        f"{t.text!r}: ink reaches the edge of the window it was drawn in"
    sx, sy = alpha.shape[1] / w, alpha.shape[0] / h
    return Box(x0 + xs.min() / sx, y0 + ys.min() / sy, x0 + (xs.max() + 1) / sx, y0 + (ys.max() + 1) / sy)


def layout_problems(svg_text: str) -> list[str]:
    """Every text that leaves its box or the picture, and every pair of texts whose ink overlaps."""
    root = ET.fromstring(svg_text)
    _, _, vw, vh = (float(v) for v in root.get("viewBox").split())
    graph = next(g for g in root.iter(f"{{{SVG_NS}}}g") if g.get("class") == "graph")
    tr = Transform(graph.get("transform", ""))
    texts: list[Text] = []
    boxes: dict[str, tuple[Box, float] | None] = {}
    clusters: list[tuple[Box, float]] = []
    for child in graph:
        kind = child.get("class") if _tag(child) == "g" else None
        title = child.findtext(f"{{{SVG_NS}}}title") or ""
        owner = f"{kind} {title}" if kind else "graph"
        if kind in ("node", "cluster"):
            boxes[owner] = _outline(child, tr)
            if kind == "cluster" and boxes[owner] is not None:
                clusters.append(boxes[owner])
        for el in (child.iter(f"{{{SVG_NS}}}text") if kind else
                   ([child] if _tag(child) == "text" else [])):
            texts.append(Text(owner, "".join(el.itertext()), el))
    assert texts, "the picture has no text"
    for t in texts:
        t.ink = _render_alone(t, tr)
    inked = [t for t in texts if t.ink is not None]

    problems = []
    canvas = Box(0, 0, vw, vh)
    for t in inked:
        where = f"{t.owner}: {t.text!r} (ink {t.ink})"
        if not canvas.contains(t.ink):
            problems.append(f"{where} is cut off by the picture's edge {canvas}")
        if t.owner.startswith(("node ", "cluster ")):
            outline = boxes.get(t.owner)
            if outline is None:  # a borderless node (the fused kernel's badge): its cluster holds it
                ax, ay = tr.point(float(t.el.get("x", "0")), float(t.el.get("y", "0")))
                around = [c for c in clusters if c[0].x0 <= ax <= c[0].x1 and c[0].y0 <= ay <= c[0].y1]
                outline = min(around, key=lambda c: c[0].area) if around else None
            if outline is not None and not outline[0].inset(outline[1] / 2).contains(t.ink):
                problems.append(f"{where} spills out of its box {outline[0]}")
    for i, a in enumerate(inked):
        for b in inked[i + 1:]:
            if a.ink.overlaps(b.ink, tol=0.5 / SCALE):
                problems.append(f"{a.owner}: {a.text!r} {a.ink} overlaps {b.owner}: {b.text!r} {b.ink}")
    return problems


# ------------------------------------------------------------------------------------------ tests
@pytest.mark.parametrize("model, spec, stage", [
    ("lazyfuse.examples.mlp:MLPWithBN", "N,784", "optimized"),
    ("lazyfuse.examples.mlp:MLPWithBN", "N,784", "inferred"),
    ("lazyfuse.examples.mlp:DynamicNetwork", "N,20", "optimized"),
])
def test_viz_svg_text_fits_in_dejavu(viz_svg, model: str, spec: str, stage: str) -> None:
    svg = viz_svg(model, spec, stage)
    assert svg.count("<text") > 10
    problems = layout_problems(svg)
    assert not problems, f"{len(problems)} layout problems in DejaVu:\n" + "\n".join(problems)


def test_declared_fonts_start_with_the_layout_fonts(viz_svg) -> None:
    """The SVG names DejaVu first (the fonts it was laid out for), then fallbacks, then a generic family."""
    root = ET.fromstring(viz_svg("lazyfuse.examples.mlp:MLPWithBN", "N,784", "optimized"))
    families = {el.get("font-family") for el in root.iter(f"{{{SVG_NS}}}text")}
    assert families, "no text"
    for fam in families:
        names = [n.strip() for n in fam.split(",")]
        assert names[0] in (SANS, MONO), fam
        assert names[-1] == ("monospace" if names[0] == MONO else "sans-serif"), fam


def test_the_check_catches_overlap() -> None:
    """The checker itself: two runs placed for a narrower font collide when drawn in DejaVu."""
    svg = (f'<svg xmlns="{SVG_NS}" width="200pt" height="60pt" viewBox="0 0 200 60">'
           '<g id="graph0" class="graph" transform="translate(4 56)">'
           '<g id="node1" class="node"><title>n0</title>'
           '<path fill="#eee" stroke="black" d="M0,-50 L150,-50 L150,-10 L0,-10 Z"/>'
           '<text x="8" y="-26" font-family="Helvetica,sans-Serif" font-weight="bold" font-size="11">'
           'batch_norm</text>'
           '<text x="66" y="-26" font-family="Helvetica,sans-Serif" font-size="11">'
           'bn1 : LazyBatchNorm1d</text>'
           '</g></g></svg>')
    problems = layout_problems(svg)
    assert any("overlaps" in p for p in problems) and any("spills out" in p for p in problems), problems

