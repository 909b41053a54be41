"""The ``cuda`` backend's op lowerings: one function per op, registered with :func:`lowers`.

A lowering ``fn(em, node, out, ins)`` writes, through the :class:`.codegen.Emitter` ``em``, the
host lines of ``run`` that set the device array ``out`` from the input variables ``ins``: buffer
allocations and kernel launches on ``stream``.  Kernels per op (f32 and f64):

- linear / fused_linear_relu: 1 (GEMM with the bias/ReLU epilogue);
- fused_linear_bn(_relu): eval 1 (GEMM with the BatchNorm epilogue from the running stats);
  train 3 (GEMM writing per-tile column statistics, ``bn_merge``, ``bn_apply`` in place);
- batch_norm / fused_bn_relu: eval 2 (``bn_merge`` from the running stats, ``bn_apply``); train 3
  (``bn_partials2``/``bn_partials3``, ``bn_merge``, ``bn_apply``);
- relu, add, transpose: 1; flatten / reshape: none (a view).

With a split GEMM (``LAZYFUSE_CUDA_GEMM=cublas`` or ``numba-split``) a Linear is the bare GEMM plus
``bias_relu2`` when it has a bias or ReLU, and a Linear + BatchNorm is the bare GEMM plus the
kernels of a plain (N, C) BatchNorm with the Linear's bias as ``pre``: eval 3, train 4.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from typing import TYPE_CHECKING

from lazyfuse.errors import CompileError
from lazyfuse.ir.graph import Node
from lazyfuse.ir.types import TensorType

if TYPE_CHECKING:
    from .codegen import Emitter

Lower = Callable[["Emitter", Node, str, "list[str]"], None]
LOWERINGS: dict[str, Lower] = {}


def lowers(*ops: str, replace: bool = False) -> Callable[[Lower], Lower]:
    """Register the decorated ``fn(emitter, node, out, ins)`` as the cuda lowering of ``ops``."""

    def deco(fn: Lower) -> Lower:
        for op in ops:
            if op in LOWERINGS and not replace:
                raise CompileError(f"cuda backend: op {op!r} already has a lowering")
        for op in ops:
            LOWERINGS[op] = fn
        return fn

    return deco


@lowers("flatten", "reshape")
def lower_reshape(em: Emitter, node: Node, out: str, ins: list[str]) -> None:
    """A view of the (contiguous) input."""
    if node.inputs[0].type.shape == node.type.shape:
        em.emit(f"{out} = {ins[0]}  # same shape")
    else:
        em.emit(f"{out} = {ins[0]}.reshape({em.shape(node.type, node)})")


@lowers("relu")
def lower_relu(em: Emitter, node: Node, out: str, ins: list[str]) -> None:
    em.alloc(out, node.type, node)
    n = em.size(node.type, node)
    em.emit(f"relu_flat[flat_grid({n}, RED), RED, stream]({ins[0]}.reshape(({n},)), {out}.reshape(({n},)))")


@lowers("add")
def lower_add(em: Emitter, node: Node, out: str, ins: list[str]) -> None:
    """add with NumPy broadcasting, over 4-D views (ranks up to 4)."""
    t = node.type
    if t.rank > 4:
        raise CompileError(f"cuda backend: add {node.ref} of rank {t.rank}: ranks up to 4 are supported")
    em.alloc(out, t, node)
    views = []
    for var, src in zip(ins + [out], list(node.inputs) + [node]):
        dims = em.dims(src.type, node)
        views.append(f"{var}.reshape({em.tuple_of(['1'] * (4 - len(dims)) + dims)})")
    em.emit(f"add4[flat_grid({em.size(t, node)}, RED), RED, stream]({', '.join(views)})")


@lowers("transpose")
def lower_transpose(em: Emitter, node: Node, out: str, ins: list[str]) -> None:
    em.alloc(out, node.type, node)
    em.emit(f"transpose2[flat_grid({em.size(node.type, node)}, RED), RED, stream]({ins[0]}, {out})")


@lowers("linear", "fused_linear_relu")
def lower_linear(em: Emitter, node: Node, out: str, ins: list[str]) -> None:
    """GEMM + bias (+ ReLU) epilogue; a rank > 2 input runs as (prod(leading dims), K)."""
    t = node.type
    x_t = node.inputs[0].type
    has_bias = node.attrs.get("bias", True)
    bias = ins[2] if has_bias else em.dummy(t)
    x, y = ins[0], out
    rows = em.dim(x_t.shape[0], node)
    cols = str(node.attrs["out_features"])
    if x_t.rank != 2:
        dims = em.dims(x_t, node)
        rows = " * ".join(dims[:-1]) or "1"
        x, y = f"{ins[0]}.reshape(({rows}, {dims[-1]}))", f"{out}_2d"
    em.alloc(y, t, node, shape=f"({rows}, {cols})")
    relu = node.op == "fused_linear_relu"
    if em.split:
        em.matmul(x, ins[1], y, t, rows, cols)
        if has_bias or relu:
            em.emit(f"bias_relu2[flat_grid(({rows}) * {cols}, RED), RED, stream]({y}, {bias}, {has_bias}, "
                    f"{relu})")
    else:
        d, d2 = em.dummy(t), em.dummy(None, 2)
        em.emit(f"{em.gemm(t)}[(blocks({rows}, BM), blocks({cols}, BN)), GEMM_BLOCK, stream]({x}, {ins[1]}, "
                f"{y}, EPI_BIAS, {relu}, {bias}, {has_bias}, {d}, {d}, False, {d}, {d}, 0.0, {d2}, {d2})")
    if x_t.rank != 2:
        em.emit(f"{out} = {y}.reshape({em.shape(t, node)})")


class BatchNormOperands:
    """A BatchNorm's (plain or fused) operands and settings as ``run``'s expressions."""

    def __init__(self, em: Emitter, node: Node, bn_ins: list[str], t: TensorType) -> None:
        a = node.attrs
        rest = list(bn_ins)
        self.affine = bool(a.get("affine", True))
        self.gamma, self.beta = (rest.pop(0), rest.pop(0)) if self.affine else (em.dummy(t), em.dummy(t))
        self.track = bool(a.get("track_running_stats", True))
        if self.track:
            self.rm, self.rv, self.nbt = rest[0], rest[1], rest[2]
            self.flag = em.flag(node)
        else:
            self.rm = self.rv = em.dummy(t)
            self.nbt = em.dummy(dtype="int64")
            self.flag = None
        momentum = a.get("momentum", 0.1)
        self.momentum = "-1.0" if momentum is None else repr(float(momentum))
        self.eps = repr(float(a.get("eps", 1e-5)))
        self.relu = node.op.endswith("_relu")

    def mode(self, em: Emitter) -> nullcontext | object:
        """``if <training flag>:`` around the batch-statistics lines (none without running stats:
        those always use batch statistics)."""
        return em.block(f"if {self.flag}:") if self.track else nullcontext()

    def merge_and_apply(self, em: Emitter, node: Node, out: str, x3: str, o3: str, c: str, stats: str,
                        pre: str, has_pre: bool, batch: bool) -> None:
        """Launch ``bn_merge`` (``stats``: its "p_mean, p_m2, chunk, count" arguments) and ``bn_apply``
        over the (N, C, L) views ``x3`` -> ``o3`` of the node's output ``out``."""
        t = node.type
        scale, shift = em.temp(f"{out}_scale"), em.temp(f"{out}_shift")
        em.alloc(scale, t, node, shape=f"({c},)")
        em.alloc(shift, t, node, shape=f"({c},)")
        update = self.track and batch
        em.emit(f"bn_merge[blocks({c}, RED), RED, stream]({stats}, {batch}, {update}, {self.momentum}, "
                f"{self.eps}, {pre}, {has_pre}, {self.gamma}, {self.beta}, {self.affine}, {self.rm}, "
                f"{self.rv}, {self.nbt}, {scale}, {shift})")
        em.emit(f"bn_apply[flat_grid({em.size(t, node)}, RED), RED, stream]({x3}, {o3}, {scale}, {shift}, "
                f"{self.relu}, {self.nbt}, {update})")


@lowers("fused_linear_bn", "fused_linear_bn_relu")
def lower_linear_bn(em: Emitter, node: Node, out: str, ins: list[str]) -> None:
    """Linear + BatchNorm (+ ReLU) on (N, K) -> (N, C): one GEMM kernel in eval; in train the GEMM
    also writes per-tile column statistics, then ``bn_merge`` and ``bn_apply`` (in place)."""
    t = node.type
    has_bias = node.attrs.get("bias", True)
    bias = ins[2] if has_bias else em.dummy(t)
    bn = BatchNormOperands(em, node, ins[3:] if has_bias else ins[2:], t)
    rows, cols = em.dims(t, node)
    em.alloc(out, t, node)
    if em.split:  # the GEMM, then the statistics / coefficients / normalize of a plain BatchNorm
        em.matmul(ins[0], ins[1], out, t, rows, cols)
        _batch_norm(em, node, bn, out, out, bias, has_bias)
        return
    gemm = f"{em.gemm(t)}[(blocks({rows}, BM), blocks({cols}, BN)), GEMM_BLOCK, stream]"
    d = em.dummy(t)
    with bn.mode(em):
        p_mean, p_m2 = em.temp(f"{out}_p_mean"), em.temp(f"{out}_p_m2")
        for p in (p_mean, p_m2):
            em.alloc(p, t, node, shape=f"(blocks({rows}, BM), {cols})", dtype="np.float64")
        em.emit(f"{gemm}({ins[0]}, {ins[1]}, {out}, EPI_STATS, False, {d}, False, {d}, {d}, False, {d}, {d}, "
                f"0.0, {p_mean}, {p_m2})")
        view = f"{out}.reshape(({rows}, {cols}, 1))"
        bn.merge_and_apply(em, node, out, view, view, cols, f"{p_mean}, {p_m2}, BM, {rows}", bias, has_bias,
                           True)
    if bn.track:
        d2 = em.dummy(None, 2)
        with em.block("else:"):
            em.emit(f"{gemm}({ins[0]}, {ins[1]}, {out}, EPI_EVAL_BN, {bn.relu}, {bias}, {has_bias}, "
                    f"{bn.gamma}, {bn.beta}, {bn.affine}, {bn.rm}, {bn.rv}, {bn.eps}, {d2}, {d2})")


@lowers("batch_norm", "fused_bn_relu")
def lower_batch_norm(em: Emitter, node: Node, out: str, ins: list[str]) -> None:
    """BatchNorm (+ ReLU) over (N, C), (N, C, L) or (N, C, H, W) (as (N, C, H*W))."""
    t = node.type
    if t.rank not in (2, 3, 4):
        raise CompileError(f"cuda backend: batch_norm {node.ref} needs rank 2, 3 or 4, got {t}")
    em.alloc(out, t, node)
    _batch_norm(em, node, BatchNormOperands(em, node, ins[1:], t), ins[0], out, em.dummy(t), False)


def _batch_norm(em: Emitter, node: Node, bn: BatchNormOperands, x: str, out: str, pre: str,
                has_pre: bool) -> None:
    """The kernels of a BatchNorm from ``x`` into ``out`` (may be ``x``); ``pre`` is a per-channel
    bias ``x`` lacks (a Linear's, with the split GEMM)."""
    t = node.type
    dims = em.dims(t, node)
    n, c = dims[0], dims[1]
    length = " * ".join(dims[2:]) or "1"
    x3, o3 = (f"{v}.reshape(({n}, {c}, {length}))" for v in (x, out))
    with bn.mode(em):
        p_mean, p_m2 = em.temp(f"{out}_p_mean"), em.temp(f"{out}_p_m2")
        if t.rank == 2:
            chunks, chunk, count = f"blocks({n}, CHUNK2)", "CHUNK2", n
            launch = f"bn_partials2[({chunks}, blocks({c}, COLS2)), (COLS2, ROWS2), stream]({x}, CHUNK2"
        else:
            count = f"{n} * {length}"
            chunks, chunk = f"blocks({count}, CHUNK3)", "CHUNK3"
            launch = f"bn_partials3[({chunks}, {c}), RED, stream]({x3}, CHUNK3"
        for p in (p_mean, p_m2):
            em.alloc(p, t, node, shape=f"({chunks}, {c})", dtype="np.float64")
        em.emit(f"{launch}, {p_mean}, {p_m2})")
        stats = f"{p_mean}, {p_m2}, {chunk}, {count}"
        bn.merge_and_apply(em, node, out, x3, o3, c, stats, pre, has_pre, True)
    if bn.track:
        with em.block("else:"):
            d2 = em.dummy(None, 2)
            bn.merge_and_apply(em, node, out, x3, o3, c, f"{d2}, {d2}, 1, 1", pre, has_pre, False)
