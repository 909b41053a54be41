"""The ``cpu`` backend's NCHW kernels (conv2d and its fused forms, max_pool2d, BatchNorm over 4-D)
against the reference backend and PyTorch: train steps then eval, on the three paths of a call
(``run_s``; ``run`` with serial kernels; ``run`` with parallel kernels and several im2col blocks).

Graphs are parsed from IR text (no nn frontend), one "zoo" per dtype covering every lowering, so
each compiles once (module-scoped fixtures, disk cache)."""

from __future__ import annotations

import numpy as np
import pytest

from lazyfuse.backends import get_backend
from lazyfuse.ir import Graph
from lazyfuse.passes.manager import PassContext, run_passes

torch = pytest.importorskip("torch")
tnn, TF = torch.nn, torch.nn.functional

C, H, W = 8, 23, 22  # odd spatial sizes; 8 channels for groups 2 and depthwise 8


def _bn(name, c, d, eps=1e-05, momentum="0.1", affine=True, track=True):
    """A batch_norm line's attrs and operands (after the input) and its param/buffer lines."""
    attrs = (f"affine={str(affine).lower()}, eps={eps}, momentum={momentum}, num_features={c}, "
             f"track_running_stats={str(track).lower()}")
    ops, decls = [], []
    if affine:
        ops += [f"@{name}.weight", f"@{name}.bias"]
        decls += [f"@{name}.weight: {d}[{c}] = param", f"@{name}.bias: {d}[{c}] = param"]
    if track:
        ops += [f"@{name}.running_mean", f"@{name}.running_var", f"@{name}.num_batches_tracked"]
        decls += [f"@{name}.running_mean: {d}[{c}] = buffer", f"@{name}.running_var: {d}[{c}] = buffer",
                  f"@{name}.num_batches_tracked: i64[] = buffer"]
    return attrs, "".join(", " + o for o in ops), decls


def _conv(name, d, cin, cout, k, stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1, bias=True):
    attrs = (f"bias={str(bias).lower()}, dilation={dilation}, groups={groups}, in_channels={cin}, "
             f"kernel_size={k}, out_channels={cout}, padding={padding}, stride={stride}")
    decls = [f"@{name}.weight: {d}[{cout},{cin // groups},{k[0]},{k[1]}] = param"]
    ops = f"@{name}.weight"
    if bias:
        decls.append(f"@{name}.bias: {d}[{cout}] = param")
        ops += f", @{name}.bias"
    return attrs, ops, decls


def _pool(k, stride, padding=(0, 0), dilation=(1, 1), ceil=False):
    return (f"ceil_mode={str(ceil).lower()}, dilation={dilation}, kernel_size={k}, padding={padding}, "
            f"stride={stride}")


def zoo_text(d):
    """Every lowering once: conv+bn+relu -> pool, conv with stride / asymmetric padding / dilation /
    groups 2, depthwise conv+relu without bias, 1x1 conv+bn (momentum=None), conv+bn(affine=False,
    track_running_stats=False)+relu, bn over 4-D alone and + relu, relu -> pool (ceil_mode, padding,
    dilation) and a plain pool of the input."""
    t = f"{d}[N,?,?,?]"
    decls, lines = [], []

    def conv(name, x, *args, **kw):
        attrs, ops, dl = _conv(name, d, *args, **kw)
        decls.extend(dl)
        lines.append(f"%{name}: {t} = conv2d[{attrs}](%{x}, {ops})  # zoo.py:1 {name}:Conv2d")

    def bn(name, x, c, **kw):
        attrs, ops, dl = _bn(name, c, d, **kw)
        decls.extend(dl)
        lines.append(f"%{name}: {t} = batch_norm[{attrs}](%{x}{ops})  # zoo.py:2 {name}:BatchNorm2d")

    def op(name, x, text):
        lines.append(f"%{name}: {t} = {text}(%{x})  # zoo.py:3 {name}")

    conv("c1", "x", C, 16, (3, 3), padding=(1, 1, 1, 1))
    bn("b1", "c1", 16)
    op("r1", "b1", "relu")
    op("p1", "r1", f"max_pool2d[{_pool((2, 2), (2, 2))}]")
    conv("c2", "x", C, 6, (3, 2), stride=(2, 3), padding=(0, 2, 1, 0), dilation=(2, 1), groups=2)
    conv("c3", "x", C, 16, (3, 3), padding=(1, 1, 1, 1), groups=C, bias=False)
    op("r3", "c3", "relu")
    conv("c4", "x", C, 128, (1, 1), stride=(2, 2), bias=False)  # O >> K: parallel steps at 260 samples
    bn("b4", "c4", 128, momentum="none")
    conv("c5", "x", C, 5, (2, 2), stride=(2, 2), padding=(1, 0, 0, 1), dilation=(2, 2))
    bn("b5", "c5", 5, affine=False, track=False)
    op("r5", "b5", "relu")
    bn("b6", "x", C, eps=1e-3, momentum="0.3")
    bn("b7", "x", C, momentum="none")
    op("r7", "b7", "relu")
    op("rx", "x", "relu")
    op("p2", "rx", f"max_pool2d[{_pool((3, 2), (2, 1), (1, 1), (1, 2), ceil=True)}]")
    op("p3", "x", f"max_pool2d[{_pool((3, 3), (2, 2), (1, 0), (2, 1), ceil=True)}]")
    outs = ["p1", "r1", "c2", "r3", "b4", "r5", "b6", "r7", "p2", "p3"]
    body = "\n  ".join(decls + lines)
    return (f"graph @Zoo[N](%x: {d}[N,{C},{H},{W}]) -> ({', '.join([t] * len(outs))}) {{\n  {body}\n"
            f"  return ({', '.join('%' + o for o in outs)})\n}}")


BN_MODULES = ("b1", "b4", "b5", "b6", "b7")
DTYPES = {"f32": np.float32, "f64": np.float64}
TOL = {np.float32: {"rtol": 2e-4, "atol": 2e-4}, np.float64: {"rtol": 1e-9, "atol": 1e-9}}


def _graph(d, passes):
    return run_passes(Graph.parse(zoo_text(d)), passes, PassContext(verify=True))


def _state(graph, rng):
    state = {}
    for node in graph.params():
        target, t = node.attrs["target"], node.type
        if target.endswith("num_batches_tracked"):
            state[target] = np.zeros((), np.int64)
        elif target.endswith("running_var"):
            state[target] = rng.uniform(0.5, 2.0, t.shape).astype(t.dtype.name)
        else:
            state[target] = rng.standard_normal(t.shape).astype(t.dtype.name)
    return state


@pytest.fixture(scope="module", params=list(DTYPES))
def zoo(request):
    d = request.param
    fused = _graph(d, ["infer_shapes", "dce", "fuse"])
    plain = _graph(d, ["infer_shapes", "dce"])
    cpu = get_backend("cpu").build(fused)
    ref = get_backend("reference").build(plain)
    state = _state(plain, np.random.default_rng(0))
    return DTYPES[d], fused, cpu, ref, state


class TorchZoo(tnn.Module):
    """:func:`zoo_text` in torch (asymmetric padding as an explicit ``F.pad``); the same state keys."""

    def __init__(self, dtype):
        super().__init__()
        d = {"dtype": dtype}
        self.c1, self.b1 = tnn.Conv2d(C, 16, 3, padding=1, **d), tnn.BatchNorm2d(16, **d)
        self.c2 = tnn.Conv2d(C, 6, (3, 2), stride=(2, 3), dilation=(2, 1), groups=2, **d)
        self.c3 = tnn.Conv2d(C, 16, 3, padding=1, groups=C, bias=False, **d)
        self.c4 = tnn.Conv2d(C, 128, 1, stride=2, bias=False, **d)
        self.b4 = tnn.BatchNorm2d(128, momentum=None, **d)
        self.c5 = tnn.Conv2d(C, 5, 2, stride=2, dilation=2, **d)
        self.b5 = tnn.BatchNorm2d(5, affine=False, track_running_stats=False, **d)
        self.b6 = tnn.BatchNorm2d(C, eps=1e-3, momentum=0.3, **d)
        self.b7 = tnn.BatchNorm2d(C, momentum=None, **d)
        self.p1 = tnn.MaxPool2d(2, 2)
        self.p2 = tnn.MaxPool2d((3, 2), (2, 1), (1, 1), (1, 2), ceil_mode=True)
        self.p3 = tnn.MaxPool2d(3, 2, (1, 0), (2, 1), ceil_mode=True)

    def forward(self, x):
        r1 = torch.relu(self.b1(self.c1(x)))
        c2 = self.c2(TF.pad(x, (1, 0, 0, 2)))  # (left, right, top, bottom)
        r5 = torch.relu(self.b5(self.c5(TF.pad(x, (0, 1, 1, 0)))))
        return (self.p1(r1), r1, c2, torch.relu(self.c3(x)), self.b4(self.c4(x)), r5, self.b6(x),
                torch.relu(self.b7(x)), self.p2(torch.relu(x)), self.p3(x))


def _x(rng, n, dtype, scale=2.0, offset=0.5):
    return (rng.standard_normal((n, C, H, W)) * scale + offset).astype(dtype)


def _train(flag):
    return dict.fromkeys(BN_MODULES, flag)


def _assert_close(got, want, dtype, **tol):
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        assert g.dtype == np.dtype(dtype) and g.shape == w.shape, i
        np.testing.assert_allclose(g, w, err_msg=f"output {i}", **(tol or TOL[dtype]))


def _assert_state(a, b, dtype):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(np.asarray(a[k]), np.asarray(b[k]), err_msg=k, **TOL[dtype])


def _copy(state):
    return {k: v.copy() for k, v in state.items()}


def test_every_conv_lowering_in_run_and_run_s(zoo):
    _, fused, cpu, _, _ = zoo
    ops = {n.op for n in fused.nodes}
    assert {"fused_conv_bn_relu", "fused_conv_bn", "fused_conv_relu", "conv2d", "max_pool2d",
            "fused_relu_max_pool2d", "batch_norm", "fused_bn_relu"} <= ops
    run, run_s = cpu.source.split("\ndef run(")[1].split("\ndef run_s(")
    for call in ("op_conv_bn(", "op_conv(", "op_pool(", "op_bn3("):
        assert run.count(call) and run.count(call) == run_s.count(call.replace("(", "_s(")), call
    assert "# im2col blocks + GEMM (8 groups) + epilogue" in run  # the depthwise conv, readable
    assert "op_bn3(a_x.reshape((sym_N, 8, 23 * 22)), v_b6.reshape((sym_N, 8, 23 * 22))" in run
    assert "op_pool_s(a_x, (3, 3, 2, 2, 1, 0, 2, 1), False, v_p3)" in run_s
    serial = cpu.source.split("# Serial flavour of the drivers")[1].split("\ndef run(")[0]
    assert "_p(" not in serial and "PAR_MIN" not in serial


def test_train_steps_then_eval_match_reference(zoo):
    dtype, _, cpu, ref, state = zoo
    mine, theirs = _copy(state), _copy(state)
    rng = np.random.default_rng(1)
    # 1: run_s; 2, 5: run, serial kernels; 41: several im2col blocks of unequal size (3 x 14, 13
    # samples for c1 in f32, 6 x 7 in f64); 260: parallel kernels (c4's conv steps, the pools,
    # BatchNorm); 0: an empty batch only counts.
    paths = {1: "run_s", 2: "run", 5: "run", 41: "run", 260: "run", 0: "run_s"}
    for train, sizes in ((True, (1, 5, 41, 2, 0, 260)), (False, (1, 5, 41, 0, 260))):
        for n in sizes:
            x = _x(rng, n, dtype)
            assert cpu.entry([x]) == paths[n]
            _assert_close(cpu.run([x], mine, _train(train)), ref.run([x], theirs, _train(train)), dtype)
            _assert_state(mine, theirs, dtype)
    assert int(mine["b1.num_batches_tracked"]) == 6


def test_matches_torch_train_and_eval(zoo):
    dtype, _, cpu, _, state = zoo
    mine = _copy(state)
    tdtype = torch.float32 if dtype == np.float32 else torch.float64
    tzoo = TorchZoo(tdtype)
    tzoo.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in state.items()})
    rng = np.random.default_rng(2)
    for train, n in ((True, 16), (True, 1), (True, 0), (True, 41), (False, 1), (False, 41), (False, 0)):
        tzoo.train(train)
        x = _x(rng, n, dtype, scale=3.0, offset=-1.0)
        with torch.no_grad():
            want = [t.numpy() for t in tzoo(torch.from_numpy(x))]
        _assert_close(cpu.run([x], mine, _train(train)), want, dtype)
        _assert_state(mine, {k: v.numpy() for k, v in tzoo.state_dict().items()}, dtype)


def test_eval_reads_the_current_running_stats(zoo):
    dtype, _, cpu, ref, state = zoo
    mine, theirs = _copy(state), _copy(state)
    x = _x(np.random.default_rng(3), 4, dtype)
    before = cpu.run([x], mine, _train(False))
    for s in (mine, theirs):
        s["b1.running_mean"] += 1.5
        s["b4.running_var"] *= 4
    after = cpu.run([x], mine, _train(False))
    assert not np.allclose(before[1], after[1]) and not np.allclose(before[4], after[4])
    _assert_close(after, ref.run([x], theirs, _train(False)), dtype)


@pytest.mark.parametrize("n", [3, 41])
def test_nan_and_inf_propagate_like_reference(zoo, n):
    dtype, _, cpu, ref, state = zoo
    rng = np.random.default_rng(4)
    x = _x(rng, n, dtype)
    x[0, 1, 4, 5] = np.nan  # through every conv window over it, whole channels in train BN
    x[n - 1, 3, 0, 0] = np.inf
    x[n - 1, 5, 22, 21] = -np.inf  # a corner: in the padding of some windows
    x[n // 2, 6, 10] = np.nan  # a whole row, so max pools see NaN next to finite values
    for train in (True, False):
        mine, theirs = _copy(state), _copy(state)
        with np.errstate(invalid="ignore"):
            got, want = cpu.run([x], mine, _train(train)), ref.run([x], theirs, _train(train))
        for i, (g, w) in enumerate(zip(got, want)):
            np.testing.assert_array_equal(np.isnan(g), np.isnan(w), err_msg=f"output {i}")
            np.testing.assert_array_equal(np.isposinf(g), np.isposinf(w), err_msg=f"output {i}")
            np.testing.assert_array_equal(np.isneginf(g), np.isneginf(w), err_msg=f"output {i}")
            fin = np.isfinite(w)
            np.testing.assert_allclose(g[fin], w[fin], err_msg=f"output {i}", **TOL[dtype])
        for k in mine:
            np.testing.assert_array_equal(np.isnan(mine[k]), np.isnan(theirs[k]), err_msg=k)
