"""``CompiledModule``: what ``lazyfuse.compile`` returns.

It owns no arrays: calls use the parameters and buffers of the live model (by target) and each
BatchNorm module's ``training`` flag, so ``load_state_dict``, ``model.eval()`` and the running-stat
updates of train-mode calls are shared with the model both ways.  It reads the model through public
``nn.Module`` API only: ``state_version`` (a counter of the changes to what the model and its
submodules hold), ``local_state()``, ``settings()``, ``get_submodule()`` and ``training``.  The
arrays and flags are fetched again whenever ``state_version`` moved since the last call; otherwise
the last call's are reused (:class:`~lazyfuse.runtime.call_cache.CallCache`), which keeps
small-batch calls cheap.  Inputs are checked against the specs before any state is touched.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from lazyfuse.backends import Executable
from lazyfuse.errors import (
    CompileError,
    DTypeError,
    InputError,
    ShapeError,
    StateError,
    UninitializedParameterError,
)
from lazyfuse.frontends import nn
from lazyfuse.frontends.model_access import local_state_reader, settings_reader
from lazyfuse.frontends.spec import TensorSpec, unify
from lazyfuse.ir.graph import Graph, Node
from lazyfuse.ir.ops import OPS, mode_module, named_updates

from .call_cache import CallCache, input_signature

# Held by every call that updates buffers in place (train-mode BatchNorm), on every backend.  One
# lock for the process, not one per compiled module: the arrays belong to the model, and two
# compiled modules of one model (other specs, or compiled twice) would mix their updates.
TRAIN_LOCK = threading.Lock()


class CompiledModule:
    """A model compiled for one backend; call it on NumPy arrays like the model itself.

    It acts like the module it wraps: ``train()`` / ``eval()`` / ``training``, ``parameters()``,
    ``buffers()``, ``state_dict()`` and ``load_state_dict()`` act on the model; inputs may be given by
    ``forward``'s parameter names; pickling stores the model, the specs and the backend name, and
    loading compiles again (warm from the disk cache).
    """

    def __init__(self, model: Any, graph: Graph, runner: Executable, specs: Sequence[TensorSpec],
                 backend: str | None = None, rebuild: Callable[..., CompiledModule] | None = None) -> None:
        """``backend`` names the backend (for ``repr`` and pickling); ``rebuild(model, *specs,
        backend=...)`` compiles again when a pickle is loaded (``lazyfuse.compile`` passes itself)."""
        self.model = model
        self.graph = graph
        self.runner = runner
        self.specs = tuple(specs)
        self.backend = backend
        self._rebuild = rebuild
        self._inputs: list[Node] = graph.inputs
        self._input_names = input_names(model, graph)
        self._input_checks = [(node, node.type.dtype.numpy,
                               f"compiled {graph.name}: input '{node.name}' (#{node.attrs['index']})")
                              for node in self._inputs]
        self._state: list[Node] = graph.params()
        # Per owner module path, its params/buffers, worked out once (calls stay cheap at small
        # batch): node, name in the owner, and the dtype and shape it was compiled for.
        self._state_groups: dict[str, list[tuple[Node, str, np.dtype, tuple]]] = {}
        for n in self._state:
            path, _, name = n.attrs["target"].rpartition(".")
            self._state_groups.setdefault(path, []).append(
                (n, name, n.type.dtype.numpy, tuple(n.type.shape)))
        # Nodes that follow a module's ``training`` flag (BatchNorm, plain or fused), with its path.
        self._moded: list[tuple[Node, str | None]] = [
            (n, mode_module(n)) for n in graph.nodes if OPS[n.op].uses_training]
        # The buffers a train-mode call updates in place (the op table's effects), with the module
        # path whose ``training`` flag decides and the op that updates them (for messages).
        self._updated: list[tuple[str, str | None, str]] = [
            (operand.attrs["target"], path, name.rpartition(".")[0] or n.op)  # the op, or fused part
            for n, path in self._moded for name, operand in named_updates(n)]
        # The ops' checks of the concrete output shape that must pass before anything runs.
        self._call_checks = [(n, mode_module(n), OPS[n.op].call_check) for n in graph.nodes
                             if OPS[n.op].call_check is not None]
        # The input shapes of the last checked call and the symbol sizes they bound.
        self._last_shapes: tuple[tuple, dict[str, int]] | None = None
        # lazyfuse models count their changes (``state_version``), so a call can reuse the last one's;
        # so does a frontend's view of a foreign model that has one (the PyTorch frontend's
        # TorchModel), which also reads its modules' arrays and settings (``local_state_of``,
        # ``settings_of``) for modules that lack lazyfuse's methods.
        self._tracked = isinstance(model, nn.Module) or hasattr(type(model), "state_version")
        self._local_state = local_state_reader(model)
        # Per module the graph runs: its class and the settings the graph baked in (checked again
        # whenever the model changed, since a call cannot follow a new class or new settings).
        self._compiled_as = compiled_modules(model, graph) if self._tracked else {}
        if hasattr(type(model), "watch_settings"):  # a view without a change counter of its own
            model.watch_settings([(model.get_submodule(path), name)
                                  for path, (_, settings) in self._compiled_as.items() for name in settings])
        self._cache: CallCache | None = None
        # A backend that takes device arrays says how an input is taken and how outputs go back.
        self._as_input = getattr(runner, "as_input", None)
        self._as_output = getattr(runner, "as_output", None)

    @property
    def source(self) -> str:
        """The backend's generated code (the IR text for the reference backend)."""
        return self.runner.source

    def __repr__(self) -> str:
        backend = self.backend if self.backend is not None else type(self.runner).__name__
        specs = ", ".join(f"{name}: {n.type}" for name, n in zip(self._input_names, self._inputs))
        model = repr(self.model).replace("\n", "\n  ")
        return f"CompiledModule(\n  backend={backend!r},\n  specs=({specs}),\n  model={model}\n)"

    def __reduce__(self) -> tuple:
        if self._rebuild is None:
            raise CompileError(f"compiled {self.graph.name} cannot be pickled: it was not built by "
                               "lazyfuse.compile; pickle the model and compile it again after loading")
        return (_recompile, (self._rebuild, self.model, self.specs, self.backend))

    # ---------------------------------------------------------------- the module it wraps
    @property
    def training(self) -> bool:
        """The wrapped model's ``training`` flag (a call follows each BatchNorm's own flag)."""
        return self.model.training

    @training.setter
    def training(self, mode: bool) -> None:
        self.model.training = mode

    def train(self, mode: bool = True) -> CompiledModule:
        """``model.train(mode)``; returns this compiled module."""
        self.model.train(mode)
        return self

    def eval(self) -> CompiledModule:
        """``model.eval()``; returns this compiled module."""
        self.model.eval()
        return self

    def parameters(self, recurse: bool = True) -> Iterator[Any]:
        return self.model.parameters(recurse)

    def named_parameters(self, prefix: str = "", recurse: bool = True) -> Iterator[tuple[str, Any]]:
        return self.model.named_parameters(prefix, recurse)

    def buffers(self, recurse: bool = True) -> Iterator[np.ndarray]:
        return self.model.buffers(recurse)

    def named_buffers(self, prefix: str = "", recurse: bool = True) -> Iterator[tuple[str, np.ndarray]]:
        return self.model.named_buffers(prefix, recurse)

    def modules(self) -> Iterator[Any]:
        return self.model.modules()

    def named_modules(self, *args: Any, **kwargs: Any) -> Iterator[tuple[str, Any]]:
        return self.model.named_modules(*args, **kwargs)

    def state_dict(self, *args: Any, **kwargs: Any) -> Any:
        """The wrapped model's ``state_dict`` (the arrays the compiled calls use)."""
        return self.model.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict: Any, strict: bool = True) -> Any:
        """Load into the wrapped model; the next call uses the loaded arrays."""
        return self.model.load_state_dict(state_dict, strict)

    # ---------------------------------------------------------------------------------- calling
    def __call__(self, *arrays: Any, **named: Any) -> np.ndarray | tuple[np.ndarray, ...]:
        if named:
            arrays = self._by_position(arrays, named)
        cache = self._cache
        # Replay (inline: this is the per-call cost at small batch): the model is unchanged since
        # the last call, every input is an ndarray like the last call's and the buffers the call
        # updates are still writable (a flag changes in place, unseen), so every check holds.
        replay = cache.replay if cache is not None else None
        if replay is not None and cache.version == self.model.state_version and not cache.reshaped():
            sig, bound = replay
            if len(arrays) == len(sig):
                for a, (shape, strides, dtype) in zip(arrays, sig):
                    if (type(a) is not np.ndarray or a.shape != shape or a.strides != strides
                            or a.dtype is not dtype):
                        break
                else:
                    if not cache.updated or all(b.flags.writeable for b in cache.updated):
                        try:
                            if not cache.updated:
                                return bound(arrays)
                            with TRAIN_LOCK:
                                return bound(arrays)
                        except Exception:
                            # Read-only arrays the call only reads fail the cpu backend's argument
                            # typing before anything runs; the checked call below copies them.
                            if not cache.has_read_only_state():
                                raise
                            cache.replay = cache.seen = None
        inputs, bindings = self._check_inputs(arrays)
        cache = self._current_state()
        self._run_call_checks(bindings, cache.training)
        self._check_writable(cache.state, cache.training)
        if cache.updated:
            with TRAIN_LOCK:
                result = self.runner.run(inputs, cache.state, cache.training)
        else:
            result = self.runner.run(inputs, cache.state, cache.training)
        if self._as_output is not None:
            result = self._as_output(result, arrays)
        if self._tracked and all(type(a) is np.ndarray and a is b for a, b in zip(arrays, inputs)):
            signature = input_signature(inputs)
            if cache.seen != signature:
                cache.seen, cache.replay = signature, None
            elif cache.replay is None:
                bound = self._bind(inputs, cache.state, cache.training)
                if bound is not None:  # None: the runner cannot bind this call yet (compiling)
                    cache.replay = (signature, bound)
        return result

    def sync(self) -> None:
        """Make in-place writes into the model's arrays (``w[...] = ...``, an optimizer step in
        NumPy) visible to a backend that keeps copies of them: the ``cuda`` backend uploads every
        parameter and buffer again before the next call.  Nothing to do for backends that read the
        model's arrays in place (``cpu``, ``reference``)."""
        sync = getattr(self.runner, "sync", None)
        if sync is not None:
            sync()

    def wait_compiled(self, timeout: float | None = None) -> bool:
        """Block until compiles the backend runs in the background finished (the ``cpu`` backend's
        parallel entry; see README, "Compile time"); True when none is running.  Benchmarks call it
        before timing, so they time the code later calls run."""
        wait = getattr(self.runner, "wait_compiled", None)
        return True if wait is None else wait(timeout)

    def _by_position(self, arrays: tuple, named: dict[str, Any]) -> tuple:
        """Keyword inputs put in ``forward``'s parameter order."""
        names = self._input_names
        where = f"compiled {self.graph.name}({', '.join(names)})"
        given = dict(zip(names, arrays))
        if len(arrays) > len(names):
            raise InputError(f"{where} takes {len(names)} input(s), got {len(arrays)} positional")
        for name, value in named.items():
            if name not in names:
                raise InputError(f"{where}: unexpected keyword input {name!r}")
            if name in given:
                raise InputError(f"{where}: input {name!r} given twice (by position and by name)")
            given[name] = value
        missing = [n for n in names if n not in given]
        if missing:
            raise InputError(f"{where}: missing input(s) {', '.join(map(repr, missing))}")
        return tuple(given[n] for n in names)

    def _bind(self, inputs: list[np.ndarray], state: dict[str, np.ndarray],
              training: dict[str | None, bool]) -> Callable[[Sequence[np.ndarray]], Any] | None:
        """The runner's call with ``state`` and ``training`` fixed, for inputs like ``inputs``
        (None when the runner cannot bind it yet)."""
        bind = getattr(self.runner, "bind", None)
        if bind is not None:
            return bind(inputs, state, training)
        run = self.runner.run
        return lambda arrays: run(arrays, state, training)

    def _current_state(self) -> CallCache:
        """The model's arrays by target and the ``training`` flags by module path: the last call's
        while the model's ``state_version`` is unchanged (one integer compare), else fetched anew."""
        version = self.model.state_version if self._tracked else None  # read before fetching
        cache = self._cache
        if cache is not None and version is not None and cache.version == version and not cache.reshaped():
            return cache
        self._check_modules()
        training = {path: self._module(path).training for _, path in self._moded}
        state, held = self._gather_state()
        cache = CallCache(version, state, training,
                          tuple(state[t] for t, path, _ in self._updated if training[path]),
                          shapes=tuple((a, a.shape) for a in held))
        if self._tracked:
            self._cache = cache
        return cache

    def _module(self, path: str | None) -> Any:
        return self.model.get_submodule(path or "")

    def _check_inputs(self, arrays: Sequence[Any]) -> tuple[list[np.ndarray], dict[str, int]]:
        if len(arrays) != len(self._inputs):
            raise InputError(f"compiled {self.graph.name} takes {len(self._inputs)} input(s), "
                             f"got {len(arrays)}")
        out = []
        as_input = self._as_input
        for (node, dtype, what), arr in zip(self._input_checks, arrays):
            a = np.asarray(arr) if as_input is None else as_input(arr, what)
            if a.dtype != dtype:
                raise DTypeError(f"{what}: expected dtype {node.type.dtype.name} ({node.type}), got "
                                 f"{a.dtype}; cast it with .astype(np.{node.type.dtype.name})")
            out.append(a)
        shapes = tuple(a.shape for a in out)
        last = self._last_shapes
        if last is not None and last[0] == shapes:  # the shapes of the last call: checked then
            bindings = last[1]
        else:
            bindings = {}
            for (node, _, what), a in zip(self._input_checks, out):
                unify(node.type, a.shape, bindings, what=what)
            self._last_shapes = (shapes, bindings)
        return [np.ascontiguousarray(a) if isinstance(a, np.ndarray) else a for a in out], bindings

    def _run_call_checks(self, bindings: dict[str, int], training: dict[str | None, bool]) -> None:
        """The op table's call checks (train-mode BatchNorm needs more than one value per channel),
        on this call's output shapes, before anything runs."""
        for node, path, check in self._call_checks:
            try:
                check(node.attrs, node.type.evaluate(bindings), bool(training.get(path, False)))
            except ShapeError as exc:
                raise ShapeError(f"compiled {self.graph.name}: {self._who(path)}{exc}") from None

    def _check_writable(self, state: dict[str, np.ndarray], training: dict[str | None, bool]) -> None:
        """A train-mode call updates running stats in place: refuse read-only ones before any update."""
        for target, path, op in self._updated:
            if training[path] and not state[target].flags.writeable:
                raise StateError(f"compiled {self.graph.name}: {self._who(path)}{op}: buffer "
                                 f"'{target}' is read-only, and a train-mode call updates it in place; "
                                 "assign a writable copy (np.array(...)) or call model.eval()")

    def _who(self, path: str | None) -> str:
        """``"module 'bn1' (BatchNorm1d): "`` for messages, or nothing for a functional op at the root."""
        return f"module '{path}' ({type(self._module(path)).__name__}): " if path else ""

    def _check_modules(self) -> None:
        """Every module the graph runs is still there, of the class and with the settings compiled."""
        for path, (cls, settings) in self._compiled_as.items():
            try:
                mod = self._module(path)
            except AttributeError:
                raise StateError(f"compiled {self.graph.name}: module '{path}' ({cls.__name__}) is no "
                                 "longer in the model; compile the model again") from None
            if type(mod) is not cls:
                raise StateError(f"compiled {self.graph.name}: module '{path}' is now "
                                 f"{type(mod).__name__}, compiled as {cls.__name__}; compile the "
                                 "model again")
            for name, value in settings.items():
                now = getattr(mod, name, _MISSING)
                if not _same(now, value):
                    now_text = "missing" if now is _MISSING else repr(now)
                    raise StateError(f"compiled {self.graph.name}: module '{path}' ({cls.__name__}): "
                                     f"{name} is now {now_text}, compiled with {value!r}; compile the "
                                     "model again")

    def _gather_state(self) -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
        """The arrays by target (plain ndarray views) and the objects the model holds."""
        state, held = {}, []
        for path, entries in self._state_groups.items():
            owner = self.model.get_submodule(path)  # one submodule walk per owner per fetch
            views = {kind: self._local_state(owner, kind) for kind in ("parameter", "buffer")}
            for node, name, dtype, shape in entries:
                local = views["parameter" if node.op == "param" else "buffer"]
                value = local.get(name)
                arr = None if value is None or nn.is_uninitialized(value) else np.asarray(value)
                if arr is None or arr.dtype != dtype or arr.shape != shape:
                    self._state_error(owner, node, name, name in local, value)
                state[node.attrs["target"]] = arr
                held.append(value)
        return state, held

    def _state_error(self, owner: Any, node: Node, name: str, registered: bool, value: Any) -> None:
        """Raise the error for a param/buffer that is missing, uninitialized or no longer matches."""
        target = node.attrs["target"]
        if value is None:
            kind = "parameter" if node.op == "param" else "buffer"
            none = " (it is None)" if registered else ""
            raise StateError(f"compiled {self.graph.name}: {type(owner).__name__} has no {kind} "
                             f"'{name}'{none} (target '{target}'), compiled with {node.type}; compile "
                             "the model again")
        if nn.is_uninitialized(value):
            raise UninitializedParameterError(f"compiled {self.graph.name}: {node.op} '{target}' "
                                              "is uninitialized in the model")
        arr = np.asarray(value)
        if arr.dtype != node.type.dtype.numpy:
            raise DTypeError(f"compiled {self.graph.name}: {node.op} '{target}' is now {arr.dtype}, "
                             f"compiled for {node.type}; compile the model again")
        raise ShapeError(f"compiled {self.graph.name}: {node.op} '{target}' now has shape "
                         f"{tuple(arr.shape)}, compiled for {node.type}; compile the model again")


_MISSING = object()


def _recompile(rebuild: Callable[..., CompiledModule], model: Any, specs: tuple, backend: str | None
               ) -> CompiledModule:
    """Unpickling a :class:`CompiledModule`: compile the unpickled model again."""
    return rebuild(model, *specs, backend=backend)


def input_names(model: Any, graph: Graph) -> tuple[str, ...]:
    """The names inputs may be given by: ``forward``'s first positional parameters (the ones the
    specs were traced for), else the graph's input names."""
    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (AttributeError, TypeError, ValueError):
        params = []
    positional = [p.name for p in params
                  if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    if len(positional) >= len(graph.inputs) and all(
            p.kind is not inspect.Parameter.POSITIONAL_ONLY for p in params[:len(graph.inputs)]):
        return tuple(positional[:len(graph.inputs)])
    return tuple(n.name for n in graph.inputs)


def _same(a: Any, b: Any) -> bool:
    try:
        return a is b or bool(a == b)
    except (TypeError, ValueError):  # an array compared elementwise, ...
        return False


def compiled_modules(model: Any, graph: Graph) -> dict[str, tuple[type, dict[str, Any]]]:
    """Per module path the graph's nodes came from (fused nodes name all of theirs): the module's
    class now, and the node attributes that are plain attributes of the module with the same value
    (``eps``, ``momentum``, ``in_features``, ``start_dim``, ...): the settings the graph baked in."""
    found: dict[str, tuple[type, dict[str, Any]]] = {}
    settings_of = settings_reader(model)
    for node in graph.nodes:
        paths = node.attrs.get("modules") or ((node.module,) if node.module is not None else ())
        for path in paths:
            mod = model.get_submodule(path)
            settings = found.setdefault(path, (type(mod), {}))[1]
            plain = settings_of(mod)
            for name, value in node.attrs.items():
                if name in plain and not name.startswith("_") and _same(plain[name], value):
                    settings[name] = value
    return found
