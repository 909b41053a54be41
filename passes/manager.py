"""The pass manager: passes registered by name, run in order, verified, printed and timed."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from lazyfuse.errors import CompileError, LazyFuseError, VerifierError
from lazyfuse.ir.graph import Graph

PassFn = Callable[[Graph, "PassContext"], Graph]

PASSES: dict[str, PassFn] = {}

# Importing these modules registers their passes; ``get_pass`` loads them on first use.
_BUILTIN_PASS_MODULES = {
    "infer_shapes": "lazyfuse.passes.infer_shapes",
    "materialize_lazy": "lazyfuse.api",
    "dce": "lazyfuse.passes.dce",
    "fuse": "lazyfuse.passes.fuse",
}


def register_pass(name: str) -> Callable[[PassFn], PassFn]:
    """Decorator registering ``fn(graph, ctx) -> Graph`` as the pass ``name``."""

    def deco(fn: PassFn) -> PassFn:
        PASSES[name] = fn
        return fn

    return deco


def get_pass(name: str) -> PassFn:
    """The pass registered as ``name`` (importing the built-in pass module if needed)."""
    if name not in PASSES and name in _BUILTIN_PASS_MODULES:
        import importlib

        module = _BUILTIN_PASS_MODULES[name]
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:  # a real import error inside the pass module
                raise
    try:
        return PASSES[name]
    except KeyError:
        known = sorted(set(PASSES) | set(_BUILTIN_PASS_MODULES))
        raise CompileError(f"unknown pass {name!r}; known passes: {', '.join(known)}") from None


@dataclass
class PassContext:
    """What passes share: the model (for ``materialize_lazy``), verification, printing, timings.

    ``verify`` defaults to the ``LAZYFUSE_VERIFY`` environment variable (``1`` = on).
    ``print_after`` is a set of pass names or ``"all"``; ``LAZYFUSE_PRINT_AFTER=all|a,b`` adds to it.
    """

    model: Any = None
    verify: bool = field(default_factory=lambda: os.environ.get("LAZYFUSE_VERIFY", "") not in ("", "0"))
    print_after: set[str] | str = field(default_factory=set)
    timings: dict[str, float] = field(default_factory=dict)

    def should_print(self, name: str) -> bool:
        env = os.environ.get("LAZYFUSE_PRINT_AFTER", "").strip()
        wanted = _names(env) | (_names(self.print_after) if isinstance(self.print_after, str)
                                else set(self.print_after))
        return "all" in wanted or name in wanted


def _names(spec: str) -> set[str]:
    return {p.strip() for p in spec.split(",") if p.strip()}


def in_pass(exc: LazyFuseError, name: str) -> LazyFuseError:
    """``exc`` itself when its message names a pass already, else an error of the same class whose
    message ends in ``(in pass 'name')`` (on a line of its own after a multi-line message)."""
    msg = str(exc)
    if "(in pass '" in msg:
        return exc
    sep = "\n  " if "\n" in msg else " "
    try:
        return type(exc)(f"{msg}{sep}(in pass '{name}')")
    except Exception:  # noqa: BLE001 - a class that takes other arguments: leave the error as it is
        return exc


def run_passes(graph: Graph, names: Iterable[str], ctx: PassContext | None = None) -> Graph:
    """Run the named passes in order on ``graph`` (passes edit it in place) and return the result.

    A :class:`LazyFuseError` raised inside a pass is re-raised as the same class with the pass
    named: ``(in pass 'fuse')``.
    """
    ctx = PassContext() if ctx is None else ctx
    if ctx.model is None:
        ctx.model = graph.model
    for name in names:
        fn = get_pass(name)
        start = time.perf_counter()
        try:
            result = fn(graph, ctx)
        except LazyFuseError as exc:
            named = in_pass(exc, name)
            if named is exc:
                raise
            raise named from exc  # the original stays reachable as __cause__
        ctx.timings[name] = ctx.timings.get(name, 0.0) + time.perf_counter() - start
        if result is not graph and result.model is None:
            result.model = graph.model
        graph = result
        if ctx.verify:
            from lazyfuse.ir.verifier import verify

            try:
                verify(graph)
            except VerifierError as exc:
                raise VerifierError(f"IR invalid after pass '{name}': {exc}") from exc
        if ctx.should_print(name):
            print(f"// ----- IR after {name} -----\n{graph}", file=sys.stderr)
    return graph
