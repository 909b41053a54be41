"""``lazyfuse.viz``: lazy-dim marks, the styled DOT, rendering and the HTML page."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from marks import needs_graphviz

import lazyfuse as lf
from lazyfuse.examples.mlp import DynamicNetwork, MLPWithBN
from lazyfuse.ir import Graph, Sym, TensorType, f32
from lazyfuse.viz import (
    GraphvizNotFoundError,
    find_dot,
    format_graph_marked,
    graph_to_dot,
    lazy_marks,
    render,
    render_file,
)
from lazyfuse.viz.build_dot import dot_quote
from lazyfuse.viz.stages import build_stage, stage_passes
from lazyfuse.viz.text import LEGEND

SPEC = lf.TensorSpec(("N", 784))


@pytest.fixture(scope="module")
def mlp_optimized():
    return build_stage(MLPWithBN(), [SPEC], "optimized")


def test_marks_inferred() -> None:
    r = build_stage(MLPWithBN(), [SPEC], "inferred")
    marks = lazy_marks(r.traced, r.graph)
    assert marks["bn1"].attrs == {"num_features"} and marks["fc2"].attrs == {"in_features"}
    assert marks["fc2.weight"].dims == {1} and marks["bn1.running_var"].dims == {0}
    assert "fc1" not in marks and "fc1.weight" not in marks  # declared sizes are not marked
    text = format_graph_marked(r.graph, marks)
    assert text.splitlines()[0] == LEGEND
    assert "@fc2.weight: f32[128,256*] = param" in text and "num_features=256*" in text
    assert format_graph_marked(r.graph, {}, legend=False) == str(r.graph)


def test_marks_follow_fused_nodes(mlp_optimized) -> None:
    marks = lazy_marks(mlp_optimized.traced, mlp_optimized.graph)
    assert marks["fc2_bn2_relu2"].attrs == {"in_features", "num_features"}
    assert marks["fc1_bn1_relu1"].attrs == {"num_features"}
    assert mlp_optimized.passes == stage_passes("optimized") and mlp_optimized.passes[-1] == "fuse"


def test_fused_nodes_are_clusters_of_their_original_ops(mlp_optimized) -> None:
    dot = graph_to_dot(mlp_optimized.graph, traced=mlp_optimized.traced)
    assert dot.count("subgraph cluster_") == 2
    for part in ("fc1 : Linear", "bn1 : LazyBatchNorm1d", "relu1 : ReLU", "fc2 : LazyLinear"):
        assert part in dot
    assert dot.count("style=dashed") == 4  # linear -> bn -> relu inside each fused node
    assert "%fc1_bn1_relu1" in dot and "C=256*" in dot and "256* -&gt; 128" in dot
    assert "legend" in dot and "fused kernel" in dot


def test_a_function_inside_a_module_shows_where_it_ran_not_a_class() -> None:
    import models_for_tests as M

    r = build_stage(M.StemNet(), [lf.TensorSpec(("N", 3))], "optimized")
    dot = graph_to_dot(r.graph, traced=r.traced)
    assert "stem.fc : LazyLinear" in dot and "stem.bn : LazyBatchNorm1d" in dot
    assert ": relu" not in dot and ": add" not in dot  # F.relu in stem's forward is not a module
    assert "<b>relu</b>  <font" in dot


def test_module_paths_become_clusters() -> None:
    r = build_stage(DynamicNetwork(), [lf.TensorSpec(("N", 20))], "inferred")
    dot = graph_to_dot(r.graph, traced=r.traced)
    assert 'subgraph "cluster_m_layers"' in dot and "layers.1 : LazyBatchNorm1d" in dot


def _odd_graph() -> Graph:
    g = Graph('odd "graph"')
    x = g.add_input("x", TensorType(f32, (Sym("N"), 4)))
    odd = 'we"ird<b>&{x}\\n|'
    y = g.create_node("relu", [x], {}, TensorType(f32, (Sym("N"), 4)), module=f"outer.{odd}",
                      module_type="My<Mod>")
    g.set_output(y)
    return g


def test_dot_escaping() -> None:
    assert dot_quote('a"b\\c\nd') == '"a\\"b\\\\c\\nd"'
    dot = graph_to_dot(_odd_graph(), title='title with "quotes" & <tags>')
    assert 'digraph "odd \\"graph\\""' in dot
    assert "we&quot;ird&lt;b&gt;&amp;{x}" in dot and "My&lt;Mod&gt;" in dot


@needs_graphviz
def test_odd_names_render(tmp_path: Path) -> None:
    path = render_file(_odd_graph(), tmp_path / "odd.svg", title='"odd" <title>')
    text = "".join(ET.parse(path).getroot().itertext())
    assert 'outer.we"ird<b>&{x}' in text and "f32[N,4]" in text


@needs_graphviz
def test_render_formats(tmp_path: Path, mlp_optimized) -> None:
    g, t = mlp_optimized.graph, mlp_optimized.traced
    svg = render_file(g, tmp_path / "m.svg", traced=t)
    root = ET.parse(svg).getroot()
    assert root.tag.endswith("svg") and "f32[N,256]" in "".join(root.itertext())
    assert render_file(g, tmp_path / "m.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert render_file(g, tmp_path / "m.dot").read_text().startswith('digraph "MLPWithBN"')
    page = render(g, "html", traced=t).decode()
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page and "<?xml" not in page
    assert "fc2_bn2_relu2" in page and "num_features=128*" in page
    assert 'xlink:title="%fc3: f32[N,10] = linear[' in page  # the hover text is the node's IR line
    with pytest.raises(lf.LazyFuseError, match="cannot tell the picture format"):
        render_file(g, tmp_path / "m.pdf")


def test_missing_graphviz_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAZYFUSE_DOT", "no-such-dot-program")
    with pytest.raises(GraphvizNotFoundError, match="LAZYFUSE_DOT"):
        find_dot()
    with pytest.raises(GraphvizNotFoundError):
        render(_odd_graph(), "svg")
    assert render(_odd_graph(), "dot").startswith(b"digraph")  # .dot needs no Graphviz


def test_docs_pictures_are_current() -> None:
    docs = Path(__file__).resolve().parent.parent / "docs"
    for stage in ("inferred", "optimized"):
        svg = ET.parse(docs / f"mlp_{stage}.svg").getroot()
        text = "".join(svg.itertext())
        assert "f32[N,256]" in text and (("fused_linear_bn_relu" in text) == (stage == "optimized"))


def test_one_dot_walk_with_styles(mlp_optimized) -> None:
    from lazyfuse.ir.dot import DotStyle
    from lazyfuse.ir.dot import graph_to_dot as walk
    from lazyfuse.viz.build_dot import VizStyle

    g = mlp_optimized.graph
    assert walk(g) == walk(g, DotStyle()) == g.to_dot()
    assert walk(g, VizStyle(g, {}, None, True)) == graph_to_dot(g)

    class Loud(DotStyle):
        def label(self, node):
            return node.name.upper()

        def edge_label(self, src, dst, pos):
            return None

    dot = walk(g, Loud())
    assert 'label="FC3"' in dot and "[label=" not in dot.split("->", 1)[1]


def test_new_compute_ops_get_the_default_colour(monkeypatch: pytest.MonkeyPatch) -> None:
    from lazyfuse.ir import OPS, OpDef
    from lazyfuse.viz.dot_style import category_of

    monkeypatch.setitem(OPS, "my_gelu", OpDef("my_gelu", {}, 1, None, None))
    assert category_of("my_gelu") == "other" and category_of("input") == category_of("output") == "io"
    assert category_of("linear") == "linear" and category_of("param") == "other"


def test_conv_and_pool_nodes_show_their_window_and_colour() -> None:
    from lazyfuse.examples.convnets import ConvBNNet
    from lazyfuse.viz.dot_style import attr_summary, category_of

    r = build_stage(ConvBNNet(), [lf.TensorSpec(("N", 3, 8, 8))], "optimized")
    dot = graph_to_dot(r.graph, traced=r.traced)
    assert "3* -&gt; 16  3x3 pad 1" in dot  # in_channels was lazy
    assert "2x2 /2" in dot and "fused_conv_bn_relu" in dot
    assert category_of("conv2d") == "conv" and category_of("max_pool2d") == "pool"
    assert attr_summary("conv2d", {"in_channels": 4, "out_channels": 8, "kernel_size": (3, 1),
                                   "stride": (2, 1), "padding": (0, 1, 0, 0), "dilation": (2, 2),
                                   "groups": 4, "bias": False}) == \
        "4 -> 8  3x1 /(2,1) pad 0,1,0,0 dil 2  groups=4  (no bias)"
