"""``make demo``: the MLPWithBN example from lazy model to compiled kernels.

Run with ``python -m lazyfuse.examples.demo [OUT_DIR]``: build the lazy model, summarize it before anything is
allocated, trace it with a symbolic batch dim, resolve the lazy sizes from the spec alone, compile it
check the compiled model against eager execution in train and eval mode, draw the fused graph
into ``OUT_DIR`` (default ``out/``), and size a conv model's LazyLinear (SimpleNet) from a spec.

Drawing needs a Graphviz ``dot`` program (the ``viz`` extra installs one: ``pip install
'lazyfuse[viz]'``).  Without it the demo says so before it starts, runs everything else, and writes
the picture's Graphviz source (``.dot``) in place of the ``.svg`` and ``.html``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

import lazyfuse as lf
from lazyfuse import nn
from lazyfuse.examples.convnets import SimpleNet
from lazyfuse.examples.mlp import MLPWithBN

BATCH = 32
VIZ_HINT = "pip install 'lazyfuse[viz]'"


def section(title: str) -> None:
    print(f"\n=== {title} " + "=" * max(0, 70 - len(title)))


def layer_sizes(model: nn.Module) -> list[str]:
    """One line per Linear / BatchNorm layer with its (possibly still unresolved) sizes."""
    lines = []
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear):
            sizes = f"in_features={m.in_features}, out_features={m.out_features}"
            lines.append(f"  {name:<4} {type(m).__name__:<16} {sizes}")
        elif isinstance(m, nn.BatchNorm1d):
            lines.append(f"  {name:<4} {type(m).__name__:<16} num_features={m.num_features}")
    return lines


def build_model() -> MLPWithBN:
    section("1. build MLPWithBN (lf.manual_seed(0))")
    lf.manual_seed(0)
    model = MLPWithBN()
    print(f"has_uninitialized_params(): {model.has_uninitialized_params()}")
    print(f"fc2.in_features == 0: {model.fc2.in_features == 0}")
    print(f"bn1.num_features == 0: {model.bn1.num_features == 0}")
    print("\n".join(layer_sizes(model)))
    return model


def run_eager(model: MLPWithBN) -> None:
    section(f"2. eager forward, train mode (batch {BATCH}, input 28x28)")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, 28, 28)).astype(np.float32)
    y = model.train()(x)
    print(f"input {x.shape} -> output {y.shape} {y.dtype}")
    print(f"has_uninitialized_params(): {model.has_uninitialized_params()}")
    print(f"bn1.num_batches_tracked: {int(model.bn1.num_batches_tracked)}")
    print("resolved sizes:")
    print("\n".join(layer_sizes(model)))

    section("3. eager forward, eval mode (running statistics)")
    y_eval = model.eval()(x)
    print(f"input {x.shape} -> output {y_eval.shape} {y_eval.dtype}")
    print(f"flat (N, 784) input works too: {model(x.reshape(BATCH, 784)).shape}")


def show_model(model: MLPWithBN) -> None:
    section("4. the model")
    print(model)


SPEC = lf.TensorSpec(("N", 28, 28))


def trace_and_infer() -> None:
    section("5. lf.summary: shapes and parameter counts before any array exists")
    lf.manual_seed(0)
    model = MLPWithBN()
    print(lf.summary(model, SPEC))
    print(f"still lazy afterwards: {model.has_uninitialized_params()}")

    section("6. lf.trace: the graph, lazy dims still '?', batch dim symbolic")
    graph = lf.trace(model, SPEC)
    print(graph)

    section("7. lf.infer_shapes: lazy sizes resolved from the spec alone (no data)")
    print(lf.infer_shapes(graph))
    print("\n".join(layer_sizes(model)))


def compile_and_check(backend: str) -> None:
    section(f"8. lf.compile(model, spec, backend={backend!r}) vs eager, train then eval")
    lf.manual_seed(0)
    model = MLPWithBN()
    start = time.perf_counter()
    cm = lf.compile(model, SPEC, backend=backend)
    model.eval()  # an eval call leaves the running stats alone, so eager and compiled start equal
    cm(np.zeros((2, 28, 28), np.float32))  # the first call compiles (or loads from the disk cache)
    print(f"compile + first call: {time.perf_counter() - start:.2f} s")
    print("optimized graph:")
    print(cm.graph)
    eager = MLPWithBN()
    eager.load_state_dict(model.state_dict())  # resolves the eager copy's lazy layers too
    rng = np.random.default_rng(1)
    for step, mode in enumerate(["train", "train", "eval"]):
        x = rng.standard_normal((BATCH, 28, 28)).astype(np.float32)
        model.train(mode == "train")
        eager.train(mode == "train")
        diff = float(np.max(np.abs(cm(x) - eager(x))))
        print(f"step {step} ({mode}): max |compiled - eager| = {diff:.2e}")
    rm = float(np.max(np.abs(model.bn1.running_mean - eager.bn1.running_mean)))
    print(f"running stats shared with the model: max |bn1.running_mean diff| = {rm:.2e}, "
          f"num_batches_tracked = {int(model.bn1.num_batches_tracked)}")


def graphviz_missing() -> str | None:
    """Why the picture cannot be drawn here (``None``: a Graphviz ``dot`` program was found)."""
    from lazyfuse.viz import GraphvizNotFoundError, find_dot

    try:
        find_dot()
    except GraphvizNotFoundError as exc:
        return str(exc)
    return None


def draw(out_dir: Path, missing: str | None = None) -> None:
    section("9. the picture: lazyfuse viz (Graphviz layout), fused kernels drawn as clusters")
    from lazyfuse import viz

    lf.manual_seed(0)
    model = MLPWithBN()
    spec = lf.TensorSpec(("N", 784))
    traced = lf.trace(model, spec)
    optimized = lf.compile(model, spec).graph
    out_dir.mkdir(parents=True, exist_ok=True)
    if missing is not None:
        path = viz.render_file(optimized, out_dir / "mlp_optimized.dot", traced=traced)
        print(f"skipped the .svg and .html pictures: {missing}")
        print(f"wrote {path} instead: the picture's Graphviz source, for any dot program")
        return
    for suffix in ("svg", "html"):
        path = viz.render_file(optimized, out_dir / f"mlp_optimized.{suffix}", traced=traced)
        print(f"wrote {path}")


CONV_SPEC = lf.TensorSpec(("N", 3, 32, 32))


def conv_model() -> None:
    section("10. a conv model: SimpleNet, Conv2d(3, 64, 5) -> reshape -> LazyLinear(10)")
    lf.manual_seed(0)
    model = SimpleNet()
    print(lf.summary(model, CONV_SPEC))
    cm = lf.compile(model, CONV_SPEC)
    print(f"after lf.compile: {type(model.fc).__name__}, fc.in_features = {model.fc.in_features}")
    eager = SimpleNet()
    eager.load_state_dict(model.state_dict())
    x = np.random.default_rng(2).standard_normal((8, 3, 32, 32)).astype(np.float32)
    print(f"input {x.shape} -> output {cm(x).shape}; max |compiled - eager| = "
          f"{float(np.max(np.abs(cm(x) - eager(x)))):.2e}")


def main(out_dir: Path | None = None) -> None:
    missing = graphviz_missing()  # checked first, so the skip is said up front, not after a traceback
    if missing is not None:
        print(f"note: no Graphviz dot program, so step 9 draws no picture (.svg, .html); {VIZ_HINT} "
              "installs one (graphviz-pure). Everything else runs.")
    model = build_model()
    run_eager(model)
    show_model(model)
    trace_and_infer()
    compile_and_check("cpu")
    draw(Path("out") if out_dir is None else out_dir, missing)
    conv_model()


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else None)
