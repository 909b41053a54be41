"""Convolution benchmark of the ``cpu`` backend: the FeatureExtractor example against PyTorch eager,
and one conv layer split into what bounds it (im2col traffic vs the BLAS GEMM).

Run ``python -m lazyfuse.bench.conv [--quick] [--json out.json]``.  Paired like
:mod:`lazyfuse.bench.cpu_fused` (alternating blocks, order flipped every round, median of the
per-round ratios); ratios < 1 mean lazyfuse is faster.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import numpy as np

from .cpu_fused import paired, run_and_report

_ROUNDS_QUICK, _ROUNDS_FULL = 6, 30
BATCH = 64


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(os.cpu_count() or 1)
    return torch


def _torch_feature_extractor(torch: Any, model: Any) -> Any:
    """The same network in torch with lazyfuse's (materialized) weights."""
    t = torch.nn
    net = t.Sequential(t.Conv2d(3, 32, 3), t.ReLU(), t.Conv2d(32, 64, 3), t.ReLU(), t.Flatten(),
                       t.Linear(model.fc.in_features, 10))
    with torch.no_grad():
        for dst, src in ((net[0], model.features[0]), (net[2], model.features[2]), (net[5], model.fc)):
            dst.weight.copy_(torch.from_numpy(np.asarray(src.weight)))
            dst.bias.copy_(torch.from_numpy(np.asarray(src.bias)))
    return net


def bench_feature_extractor(rounds: int) -> list[dict[str, Any]]:
    """FeatureExtractor forward at batch 64 on 3x32x32, f32, eval and train, vs torch eager."""
    import lazyfuse as lf
    from lazyfuse.examples.convnets import FeatureExtractor

    torch = _torch()
    if torch is None:
        print("torch is not installed: the FeatureExtractor rows are skipped")
        return []
    lf.manual_seed(0)
    model = FeatureExtractor()
    cm = lf.compile(model, lf.TensorSpec(("N", 3, 32, 32)), backend="cpu")
    tnet = _torch_feature_extractor(torch, model)
    x = np.random.default_rng(0).standard_normal((BATCH, 3, 32, 32)).astype(np.float32)
    tx = torch.from_numpy(x)
    rows = []
    for train in (False, True):
        model.train(train)
        tnet.train(train)

        def torch_step() -> Any:
            with torch.no_grad():
                return tnet(tx)

        np.testing.assert_allclose(cm(x), torch_step().numpy(), rtol=1e-3, atol=1e-3)
        rows.append(paired(f"FeatureExtractor {'train' if train else 'eval'} f32 x({BATCH},3,32,32)",
                           lambda: cm(x), torch_step, f"torch eager ({torch.get_num_threads()} threads)",
                           rounds, target=1.2))
    return rows


def bench_conv_layer(rounds: int, backend: str = "cpu", with_torch: bool = True) -> list[dict[str, Any]]:
    """FeatureExtractor's second conv (+ ReLU) alone, on (64, 32, 30, 30): vs torch eager and vs the
    bare BLAS GEMM of the same size, ``W (64, 288) @ cols (288, 64*28*28)``, which is the work the
    layer cannot avoid; the rest is im2col and the epilogue.  The row of the GEMM part as the
    kernel issues it needs the ``cpu`` backend's block size (it is left out on other backends);
    ``with_torch=False`` leaves out the torch row."""
    import lazyfuse as lf
    from lazyfuse import nn

    lf.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(32, 64, 3), nn.ReLU()).eval()
    cm = lf.compile(model, lf.TensorSpec(("N", 32, 30, 30)), backend=backend)
    x = np.random.default_rng(1).standard_normal((BATCH, 32, 30, 30)).astype(np.float32)
    w = np.asarray(model[0].weight).reshape(64, -1)
    cols = np.random.default_rng(2).standard_normal((w.shape[1], BATCH * 28 * 28)).astype(np.float32)
    y = np.empty((64, cols.shape[1]), np.float32)
    tag = f"Conv2d(32,64,3)+ReLU eval f32 x({BATCH},32,30,30)"
    bare = "np.matmul(W, cols, out=y) (64x288 @ 288x50176)"
    rows = [paired(tag, lambda: cm(x), lambda: np.matmul(w, cols, out=y), bare, rounds)]
    if backend == "cpu":
        rows.append(_gemm_part_row(cm, w, cols, y, bare, rounds))
    torch = _torch() if with_torch else None
    if torch is not None:
        tm = torch.nn.Sequential(torch.nn.Conv2d(32, 64, 3), torch.nn.ReLU()).eval()
        tx = torch.from_numpy(x)

        def torch_step() -> Any:
            with torch.no_grad():
                return tm(tx)

        rows.append(paired(tag, lambda: cm(x), torch_step, f"torch eager ({torch.get_num_threads()} threads)",
                           rounds))
    return rows


def _gemm_part_row(cm: Any, w: np.ndarray, cols: np.ndarray, y: np.ndarray, bare: str,
                   rounds: int) -> dict[str, Any]:
    """The conv layer's GEMMs as ``cm``'s kernel issues them vs the one GEMM of the same size."""
    # The GEMM part as the kernel issues it: one GEMM per block of samples (the block size from the
    # generated module's own helper), each into its block of y, vs the one GEMM of the same size.
    p = 28 * 28
    bb, nblk = cm.runner.module.conv_block_size(BATCH, w.shape[1], p, 4)
    spans = [(i * bb * p, min(BATCH, (i + 1) * bb) * p) for i in range(nblk)]
    block_cols = [np.ascontiguousarray(cols[:, lo:hi]) for lo, hi in spans]
    block_out = [np.empty((64, hi - lo), np.float32) for lo, hi in spans]

    def block_gemms() -> None:
        for c, o in zip(block_cols, block_out):
            np.matmul(w, c, out=o)

    return paired(f"conv GEMM part: {nblk} block GEMMs 64x288 @ 288x{bb * p}", block_gemms,
                  lambda: np.matmul(w, cols, out=y), bare, rounds, target=1.1)


SECTIONS = (bench_feature_extractor, bench_conv_layer)


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Every section's rows (few rounds with ``quick``)."""
    rounds = _ROUNDS_QUICK if quick else _ROUNDS_FULL
    return [row for section in SECTIONS for row in section(rounds)]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m lazyfuse.bench.conv", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="few rounds")
    ap.add_argument("--json", metavar="PATH", help="write machine info and rows as JSON")
    args = ap.parse_args(argv)
    rounds = _ROUNDS_QUICK if args.quick else _ROUNDS_FULL
    run_and_report([lambda section=section: section(rounds) for section in SECTIONS], args.json)


if __name__ == "__main__":
    main()
