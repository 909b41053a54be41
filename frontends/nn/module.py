"""``Module``: the PyTorch-style base class (registration, traversal, state_dict, train/eval, repr).

Its change counting lives in :mod:`._members` (the member stores) and :mod:`.ownership` (owners,
versions and module paths); the public state interface is ``state_version``, ``local_state()``
and ``settings()``.
"""

from __future__ import annotations

import contextvars
from collections import OrderedDict, namedtuple
from collections.abc import Callable, Iterator, Mapping
from types import CodeType, MappingProxyType
from typing import Any

import numpy as np

from lazyfuse.errors import ConfigError, InputError, LazyFuseError

from . import _undo
from ._members import StateView, _MemberDict, bound_store
from .ownership import adopt, bump, describe, hold, module_path, new_owners, new_version
from .parameter import Parameter, UninitializedParameter, _Uninitialized, is_uninitialized
from .placement import to_arguments
from .tensor import Tensor, as_arrays, as_tensors, input_views

# ``_MemberDict`` stays importable from here (tests check the stores' type).
__all__ = ["Module", "CALL_INTERCEPTOR", "IncompatibleKeys", "describe", "module_path",
           "raised_binding_arguments"]

# The tracer sets this to a callable ``(module, args, kwargs) -> result``; ``Module.__call__`` then
# hands the call to it instead of running ``forward``.
CALL_INTERCEPTOR: contextvars.ContextVar[Callable | None] = contextvars.ContextVar(
    "lazyfuse_call_interceptor", default=None
)

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _check_float_dtype(dtype: Any, where: str) -> np.dtype:
    """``dtype`` as float32/float64 (``None`` means the default, float32), else a :class:`ConfigError`."""
    if dtype is None:
        return FLOAT_DTYPES[0]
    try:
        dt = np.dtype(dtype)
    except (TypeError, ValueError):
        dt = None
    # Test ``None`` first: NumPy compares ``None`` equal to float64.
    if dt is None or dt not in FLOAT_DTYPES:
        raise ConfigError(f"{where}: dtype must be float32 or float64, got {dtype!r}")
    return dt


def _indent(text: str, n: int) -> str:
    lines = text.split("\n")
    return "\n".join([lines[0]] + [" " * n + line for line in lines[1:]])


class Module:
    """Base class of every lazyfuse layer; subclass it and define ``forward`` like in PyTorch."""

    def __init__(self) -> None:
        d = self.__dict__
        d["training"] = True
        d["_version"] = new_version()
        d.setdefault("_owners", new_owners())
        d["_parameters"] = _MemberDict(self)
        d["_buffers"] = _MemberDict(self)
        d["_non_persistent_buffers"] = set()
        d["_modules"] = _MemberDict(self, holds_modules=True)
        d["_parent"] = None
        d["_name"] = None

    # ------------------------------------------------------------------ state interface
    @property
    def state_version(self) -> int:
        """This module's change counter: it moves whenever this module or any module below it
        changes what it holds (parameters, buffers, submodules, plain attributes, its class), and
        when ``load_state_dict`` copies values into its arrays.  Other writes *into* the arrays do
        not count."""
        return self.__dict__["_version"]

    def local_state(self, kind: str | None = None) -> Mapping[str, Any]:
        """A read-only view of this module's own parameters and buffers by name (values may be
        ``None`` or uninitialized placeholders); ``kind="parameter"`` or ``"buffer"`` for one kind."""
        if kind is None:
            return StateView(self._parameters, self._buffers)
        if kind not in ("parameter", "buffer"):
            raise ConfigError(f"local_state: kind must be 'parameter', 'buffer' or None, got {kind!r}")
        return MappingProxyType(self._parameters if kind == "parameter" else self._buffers)

    def settings(self) -> dict[str, Any]:
        """This module's plain public attributes (``training``, ``eps``, ...): no parameters,
        buffers, submodules or ``_``-prefixed names."""
        d = self.__dict__
        members = (d.get("_parameters", {}), d.get("_buffers", {}), d.get("_modules", {}))
        return {k: v for k, v in d.items()
                if not k.startswith("_") and not any(k in store for store in members)}

    # ------------------------------------------------------------------ calling
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} has no forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run ``forward``.  If the outermost eager call fails, every change it made to modules,
        parameters, buffers and the random generator is undone before the error propagates.

        ``forward`` sees ndarray inputs as :class:`~.tensor.Tensor` (the torch-style methods the
        tracer accepts); the outermost call takes them in C order (a non-C-contiguous one is copied,
        as a compiled call copies it) and returns plain ``np.ndarray`` results."""
        interceptor = CALL_INTERCEPTOR.get()
        if interceptor is not None:
            return interceptor(self, args, kwargs)
        outer = not _undo.active()  # a nested call: the outermost one undoes everything on failure
        try:
            if not outer:
                if len(args) == 1 and not kwargs and type(args[0]) is Tensor:  # the usual nested call
                    out = self.forward(*args)
                    return out.view(Tensor) if type(out) is np.ndarray else as_tensors(out)
                return as_tensors(self.forward(*as_tensors(args), **as_tensors(kwargs)))
            if len(args) == 1 and not kwargs and type(args[0]) is np.ndarray:  # the usual call
                a = args[0]
                t = (a if a.flags.c_contiguous else np.ascontiguousarray(a)).view(Tensor)
                out = _undo.call_undoable(self.forward, (t,), kwargs)
                return a if out is t else np.asarray(out) if type(out) is Tensor else as_arrays(out, [(t, a)])
            given, args = args, as_tensors(args, contiguous=True)
            if kwargs:
                given += tuple(kwargs.values())
                kwargs = as_tensors(kwargs, contiguous=True)
            views = input_views(given, args + tuple(kwargs.values()) if kwargs else args)
            return as_arrays(_undo.call_undoable(self.forward, args, kwargs), views)
        except TypeError as e:
            if raised_binding_arguments(e, _FORWARD_CALLERS):
                raise InputError(f"{describe(self)}: forward: {e}") from None
            raise

    # ------------------------------------------------------------------ registration
    def _require_init(self) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"call Module.__init__() in {type(self).__name__}.__init__ first")

    def register_parameter(self, name: str, param: Parameter | _Uninitialized | None) -> None:
        """Register ``param`` (a :class:`Parameter`, placeholder or ``None``) under ``name``."""
        self._register_member("parameter", "_parameters", name, param, Parameter,
                              "lazyfuse.nn.Parameter")

    def register_buffer(
        self, name: str, tensor: np.ndarray | _Uninitialized | None, persistent: bool = True
    ) -> None:
        """Register an array (or ``None``) as buffer ``name``; persistent buffers go in the state_dict."""
        self._register_member("buffer", "_buffers", name, tensor, np.ndarray, "np.ndarray")
        _undo.save_member(self._non_persistent_buffers, name, self)
        if persistent:
            self._non_persistent_buffers.discard(name)
        else:
            self._non_persistent_buffers.add(name)

    def _register_member(self, kind: str, store: str, name: str, value: Any, allowed: type,
                         expected: str) -> None:
        """Check ``name`` and ``value`` (``allowed``, a placeholder or None) and store it in the
        member dict ``store`` (the shared part of register_parameter / register_buffer)."""
        self._require_init()
        if not isinstance(name, str) or not name or "." in name:
            raise ConfigError(f"{kind} name must be a non-empty string without '.', got {name!r}")
        if value is not None and not isinstance(value, (allowed, _Uninitialized)):
            raise ConfigError(
                f"cannot assign {type(value).__name__} as {kind} '{name}' of {describe(self)} "
                f"({expected} or None expected)"
            )
        members = getattr(self, store)
        self._forget(name, members)
        if isinstance(value, _Uninitialized):
            value._bind(self, name)
        members[name] = value

    def _member(self, kind: str, name: str, where: str) -> Any:
        """This module's own parameter or buffer ``name`` (``kind``), which may be ``None``; a
        :class:`ConfigError` if it was deleted (forward checks before it touches anything)."""
        store = self._parameters if kind == "parameter" else self._buffers
        value = store.get(name, _undo.MISSING)
        if value is _undo.MISSING:
            raise ConfigError(
                f"{where}: expected {kind} '{name}' (an array or None), got no such {kind} (it was "
                f"deleted); register it again with register_{kind}('{name}', ...)"
            )
        return value

    def register_module(self, name: str, module: Module | None) -> None:
        """Register a sub-module under ``name`` (``add_module`` is an alias)."""
        self._require_init()
        if not isinstance(name, str) or not name or "." in name:
            raise ConfigError(f"module name must be a non-empty string without '.', got {name!r}")
        if module is not None and not isinstance(module, Module):
            raise ConfigError(f"{type(module).__name__} is not a lazyfuse.nn.Module subclass")
        self._forget(name, self._modules)
        if module is not None:
            adopt(self, name, module)
        self._modules[name] = module

    add_module = register_module

    def _forget(self, name: str, keep: dict) -> None:
        """Drop ``name`` from every store but ``keep`` (re-assigning keeps the entry's position)."""
        for store in (self._parameters, self._buffers, self._modules):
            if store is not keep:
                store.pop(name, None)
        if keep is not self._buffers:
            _undo.save_member(self._non_persistent_buffers, name, self)
            self._non_persistent_buffers.discard(name)
        _undo.save_item(self.__dict__, name, self)
        self.__dict__.pop(name, None)

    def __setattr__(self, name: str, value: Any) -> None:
        d = self.__dict__
        if isinstance(value, (Parameter, UninitializedParameter)):
            self.register_parameter(name, value)
        elif isinstance(value, Module):
            self.register_module(name, value)
        elif "_parameters" in d and name in self._parameters:
            self.register_parameter(name, value)  # None, or raises for a plain array
        elif "_buffers" in d and name in self._buffers:
            self.register_buffer(name, value, persistent=name not in self._non_persistent_buffers)
        elif "_modules" in d and name in self._modules:
            self.register_module(name, value)
        else:
            if name == "__class__":
                _undo.save_class(self)
            else:
                _undo.save_item(d, name, self)
            object.__setattr__(self, name, value)
            bump(self)  # say ``training``; the member stores count their own changes

    def __getattr__(self, name: str) -> Any:
        d = self.__dict__
        for store in ("_parameters", "_buffers", "_modules"):
            if store in d and name in d[store]:
                return d[store][name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name: str) -> None:
        for store in (self._parameters, self._buffers, self._modules):
            if name in store:
                del store[name]
                _undo.save_member(self._non_persistent_buffers, name, self)
                self._non_persistent_buffers.discard(name)
                return
        _undo.save_item(self.__dict__, name, self)
        object.__delattr__(self, name)
        bump(self)

    def __dir__(self) -> list[str]:
        return sorted(
            set(super().__dir__()) | set(self._parameters) | set(self._buffers) | set(self._modules)
        )

    # ------------------------------------------------------------------ pickling / deepcopy
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        # Weak links, re-made by the owners' __setstate__ (a copy has no owners of its own yet).
        state["_parent"] = None
        state["_owners"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        d = self.__dict__
        owners = d.get("_owners")  # set when an existing module is given a state again
        d.update(state)
        d["_owners"] = owners if owners is not None else new_owners()
        for store in ("_parameters", "_buffers", "_modules"):
            if d.get(store) is not None:
                d[store] = bound_store(self, d[store], holds_modules=store == "_modules")
        bump(self)
        for name, child in self._modules.items():
            if child is not None:
                adopt(self, name, child)
                hold(self, child)
        for store in (self._parameters, self._buffers):
            for name, value in store.items():
                if isinstance(value, _Uninitialized):
                    value._bind(self, name)

    # ------------------------------------------------------------------ traversal
    def named_modules(
        self, memo: set | None = None, prefix: str = "", remove_duplicate: bool = True
    ) -> Iterator[tuple[str, Module]]:
        """Yield ``(path, module)`` for this module and every descendant, depth first."""
        if memo is None:
            memo = set()
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, child in self._modules.items():
            if child is None:
                continue
            sub = f"{prefix}.{name}" if prefix else name
            yield from child.named_modules(memo, sub, remove_duplicate)

    def modules(self) -> Iterator[Module]:
        for _, m in self.named_modules():
            yield m

    def named_children(self) -> Iterator[tuple[str, Module]]:
        seen: set[int] = set()
        for name, child in self._modules.items():
            if child is not None and id(child) not in seen:
                seen.add(id(child))
                yield name, child

    def children(self) -> Iterator[Module]:
        for _, m in self.named_children():
            yield m

    def _named_members(
        self, store: str, prefix: str, recurse: bool, remove_duplicate: bool = True
    ) -> Iterator[tuple[str, Any]]:
        modules = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        seen: set[int] = set()
        for mod_prefix, mod in modules:
            for name, value in getattr(mod, store).items():
                if value is None:
                    continue
                if remove_duplicate:
                    if id(value) in seen:
                        continue
                    seen.add(id(value))
                yield (f"{mod_prefix}.{name}" if mod_prefix else name), value

    def named_parameters(
        self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True
    ) -> Iterator[tuple[str, Parameter]]:
        yield from self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(
        self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True
    ) -> Iterator[tuple[str, np.ndarray]]:
        yield from self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse: bool = True) -> Iterator[np.ndarray]:
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def has_uninitialized_params(self) -> bool:
        """True if this module or any descendant still holds an uninitialized parameter or buffer."""
        return any(is_uninitialized(v) for v in self.parameters()) or any(
            is_uninitialized(v) for v in self.buffers()
        )

    def get_submodule(self, target: str) -> Module:
        """The descendant at dotted path ``target`` (``""`` is this module)."""
        if target == "":
            return self
        mod: Module = self
        walked: list[str] = []
        for item in target.split("."):
            child = mod._modules.get(item)
            if child is None:
                where = ".".join(walked) or type(self).__name__
                raise AttributeError(f"{type(mod).__name__} ('{where}') has no submodule '{item}'")
            mod = child
            walked.append(item)
        return mod

    def _get_member(self, target: str, store: str, kind: str) -> Any:
        mod_path, _, name = target.rpartition(".")
        mod = self.get_submodule(mod_path)
        if name not in getattr(mod, store):
            raise AttributeError(f"{type(mod).__name__} has no {kind} '{name}' (target '{target}')")
        return getattr(mod, store)[name]

    def get_parameter(self, target: str) -> Parameter:
        """The parameter at dotted path ``target`` (``"fc1.weight"``)."""
        return self._get_member(target, "_parameters", "parameter")

    def get_buffer(self, target: str) -> np.ndarray:
        """The buffer at dotted path ``target`` (``"bn1.running_mean"``)."""
        return self._get_member(target, "_buffers", "buffer")

    def apply(self, fn: Callable[[Module], Any]) -> Module:
        """Call ``fn`` on every child (recursively) and then on this module; returns ``self``."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    # ------------------------------------------------------------------ modes and dtypes
    def train(self, mode: bool = True) -> Module:
        """Set training mode on this module and its descendants; returns ``self``."""
        if not isinstance(mode, bool):
            raise ConfigError(f"training mode is expected to be a bool, got {type(mode).__name__}")
        self.training = mode
        for child in self.children():
            child.train(mode)
        return self

    def eval(self) -> Module:
        """Equivalent to ``train(False)``."""
        return self.train(False)

    def to(self, *args: Any, **kwargs: Any) -> Module:
        """Like torch's ``to(device=None, dtype=None, non_blocking=False)``, ``to(dtype)`` and
        ``to(array)``: convert floating-point parameters and buffers to ``dtype`` (float32 or
        float64; ``None``: no change).  The device may be ``"cpu"`` (arrays live in host memory:
        nothing moves); a CUDA device is a :class:`ConfigError` pointing at ``backend="cuda"``.

        Arrays are replaced by converted copies (NumPy cannot change an array's dtype in place);
        ``num_batches_tracked`` stays int64.
        """
        where = f"{describe(self)}: to"
        dtype = to_arguments(where, args, kwargs)
        if dtype is None:  # like torch's ``.to()`` without a dtype
            return self
        dt = _check_float_dtype(dtype, where)
        for mod in self.modules():
            for store in (mod._parameters, mod._buffers):
                for name, value in store.items():
                    if isinstance(value, _Uninitialized):
                        value._dtype = dt
                    elif value is not None and value.dtype.kind == "f" and value.dtype != dt:
                        new = value.astype(dt)
                        store[name] = Parameter(new) if isinstance(value, Parameter) else new
        return self

    def float(self) -> Module:
        return self.to(np.float32)

    def double(self) -> Module:
        return self.to(np.float64)

    # ------------------------------------------------------------------ state dict
    def state_dict(
        self, destination: dict | None = None, prefix: str = "", keep_vars: bool = False
    ) -> OrderedDict:
        """Parameters and persistent buffers by dotted name.

        Values share memory with the module (like PyTorch's detached tensors); unresolved lazy
        entries are their placeholders.  ``keep_vars=True`` returns the :class:`Parameter` objects.
        """
        out = OrderedDict() if destination is None else destination
        for mod_prefix, mod in self.named_modules(prefix=prefix.rstrip(".")):
            pre = f"{mod_prefix}." if mod_prefix else ""
            for name, p in mod._parameters.items():
                if p is not None:
                    out[pre + name] = p if keep_vars or is_uninitialized(p) else np.asarray(p)
            for name, b in mod._buffers.items():
                if b is not None and name not in mod._non_persistent_buffers:
                    out[pre + name] = b
        return out

    def load_state_dict(self, state_dict: Any, strict: bool = True) -> IncompatibleKeys:
        """Copy ``state_dict`` into this module's arrays in place (atomic: on any error nothing changes).

        See :mod:`lazyfuse.frontends.nn.state` for the rules (lazy resolution, shape checks).
        """
        from .state import load_state_dict

        return load_state_dict(self, state_dict, strict)

    # ------------------------------------------------------------------ repr
    def extra_repr(self) -> str:
        return ""

    def _get_name(self) -> str:
        return type(self).__name__

    def _child_repr_lines(self) -> list[str]:
        return [f"({name}): " + _indent(repr(m), 2) for name, m in self._modules.items()]

    def __repr__(self) -> str:
        extra = self.extra_repr()
        extra_lines = extra.split("\n") if extra else []
        child_lines = self._child_repr_lines()
        lines = extra_lines + child_lines
        body = ""
        if lines:
            if len(extra_lines) == 1 and not child_lines:
                body = extra_lines[0]
            else:
                body = "\n  " + "\n  ".join(lines) + "\n"
        return f"{self._get_name()}({body})"


def raised_binding_arguments(error: BaseException, callers: tuple[CodeType, ...]) -> bool:
    """Whether Python raised ``error`` refusing a call's arguments (wrong count or keyword) rather
    than the callee raising it: then the callee never started, and the innermost frame of the
    traceback is the caller's, one of ``callers``.  lazyfuse's own errors never count."""
    if isinstance(error, LazyFuseError):
        return False
    tb = error.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_code in callers


# The frames that call ``forward``: Module.__call__ itself, or the undo journal's wrapper.
_FORWARD_CALLERS = (Module.__call__.__code__, _undo.call_undoable.__code__)
