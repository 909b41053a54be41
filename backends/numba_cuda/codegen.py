"""Graph -> one Python module: ``@cuda.jit`` kernels plus the host driver ``run(stream, ...)``.

The module starts with the kernel library (the templates of :mod:`.kernels`, the GEMM once per
dtype the graph uses) and ends with ``run``, plain Python that allocates each node's device buffer
and launches its kernels on ``stream``; its arguments are the stream, then the graph's inputs,
parameters and buffers (device arrays) and the BatchNorm ``training`` flags, in
:attr:`Generated.args` order.  Each node's lines come from the lowering registered for its op
(:mod:`.lowering`).  Symbolic dims are read from the input shapes; intermediates are allocated per
call.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from lazyfuse.backends.emitter_base import GraphEmitter, identifier
from lazyfuse.errors import CompileError
from lazyfuse.ir.graph import Graph, Node
from lazyfuse.ir.ops import mode_module, named_updates
from lazyfuse.ir.types import TensorType

from . import kernels

KERNEL_DECORATOR = "@cuda.jit(cache=True)"
# Device functions are inlined at the Numba IR level, so the GEMM's accumulators stay registers.
DEVICE_DECORATOR = '@cuda.jit(device=True, inline="always", cache=True)'
GEMM_NAMES = {"float32": "gemm_f32", "float64": "gemm_f64"}
# How Linear layers multiply: "numba" (the tiled GEMM with the epilogue fused), "cublas" (cuBLAS
# through CuPy, then the epilogue / statistics kernels), "numba-split" (the Numba GEMM without its
# epilogue, then the same kernels as "cublas": that split, testable in the simulator).
GEMM_MODES = ("numba", "cublas", "numba-split")
RESERVED = frozenset({"run", "stream", "np", "cuda", "math", "float32", "float64", "blocks", "flat_grid",
                      "dummy", "GEMM_BLOCK", "GEOMETRY", "GEMM", "cublas_gemm", *kernels.CONSTANTS,
                      *GEMM_NAMES.values(),
                      *(f.__name__ for f in kernels.KERNELS + kernels.DEVICE_FUNCTIONS)})


@functools.cache
def library_source(dtypes: tuple[str, ...], geometry: kernels.Geometry, gemm: str = "numba") -> str:
    """Imports, constants and kernels of a module whose GEMMs run in ``dtypes``, with the tile
    sizes and block shapes of ``geometry``; ``gemm`` is one of :data:`GEMM_MODES`."""
    out = ["import math", "", "import numpy as np", "from numba import cuda, float32, float64", "",
           "from lazyfuse.backends.numba_cuda.launch import blocks, cublas_gemm, dummy, flat_grid", "",
           f"GEMM = {gemm!r}  # how Linear layers multiply (LAZYFUSE_CUDA_GEMM)"]
    values = geometry.constants()
    name = next((n for n, g in (("FULL", kernels.FULL), ("SMALL", kernels.SMALL)) if g == geometry), "custom")
    out += [f"GEOMETRY = {name!r}"]
    out += [f"{c} = {values[c] if c in values else getattr(kernels, c)!r}" for c in kernels.CONSTANTS]
    out += ["GEMM_BLOCK = (TX, TY)"]
    for fn in kernels.DEVICE_FUNCTIONS:
        out += ["", "", DEVICE_DECORATOR, _source(fn)]
    for fn in kernels.PER_DTYPE:
        for dt in dtypes:
            text = re.sub(r"\bSCALAR\b", dt, _source(fn))
            text = text.replace(f"def {fn.__name__}(", f"def {GEMM_NAMES[dt]}(", 1)
            out += ["", "", KERNEL_DECORATOR, text]
    for fn in kernels.KERNELS:
        out += ["", "", KERNEL_DECORATOR, _source(fn)]
    return "\n".join(out) + "\n"


def _source(fn: Callable) -> str:
    return inspect.getsource(fn).rstrip()


@dataclass
class Generated:
    """The module source; how ``run``'s arguments after the stream are gathered, in order
    (``("input", index)``, ``("state", target)``, ``("train", module_path)``); and per BatchNorm
    that tracks running stats, its module path and the targets a train-mode call updates."""

    source: str
    args: list[tuple[str, object]] = field(default_factory=list)
    n_outputs: int = 1
    updates: list[tuple[str | None, tuple[str, ...]]] = field(default_factory=list)


class Emitter(GraphEmitter):
    """Writes ``run``'s body for one graph; lowerings get one and write through :meth:`emit`."""

    backend = "cuda backend"

    def __init__(self, graph: Graph, gemm: str = "numba") -> None:
        super().__init__(graph, RESERVED)
        self.gemm_mode = gemm
        self.split = gemm != "numba"  # the GEMM without its epilogue, then epilogue kernels
        self.body: list[str] = []
        self.dummies: dict[tuple[str, int], str] = {}
        self.dtypes: set[str] = set()
        self.indent = 1

    # -- for lowerings ----------------------------------------------------------------------------
    def size(self, t: TensorType, where: Node) -> str:
        """The element count expression of ``t``."""
        return " * ".join(f"({d})" for d in self.dims(t, where)) or "1"

    def dtype_of(self, t: TensorType) -> str:
        if t.dtype.name not in GEMM_NAMES:
            raise CompileError(f"cuda backend: dtype {t.dtype.name} is not supported (float32, float64)")
        return t.dtype.name

    def gemm(self, t: TensorType) -> str:
        """The GEMM kernel for outputs of type ``t`` (emitted for its dtype)."""
        dt = self.dtype_of(t)
        self.dtypes.add(dt)
        return GEMM_NAMES[dt]

    def matmul(self, x: str, w: str, out: str, t: TensorType, rows: str, cols: str) -> None:
        """The bare GEMM ``out = x @ w.T`` of the split modes: cuBLAS, or the Numba GEMM with no bias."""
        if self.gemm_mode == "cublas":
            self.emit(f"cublas_gemm({x}, {w}, {out}, stream)")
            return
        d, d2 = self.dummy(t), self.dummy(None, 2)
        self.emit(f"{self.gemm(t)}[(blocks({rows}, BM), blocks({cols}, BN)), GEMM_BLOCK, stream]({x}, {w}, "
                  f"{out}, EPI_BIAS, False, {d}, False, {d}, {d}, False, {d}, {d}, 0.0, {d2}, {d2})")

    def dummy(self, t: TensorType | None = None, rank: int = 1, dtype: str | None = None) -> str:
        """The variable of a 1-element device array standing for an absent operand (of ``dtype``, else
        ``t``'s dtype, else float64), fetched once at the top of ``run``."""
        dt = dtype or ("float64" if t is None else self.dtype_of(t))
        if (dt, rank) not in self.dummies:
            self.dummies[dt, rank] = identifier(f"{dt}_{rank}d", "dummy_", self.taken)
        return self.dummies[dt, rank]

    def alloc(self, var: str, t: TensorType, where: Node, shape: str | None = None, dtype: str | None = None
              ) -> None:
        """``var`` = a fresh device array of ``t``'s shape (or ``shape``) and dtype (or ``dtype``)."""
        shape = self.shape(t, where) if shape is None else shape
        dtype = f"np.{self.dtype_of(t)}" if dtype is None else dtype
        self.emit(f"{var} = cuda.device_array({shape}, {dtype}, stream=stream)")

    def temp(self, base: str) -> str:
        return identifier(base, "", self.taken)

    def emit(self, line: str) -> None:
        self.body.append("    " * self.indent + line)

    def block(self, header: str) -> _Block:
        """``with em.block("if t_bn:"):`` indents the lines emitted inside."""
        return _Block(self, header)

    # -- nodes ----------------------------------------------------------------------------------
    def compute_node(self, node: Node) -> None:
        from .lowering import LOWERINGS

        low = LOWERINGS.get(node.op)
        if low is None:
            raise CompileError(f"cuda backend: op {node.op!r} ({node.ref}) is not supported; compile this "
                               "model for backend='cpu'")
        self.emit("# " + node.format())
        out = identifier(node.name, "v_", self.taken)
        self.var[node] = out
        low(self, node, out, [self.var[i] for i in node.inputs])


class _Block:
    def __init__(self, em: Emitter, header: str) -> None:
        self.em, self.header = em, header

    def __enter__(self) -> None:
        self.em.emit(self.header)
        self.em.indent += 1

    def __exit__(self, *exc: object) -> None:
        self.em.indent -= 1


def running_stat_updates(graph: Graph) -> list[tuple[str | None, tuple[str, ...]]]:
    """Per node that updates buffers in train mode: its module path and the updated targets."""
    out = []
    for node in graph.nodes:
        targets = tuple(src.attrs["target"] for _, src in named_updates(node))
        if targets:
            out.append((mode_module(node), targets))
    return out


def generate(graph: Graph, geometry: kernels.Geometry = kernels.FULL, gemm: str = "numba") -> Generated:
    """Generate the module for ``graph`` (shapes inferred; fused or not) with ``geometry``, its Linear
    layers multiplying as ``gemm`` says (see :data:`GEMM_MODES`)."""
    if gemm not in GEMM_MODES:
        raise CompileError(f"cuda backend: GEMM mode {gemm!r} is not one of {', '.join(GEMM_MODES)}")
    em = Emitter(graph, gemm)
    outputs = em.walk()
    ret = outputs[0] if len(outputs) == 1 else "(" + ", ".join(outputs) + ",)"
    params = ["stream"] + em.signature()
    header = (f"# Generated by lazyfuse (cuda backend) for graph @{graph.name}.\n"
              "# One call of run() launches the whole graph's kernels on one stream.\n")
    dummies = [f"    {var} = dummy(np.{dt}, {rank})" for (dt, rank), var in em.dummies.items()]
    run = [f"def run({', '.join(params)}):", *dummies, *em.body, f"    return {ret}"]
    library = library_source(tuple(sorted(em.dtypes)), geometry, gemm)
    source = header + library + "\n\n" + "\n".join(run) + "\n"
    return Generated(source, em.ordered_args(), len(outputs), running_stat_updates(graph))
