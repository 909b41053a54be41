"""``TorchModel``: a ``torch.nn.Module`` as the passes and ``CompiledModule`` read a model.

``CompiledModule`` reads a ``lazyfuse.nn`` model through ``state_version``, ``get_submodule``,
``training``, and each module's ``local_state`` and ``settings``.  A torch module has no change
counter and no such methods, so this view supplies them:

- ``get_submodule(path)`` is torch's own: the torch modules themselves (their class, ``training``
  and attributes are what ``CompiledModule`` checks);
- ``local_state_of(module, kind)`` gives a module's own parameters or buffers as NumPy arrays that
  share the tensors' memory (``tensor.detach().numpy()``: writes go both ways, train-mode calls
  update torch's running stats in place);
- ``state_version`` is a tuple that changes whenever what a compiled call reads may have: a
  parameter, buffer or submodule registered anywhere (torch's global registration hooks bump a
  counter), a tensor's storage replaced (``p.data = ...``, ``model.double()``: its ``data_ptr``),
  a tensor written in place by torch (``load_state_dict``, ``p.copy_``, an optimizer step: its
  ``_version`` counter; the views see the values anyway, but the ``cuda`` backend's device copies
  are uploaded again), or a ``training`` flag;
- ``materialize_lazy(graph)`` sizes the lazy torch modules from the inferred graph (see
  :func:`materialize`).

Other attributes are the torch module's (``view.fc1`` is ``module.fc1``).
"""

from __future__ import annotations

import operator
import weakref
from typing import Any

import numpy as np

from lazyfuse.errors import InferenceError, StateError, UninitializedParameterError
from lazyfuse.ir.graph import Graph
from lazyfuse.ir.types import Sym

from . import require_torch

_VIEWS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_REGISTRATIONS = [0]  # bumped by torch's global registration hooks once a view exists
_HOOKED = [False]
_PLAIN = (bool, int, float, str, tuple, type(None))
_DATA_PTR: list[Any] = []  # torch.Tensor.data_ptr, set with the hooks
_TENSOR_VERSION = operator.attrgetter("_version")  # torch's count of in-place writes to a tensor
# The sizes each torch lazy class infers, like ``LazyModuleMixin.lazy_dims`` of lazyfuse's.
LAZY_DIMS = {"LazyLinear": ("in_features",), "LazyBatchNorm1d": ("num_features",),
             "LazyBatchNorm2d": ("num_features",), "LazyConv2d": ("in_channels",)}


def view(module: Any) -> TorchModel:
    """The one :class:`TorchModel` of ``module`` (kept while the module lives)."""
    found = _VIEWS.get(module)
    if found is None:
        found = _VIEWS[module] = TorchModel(module)
    return found


def _bump(*_args: Any) -> None:
    _REGISTRATIONS[0] += 1


def _install_hooks(torch: Any) -> None:
    if _HOOKED[0]:
        return
    hooks = torch.nn.modules.module
    hooks.register_module_parameter_registration_hook(_bump)
    hooks.register_module_buffer_registration_hook(_bump)
    hooks.register_module_module_registration_hook(_bump)
    _DATA_PTR.append(torch.Tensor.data_ptr)
    _HOOKED[0] = True


def is_lazy(module: Any) -> bool:
    """A torch lazy module that still has uninitialized parameters or buffers."""
    torch = require_torch()
    return isinstance(module, torch.nn.modules.lazy.LazyModuleMixin) and module.has_uninitialized_params()


def is_uninitialized(tensor: Any) -> bool:
    torch = require_torch()
    return isinstance(tensor, torch.nn.parameter.UninitializedTensorMixin)


def as_numpy(tensor: Any, what: str) -> np.ndarray:
    """A NumPy array sharing ``tensor``'s memory (a CPU tensor), else a lazyfuse error."""
    if tensor.device.type != "cpu":
        raise StateError(f"{what} is on {tensor.device}; lazyfuse reads a model's parameters and buffers "
                         "from host memory (backend='cuda' keeps its own device copies of them): keep the "
                         "model on the CPU with .cpu() and pass CUDA tensors as inputs")
    return tensor.detach().numpy()


class TorchModel:
    """See the module docstring."""

    def __init__(self, module: Any) -> None:
        torch = require_torch()
        _install_hooks(torch)
        self._ref = weakref.ref(module)
        self._seen = -1
        self._modules: list[Any] = []
        self._tensors: list[Any] = []
        self._watched: dict[tuple[int, str], tuple[Any, str]] = {}
        self._watch: tuple[list[Any], list[str]] = ([], [])

    @property
    def module(self) -> Any:
        module = self._ref()
        if module is None:
            raise StateError("the torch model of this lazyfuse view no longer exists")
        return module

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.module, name)

    def __repr__(self) -> str:
        return repr(self.module)

    # -- what CompiledModule reads -----------------------------------------------------------------
    @property
    def state_version(self) -> tuple:
        if self._seen != _REGISTRATIONS[0]:
            self._seen = _REGISTRATIONS[0]
            self._modules = list(self.module.modules())
            tensors = [t for m in self._modules for store in (m._parameters, m._buffers)
                       for t in store.values() if t is not None]
            # An uninitialized tensor has no storage; materializing it registers a new one (a bump).
            self._tensors = [t for t in tensors if not is_uninitialized(t)]
            self._rewatch()
        # map() in C over prepared lists: this runs on every call (~2 us for MLPWithBN)
        tensors = self._tensors
        return (self._seen, tuple(map(getattr, *self._watch)), tuple(map(_DATA_PTR[0], tensors)),
                tuple(map(_TENSOR_VERSION, tensors)))

    def watch_settings(self, pairs: list[tuple[Any, str]]) -> None:
        """Make ``state_version`` follow these ``(module, attribute)`` settings too (the ones a compiled
        graph baked in: ``momentum``, ``eps``, ...), so changing one is caught before the next call."""
        for module, name in pairs:
            self._watched[(id(module), name)] = (module, name)
        self._rewatch()

    def _rewatch(self) -> None:
        """The attributes ``state_version`` reads: every module's ``training``, then the settings."""
        pairs = [(m, "training") for m in self._modules] + list(self._watched.values())
        self._watch = ([m for m, _ in pairs], [n for _, n in pairs])

    def get_submodule(self, path: str) -> Any:
        return self.module.get_submodule(path)

    @property
    def training(self) -> bool:
        return self.module.training

    @training.setter
    def training(self, mode: bool) -> None:
        self.module.training = mode

    def train(self, mode: bool = True) -> TorchModel:
        self.module.train(mode)
        return self

    def eval(self) -> TorchModel:
        self.module.eval()
        return self

    def local_state_of(self, module: Any, kind: str) -> dict[str, Any]:
        """``module``'s own parameters (``kind="parameter"``) or buffers as NumPy views."""
        store = module._parameters if kind == "parameter" else module._buffers
        out: dict[str, Any] = {}
        for name, tensor in store.items():
            if tensor is None:
                out[name] = None
            elif is_uninitialized(tensor):
                raise UninitializedParameterError(f"{type(module).__name__}.{name} is uninitialized in "
                                                  "the torch model; compile it again")
            else:
                out[name] = as_numpy(tensor, f"{type(module).__name__}.{name}")
        return out

    def settings_of(self, module: Any) -> dict[str, Any]:
        """``module``'s plain attributes (``eps``, ``momentum``, ``in_features``, ...)."""
        return {k: v for k, v in vars(module).items() if not k.startswith("_") and isinstance(v, _PLAIN)}

    def lazy_dims_of(self, module: Any) -> tuple[str, ...]:
        """The sizes a still-lazy torch module will infer (for ``lf.summary``)."""
        return LAZY_DIMS.get(type(module).__name__, ()) if is_lazy(module) else ()

    def materialize_lazy(self, graph: Graph) -> None:
        materialize(graph, self.module)


def _fake_input(node: Any, path: str, module: Any) -> Any:
    """A meta tensor shaped like the input ``node`` (symbolic dims as 1): torch's lazy modules read
    only their input's shape (``initialize_parameters``), and a meta tensor holds no data."""
    torch = require_torch()
    data = node.inputs[0].type
    shape = []
    for d in data.shape:
        if isinstance(d, Sym):
            shape.append(1)
        elif isinstance(d, int):
            shape.append(d)
        else:
            raise InferenceError(f"cannot materialize module '{path}' ({type(module).__name__}): its input "
                                 f"is {data} after shape inference; run infer_shapes first")
    return torch.empty(shape, device="meta")


def materialize(graph: Graph, root: Any) -> None:
    """Materialize ``root``'s lazy modules from the inferred ``graph``, in the order the graph first
    calls them (an eager forward's order, so the random draws are the same), each exactly as torch's
    first forward does -- ``module._infer_parameters(module, (input,))``: sizes, initialization
    from torch's generator, the switch to ``cls_to_become`` and the removal of the lazy hooks --
    but on a meta tensor of the input's shape, so no forward runs and no data is read.  Every
    input shape is checked before the first module changes."""
    todo: list[tuple[Any, Any]] = []
    seen: set[str] = set()
    for node in graph.nodes:  # before fusion: one module per node, its data input first
        path = node.module
        if node.module_type is None or path is None or path in seen:
            continue
        module = root.get_submodule(path)
        if is_lazy(module):
            seen.add(path)
            todo.append((module, _fake_input(node, path, module)))
    if is_lazy(root) and not todo:  # the model is one lazy layer (its node has no module path)
        for node in graph.nodes:
            if any(i.op in ("param", "buffer") and "." not in i.attrs["target"] for i in node.inputs):
                todo.append((root, _fake_input(node, "", root)))
                break
    for module, fake in todo:
        module._infer_parameters(module, (fake,))
