"""``make demo``: build the MLPWithBN example, run it eagerly, show how the lazy layers resolve.

Run with ``python -m lazyfuse.examples.demo``.  Each step is its own function so later stages
(trace -> compile -> benchmark) can be appended to :func:`main`.
"""

from __future__ import annotations

import numpy as np

import lazyfuse as lf
from lazyfuse import nn
from lazyfuse.examples.mlp import MLPWithBN

BATCH = 32


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


def main() -> None:
    model = build_model()
    run_eager(model)
    show_model(model)


if __name__ == "__main__":
    main()
