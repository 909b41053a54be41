"""Load a model from a command-line reference and parse ``--input`` specs.

A MODEL reference is one of

- ``path/to/file.py:factory`` — the file is imported as a fresh module (its folder goes on
  ``sys.path`` while it loads, so it can import its neighbours);
- ``package.module:factory`` — imported with :func:`importlib.import_module`;
- ``model.onnx`` — imported with :func:`lazyfuse.frontends.onnx.importer.import_onnx`.

``factory`` (a dotted attribute path is allowed: ``Outer.make``) may be a ``Module`` instance, a
``Module`` subclass (instantiated with no arguments) or a callable returning a ``Module``, where a
``Module`` is a ``lazyfuse.nn.Module`` or a ``torch.nn.Module`` (the PyTorch frontend reads it).
Every failure raises :class:`ModelLoadError` (or :class:`InputSpecError` for a bad spec) with a
message meant for the person who typed the reference.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from lazyfuse.errors import LazyFuseError
from lazyfuse.frontends.nn import Module
from lazyfuse.frontends.spec import TensorSpec
from lazyfuse.frontends.torch import is_torch_module

__all__ = ["ModelLoadError", "InputSpecError", "load_model", "parse_input", "split_reference"]

_MODULE_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")
_ATTR_PATH = _MODULE_PATH
_SYMBOL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class ModelLoadError(LazyFuseError, ValueError):
    """A MODEL reference could not be turned into a ``lazyfuse.nn.Module``."""


class InputSpecError(LazyFuseError, ValueError):
    """An ``--input`` spec such as ``N,784`` is malformed."""


# ------------------------------------------------------------------------------------- references
def split_reference(ref: str) -> tuple[str, str | None]:
    """``"a/b.py:make"`` -> ``("a/b.py", "make")``; ``"m.onnx"`` -> ``("m.onnx", None)``."""
    ref = ref.strip()
    if not ref:
        raise ModelLoadError("empty MODEL; expected path/to/file.py:factory, package.module:factory "
                             "or model.onnx")
    head, sep, tail = ref.rpartition(":")
    # A lone drive letter ("C:model.py") is not a factory separator.
    if not sep or (len(head) == 1 and head.isalpha() and not tail.isidentifier()):
        return ref, None
    return head, tail


def load_model(ref: str) -> Any:
    """The ``lazyfuse.nn.Module`` (or ``torch.nn.Module``) that the MODEL reference ``ref`` names
    (see the module docstring)."""
    where, factory = split_reference(ref)
    if where.lower().endswith(".onnx"):
        if not os.path.exists(where):
            raise ModelLoadError(f"no such ONNX file: {where}")
        from lazyfuse.frontends.onnx.importer import import_onnx

        return import_onnx(where)
    if where.endswith(".py") or os.sep in where or "/" in where:
        module = _import_file(where)
    elif _MODULE_PATH.match(where):
        module = _import_module(where)
    else:
        raise ModelLoadError(f"bad MODEL {ref!r}: expected path/to/file.py:factory, "
                             "package.module:factory or model.onnx")
    if factory is None:
        raise ModelLoadError(f"MODEL {ref!r} names no factory: write {where}:NAME"
                             f"{_candidates_hint(module)}")
    if not _ATTR_PATH.match(factory):
        raise ModelLoadError(f"bad factory name {factory!r} in MODEL {ref!r}: expected a Python name")
    obj = _get_attr(module, factory, where)
    return _to_module(obj, f"{where}:{factory}")


def _import_file(path: str) -> ModuleType:
    p = Path(path)
    if not p.exists():
        raise ModelLoadError(f"no such file: {path}")
    if not p.is_file() or p.suffix != ".py":
        raise ModelLoadError(f"{path} is not a Python file (.py)")
    name = "_lazyfuse_model_" + re.sub(r"\W", "_", p.stem)
    spec = importlib.util.spec_from_file_location(name, p)
    if spec is None or spec.loader is None:  # pragma: no cover - only for exotic paths
        raise ModelLoadError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    folder = str(p.resolve().parent)
    sys.modules[name] = module  # dataclasses and pickling look the module up by name
    sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    except LazyFuseError:
        sys.modules.pop(name, None)
        raise
    except BaseException as exc:
        sys.modules.pop(name, None)
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        raise ModelLoadError(f"importing {path} failed: {_describe(exc)}") from exc
    finally:
        try:
            sys.path.remove(folder)
        except ValueError:
            pass
    return module


def _import_module(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            raise ModelLoadError(f"no module named {exc.name!r} (while importing {name}); for a file "
                                 "write path/to/file.py:factory") from exc
        raise ModelLoadError(f"importing {name} failed: {_describe(exc)}") from exc
    except LazyFuseError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"importing {name} failed: {_describe(exc)}") from exc


def _get_attr(module: ModuleType, path: str, where: str) -> Any:
    obj: Any = module
    for part in path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ModelLoadError(f"{where} has no attribute {path!r}{_candidates_hint(module)}") from None
    return obj


def _to_module(obj: Any, what: str) -> Any:
    if isinstance(obj, Module) or is_torch_module(obj):
        return obj
    if inspect.isclass(obj) and not (issubclass(obj, Module) or _is_torch_class(obj)):
        raise ModelLoadError(f"{what} is the class {obj.__name__}, not a lazyfuse.nn.Module or "
                             "torch.nn.Module subclass")
    if not callable(obj):
        raise ModelLoadError(f"{what} is a {type(obj).__name__}, not a module, a Module class or a "
                             "factory function")
    try:
        inspect.signature(obj).bind()
    except TypeError:
        raise ModelLoadError(f"{what} cannot be called without arguments; point MODEL at a factory "
                             "function that takes none") from None
    except ValueError:  # no signature available (builtins): just try the call
        pass
    try:
        result = obj()
    except LazyFuseError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"{what}() failed: {_describe(exc)}") from exc
    if isinstance(result, Module) or is_torch_module(result):
        return result
    raise ModelLoadError(f"{what}() returned {type(result).__name__}, expected a lazyfuse.nn.Module or "
                         "a torch.nn.Module")


def _is_torch_class(cls: type) -> bool:
    """A ``torch.nn.Module`` subclass (False, without importing torch, when torch is not loaded)."""
    torch = sys.modules.get("torch")
    return torch is not None and issubclass(cls, torch.nn.Module)


def _candidates_hint(module: ModuleType) -> str:
    names = [n for n, v in vars(module).items()
             if not n.startswith("_") and inspect.isclass(v) and issubclass(v, Module)
             and v.__module__ == module.__name__]
    return f" (Module classes there: {', '.join(names)})" if names else ""


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SyntaxError):
        return f"SyntaxError: {exc.msg} ({Path(exc.filename or '?').name}, line {exc.lineno})"
    return f"{type(exc).__name__}: {exc}"


# ------------------------------------------------------------------------------------ input specs
def parse_input(text: str, dtype: str = "float32") -> TensorSpec:
    """``"N,784"`` -> ``TensorSpec(("N", 784), dtype)``; dims are positive ints or symbol names."""
    body = text.strip()
    if body.startswith(("(", "[")) and body.endswith((")", "]")):
        body = body[1:-1]
    parts = [p.strip() for p in body.split(",")]
    if parts and parts[-1] == "" and len(parts) > 1:  # "784," is a 1-d spec
        parts.pop()
    if not body or any(p == "" for p in parts):
        raise InputSpecError(f"bad input spec {text!r}: expected comma-separated dims like N,784")
    dims: list[int | str] = []
    for p in parts:
        if re.fullmatch(r"[+-]?\d+", p):
            n = int(p)
            if n <= 0:
                raise InputSpecError(f"bad input spec {text!r}: dim {p} must be a positive size")
            dims.append(n)
        elif _SYMBOL.match(p):
            dims.append(p)
        else:
            raise InputSpecError(f"bad input spec {text!r}: dim {p!r} is neither a positive int nor a "
                                 "symbol name like N")
    try:
        return TensorSpec(tuple(dims), dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise InputSpecError(f"bad input spec {text!r}: {exc}") from None
