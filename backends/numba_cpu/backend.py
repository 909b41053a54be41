"""The ``cpu`` backend object and its executable (see docs/contracts.md, "Backend protocol")."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numba
import numpy as np

from lazyfuse.backends.module_cache import first_call, load_module
from lazyfuse.ir.graph import Graph

from . import background, threads
from .codegen import generate

Bound = Callable[[Sequence[np.ndarray]], np.ndarray | tuple]


class NumbaCPUExecutable:
    """One generated module; ``run`` gathers the arrays in ``run()``'s order and makes one call:
    ``run_s`` (serial kernels only) when the module's ``small(inputs)`` says every tensor is small,
    else ``run``.  Each of the two is compiled (or loaded from the disk cache) on its first use;
    by default ``run`` compiles in a background thread while large calls use ``run_s`` (see
    :mod:`.background`)."""

    def __init__(self, graph: Graph) -> None:
        gen = generate(graph)
        self.source: str = gen.source
        self.module, self.path = load_module(gen.source, NumbaCPUBackend.name)
        self.cached: bool = self.path is not None
        self._args = gen.args
        self._inputs = [i for i, (kind, _) in enumerate(gen.args) if kind == "input"]
        # (position in run()'s arguments, index of the model input that goes there)
        self._slots = [(i, gen.args[i][1]) for i in self._inputs]
        self._small = self.module.small
        self._serial = self.module.run_s
        self._first_call_lock = threading.Lock()
        self._compiled: set[str] = set()
        self._background: background.BackgroundCompile | None = None

    @property
    def file(self) -> Path | None:
        """The generated module's file in the cache dir (None when running uncached)."""
        return self.path

    def entry(self, inputs: Sequence[np.ndarray]) -> str:
        """``"run_s"`` or ``"run"``: which compiled function a call with these inputs uses."""
        return "run_s" if self._small(*inputs) else "run"

    def run(self, inputs: Sequence[np.ndarray], state: Mapping[str, np.ndarray],
            training: Mapping[str | None, bool]) -> np.ndarray | tuple[np.ndarray, ...]:
        args, _, _ = self._build_args(inputs, state, training)
        name = self.entry([args[i] for i in self._inputs])
        if name in self._compiled:
            return self._call(getattr(self.module, name), args)
        if name == "run" and self._run_s_meanwhile():
            if "run_s" in self._compiled:
                result = self._call(self._serial, args)
            else:
                result = self._first_call("run_s", self._serial, args)
            self._compile_run_in_background(args)  # after run_s: both would wait on Numba's lock
            return result
        return self._first_call(name, getattr(self.module, name), args)

    def wait_compiled(self, timeout: float | None = None) -> bool:
        """Block until a background compile of ``run`` finished; True when none is running."""
        job = self._background
        return job is None or job.wait(timeout)

    def _run_s_meanwhile(self) -> bool:
        """Whether a call that wants ``run`` before it is compiled goes to ``run_s`` while ``run``
        compiles in the background: by default, unless a background compile failed (then the call
        compiles ``run`` in the foreground, which raises the error where the user sees it)."""
        job = self._background
        if job is None:
            return background.enabled()
        return job.error is None

    def _compile_run_in_background(self, args: list) -> None:
        with self._first_call_lock:
            if self._background is not None or "run" in self._compiled:
                return
            threads.choose_layer()  # here, not in the thread: before anything may start Numba's pool
            signature = tuple(numba.typeof(a) for a in args)  # the types a call with args dispatches on
            fn, path = self.module.run, self.path

            def compile_run() -> None:
                with first_call(path):
                    fn.compile(signature)
                self._compiled.add("run")

            self._background = background.BackgroundCompile(compile_run, "lazyfuse-compile-run")

    def bind(self, inputs: Sequence[np.ndarray], state: Mapping[str, np.ndarray],
             training: Mapping[str | None, bool]) -> Bound | None:
        """``run`` with ``state`` and ``training`` fixed, for inputs of the shapes, dtypes and layout
        of ``inputs`` (so the same compiled function): what ``CompiledModule`` replays while the model
        is unchanged.  A single-input graph in eval mode on the serial path, the usual small-batch
        call, becomes one call of ``run_s`` with the other arguments prebound.  None while the
        entry is not compiled yet (``run`` compiling in the background): ask again later."""
        name = self.entry(inputs)
        if name not in self._compiled:
            return None
        args, mutates, copied = self._build_args(inputs, state, training)
        if copied:
            return lambda arrays: self.run(arrays, state, training)
        fn = getattr(self.module, name)
        if fn is self._serial and not mutates and self._slots == [(0, 0)]:
            rest = tuple(args[1:])
            return lambda arrays: fn(arrays[0], *rest)
        return lambda arrays: self._call(fn, self._with_inputs(args, arrays))

    def _with_inputs(self, args: list, inputs: Sequence[np.ndarray]) -> list:
        """A copy of the argument list ``args`` with ``inputs`` in the input positions."""
        full = list(args)
        for i, k in self._slots:
            full[i] = inputs[k]
        return full

    def _build_args(self, inputs: Sequence[np.ndarray], state: Mapping[str, np.ndarray],
                    training: Mapping[str | None, bool]) -> tuple[list, bool, bool]:
        """``run()``'s arguments in order, whether the call updates BatchNorm state, and whether
        read-only state arrays were copied.

        The generated code writes running stats in train mode only, but Numba types every array as
        writable or not: a read-only buffer would fail to compile even in eval mode (and a
        read-only weight would compile another specialization), so such arrays go in as copies.
        ``CompiledModule`` refuses train-mode calls whose updated buffers are read-only."""
        args = []
        mutates = copied = False
        for kind, key in self._args:
            if kind == "input":
                args.append(inputs[key])
            elif kind == "state":
                a = state[key]
                if not a.flags.writeable:
                    a = a.copy()
                    copied = True
                args.append(a)
            else:
                flag = bool(training.get(key, False))
                mutates |= flag
                args.append(flag)
        return args, mutates, copied

    def _call(self, fn, args: list) -> np.ndarray | tuple[np.ndarray, ...]:
        # Train-mode calls are serialized by ``CompiledModule`` (lazyfuse.runtime.compiled).
        if fn is self._serial:  # starts no parallel region: no guard against the workqueue layer
            return fn(*args)
        with threads.call_guard():
            return fn(*args)

    def _first_call(self, name: str, fn, args: list) -> np.ndarray | tuple[np.ndarray, ...]:
        """The call that compiles (or loads) ``name``: never concurrently with another process
        compiling the same file, and the cache is marked whole only after it succeeded."""
        with self._first_call_lock:
            if name in self._compiled:
                return self._call(fn, args)
            if fn is not self._serial:  # compiling or loading it starts Numba's pool
                threads.choose_layer()
            with first_call(self.path):
                result = self._call(fn, args)
            self._compiled.add(name)
            return result


class NumbaCPUBackend:
    """``lazyfuse.compile(model, spec, backend="cpu")``: the whole graph as one Numba call."""

    name = "cpu"
    pipeline = ["dce", "fuse"]  # after the API's inference stage (see lazyfuse.api.pipeline)

    def build(self, graph: Graph) -> NumbaCPUExecutable:
        return NumbaCPUExecutable(graph)
