"""The ``cpu`` backend object and its executable (see docs/contracts.md, "Backend protocol")."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from lazyfuse.ir.graph import Graph

from . import threads
from .cache import compile_lock, is_complete, load_module, mark_complete
from .codegen import generate


class NumbaCPUExecutable:
    """One generated module; ``run`` gathers the arrays in ``run()``'s order and calls it once."""

    def __init__(self, graph: Graph) -> None:
        gen = generate(graph)
        self.source: str = gen.source
        self.module, self.path = load_module(gen.source)
        self.cached: bool = self.path is not None
        self._args = gen.args
        self._run = self.module.run
        # Train-mode calls update running stats in place: one at a time per compiled graph.
        self._state_lock = threading.Lock()
        self._first_call_lock = threading.Lock()
        self._compiled = False

    @property
    def file(self) -> Path | None:
        """The generated module's file in the cache dir (None when running uncached)."""
        return self.path

    def run(self, inputs: Sequence[np.ndarray], state: Mapping[str, np.ndarray],
            training: Mapping[str | None, bool]) -> np.ndarray | tuple[np.ndarray, ...]:
        args = []
        mutates = False
        for kind, key in self._args:
            if kind == "input":
                args.append(inputs[key])
            elif kind == "state":
                args.append(state[key])
            else:
                flag = bool(training.get(key, False))
                mutates |= flag
                args.append(flag)
        if not self._compiled:
            return self._first_call(args, mutates)
        return self._call(args, mutates)

    def _call(self, args: list, mutates: bool) -> np.ndarray | tuple[np.ndarray, ...]:
        if mutates:
            with self._state_lock, threads.call_guard():
                return self._run(*args)
        with threads.call_guard():
            return self._run(*args)

    def _first_call(self, args: list, mutates: bool) -> np.ndarray | tuple[np.ndarray, ...]:
        """The call that compiles (or loads) the module: never concurrently with another process
        compiling the same file, and the cache is marked whole only after it succeeded."""
        with self._first_call_lock:
            if self._compiled or self.path is None:
                self._compiled = True
                return self._call(args, mutates)
            with compile_lock(self.path):
                result = self._call(args, mutates)
                if not is_complete(self.path):
                    mark_complete(self.path)
            self._compiled = True
            return result


class NumbaCPUBackend:
    """``lazyfuse.compile(model, spec, backend="cpu")``: the whole graph as one Numba call."""

    name = "cpu"
    pipeline = ["infer_shapes", "materialize_lazy", "dce", "fuse"]

    def build(self, graph: Graph) -> NumbaCPUExecutable:
        return NumbaCPUExecutable(graph)
