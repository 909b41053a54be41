"""``CompiledModule``: what ``lazyfuse.compile`` returns.

It owns no arrays: calls use the parameters and buffers of the live model (by target) and each
BatchNorm module's ``training`` flag, so ``load_state_dict``, ``model.eval()`` and the running-stat
updates of train-mode calls are shared with the model both ways.  The arrays and flags are fetched
again whenever a module changed what it holds since the last call (``nn.module.STATE_VERSION``
counts assignments of parameters, buffers, submodules and attributes); otherwise the last call's
are reused, which keeps small-batch calls cheap.  Inputs are checked against the specs before any
state is touched.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from lazyfuse.errors import DTypeError, ShapeError, UninitializedParameterError
from lazyfuse.frontends import nn
from lazyfuse.frontends.nn.module import STATE_VERSION
from lazyfuse.ir.graph import Graph, Node
from lazyfuse.ir.ops import bn_module
from lazyfuse.ir.types import TensorSpec, unify

from . import Executable


class CompiledModule:
    """A model compiled for one backend; call it on NumPy arrays like the model itself."""

    def __init__(self, model: Any, graph: Graph, runner: Executable, specs: Sequence[TensorSpec]) -> None:
        self.model = model
        self.graph = graph
        self.runner = runner
        self.specs = tuple(specs)
        self._inputs: list[Node] = graph.inputs
        self._input_checks = [(node, node.type.dtype.numpy,
                               f"compiled {graph.name}: input '{node.name}' (#{node.attrs['index']})")
                              for node in self._inputs]
        self._state: list[Node] = graph.params()
        # Per owner module path, its params/buffers, worked out once (calls stay cheap at small
        # batch): node, attribute name, member dict, and the dtype and shape it was compiled for.
        self._state_groups: dict[str, list[tuple[Node, str, str, np.dtype, tuple]]] = {}
        for n in self._state:
            path, _, name = n.attrs["target"].rpartition(".")
            self._state_groups.setdefault(path, []).append(
                (n, name, "_parameters" if n.op == "param" else "_buffers", n.type.dtype.numpy,
                 tuple(n.type.shape)))
        # BatchNorm nodes (plain or fused) with the module path whose ``training`` flag they follow.
        self._bn_nodes: list[tuple[Node, str | None]] = [
            (n, bn_module(n)) for n in graph.nodes if n.op == "batch_norm" or bn_module(n)]
        # The input shapes of the last call and the symbol sizes they bound.
        self._last_shapes: tuple[tuple, dict[str, int]] | None = None
        # (STATE_VERSION when fetched, state, training) of the last call; lazyfuse models only.
        self._tracked = isinstance(model, nn.Module)
        self._snapshot: tuple[int, dict[str, np.ndarray], dict[str | None, bool]] | None = None
        # The replay of the last call (see ``__call__``): (STATE_VERSION, input count, per input
        # (shape, strides, dtype), the runner's call bound to that call's state and flags or None).
        self._hot: tuple[int, int, tuple[tuple[tuple, tuple, np.dtype], ...], Callable | None] | None = None

    @property
    def source(self) -> str:
        """The backend's generated code (the IR text for the reference backend)."""
        return self.runner.source

    def __repr__(self) -> str:
        specs = ", ".join(str(n.type) for n in self._inputs)
        return f"<CompiledModule {self.graph.name}({specs}) backend={type(self.runner).__name__}>"

    # ---------------------------------------------------------------------------------- calling
    def __call__(self, *arrays: Any) -> np.ndarray | tuple[np.ndarray, ...]:
        # Replay: no module changed since the last call and every input is an ndarray of that
        # call's shape, strides and dtype (it was C-contiguous), so every check it passed holds.
        hot = self._hot
        repeated = False
        if hot is not None and hot[0] == STATE_VERSION.value and len(arrays) == hot[1]:
            for a, (shape, strides, dtype) in zip(arrays, hot[2]):
                if (type(a) is not np.ndarray or a.shape != shape or a.strides != strides
                        or a.dtype is not dtype):
                    break
            else:
                if hot[3] is not None:
                    return hot[3](arrays)
                repeated = True
        inputs, bindings = self._check_inputs(arrays)
        version, state, training = self._fetch()
        self._check_batch_stats(bindings, training)
        result = self.runner.run(inputs, state, training)
        if self._tracked and all(type(a) is np.ndarray and a is b for a, b in zip(arrays, inputs)):
            # Bound on the second call in a row like this one: calls whose shapes keep changing
            # never pay for binding.
            self._hot = (version, len(inputs), tuple((a.shape, a.strides, a.dtype) for a in inputs),
                         self._bind(inputs, state, training) if repeated else None)
        return result

    def _bind(self, inputs: list[np.ndarray], state: dict[str, np.ndarray],
              training: dict[str | None, bool]) -> Callable[[Sequence[np.ndarray]], Any]:
        """The runner's call with ``state`` and ``training`` fixed, for inputs like ``inputs``."""
        bind = getattr(self.runner, "bind", None)
        if bind is not None:
            return bind(inputs, state, training)
        run = self.runner.run
        return lambda arrays: run(arrays, state, training)

    def _fetch(self) -> tuple[int, dict[str, np.ndarray], dict[str | None, bool]]:
        """STATE_VERSION as read before the fetch, the model's arrays by target and the BatchNorm
        ``training`` flags by module path: the last call's while no module changed since (one
        integer compare), else fetched anew."""
        version = STATE_VERSION.value  # read before fetching: a change during the fetch is not missed
        snapshot = self._snapshot
        if snapshot is not None and snapshot[0] == version:
            return snapshot
        training = {path: self._module(path).training for _, path in self._bn_nodes}
        state = self._gather_state()
        if self._tracked:
            self._snapshot = (version, state, training)
        return version, state, training

    def _module(self, path: str | None) -> Any:
        return self.model.get_submodule(path or "")

    def _check_inputs(self, arrays: Sequence[Any]) -> tuple[list[np.ndarray], dict[str, int]]:
        if len(arrays) != len(self._inputs):
            raise TypeError(f"compiled {self.graph.name} takes {len(self._inputs)} input(s), "
                            f"got {len(arrays)}")
        out = []
        for (node, dtype, what), arr in zip(self._input_checks, arrays):
            a = np.asarray(arr)
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
        return [np.ascontiguousarray(a) for a in out], bindings

    def _check_batch_stats(self, bindings: dict[str, int], training: dict[str | None, bool]) -> None:
        """Train-mode BatchNorm needs more than one value per channel (checked before any update)."""
        for node, path in self._bn_nodes:
            if not (training[path] or not node.attrs.get("track_running_stats", True)):
                continue
            shape = node.type.evaluate(bindings)
            count = math.prod(shape) // shape[1] if len(shape) > 1 and shape[1] else 0
            if count <= 1:
                who = f"module '{path}'" if path else "batch_norm"
                raise ShapeError(f"compiled {self.graph.name}: {who}: expected more than 1 value per "
                                 f"channel when training, got input of shape {shape}")

    def _gather_state(self) -> dict[str, np.ndarray]:
        state = {}
        for path, entries in self._state_groups.items():
            owner = self.model.get_submodule(path)  # one submodule walk per owner per call
            for node, name, members, dtype, shape in entries:
                value = getattr(owner, members).get(name)
                arr = None if value is None or nn.is_uninitialized(value) else np.asarray(value)
                if arr is None or arr.dtype != dtype or arr.shape != shape:
                    self._state_error(owner, node, name, members, value)
                state[node.attrs["target"]] = arr
        return state

    def _state_error(self, owner: Any, node: Node, name: str, members: str, value: Any) -> None:
        """Raise the error for a param/buffer that is missing, uninitialized or no longer matches."""
        target = node.attrs["target"]
        if value is None and name not in getattr(owner, members):
            kind = "parameter" if node.op == "param" else "buffer"
            raise AttributeError(f"{type(owner).__name__} has no {kind} '{name}' (target '{target}')")
        if value is None or nn.is_uninitialized(value):
            raise UninitializedParameterError(f"compiled {self.graph.name}: {node.op} '{target}' "
                                              "is uninitialized in the model")
        arr = np.asarray(value)
        if arr.dtype != node.type.dtype.numpy:
            raise DTypeError(f"compiled {self.graph.name}: {node.op} '{target}' is now {arr.dtype}, "
                             f"compiled for {node.type}; compile the model again")
        raise ShapeError(f"compiled {self.graph.name}: {node.op} '{target}' now has shape "
                         f"{tuple(arr.shape)}, compiled for {node.type}; compile the model again")
