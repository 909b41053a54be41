"""Graph -> one Python module of ``@njit`` functions.

The module holds the kernel library (the templates registered in :mod:`.registry`, those of
:mod:`.kernels` and any added from outside; parallel ones twice: ``_p`` and ``_s``) and one
top-level ``run(...)`` that executes the whole graph: inputs, parameters, buffers and the BatchNorm
``training`` flags are its arguments; intermediates are allocated per call (no shared scratch, so
concurrent calls are safe); symbolic dims come from the input shapes.  Each node's lines come from
the lowering registered for its op (:mod:`.lowering`).

``run_s`` is the same graph with the serial drivers (each lowering writes its ``run_s`` line
explicitly), and the plain-Python ``small(inputs...)`` says whether every tensor of a call is below
``SMALL_MAX`` elements (``run`` would pick the serial kernel for every op anyway: its threshold
``PAR_MIN`` is higher).  The executable calls ``run_s`` for such calls: Numba compiles a function
with everything it may call, and the parallel variants are most of the compile time (a first call
at batch 32 only compiles ``run_s``).  ``run_s`` computes the same ops; its Linear drivers run the
GEMM transposed (faster in OpenBLAS for few rows) and keep values between Linear layers
channel-major, so results agree with ``run`` to rounding, not bit for bit.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass, field

import numba

from lazyfuse.backends.emitter_base import GraphEmitter, identifier
from lazyfuse.errors import CompileError
from lazyfuse.ir.graph import Graph, Node
from lazyfuse.ir.types import TensorType

# The template and lowering modules register themselves on import (conv_*: the NCHW ops).
from . import conv_kernels, conv_lowering, intrinsics, kernels, lowering  # noqa: F401
from .registry import (
    CONSTANTS,
    LOWERINGS,
    RESERVED,
    ROLES,
    TEMPLATES,
    Template,
    linear_ops,
    serial_violations,
)

DECORATOR = '@njit(cache=True, nogil=True, error_model="numpy"{extra})'
# Drivers are inlined into run() at the Numba IR level.  Each compiled function links its callees'
# code and re-optimizes the whole linked module, so every call level would re-run LLVM over all
# kernels below it; inlining leaves run() -> kernels.  The small helpers (GEMM call, per-channel
# coefficient loops) are compiled once instead: inlined, every driver call site would deep-copy and
# re-type them, and their O(C) work does not notice a call.  See bench/RESULTS.md.
INLINE = ', inline="always"'
# Decorator extras by template role (see registry.ROLES); "parallel" is emitted twice (below).
_EXTRA = {"blas_fallback": "", "kernel": "", "helper": "", "driver": INLINE, "serial_driver": INLINE}


def library_source() -> str:
    """The kernel library every generated module starts with (imports, constants, kernels)."""
    return _library_source(intrinsics.CBLAS, tuple(TEMPLATES.values()))


@functools.cache
def _library_source(cblas: intrinsics.Cblas | None, templates: tuple[Template, ...]) -> str:
    """... for NumPy's CBLAS ``cblas`` (its ABI is part of the text, hence of the cache key), or
    with a loop GEMM when there is none, from the registered ``templates``."""
    problems = serial_violations(templates)
    if problems:
        raise CompileError("cpu backend: " + "; ".join(problems) + "; run_s must call serial code only")
    imports = "madvise" if cblas is None else "gemm_nn, gemm_nt, madvise"
    blas = "no CBLAS gemm in NumPy's BLAS: loop GEMM" if cblas is None else f"BLAS {cblas.tag}"
    out = ["import numpy as np", "from numba import njit, prange",
           f"from lazyfuse.backends.numba_cpu.intrinsics import {imports}"
           f"  # intrinsics {intrinsics.VERSION}; {blas}", ""]
    out += [f"{c} = {getattr(kernels, c)!r}" for c in CONSTANTS]
    out += [f"BLAS_INT_MAX = {2 ** ((cblas.int_bits if cblas else 64) - 1) - 1}", ""]
    if cblas is None:
        warnings.warn("lazyfuse cpu backend: NumPy's BLAS exports no CBLAS gemm that lazyfuse knows; "
                      "Linear layers run a loop GEMM, correct but far slower than BLAS", RuntimeWarning,
                      stacklevel=2)
    for role in ROLES:
        if role == "serial_driver":
            out += ["", "# Serial flavour of the drivers (used by run_s): serial kernels only."]
        for t in templates:
            if t.role != role or (role == "blas_fallback" and cblas is not None):
                continue
            if role == "parallel":
                out += ["", DECORATOR.format(extra=", parallel=True"), t.text(f"{t.name}_p").rstrip(), "",
                        DECORATOR.format(extra=""), t.text(f"{t.name}_s").rstrip(), ""]
            else:
                out += ["", DECORATOR.format(extra=_EXTRA[role]), t.text(t.emit_as).rstrip(), ""]
    return "\n".join(out) + "\n"


@dataclass
class Generated:
    """The module source and how ``run``'s arguments are gathered, in order: ``("input", index)``,
    ``("state", target)`` or ``("train", module_path)``."""

    source: str
    args: list[tuple[str, object]] = field(default_factory=list)
    n_outputs: int = 1


class Emitter(GraphEmitter):
    """Writes ``run``'s and ``run_s``'s bodies for one graph; lowerings (see :mod:`.lowering`) get one
    and write their node's lines through :meth:`emit`, :meth:`emit_run` and :meth:`alloc`."""

    backend = "cpu backend"

    def __init__(self, graph: Graph) -> None:
        super().__init__(graph, RESERVED)
        self.body: list[str] = []
        self.body_s: list[str] = []
        self.channel_major = channel_major_values(graph)
        self.inputs: list[str] = []
        self.sym_lines: list[str] = []
        self.sizes: list[str] = []

    # -- for lowerings ----------------------------------------------------------------------------
    @staticmethod
    def np_dtype(t: TensorType) -> str:
        """``np.float32`` etc. for ``t``'s dtype."""
        return f"np.{t.dtype.name}"

    def zeros(self, n: str, t: TensorType, fill: str = "zeros") -> str:
        """A fresh 1-D array of ``n`` elements of ``t``'s dtype (``fill``: "zeros" or "ones")."""
        return f"np.{fill}({n}, {self.np_dtype(t)})"

    def emit(self, line: str, serial: str | None = None) -> None:
        """A line of ``run`` and its counterpart in ``run_s``: ``serial``, or the same line."""
        self.body.append("    " + line)
        self.body_s.append("    " + (line if serial is None else serial))

    def emit_run(self, line: str) -> None:
        """A line of ``run`` only."""
        self.body.append("    " + line)

    def size(self, t: TensorType, where: Node) -> None:
        """Record the element count of a tensor of this call (for ``small``)."""
        self.sizes.append(" * ".join(f"({self.dim(d, where)})" for d in t.shape) or "1")

    def alloc(self, var: str, shape: str, t: TensorType, serial_shape: str | None = None) -> None:
        """A fresh output buffer; in ``run_s`` of ``serial_shape`` when given (a channel-major value).
        ``run`` asks for huge pages when it is big (see ``advise_huge``); ``run_s``'s buffers are far
        below ``HUGE_MIN``, so it does not."""
        line = f"{var} = np.empty({shape}, {self.np_dtype(t)})"
        self.emit(line, None if serial_shape is None else
                  f"{var} = np.empty({serial_shape}, {self.np_dtype(t)})  # channel-major (C, N)")
        self.emit_run(f"advise_huge({var})")

    def layout_args(self, node: Node) -> tuple[str | None, str]:
        """For a 2-D Linear-family node: the run_s shape of its output when channel-major (else
        None), and the serial driver's ``xt, ot`` flags (see :func:`channel_major_values`)."""
        ot = node in self.channel_major
        n, c = (self.dim(d, node) for d in node.type.shape)
        return (f"({c}, {n})" if ot else None), f"{node.inputs[0] in self.channel_major}, {ot}"

    # -- nodes ----------------------------------------------------------------------------------
    def read_dim(self, line: str) -> None:
        self.emit(line)
        self.sym_lines.append("    " + line)

    def input_added(self, name: str, node: Node) -> None:
        self.inputs.append(name)
        self.size(node.type, node)

    def compute_node(self, node: Node) -> None:
        """``node``'s lines, from the lowering registered for its op."""
        low = LOWERINGS.get(node.op)
        if low is None:
            raise CompileError(f"cpu backend: op {node.op!r} ({node.ref}) is not supported")
        self.emit("# " + node.format())
        out = identifier(node.name, "v_", self.taken)
        self.var[node] = out
        low.fn(self, node, out, [self.var[i] for i in node.inputs])
        if node.type is not None:
            self.size(node.type, node)


def channel_major_values(graph: Graph) -> set[Node]:
    """The values ``run_s`` keeps channel-major, (C, N) instead of (N, C): 2-D outputs of Linear-family
    nodes (lowerings registered ``linear=True``) that every user reads as its (2-D) input, also a
    Linear-family node.  The serial Linear drivers compute channel-major anyway (see
    ``op_linear_s``), so a chain of Linear layers then transposes once, at its end, instead of after
    every layer."""
    linear = linear_ops()

    def reads_as_input(user: Node, value: Node) -> bool:
        return user.op in linear and user.inputs[0] is value and value not in user.inputs[1:]

    return {n for n in graph.nodes
            if n.op in linear and n.type is not None and n.type.rank == 2 and n.inputs[0].type.rank == 2
            and n.users and all(reads_as_input(u, n) for u in n.users)}


def generate(graph: Graph) -> Generated:
    """Generate the module for ``graph`` (shapes inferred; fused or not)."""
    em = Emitter(graph)
    outputs = em.walk()
    ret = outputs[0] if len(outputs) == 1 else "(" + ", ".join(outputs) + ",)"
    params = em.signature()
    header = (f"# Generated by lazyfuse (cpu backend) for graph @{graph.name}; numba {numba.__version__}.\n"
              "# One call of run() (or run_s() when small() says so) executes the whole graph.\n")
    run = [DECORATOR.format(extra=""), f"def run({', '.join(params)}):", *em.body, f"    return {ret}"]
    run_s = [DECORATOR.format(extra=""), f"def run_s({', '.join(params)}):", *em.body_s, f"    return {ret}"]
    small = [f"def small({', '.join(em.inputs)}):",
             '    """True when every tensor of the call is below SMALL_MAX elements (then run_s)."""',
             *em.sym_lines, f"    return max(({', '.join(em.sizes)},)) < SMALL_MAX"]
    source = (header + library_source() + "\n" + "\n".join(run) + "\n\n\n" + "\n".join(run_s) + "\n\n\n"
              + "\n".join(small) + "\n")
    return Generated(source, em.ordered_args(), len(outputs))
