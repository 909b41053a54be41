"""Graph -> one Python module of ``@njit`` functions.

The module holds the kernel library (copied from :mod:`.kernels`, parallel templates twice: ``_p``
and ``_s``) and one top-level ``run(...)`` that executes the whole graph: inputs, parameters,
buffers and the BatchNorm ``training`` flags are its arguments; intermediates are allocated per call
(no shared scratch, so concurrent calls are safe); symbolic dims come from the input shapes.

``run_s`` is the same graph with the serial driver flavour, and the plain-Python ``small(inputs...)``
says whether every tensor of a call is below ``SMALL_MAX`` elements (``run`` would pick the serial
kernel for every op anyway: its threshold ``PAR_MIN`` is higher).  The executable calls ``run_s``
for such calls: Numba compiles a function with everything it may call, and the parallel variants
are most of the compile time (a first call at batch 32 only compiles ``run_s``).  ``run_s``
computes the same ops; its Linear drivers run the GEMM transposed (faster in OpenBLAS for few rows)
and keep values between Linear layers channel-major, so results agree with ``run`` to rounding,
not bit for bit.
"""

from __future__ import annotations

import ast
import functools
import inspect
import keyword
import re
import warnings
from dataclasses import dataclass, field

import numba

from lazyfuse.errors import CompileError
from lazyfuse.ir.graph import Graph, Node
from lazyfuse.ir.ops import bn_module
from lazyfuse.ir.types import UNKNOWN, Sym, TensorType

from . import intrinsics, kernels

DECORATOR = '@njit(cache=True, nogil=True, error_model="numpy"{extra})'
# Drivers are inlined into run() at the Numba IR level.  Each compiled function links its callees'
# code and re-optimizes the whole linked module, so every call level re-ran LLVM over all kernels
# below it; inlining leaves run() -> kernels (cold MLPWithBN compile ~8.6 s -> ~6.9 s).  The small
# helpers (GEMM call, per-channel coefficient loops) are compiled once instead: inlined, every
# driver call site deep-copied and re-typed them (cold MLPWithBN first call ~0.2 s less, the median
# of 15 interleaved pairs; their O(C) work does not notice a call).
INLINE = ', inline="always"'
CONSTANTS = ("SMALL_MAX", "PAR_MIN", "MAX_CHUNKS", "MIN_CHUNK_ROWS", "LANES", "HUGE_MIN")


@functools.cache
def _templates() -> dict[str, str]:
    """Source of every top-level function in :mod:`.kernels`, by name (one parse; ``inspect.getsource``
    per function costs ~2 ms each, which shows in the warm-start time)."""
    text = inspect.getsource(kernels)
    lines = text.splitlines()
    return {node.name: "\n".join(lines[node.lineno - 1:node.end_lineno]) + "\n"
            for node in ast.parse(text).body if isinstance(node, ast.FunctionDef)}


def _template(name: str) -> str:
    return _templates()[name]


def library_source() -> str:
    """The kernel library every generated module starts with (imports, constants, kernels)."""
    return _library_source(intrinsics.CBLAS)


@functools.cache
def _library_source(cblas: intrinsics.Cblas | None) -> str:
    """... for NumPy's CBLAS ``cblas`` (its ABI is part of the text, hence of the cache key), or
    with a loop GEMM when there is none."""
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
        for kind in ("nt", "nn"):
            loops = _template(f"gemm_{kind}_loops").replace(f"def gemm_{kind}_loops(", f"def gemm_{kind}(", 1)
            out += ["", DECORATOR.format(extra=""), loops.rstrip(), ""]
    for name in kernels.PARALLEL:
        src = _template(name)
        par = src.replace(f"def {name}(", f"def {name}_p(", 1)
        ser = re.sub(r"\bprange\b", "range", src.replace(f"def {name}(", f"def {name}_s(", 1))
        out += ["", DECORATOR.format(extra=", parallel=True"), par.rstrip(), "",
                DECORATOR.format(extra=""), ser.rstrip(), ""]
    for name in kernels.SMALL_KERNELS:
        out += ["", DECORATOR.format(extra=""), _template(name).rstrip(), ""]
    for name in kernels.HELPERS:
        out += ["", DECORATOR.format(extra=""), _template(name).rstrip(), ""]
    for name in kernels.DRIVERS:
        out += ["", DECORATOR.format(extra=INLINE), _template(name).rstrip(), ""]
    out += ["", "# Serial flavour of the drivers (used by run_s): serial kernels only."]
    for name in kernels.DRIVERS:
        own = _templates().get(f"{name}_s")
        code = own if own is not None else serial_flavour(_template(name))
        out += ["", DECORATOR.format(extra=INLINE), code.rstrip(), ""]
    return "\n".join(out) + "\n"


_PICK = re.compile(r"^(?P<ind> *)if [^\n]+:\n +(?P<k>k_\w+)_p\((?P<a>[^\n]*)\)\n(?P=ind)else:\n"
                   r" +(?P=k)_s\((?P=a)\)\n", re.M)


def serial_flavour(code: str) -> str:
    """``code`` (a driver, or ``run``'s body) for ``run_s``: every ``if <big>: k_p(...) else: k_s(...)``
    becomes ``k_s(...)``, ``advise_huge`` calls go and ``op_*(`` calls/defs are renamed ``op_*_s(``
    (comment lines untouched)."""
    code = _PICK.sub(lambda m: f"{m['ind']}{m['k']}_s({m['a']})\n", code)
    code = re.sub(r"^ *par = [^\n]*PAR_MIN\n", "", code, flags=re.M)  # the size test the picks used
    # Buffers of a small call are < SMALL_MAX elements, far below HUGE_MIN bytes: the hint is a no-op.
    code = re.sub(r"^ *advise_huge\([^\n]*\)\n", "", code, flags=re.M)
    lines = []
    for line in code.splitlines():
        if not line.lstrip().startswith("#"):
            line = re.sub(r"\b(op_\w+)\(", r"\1_s(", line)
            if re.search(r"\bk_\w+_p\(", line):
                raise CompileError(f"cpu backend: no serial flavour for {line.strip()!r}")
        lines.append(line)
    return "\n".join(lines) + "\n"


@dataclass
class Generated:
    """The module source and how ``run``'s arguments are gathered, in order: ``("input", index)``,
    ``("state", target)`` or ``("train", module_path)``."""

    source: str
    args: list[tuple[str, object]] = field(default_factory=list)
    n_outputs: int = 1


def _ident(text: str, prefix: str, taken: set[str]) -> str:
    base = prefix + re.sub(r"\W", "_", text)
    if keyword.iskeyword(base):
        base += "_"
    name, i = base, 1
    while name in taken:
        name, i = f"{base}_{i}", i + 1
    taken.add(name)
    return name


class _Emitter:
    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.taken: set[str] = {"run", "run_s", "small", "np", "njit", "prange", "madvise", "gemm_nt",
                                "gemm_nn"}
        self.var: dict[Node, str] = {}
        self.syms: dict[str, str] = {}
        self.params: list[str] = []
        self.args: list[tuple[str, object]] = []
        self.train: dict[str | None, str] = {}
        self.body: list[str] = []
        self.body_s: list[str] = []  # run_s's lines before serial_flavour (mostly the same as body)
        self.channel_major = channel_major_values(graph)
        self.inputs: list[str] = []
        self.sym_lines: list[str] = []
        self.sizes: list[str] = []

    # -- helpers --------------------------------------------------------------------------------
    def dim(self, d: object, where: Node) -> str:
        if isinstance(d, int):
            return str(d)
        if isinstance(d, Sym):
            parts = [self._sym(n, where) for n in d.names]
            if d.coeff != 1:
                parts.insert(0, str(d.coeff))
            return " * ".join(parts)
        raise CompileError(f"cpu backend: {where.ref} has an unresolved dim ({d}); run infer_shapes first")

    def _sym(self, name: str, where: Node) -> str:
        if name not in self.syms:
            raise CompileError(f"cpu backend: symbol {name} in {where.ref} is not a dim of any input")
        return self.syms[name]

    def shape(self, t: TensorType, where: Node) -> str:
        dims = [self.dim(d, where) for d in t.shape]
        return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"

    @staticmethod
    def np_dtype(t: TensorType) -> str:
        return f"np.{t.dtype.name}"

    def flag(self, node: Node) -> str:
        path = bn_module(node)
        if path not in self.train:
            self.train[path] = _ident(path or "model", "t_", self.taken)
            self.args.append(("train", path))
        return self.train[path]

    def emit(self, line: str, serial: str | None = None) -> None:
        """A line of ``run``, and of ``run_s`` unless ``serial`` gives that one (both in the parallel
        spelling: :func:`serial_flavour` rewrites run_s's lines afterwards)."""
        self.body.append("    " + line)
        self.body_s.append("    " + (line if serial is None else serial))

    def size(self, t: TensorType, where: Node) -> None:
        """Record the element count of a tensor of this call (for ``small``)."""
        self.sizes.append(" * ".join(f"({self.dim(d, where)})" for d in t.shape) or "1")

    def alloc(self, var: str, shape: str, t: TensorType, serial_shape: str | None = None) -> None:
        """A fresh output buffer (huge pages asked for when big, see ``advise_huge``); in ``run_s`` of
        ``serial_shape`` when given (a channel-major value)."""
        line = f"{var} = np.empty({shape}, {self.np_dtype(t)})"
        self.emit(line, None if serial_shape is None else
                  f"{var} = np.empty({serial_shape}, {self.np_dtype(t)})  # channel-major (C, N)")
        self.emit(f"advise_huge({var})")

    def layout_args(self, node: Node) -> tuple[str | None, str]:
        """For a 2-D Linear-family node: the run_s shape of its output when channel-major (else
        None), and the serial driver's ``xt, ot`` flags (see :func:`channel_major_values`)."""
        ot = node in self.channel_major
        n, c = (self.dim(d, node) for d in node.type.shape)
        return (f"({c}, {n})" if ot else None), f"{node.inputs[0] in self.channel_major}, {ot}"

    # -- nodes ----------------------------------------------------------------------------------
    def source_node(self, node: Node) -> None:
        if node.op == "input":
            name = _ident(node.name, "a_", self.taken)
            self.args.append(("input", node.attrs["index"]))
            for k, d in enumerate(node.type.shape):
                if isinstance(d, Sym) and d.coeff == 1 and len(d.names) == 1 and d.names[0] not in self.syms:
                    sym = _ident(d.names[0], "sym_", self.taken)
                    self.syms[d.names[0]] = sym
                    self.emit(f"{sym} = {name}.shape[{k}]")
                    self.sym_lines.append(f"    {sym} = {name}.shape[{k}]")
            self.inputs.append(name)
            self.size(node.type, node)
        else:
            name = _ident(node.attrs["target"], "s_", self.taken)
            self.args.append(("state", node.attrs["target"]))
        self.params.append(name)
        self.var[node] = name

    def compute_node(self, node: Node) -> None:
        self.emit("# " + node.format())
        out = _ident(node.name, "v_", self.taken)
        self.var[node] = out
        ins = [self.var[i] for i in node.inputs]
        op = node.op
        if op in ("flatten", "reshape") and node.inputs[0].type.shape == node.type.shape:
            self.emit(f"{out} = {ins[0]}  # no-op: same shape (and no Numba reshape to compile)")
        elif op in ("flatten", "reshape"):
            self.emit(f"{out} = {ins[0]}.reshape({self.shape(node.type, node)})")
        elif op == "relu":
            self.emit(f"{out} = np.empty_like({ins[0]})")
            self.emit(f"advise_huge({out})")
            self.emit(f"op_relu({ins[0]}, {out})")
        elif op == "add":
            self.emit(f"{out} = np.add({ins[0]}, {ins[1]})")
        elif op in ("linear", "fused_linear_relu"):
            self.linear(node, out, ins, relu=op == "fused_linear_relu")
        elif op in ("fused_linear_bn", "fused_linear_bn_relu"):
            self.linear_bn(node, out, ins, relu=op.endswith("_relu"))
        elif op in ("batch_norm", "fused_bn_relu"):
            self.batch_norm(node, out, ins, relu=op == "fused_bn_relu")
        else:
            raise CompileError(f"cpu backend: op {op!r} ({node.ref}) is not supported")

    def _zeros(self, n: str, t: TensorType, fill: str = "zeros") -> str:
        return f"np.{fill}({n}, {self.np_dtype(t)})"

    def linear(self, node: Node, out: str, ins: list[str], relu: bool) -> None:
        x_t = node.inputs[0].type
        o = node.attrs["out_features"]
        bias = ins[2] if node.attrs.get("bias", True) else self._zeros(str(o), node.type)
        has_bias = node.attrs.get("bias", True)
        if x_t.rank == 2:
            serial_shape, flags = self.layout_args(node)
            self.alloc(out, self.shape(node.type, node), node.type, serial_shape)
            call = f"op_linear({ins[0]}, {ins[1]}, {bias}, {has_bias}, {relu}, {out}"
            self.emit(call + ")", f"{call}, {flags})")
            return
        lead = " * ".join(self.dim(d, node) for d in x_t.shape[:-1]) or "1"
        k = self.dim(x_t.shape[-1], node)
        self.alloc(f"{out}_2d", f"({lead}, {o})", node.type)
        x2 = f"{ins[0]}.reshape(({lead}, {k}))"
        call = f"op_linear({x2}, {ins[1]}, {bias}, {has_bias}, {relu}, {out}_2d"
        self.emit(call + ")", call + ", False, False)")
        self.emit(f"{out} = {out}_2d.reshape({self.shape(node.type, node)})")

    def _bn_args(self, node: Node, bn_ins: list[str], t: TensorType) -> str:
        """gamma, beta, rm, rv, nbt, batch_stats, update, momentum, eps for the op drivers."""
        a = node.attrs
        c = self.dim(t.shape[1], node)
        rest = list(bn_ins)
        gamma, beta = (rest.pop(0), rest.pop(0)) if a.get("affine", True) else (
            self._zeros(c, t, "ones"), self._zeros(c, t))
        track = a.get("track_running_stats", True)
        if track:
            rm, rv, nbt = rest[0], rest[1], rest[2]
            flag = self.flag(node)
            batch, update = flag, flag
        else:
            rm, rv, nbt = self._zeros(c, t), self._zeros(c, t, "ones"), "np.zeros(1, np.int64).reshape(())"
            batch, update = "True", "False"
        momentum = a.get("momentum", 0.1)
        mom = "-1.0" if momentum is None else repr(float(momentum))
        return f"{gamma}, {beta}, {rm}, {rv}, {nbt}, {batch}, {update}, {mom}, {float(a.get('eps', 1e-5))!r}"

    def linear_bn(self, node: Node, out: str, ins: list[str], relu: bool) -> None:
        has_bias = node.attrs.get("bias", True)
        o = self.dim(node.type.shape[1], node)
        bias = ins[2] if has_bias else self._zeros(o, node.type)
        bn_ins = ins[3:] if has_bias else ins[2:]
        serial_shape, flags = self.layout_args(node)
        self.alloc(out, self.shape(node.type, node), node.type, serial_shape)
        bn_args = self._bn_args(node, bn_ins, node.type)
        call = f"op_linear_bn({ins[0]}, {ins[1]}, {bias}, {bn_args}, {relu}, {out}"
        self.emit(call + ")", f"{call}, {flags})")

    def batch_norm(self, node: Node, out: str, ins: list[str], relu: bool) -> None:
        t = node.type
        self.alloc(out, self.shape(t, node), t)
        args = self._bn_args(node, ins[1:], t)
        if t.rank == 2:
            pre = self._zeros(self.dim(t.shape[1], node), t)
            self.emit(f"op_bn2({ins[0]}, {out}, {pre}, {args}, {relu})")
        elif t.rank == 3:
            self.emit(f"op_bn3({ins[0]}, {out}, {args}, {relu})")
        else:
            raise CompileError(f"cpu backend: batch_norm {node.ref} needs rank 2 or 3, got {t}")


_LINEAR_OPS = ("linear", "fused_linear_relu", "fused_linear_bn", "fused_linear_bn_relu")


def channel_major_values(graph: Graph) -> set[Node]:
    """The values ``run_s`` keeps channel-major, (C, N) instead of (N, C): 2-D outputs of Linear-family
    nodes that every user reads as its (2-D) input, also a Linear-family node.  The serial Linear
    drivers compute channel-major anyway (see ``op_linear_s``), so a chain of Linear layers then
    transposes once, at its end, instead of after every layer."""

    def reads_as_input(user: Node, value: Node) -> bool:
        return user.op in _LINEAR_OPS and user.inputs[0] is value and value not in user.inputs[1:]

    return {n for n in graph.nodes
            if n.op in _LINEAR_OPS and n.type is not None and n.type.rank == 2 and n.inputs[0].type.rank == 2
            and n.users and all(reads_as_input(u, n) for u in n.users)}


def generate(graph: Graph) -> Generated:
    """Generate the module for ``graph`` (shapes inferred; fused or not)."""
    em = _Emitter(graph)
    inputs = sorted(graph.inputs, key=lambda n: n.attrs["index"])
    for node in inputs:
        em.source_node(node)
    for node in graph.params():
        em.source_node(node)
    outputs: list[str] = []
    for node in graph.nodes:
        if node.op in ("input", "param", "buffer"):
            continue
        if node.op == "output":
            outputs = [em.var[n] for n in node.inputs]
            continue
        for d in node.type.shape if node.type is not None else ():
            if d is UNKNOWN:
                raise CompileError(f"cpu backend: {node.ref} has an unresolved dim; run infer_shapes first")
        em.compute_node(node)
        if node.type is not None:
            em.size(node.type, node)
    if not outputs:
        raise CompileError(f"cpu backend: graph @{graph.name} has no output")
    ret = outputs[0] if len(outputs) == 1 else "(" + ", ".join(outputs) + ",)"
    params = em.params + [em.train[p] for p in em.train]
    header = (f"# Generated by lazyfuse (cpu backend) for graph @{graph.name}; numba {numba.__version__}.\n"
              "# One call of run() (or run_s() when small() says so) executes the whole graph.\n")
    run = [DECORATOR.format(extra=""), f"def run({', '.join(params)}):", *em.body, f"    return {ret}"]
    run_s = [DECORATOR.format(extra=""), f"def run_s({', '.join(params)}):",
             serial_flavour("\n".join(em.body_s) + "\n").rstrip("\n"), f"    return {ret}"]
    small = [f"def small({', '.join(em.inputs)}):",
             '    """True when every tensor of the call is below SMALL_MAX elements (then run_s)."""',
             *em.sym_lines, f"    return max(({', '.join(em.sizes)},)) < SMALL_MAX"]
    source = (header + library_source() + "\n" + "\n".join(run) + "\n\n\n" + "\n".join(run_s) + "\n\n\n"
              + "\n".join(small) + "\n")
    args = [a for a in em.args if a[0] != "train"] + [("train", p) for p in em.train]
    return Generated(source, args, len(outputs))
