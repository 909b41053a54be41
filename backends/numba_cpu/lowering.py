"""The built-in op lowerings of the ``cpu`` backend (registered with :func:`.registry.lowers`).

A lowering ``fn(em, node, out, ins)`` writes, through the :class:`.codegen.Emitter` ``em``, the lines
that compute ``node`` into the new variable ``out`` from the input variables ``ins``: each line of
``run`` and, explicitly, its counterpart in ``run_s``, which calls the serial drivers ``op_*_s``
only (see :mod:`.kernels`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lazyfuse.errors import CompileError
from lazyfuse.ir.graph import Node
from lazyfuse.ir.types import TensorType

from .registry import lowers

if TYPE_CHECKING:
    from .codegen import Emitter


@lowers("flatten", "reshape")
def lower_reshape(em: Emitter, node: Node, out: str, ins: list[str]) -> None:
    """flatten / reshape: the input itself when the shape does not change, else a reshape."""
    if node.inputs[0].type.shape == node.type.shape:
        em.emit(f"{out} = {ins[0]}  # no-op: same shape (and no Numba reshape to compile)")
    else:
        em.emit(f"{out} = {ins[0]}.reshape({em.shape(node.type, node)})")


@lowers("relu")
def lower_relu(em: Emitter, node: Node, out: str, ins: list[str]) -> None:
    """Unfused ReLU into a fresh buffer."""
    em.emit(f"{out} = np.empty_like({ins[0]})")
    em.emit_run(f"advise_huge({out})")
    em.emit(f"op_relu({ins[0]}, {out})", f"op_relu_s({ins[0]}, {out})")


@lowers("transpose")
def lower_transpose(em: Emitter, node: Node, out: str, ins: list[str]) -> None:
    """A C-contiguous copy of the 2-D transpose (what the next op's kernels read)."""
    em.emit(f"{out} = np.ascontiguousarray({ins[0]}.T)")


@lowers("add")
def lower_add(em: Emitter, node: Node, out: str, ins: list[str]) -> None:
    """add (with NumPy broadcasting)."""
    em.emit(f"{out} = np.add({ins[0]}, {ins[1]})")


@lowers("linear", "fused_linear_relu", linear=True)
def lower_linear(em: Emitter, node: Node, out: str, ins: list[str]) -> None:
    """linear / fused_linear_relu; a rank > 2 input runs as (prod(leading dims), K)."""
    relu = node.op == "fused_linear_relu"
    x_t = node.inputs[0].type
    o = node.attrs["out_features"]
    has_bias = node.attrs.get("bias", True)
    bias = ins[2] if has_bias else em.zeros(str(o), node.type)
    if x_t.rank == 2:
        serial_shape, flags = em.layout_args(node)
        em.alloc(out, em.shape(node.type, node), node.type, serial_shape)
        args = f"{ins[0]}, {ins[1]}, {bias}, {has_bias}, {relu}, {out}"
        em.emit(f"op_linear({args})", f"op_linear_s({args}, {flags})")
        return
    lead = " * ".join(em.dim(d, node) for d in x_t.shape[:-1]) or "1"
    k = em.dim(x_t.shape[-1], node)
    em.alloc(f"{out}_2d", f"({lead}, {o})", node.type)
    args = f"{ins[0]}.reshape(({lead}, {k})), {ins[1]}, {bias}, {has_bias}, {relu}, {out}_2d"
    em.emit(f"op_linear({args})", f"op_linear_s({args}, False, False)")
    em.emit(f"{out} = {out}_2d.reshape({em.shape(node.type, node)})")


@lowers("fused_linear_bn", "fused_linear_bn_relu", linear=True)
def lower_linear_bn(em: Emitter, node: Node, out: str, ins: list[str]) -> None:
    """fused_linear_bn(_relu) on a 2-D input (the fuse pass fuses only those)."""
    relu = node.op.endswith("_relu")
    has_bias = node.attrs.get("bias", True)
    o = em.dim(node.type.shape[1], node)
    bias = ins[2] if has_bias else em.zeros(o, node.type)
    bn_ins = ins[3:] if has_bias else ins[2:]
    serial_shape, flags = em.layout_args(node)
    em.alloc(out, em.shape(node.type, node), node.type, serial_shape)
    args = f"{ins[0]}, {ins[1]}, {bias}, {bn_args(em, node, bn_ins, node.type)}, {relu}, {out}"
    em.emit(f"op_linear_bn({args})", f"op_linear_bn_s({args}, {flags})")


@lowers("batch_norm", "fused_bn_relu")
def lower_batch_norm(em: Emitter, node: Node, out: str, ins: list[str]) -> None:
    """batch_norm / fused_bn_relu over (N, C), (N, C, L) or (N, C, H, W) (as (N, C, H*W))."""
    relu = node.op == "fused_bn_relu"
    t = node.type
    em.alloc(out, em.shape(t, node), t)
    args = bn_args(em, node, ins[1:], t)
    if t.rank == 2:
        pre = em.zeros(em.dim(t.shape[1], node), t)
        rest = f"{ins[0]}, {out}, {pre}, {args}, {relu}"
        em.emit(f"op_bn2({rest})", f"op_bn2_s({rest})")
    elif t.rank in (3, 4):
        x, o = ins[0], out
        if t.rank == 4:
            n, c, h, w = (em.dim(d, node) for d in t.shape)
            view = f"({n}, {c}, {h} * {w})"
            x, o = f"{x}.reshape({view})", f"{out}.reshape({view})"
        rest = f"{x}, {o}, {args}, {relu}"
        em.emit(f"op_bn3({rest})", f"op_bn3_s({rest})")
    else:
        raise CompileError(f"cpu backend: batch_norm {node.ref} needs rank 2, 3 or 4, got {t}")


def bn_args(em: Emitter, node: Node, bn_ins: list[str], t: TensorType) -> str:
    """The BatchNorm arguments of the op drivers, ``gamma, beta, rm, rv, nbt, batch_stats, update,
    momentum, eps``, from the node's BatchNorm operands ``bn_ins`` (those present)."""
    a = node.attrs
    c = em.dim(t.shape[1], node)
    rest = list(bn_ins)
    gamma, beta = (rest.pop(0), rest.pop(0)) if a.get("affine", True) else (
        em.zeros(c, t, "ones"), em.zeros(c, t))
    if a.get("track_running_stats", True):
        rm, rv, nbt = rest[0], rest[1], rest[2]
        flag = em.flag(node)
        batch, update = flag, flag
    else:
        rm, rv, nbt = em.zeros(c, t), em.zeros(c, t, "ones"), "np.zeros(1, np.int64).reshape(())"
        batch, update = "True", "False"
    momentum = a.get("momentum", 0.1)
    mom = "-1.0" if momentum is None else repr(float(momentum))
    return f"{gamma}, {beta}, {rm}, {rv}, {nbt}, {batch}, {update}, {mom}, {float(a.get('eps', 1e-5))!r}"
