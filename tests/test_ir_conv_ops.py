"""ir.conv_ops / ir.conv_math: conv2d and max_pool2d shape rules, their errors, the NumPy reference
against torch, the fused conv ops, and the fuse pass on a parsed conv graph (golden IR)."""
# ruff: noqa: E501  (golden IR lines are long by nature)

from __future__ import annotations

import itertools

import numpy as np
import pytest

from lazyfuse.errors import DTypeError, InferenceError
from lazyfuse.ir import OPS, UNKNOWN, Graph, Sym, TensorType, f32, f64, i64, verify
from lazyfuse.ir import conv_math as cm
from lazyfuse.ir.ops import check_attrs, infer_node
from lazyfuse.passes.manager import PassContext, run_passes

torch = pytest.importorskip("torch")
TF = torch.nn.functional
N = Sym("N")


def t(*shape, dtype=f32):
    return TensorType(dtype, shape)


def conv(in_c, out_c, k=(3, 3), stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1, bias=True):
    return {"in_channels": in_c, "out_channels": out_c, "kernel_size": k, "stride": stride, "padding": padding,
            "dilation": dilation, "groups": groups, "bias": bias}


def pool(k=(2, 2), stride=(2, 2), padding=(0, 0), dilation=(1, 1), ceil_mode=False):
    return {"kernel_size": k, "stride": stride, "padding": padding, "dilation": dilation, "ceil_mode": ceil_mode}


# ---------------------------------------------------------------------------------- shape rules
def test_conv_resolves_lazy_in_channels_and_keeps_the_batch_symbolic():
    """SimpleNet's first layer: 3x32x32 through a 5x5 kernel is 64x28x28, the lazy weight refined."""
    res = infer_node("conv2d", conv(UNKNOWN, 64, (5, 5)), [t(N, 3, 32, 32), t(64, UNKNOWN, 5, 5), t(64)])
    assert res.out == t(N, 64, 28, 28)
    assert res.attrs["in_channels"] == 3
    assert res.inputs == {1: t(64, 3, 5, 5)}


@pytest.mark.parametrize("attrs, x, out", [
    (conv(4, 6, (3, 3), stride=(2, 1)), t(N, 4, 9, 8), t(N, 6, 4, 6)),
    (conv(4, 6, (3, 2), padding=(1, 1, 0, 1)), t(2, 4, 5, 5), t(2, 6, 5, 5)),
    (conv(4, 6, (3, 3), dilation=(2, 2)), t(N, 4, 7, 7), t(N, 6, 3, 3)),
    (conv(4, 8, (1, 1), groups=4), t(0, 4, 3, 3), t(0, 8, 3, 3)),
])
def test_conv_output_sizes(attrs, x, out):
    cg = attrs["in_channels"] // attrs["groups"]
    res = infer_node("conv2d", attrs, [x, t(attrs["out_channels"], cg, *attrs["kernel_size"]), t(attrs["out_channels"])])
    assert res.out == out


def test_conv_lazy_in_channels_with_groups_refines_the_weight_by_group():
    res = infer_node("conv2d", conv(UNKNOWN, 6, groups=2, bias=False), [t(N, 4, 5, 5), t(6, UNKNOWN, 3, 3)])
    assert res.attrs["in_channels"] == 4 and res.inputs == {1: t(6, 2, 3, 3)}


@pytest.mark.parametrize("attrs, ts, err, match", [
    (conv(3, 8), [t(N, 3, Sym("H"), 32), t(8, 3, 3, 3), t(8)], InferenceError, r"spatial dims must be concrete.*f32\[N,3,H,32\]"),
    (conv(3, 8), [t(N, 3, 32), t(8, 3, 3, 3), t(8)], InferenceError, r"expected a 4-D input \(N, C, H, W\), got f32\[N,3,32\]"),
    (conv(3, 8), [t(N, 4, 8, 8), t(8, 3, 3, 3), t(8)], InferenceError, r"in_channels mismatch: expected 3 \(in_channels\), got 4 \(input dim 1\)"),
    (conv(3, 8, (5, 5)), [t(N, 3, 4, 8), t(8, 3, 5, 5), t(8)], InferenceError, r"kernel \(5, 5\).*larger than the padded input \(4, 8\)"),
    (conv(3, 8, groups=2), [t(N, 3, 8, 8), t(8, 1, 3, 3), t(8)], InferenceError, "in_channels mismatch|divisible by groups"),
    (conv(4, 6, groups=4), [t(N, 4, 8, 8), t(6, 1, 3, 3), t(6)], InferenceError, r"out_channels \(6\) must be divisible by groups \(4\)"),
    (conv(3, 8), [t(N, 3, 8, 8), t(8, 3, 3, 3), t(7)], InferenceError, r"bias has type f32\[7\], expected f32\[8\]"),
    (conv(3, 8), [t(N, 3, 8, 8), t(8, 3, 2, 3), t(8)], InferenceError, r"weight has type f32\[8,3,2,3\], expected f32\[8,3,3,3\]"),
    (conv(3, 8), [t(N, 3, 8, 8), t(8, 3, 3, 3, dtype=f64), t(8)], DTypeError, "dtype mismatch"),
])
def test_conv_rule_errors(attrs, ts, err, match):
    with pytest.raises(err, match=match):
        infer_node("conv2d", attrs, ts)


def test_conv_lazy_in_channels_from_a_symbolic_channel_dim_names_the_symbol():
    with pytest.raises(InferenceError, match="give symbol C a concrete size"):
        infer_node("conv2d", conv(UNKNOWN, 8), [t(N, Sym("C"), 8, 8), t(8, UNKNOWN, 3, 3), t(8)])


@pytest.mark.parametrize("attrs, x, out", [
    (pool(), t(N, 3, 8, 9), t(N, 3, 4, 4)),
    (pool(ceil_mode=True), t(N, 3, 8, 9), t(N, 3, 4, 5)),
    (pool((3, 3), (2, 2), (1, 1)), t(2, 3, 7, 7), t(2, 3, 4, 4)),
    (pool((2, 2), (1, 1), dilation=(2, 2)), t(2, 3, 5, 5), t(2, 3, 3, 3)),
])
def test_pool_output_sizes(attrs, x, out):
    assert infer_node("max_pool2d", attrs, [x]).out == out


@pytest.mark.parametrize("attrs, x, match", [
    (pool((2, 2), padding=(2, 0)), t(N, 3, 8, 8), r"padding \(2, 0\) must be at most half the kernel size"),
    (pool((5, 5)), t(N, 3, 4, 4), r"output size \(0, 0\) is too small"),
    (pool(stride=(0, 1)), t(N, 3, 4, 4), "must be >= 1"),
    (pool(), t(N, 3, 4, Sym("W")), "spatial dims must be concrete"),
])
def test_pool_rule_errors(attrs, x, match):
    with pytest.raises(InferenceError, match=match):
        infer_node("max_pool2d", attrs, [x])


def test_ints_attrs_are_checked():
    assert check_attrs(OPS["conv2d"], conv(3, 8)) == []
    assert check_attrs(OPS["conv2d"], dict(conv(3, 8), stride=[1, 1])) == ["attr stride=[1, 1] is not a valid ints"]
    assert check_attrs(OPS["max_pool2d"], dict(pool(), padding=(-1, 0))) == ["attr padding=(-1, 0) is not a valid ints"]


def test_batch_norm_accepts_nchw():
    bn = {"num_features": UNKNOWN, "eps": 1e-5, "momentum": 0.1, "affine": True, "track_running_stats": True}
    res = infer_node("batch_norm", bn, [t(N, 8, 4, 4), t(UNKNOWN), t(UNKNOWN), t(UNKNOWN), t(UNKNOWN), t(dtype=i64)])
    assert res.out == t(N, 8, 4, 4) and res.attrs["num_features"] == 8


# ---------------------------------------------------------------------------- reference vs torch
CONV_CASES = list(itertools.product(
    [(1, 1), (2, 3)],                 # stride
    [(0, 0, 0, 0), (1, 1, 2, 2), (0, 1, 1, 0)],  # padding (top, bottom, left, right)
    [(1, 1), (2, 1)],                 # dilation
    [1, 2],                           # groups
    [(3, 3), (2, 3)],                 # kernel
))


@pytest.mark.parametrize("stride, padding, dilation, groups, kernel", CONV_CASES)
def test_conv_reference_matches_torch(stride, padding, dilation, groups, kernel):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 9, 8)).astype(np.float32)
    w = rng.standard_normal((6, 4 // groups, *kernel)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    got = OPS["conv2d"].impl(conv(4, 6, kernel, stride, padding, dilation, groups), x, w, b)
    xt = TF.pad(torch.from_numpy(x), (padding[2], padding[3], padding[0], padding[1]))
    want = TF.conv2d(xt, torch.from_numpy(w), torch.from_numpy(b), stride, 0, dilation, groups).numpy()
    assert got.shape == want.shape and got.dtype == np.float32 and got.flags.c_contiguous
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_conv_reference_float64_depthwise_no_bias_and_empty_batch():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 4, 6, 7))
    w = rng.standard_normal((8, 1, 3, 3))
    got = OPS["conv2d"].impl(conv(4, 8, groups=4, bias=False), x, w)
    want = TF.conv2d(torch.from_numpy(x), torch.from_numpy(w), groups=4).numpy()
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert OPS["conv2d"].impl(conv(4, 8, groups=4, bias=False), x[:0], w).shape == (0, 8, 4, 5)


@pytest.mark.filterwarnings("ignore:Using padding='same'")
def test_same_padding_matches_torch_for_even_kernels():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 2, 7, 6)).astype(np.float32)
    w = rng.standard_normal((3, 2, 4, 3)).astype(np.float32)
    pad = cm.same_padding((4, 3), (1, 2))
    assert pad == (1, 2, 2, 2)
    got = cm.conv2d(x, w, None, (1, 1), pad, (1, 2), 1)
    want = TF.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding="same", dilation=(1, 2)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kernel, stride, padding, dilation, ceil_mode", [
    c for c in itertools.product([(2, 2), (3, 2)], [(1, 1), (2, 2), (3, 2)], [(0, 0), (1, 1)], [(1, 1), (2, 1)],
                                 [False, True])
    if c[2][0] <= c[0][0] // 2 and c[2][1] <= c[0][1] // 2])
def test_pool_reference_matches_torch(kernel, stride, padding, dilation, ceil_mode):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 9, 10)).astype(np.float32)
    x[0, 0, 0, 0] = np.nan
    x[1, 2, 4, 4] = -np.inf
    attrs = pool(kernel, stride, padding, dilation, ceil_mode)
    got = OPS["max_pool2d"].impl(attrs, x)
    want = TF.max_pool2d(torch.from_numpy(x), kernel, stride, padding, dilation, ceil_mode).numpy()
    assert got.shape == want.shape == infer_node("max_pool2d", attrs, [t(2, 3, 9, 10)]).out.shape
    np.testing.assert_array_equal(got, want)


# ------------------------------------------------------------------------------------ fused ops
def test_fused_conv_ops_compose_their_parts():
    op = OPS["fused_conv_bn_relu"]
    assert op.parts == ("conv2d", "batch_norm", "relu") and op.kind == "fused" and op.uses_training
    attrs = dict(conv(2, 4), num_features=4, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 modules=("c", "bn", "r"), bn_module="bn")
    assert op.operand_names(attrs) == (
        "conv2d.input", "conv2d.weight", "conv2d.bias", "batch_norm.weight", "batch_norm.bias",
        "batch_norm.running_mean", "batch_norm.running_var", "batch_norm.num_batches_tracked")
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 2, 5, 5)).astype(np.float32)
    w = rng.standard_normal((4, 2, 3, 3)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    g, beta = np.ones(4, np.float32) * 2, np.full(4, 0.5, np.float32)
    rm, rv, nbt = np.zeros(4, np.float32), np.ones(4, np.float32), np.zeros((), np.int64)
    y = op.impl(attrs, x, w, b, g, beta, rm, rv, nbt, training=True)
    ref = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU()).train()
    with torch.no_grad():
        ref[0].weight.copy_(torch.from_numpy(w))
        ref[0].bias.copy_(torch.from_numpy(b))
        ref[1].weight.fill_(2)
        ref[1].bias.fill_(0.5)
        want = ref(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(rm, ref[1].running_mean.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rv, ref[1].running_var.numpy(), rtol=1e-5, atol=1e-6)
    assert int(nbt) == 1
    res = op.shape_rule(dict(attrs, in_channels=UNKNOWN, num_features=UNKNOWN),
                        [t(N, 2, 5, 5), t(4, UNKNOWN, 3, 3), t(4)] + [t(UNKNOWN)] * 4 + [t(dtype=i64)])
    assert res.out == t(N, 4, 3, 3) and res.attrs["in_channels"] == 2 and res.attrs["num_features"] == 4


CONV_GRAPH = """\
graph @Net[N](%x: f32[N,3,8,8]) -> (f32[N,4,3,3]) {
  @conv.weight: f32[4,?,3,3] = param
  @conv.bias: f32[4] = param
  @bn.weight: f32[?] = param
  @bn.bias: f32[?] = param
  @bn.running_mean: f32[?] = buffer
  @bn.running_var: f32[?] = buffer
  @bn.num_batches_tracked: i64[] = buffer
  %conv: f32[N,4,6,6] = conv2d[bias=true, dilation=(1, 1), groups=1, in_channels=?, kernel_size=(3, 3), out_channels=4, padding=(0, 0, 0, 0), stride=(1, 1)](%x, @conv.weight, @conv.bias)  # net.py:10 conv:LazyConv2d
  %bn: f32[N,4,6,6] = batch_norm[affine=true, eps=1e-05, momentum=0.1, num_features=?, track_running_stats=true](%conv, @bn.weight, @bn.bias, @bn.running_mean, @bn.running_var, @bn.num_batches_tracked)  # net.py:11 bn:LazyBatchNorm2d
  %relu: f32[N,4,6,6] = relu(%bn)  # net.py:12 relu:ReLU
  %pool: f32[N,4,3,3] = max_pool2d[ceil_mode=false, dilation=(1, 1), kernel_size=(2, 2), padding=(0, 0), stride=(2, 2)](%relu)  # net.py:13 pool:MaxPool2d
  %relu_1: f32[N,4,3,3] = relu(%pool)  # net.py:14
  %pool2: f32[N,4,1,1] = max_pool2d[ceil_mode=false, dilation=(1, 1), kernel_size=(3, 3), padding=(0, 0), stride=(3, 3)](%relu_1)  # net.py:15 pool2:MaxPool2d
  return (%pool)
}"""

CONV_FUSED = """\
graph @Net[N](%x: f32[N,3,8,8]) -> (f32[N,4,3,3]) {
  @conv.weight: f32[4,3,3,3] = param
  @conv.bias: f32[4] = param
  @bn.weight: f32[4] = param
  @bn.bias: f32[4] = param
  @bn.running_mean: f32[4] = buffer
  @bn.running_var: f32[4] = buffer
  @bn.num_batches_tracked: i64[] = buffer
  %conv_bn_relu: f32[N,4,6,6] = fused_conv_bn_relu[affine=true, bias=true, bn_module="bn", dilation=(1, 1), eps=1e-05, groups=1, in_channels=3, kernel_size=(3, 3), modules=("conv", "bn", "relu"), momentum=0.1, num_features=4, out_channels=4, padding=(0, 0, 0, 0), stride=(1, 1), track_running_stats=true](%x, @conv.weight, @conv.bias, @bn.weight, @bn.bias, @bn.running_mean, @bn.running_var, @bn.num_batches_tracked)  # net.py:10 conv:"LazyConv2d+LazyBatchNorm2d+ReLU"
  %pool: f32[N,4,3,3] = max_pool2d[ceil_mode=false, dilation=(1, 1), kernel_size=(2, 2), padding=(0, 0), stride=(2, 2)](%conv_bn_relu)  # net.py:13 pool:MaxPool2d
  return (%pool)
}"""


def test_fuse_pass_on_a_conv_graph_golden():
    """conv -> bn -> relu fuses into one node (the pool after it keeps its own kernel); dce drops the
    unused relu -> pool tail, which would otherwise fuse into fused_relu_max_pool2d."""
    graph = Graph.parse(CONV_GRAPH)
    out = run_passes(graph, ["infer_shapes", "dce", "fuse"], PassContext(verify=True))
    assert str(out).strip() == CONV_FUSED
    verify(out)
    assert Graph.parse(str(out)) == out and Graph.from_json(out.to_json()) == out


def test_fuse_pass_fuses_a_standalone_relu_into_the_pool():
    text = CONV_GRAPH.replace("return (%pool)", "return (%pool2)").replace("-> (f32[N,4,3,3])", "-> (f32[N,4,1,1])")
    out = run_passes(Graph.parse(text), ["infer_shapes", "dce", "fuse"], PassContext(verify=True))
    ops = [n.op for n in out.nodes if n.op not in ("input", "param", "buffer", "output")]
    assert ops == ["fused_conv_bn_relu", "max_pool2d", "fused_relu_max_pool2d"]
    node = next(n for n in out.nodes if n.op == "fused_relu_max_pool2d")
    assert node.attrs["modules"] == ("", "pool2") and node.module_type == "relu+MaxPool2d"
