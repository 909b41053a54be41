"""One self-contained HTML page: the SVG inlined, hovering a node shows its full IR line.

Graphviz writes each node's ``tooltip`` as an ``xlink:title`` (the browser's own tooltip); a small
inline script also shows the hovered line in a fixed bar and highlights the node.  The page's
bottom holds the whole text IR.  No network access is needed to view it.
"""

from __future__ import annotations

import html
import re

__all__ = ["svg_to_html"]

_CSS = """
body { font-family: Helvetica, Arial, sans-serif; margin: 0; color: #0f172a; }
header { padding: 10px 16px; border-bottom: 1px solid #e2e8f0; }
header h1 { font-size: 16px; margin: 0; }
header p { font-size: 12px; color: #475569; margin: 4px 0 0; }
#ir-line { position: sticky; top: 0; background: #0f172a; color: #e2e8f0; padding: 6px 16px;
  font: 12px/1.4 Menlo, Consolas, monospace; white-space: pre-wrap; min-height: 1.4em; z-index: 1; }
main { padding: 12px 16px; overflow: auto; }
g.node:hover polygon, g.node:hover path, g.cluster:hover path { stroke-width: 2.5; }
details { margin: 0 16px 16px; }
pre { font: 12px/1.45 Menlo, Consolas, monospace; background: #f8fafc; padding: 10px; overflow: auto; }
"""

_SCRIPT = """
(function () {
  var bar = document.getElementById('ir-line');
  var idle = bar.textContent;
  document.querySelectorAll('svg g.node, svg g.cluster').forEach(function (g) {
    var a = g.querySelector('a');
    var tip = a && (a.getAttribute('xlink:title') || a.getAttribute('title'));
    if (!tip) return;
    g.addEventListener('mouseenter', function (e) { bar.textContent = tip; e.stopPropagation(); });
    g.addEventListener('mouseleave', function () { bar.textContent = idle; });
  });
})();
"""


def svg_to_html(svg: str, title: str, ir_text: str, subtitle: str = "") -> str:
    """The page for ``svg`` (Graphviz output), titled ``title``, with ``ir_text`` appended."""
    body = re.sub(r"^\s*<\?xml[^>]*>\s*", "", svg)
    body = re.sub(r"<!DOCTYPE[^>]*>\s*", "", body)
    t = html.escape(title)
    sub = f"<p>{html.escape(subtitle)}</p>" if subtitle else ""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{t}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<header><h1>{t}</h1>{sub}</header>\n"
        "<div id=\"ir-line\">hover a node to see its IR line</div>\n"
        f"<main>\n{body}\n</main>\n"
        f"<details open><summary>IR</summary><pre>{html.escape(ir_text)}</pre></details>\n"
        f"<script>{_SCRIPT}</script>\n</body>\n</html>\n"
    )
