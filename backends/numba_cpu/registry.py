"""The two tables the ``cpu`` backend builds a generated module from.

- **Templates**: plain Python functions whose *source* :mod:`.codegen` copies into every generated
  module, registered with :func:`kernel`, :func:`helper`, :func:`driver` or :func:`blas_fallback`
  (or :func:`register_template` with a source string).  The decorators return the function
  unchanged; their own lines are not copied (the copy starts at the ``def`` line).
- **Lowerings**: one function per op name, registered with :func:`lowers`, that writes a node's
  lines of ``run`` and ``run_s`` through the :class:`.codegen.Emitter` it is given.

Both may be extended from outside this package; see README, "Adding an op".
"""

from __future__ import annotations

import ast
import functools
import linecache
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from lazyfuse.errors import CompileError

if TYPE_CHECKING:
    from lazyfuse.ir.graph import Node

    from .codegen import Emitter

F = TypeVar("F", bound=Callable[..., Any])

# Sections of the generated kernel library, in emission order (within one: registration order).
# "blas_fallback" is emitted only when NumPy's BLAS has no CBLAS gemm; "serial_driver" last, after
# a marker comment.  :func:`serial_violations` checks that no serial driver reaches a parallel
# kernel or a (parallel-flavour) driver.
ROLES = ("blas_fallback", "parallel", "kernel", "helper", "driver", "serial_driver")
# The library's constants (values in :mod:`.kernels`), and every name a generated module defines
# or imports besides the templates: no template may take one.
CONSTANTS = ("SMALL_MAX", "PAR_MIN", "MAX_CHUNKS", "MIN_CHUNK_ROWS", "LANES", "HUGE_MIN")
RESERVED = frozenset({"run", "run_s", "small", "np", "njit", "prange", "madvise", "gemm_nt", "gemm_nn",
                      "BLAS_INT_MAX", *CONSTANTS})


# ---------------------------------------------------------------------------------------- templates
@dataclass(frozen=True)
class Template:
    """A function emitted into every generated module.

    ``role`` is one of :data:`ROLES`; the source is ``source`` when given, else read from ``fn``'s
    file.  ``emit_as`` (``blas_fallback`` only) is the name the function is emitted under."""

    name: str
    role: str
    fn: Callable[..., Any] | None = None
    source: str | None = None
    emit_as: str | None = None

    @property
    def emitted(self) -> tuple[str, ...]:
        """The top-level names this template defines in the generated module."""
        if self.role == "parallel":
            return (f"{self.name}_p", f"{self.name}_s")
        return (self.emit_as or self.name,)

    def text(self, name: str | None = None) -> str:
        """The function's source from its ``def`` line on (decorators left out), dedented, with the
        def named ``name`` when given."""
        if self.source is not None:
            src = _source_def(self.source, self.name)
        else:
            code = self.fn.__code__
            # With the module's globals linecache can also read a source behind a loader (a zip).
            linecache.getlines(code.co_filename, getattr(self.fn, "__globals__", None))
            src = _file_def_source(code.co_filename, self.name, code.co_firstlineno)
        if name is None or name == self.name:
            return src
        head = f"def {self.name}("
        if not src.startswith(head):
            raise ValueError(f"template {self.name!r}: its source does not start with {head!r}")
        return f"def {name}(" + src[len(head):]


TEMPLATES: dict[str, Template] = {}


def register_template(template: Template, replace: bool = False) -> Template:
    """Add ``template`` to :data:`TEMPLATES` (``replace=True`` to overwrite one of the same name).

    Raises :class:`CompileError` for a bad role, a name taken (by another template or by the
    generated module itself, :data:`RESERVED`) or a source that cannot be read."""
    if template.role not in ROLES:
        raise CompileError(f"template {template.name!r}: role {template.role!r} is not one of {ROLES}")
    if (template.fn is None) == (template.source is None):
        raise CompileError(f"template {template.name!r}: give exactly one of fn and source")
    if template.name in TEMPLATES and not replace:
        raise CompileError(f"template {template.name!r} is already registered")
    others = {n for t in TEMPLATES.values() if t.name != template.name for n in t.emitted}
    reserved = RESERVED - ({template.emit_as} if template.role == "blas_fallback" else set())
    clash = (others | reserved).intersection(template.emitted)
    if clash:
        raise CompileError(f"template {template.name!r}: name {sorted(clash)[0]!r} is already taken in "
                           "the generated module")
    try:
        template.text()  # now, not at the next compile of every model
    except (ValueError, OSError, SyntaxError) as exc:
        raise CompileError(f"template {template.name!r}: {exc}") from None
    TEMPLATES[template.name] = template
    return template


def serial_violations(templates: tuple[Template, ...]) -> list[str]:
    """Why a serial driver of ``templates`` could reach a parallel kernel (``*_p``) or a driver of
    ``run``'s flavour, following the kernels and helpers it calls (empty when none can): ``run_s``
    must not, or its first call compiles the parallel code after all."""
    by_name = {name: t for t in templates for name in t.emitted}
    problems = []
    for start in (t for t in templates if t.role == "serial_driver"):
        seen, stack = {start.name}, [(start.name, start)]
        while stack:
            via, t = stack.pop()
            for name in _called_names(t.text(via)):
                callee = by_name.get(name)
                if callee is None or name in seen:
                    continue
                seen.add(name)
                if callee.role == "parallel" and name.endswith("_p") or callee.role == "driver":
                    problems.append(f"serial driver {start.name!r} reaches {name!r} (through {via!r})")
                elif callee.role in ("kernel", "helper", "serial_driver", "parallel"):
                    stack.append((name, callee))
    return problems


@functools.cache
def _called_names(text: str) -> tuple[str, ...]:
    """The plain names ``text`` calls (one parse per function text: several drivers share callees)."""
    return tuple(n.func.id for n in ast.walk(ast.parse(text))
                 if isinstance(n, ast.Call) and isinstance(n.func, ast.Name))


def unregister_template(name: str) -> None:
    """Remove the template ``name`` (KeyError if there is none)."""
    del TEMPLATES[name]


def _decorate(fn: F | None, role: str) -> F | Callable[[F], F]:
    def deco(f: F) -> F:
        register_template(Template(f.__name__, role, fn=f))
        return f

    return deco if fn is None else deco(fn)


def kernel(fn: F | None = None, *, parallel: bool = False) -> F | Callable[[F], F]:
    """Register a kernel (``@kernel`` or ``@kernel(parallel=True)``).

    A serial kernel is emitted once, as written.  A parallel one is emitted twice: ``<name>_p``
    compiled with ``parallel=True`` and ``<name>_s`` without, where Numba runs ``prange`` as
    ``range``; drivers call one of the two by size.  The two stay separately named functions:
    Numba's disk cache index does not key on the parallel flag."""
    return _decorate(fn, "parallel" if parallel else "kernel")


def helper(fn: F) -> F:
    """Register a helper: emitted once, compiled on its own (not inlined into its callers)."""
    return _decorate(fn, "helper")


def driver(fn: F | None = None, *, serial: bool = False) -> F | Callable[[F], F]:
    """Register an op driver (``@driver``; ``@driver(serial=True)`` for its serial flavour).

    Drivers are inlined into ``run`` (serial ones into ``run_s``), so LLVM does not re-optimize
    every kernel below them at each call level.  A serial driver (by convention ``<driver>_s``)
    must reach no parallel kernel (``*_p``) and no driver of ``run``'s flavour, directly or through
    the kernels and helpers it calls: the library refuses to build otherwise
    (:func:`serial_violations`)."""
    return _decorate(fn, "serial_driver" if serial else "driver")


def blas_fallback(emit_as: str) -> Callable[[F], F]:
    """Register a loop GEMM emitted as ``emit_as`` (``gemm_nt``/``gemm_nn``) when NumPy's BLAS
    exports no CBLAS gemm (otherwise the intrinsic of that name is imported instead)."""

    def deco(f: F) -> F:
        register_template(Template(f.__name__, "blas_fallback", fn=f, emit_as=emit_as))
        return f

    return deco


def _defs(text: str) -> dict[tuple[str, int], str]:
    """Every function def in ``text`` by (name, first line with its decorators): its source from the
    ``def`` line to its end (dedented when the def is nested)."""
    lines = text.splitlines()
    out = {}
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef):
            start = min([node.lineno] + [d.lineno for d in node.decorator_list])
            body = "\n".join(lines[node.lineno - 1:node.end_lineno])
            out[(node.name, start)] = (textwrap.dedent(body) if node.col_offset else body) + "\n"
    return out


def _source_def(text: str, name: str) -> str:
    for (n, _), src in _defs(text).items():
        if n == name:
            return src
    raise ValueError(f"template {name!r}: its source defines no function {name!r}")


@functools.cache
def _file_defs(filename: str) -> dict[tuple[str, int], str]:
    """:func:`_defs` of a source file: one parse per file (an ``inspect.getsource`` per function
    would show in the warm-start time)."""
    text = "".join(linecache.getlines(filename))
    if not text:
        raise ValueError(f"cannot read {filename!r}, the source file of a registered template")
    return _defs(text)


def _file_def_source(filename: str, name: str, first_line: int) -> str:
    try:
        return _file_defs(filename)[(name, first_line)]
    except KeyError:
        raise ValueError(f"no source for function {name!r} at {filename}:{first_line}; register it as "
                         "Template(name, role, source=...)") from None


# ---------------------------------------------------------------------------------------- lowerings
Lower = Callable[["Emitter", "Node", str, "list[str]"], None]
L = TypeVar("L", bound=Lower)


@dataclass(frozen=True)
class Lowering:
    """How nodes of ``op`` become code: ``fn(emitter, node, out, ins)`` writes the lines that set the
    variable ``out`` from the input variables ``ins``, in ``run`` and in ``run_s``.

    ``linear``: the op is Linear-family: its first input is ``(N, K)`` and its output ``(N, C)``, and
    its serial driver takes ``xt, ot`` flags saying which of them ``run_s`` keeps channel-major
    (see :func:`.codegen.channel_major_values` and :meth:`.codegen.Emitter.layout_args`)."""

    op: str
    fn: Lower
    linear: bool = False


LOWERINGS: dict[str, Lowering] = {}


def lowers(*ops: str, linear: bool = False, replace: bool = False) -> Callable[[L], L]:
    """Register the decorated ``fn(emitter, node, out, ins)`` as the lowering of each op in ``ops``
    (``replace=True`` to overwrite an existing one); returns ``fn`` unchanged."""

    def deco(fn: L) -> L:
        for op in ops:
            if op in LOWERINGS and not replace:
                raise CompileError(f"cpu backend: op {op!r} already has a lowering")
        for op in ops:
            LOWERINGS[op] = Lowering(op, fn, linear)
        return fn

    return deco


def unregister_lowering(op: str) -> None:
    """Remove the lowering of ``op`` (KeyError if there is none)."""
    del LOWERINGS[op]


def linear_ops() -> frozenset[str]:
    """The ops whose lowering is registered ``linear=True``."""
    return frozenset(op for op, low in LOWERINGS.items() if low.linear)
