"""``trace_torch(module, *specs)``: read a ``torch.nn.Module`` with ``torch.fx`` and build the same
:class:`Graph` the ``lazyfuse.nn`` tracer builds.

``torch.fx.Tracer`` keeps ``torch.nn`` layers as ``call_module`` leaves (it runs no hooks, so a lazy
module stays lazy) and traces everything else through, so a user's ``forward`` becomes fx nodes:
``call_module`` for the layers, ``call_function`` / ``call_method`` for ``F.relu``, ``x.view(...)``,
``+``, ``getattr(x, "shape")`` and ``[i]`` for sizes, ``get_attr`` for parameters read directly.
Each node is converted by one entry of the tables in :mod:`.converters` into an op of the op table,
typed by the op's shape rule (lazy sizes stay ``?``), with the module path and the user's source
line (fx's recorded stack trace).  Anything else is a :class:`TraceError` naming the op or module,
its path and the line; fx's own errors (control flow on a traced value, ``len(x)``) become one too.
"""

from __future__ import annotations

import linecache
import os
import re
import traceback
from typing import Any

from lazyfuse.errors import DTypeError, InferenceError, LazyFuseError, TraceError
from lazyfuse.frontends.spec import as_spec
from lazyfuse.frontends.tracing.locations import CONTROL_FLOW_HINT, SPEC_HINT, is_internal
from lazyfuse.ir.graph import Graph, Loc, Node
from lazyfuse.ir.ops import infer_node
from lazyfuse.ir.types import UNKNOWN, Dim, TensorType, dtype_from

from . import require_torch
from .model import is_uninitialized, view

_FILE_LINE = re.compile(r'File "([^"]+)", line (\d+)')
def _is_user_file(path: str) -> bool:
    """Not lazyfuse's machinery (the tracer's rule: tests/ and examples/ hold user models), not
    torch's, not generated code."""
    torch_root = os.path.dirname(require_torch().__file__) + os.sep
    return not (path.startswith("<") or is_internal(path) or os.path.abspath(path).startswith(torch_root))


_VIEW_OPS = ("reshape", "flatten")


class Shape:
    """``x.shape`` / ``x.size()`` of a traced tensor: indexing it gives the tensor's dims."""

    __slots__ = ("node",)

    def __init__(self, node: Node) -> None:
        self.node = node


def _user_frames(exc: BaseException) -> list[traceback.FrameSummary]:
    return [f for f in traceback.extract_tb(exc.__traceback__) if _is_user_file(f.filename)]


def _fx_error(module: Any, exc: Exception) -> TraceError:
    """fx's error while tracing, as a lazyfuse error at the user's line."""
    frames = _user_frames(exc)
    where = "while tracing"
    if frames:
        f = frames[-1]
        code = (f.line or "").strip()
        where = f"{os.path.basename(f.filename)}:{f.lineno}" + (f": `{code}`" if code else "")
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    hint = ""
    if "control flow" in text:
        hint = f"; {CONTROL_FLOW_HINT}"
    elif "len" in text:
        hint = "; use x.shape[0] or x.size(0) for the batch size"
    return TraceError(f"{where}: torch.fx cannot trace {type(module).__name__}: {text}{hint}")


def trace_torch(module: Any, *specs: Any) -> Graph:
    """Record ``module.forward`` (a ``torch.nn.Module``) on inputs described by ``specs``.

    Nothing runs on data and the module is not modified: lazy modules stay lazy until
    ``lazyfuse.infer_shapes`` (or ``lazyfuse.compile``) materializes them.
    """
    torch = require_torch()
    if not specs:
        raise TraceError(f"trace: {SPEC_HINT}")
    tspecs = [as_spec(s) for s in specs]
    from .converters import module_converter

    if module_converter(module) is not None:  # fx never keeps the root as a leaf: one call of it
        fx_graph = torch.fx.Graph()
        fx_graph.output(fx_graph.call_module("", (fx_graph.placeholder(_first_parameter(module)),)))
        return Converter(module, fx_graph, tspecs).run()
    tracer = torch.fx.Tracer()
    tracer.record_stack_traces = True
    try:
        fx_graph = tracer.trace(module)
    except LazyFuseError:
        raise
    except Exception as exc:  # fx's TraceError, a TypeError from user code on a Proxy, ...
        raise _fx_error(module, exc) from None
    return Converter(module, fx_graph, tspecs).run()


def _first_parameter(module: Any) -> str:
    """The name of ``module.forward``'s first parameter (``input`` for torch's layers)."""
    import inspect

    try:
        params = list(inspect.signature(module.forward).parameters)
    except (TypeError, ValueError):
        params = []
    return params[0] if params else "input"


class Converter:
    """Converts one fx graph; ``values`` maps each fx node to a lazyfuse :class:`Node`, a
    :class:`Shape`, a dim (int or symbol) or a plain Python value."""

    def __init__(self, root: Any, fx_graph: Any, specs: list) -> None:
        from . import converters

        self.tables = converters
        self.root = root
        self.fx = fx_graph
        self.specs = specs
        symbols: list[str] = []
        for s in specs:
            for sym in s.to_type().symbols:
                if sym not in symbols:
                    symbols.append(sym)
        self.graph = Graph(type(root).__name__, symbols=symbols)
        self.values: dict[Any, Any] = {}
        self.modules = dict(root.named_modules())
        self.arrays: dict[str, tuple[str, Any, Any, str]] = {}  # target -> (kind, tensor, owner, name)
        for path, mod in root.named_modules():
            for kind, store in (("param", mod._parameters), ("buffer", mod._buffers)):
                for name, tensor in store.items():
                    if tensor is not None:
                        self.arrays[f"{path}.{name}" if path else name] = (kind, tensor, mod, name)
        self.fx_node: Any = None

    # -- driver ----------------------------------------------------------------------------------
    def run(self) -> Graph:
        placeholders = [n for n in self.fx.nodes if n.op == "placeholder"]
        if len(placeholders) != len(self.specs):
            raise TraceError(f"model {type(self.root).__name__}'s forward takes {len(placeholders)} "
                             f"input(s), got {len(self.specs)} spec(s); {SPEC_HINT}")
        specs = iter(self.specs)
        self.order = {n: i for i, n in enumerate(self.fx.nodes)}
        for n in self.fx.nodes:
            self.fx_node = n
            if n.op == "placeholder":
                self.values[n] = self.graph.add_input(str(n.target), next(specs).to_type())
            elif n.op == "output":
                self.graph.set_output(self._outputs(n.args[0]))
            else:
                self.values[n] = getattr(self, f"_{n.op}")(n)
        self.graph.model = view(self.root)
        return self.graph

    def _outputs(self, result: Any) -> list[Node]:
        items = result if isinstance(result, (tuple, list)) else (result,)
        out = [self.values.get(i) if hasattr(i, "op") else i for i in items]
        if not out or not all(isinstance(v, Node) for v in out):
            raise self.error(f"{type(self.root).__name__}.forward must return tensors (or a tuple of them)")
        return out

    # -- node kinds ------------------------------------------------------------------------------
    def _get_attr(self, n: Any) -> Node:
        return self.array(str(n.target), f"attribute '{n.target}'")

    def _call_module(self, n: Any) -> Any:
        path = str(n.target)
        module = self.modules[path]
        convert = self.tables.module_converter(module)
        cls = type(module).__name__
        if convert is None:
            raise self.error(f"module '{path}' ({cls}) is not supported by lazyfuse's PyTorch frontend; "
                             f"supported layers: {self.tables.supported_modules()}")
        if n.kwargs or len(n.args) != 1:
            raise self.error(f"module '{path}' ({cls}) takes exactly one positional input")
        x = self.tensor(n.args[0], f"module '{path}' ({cls}) input")
        return convert(self, module, path, x)

    def _call_function(self, n: Any) -> Any:
        convert = self.tables.function_converter(n.target)
        if convert is None:
            name = getattr(n.target, "__name__", None) or repr(n.target)
            raise self.error(f"function {name}() is not supported by lazyfuse's PyTorch frontend")
        return convert(self, *self.args(n.args), **self.kwargs(n.kwargs))

    def _call_method(self, n: Any) -> Any:
        convert = self.tables.method_converter(str(n.target))
        if convert is None:
            raise self.error(f"method Tensor.{n.target}() is not supported by lazyfuse's PyTorch frontend")
        return convert(self, *self.args(n.args), **self.kwargs(n.kwargs))

    # -- values ----------------------------------------------------------------------------------
    def args(self, args: tuple) -> tuple:
        return tuple(self.value(a) for a in args)

    def kwargs(self, kwargs: dict) -> dict:
        return {k: self.value(v) for k, v in kwargs.items()}

    def value(self, arg: Any) -> Any:
        """The converted value of an fx argument (nested tuples and lists too)."""
        if isinstance(arg, (tuple, list)):
            return type(arg)(self.value(a) for a in arg)
        if hasattr(arg, "op") and hasattr(arg, "graph") and arg in self.values:
            return self.values[arg]
        return arg

    def tensor(self, arg: Any, what: str) -> Node:
        value = self.value(arg)
        if not isinstance(value, Node):
            raise self.error(f"{what}: expected a tensor, got {type(value).__name__}")
        return value

    def dim(self, node: Node, index: Any) -> Dim:
        rank = node.type.rank
        if isinstance(index, bool) or not isinstance(index, int) or not -rank <= index < rank:
            raise self.error(f"size index {index!r} out of range for {node.type}")
        return node.type.shape[index]

    def array(self, target: str, what: str) -> Node:
        """The param/buffer node of the model tensor at ``target``."""
        entry = self.arrays.get(target)
        if entry is None:
            raise self.error(f"{what} is not a parameter or buffer of the model (constant tensors are "
                             "not supported)")
        kind, tensor, owner, name = entry
        return self.graph.get_attr(kind, target, self.tensor_type(tensor, owner, name, target))

    def module_array(self, module: Any, path: str, name: str) -> Node | None:
        """``module``'s parameter or buffer ``name`` as a node (None when it is unset)."""
        if getattr(module, name, None) is None:
            return None
        return self.array(f"{path}.{name}" if path else name, f"{type(module).__name__}.{name}")

    def tensor_type(self, tensor: Any, owner: Any, name: str, target: str) -> TensorType:
        try:
            dtype = dtype_from(str(tensor.dtype).removeprefix("torch."))
        except DTypeError:
            raise self.error(f"'{target}' is {tensor.dtype}; lazyfuse runs float32 and float64 models "
                             "(cast the model with .float() or .double())") from None
        if is_uninitialized(tensor):
            shape = self.tables.placeholder_shape(owner, name)
            if shape is None:
                raise self.error(f"'{target}' of {type(owner).__name__} is uninitialized and its layout is "
                                 "unknown to the PyTorch frontend")
            return TensorType(dtype, tuple(UNKNOWN if d is None else d for d in shape))
        return TensorType(dtype, tuple(int(d) for d in tensor.shape))

    # -- recording -------------------------------------------------------------------------------
    def emit(self, op: str, operands: list[Node | None], attrs: dict, module: str | None = None,
             module_type: str | None = None, nominal: Any = None) -> Node:
        """Record ``op`` typed by its shape rule (else ``nominal``: ``infer_shapes`` reports it)."""
        ins = tuple(o for o in operands if o is not None)
        try:
            ttype = infer_node(op, dict(attrs), [i.type for i in ins]).out
        except (InferenceError, DTypeError) as exc:
            if nominal is None:
                raise self.error(str(exc)) from None
            ttype = nominal(attrs, ins[0].type)
        if module_type is None:
            module = self.enclosing_module()
        name = op
        if module_type is not None and module:
            name = module.replace(".", "_")
            if name[0].isdigit():
                name = f"{op}_{name}"
        return self.graph.create_node(op, ins, dict(attrs), ttype, name=name, loc=self.loc(),
                                      module=module or None, module_type=module_type if module else None)

    def alias(self, arg: Any, result: Node) -> Node:
        """An in-place op (``relu_``, ``inplace=True``, ``+=``): later uses of ``arg`` see ``result``.

        An in-place op on a view (``x.view(...).relu_()``) also writes the tensor it views; when that
        tensor is read again later, this is refused rather than computed wrong.  (A graph input is
        never written: the caller's array stays as it was, where torch would change it.)"""
        target = self.value(arg)
        base = target
        while isinstance(base, Node) and base.op in _VIEW_OPS:
            base = base.inputs[0]
            if self._used_later(base):
                raise self.error(f"an in-place op on a view ({target.op}) of a tensor that is used again "
                                 "later is not supported; apply the op out of place (y = y.relu())")
        for fx_node, value in list(self.values.items()):
            if value is target:
                self.values[fx_node] = result
        return result

    def _used_later(self, value: Node) -> bool:
        """Whether an fx node after the current one reads ``value``."""
        order = self.order
        here = order[self.fx_node]
        return any(order[user] > here for fx_node, v in self.values.items() if v is value
                   for user in fx_node.users)

    def enclosing_module(self) -> str | None:
        """The innermost module whose ``forward`` called the current function (not the root)."""
        stack = (self.fx_node.meta or {}).get("nn_module_stack") or {}
        paths = [entry[0] for entry in stack.values() if entry and entry[0]]
        return paths[-1] if paths else None

    def user_line(self) -> tuple[str, int] | None:
        """The innermost frame of fx's recorded stack trace that is the user's code (not torch's)."""
        found = [(path, int(line)) for path, line in
                 _FILE_LINE.findall(getattr(self.fx_node, "stack_trace", None) or "") if _is_user_file(path)]
        return found[-1] if found else None

    def loc(self) -> Loc | None:
        found = self.user_line()
        return None if found is None else Loc(os.path.basename(found[0]), found[1])

    def error(self, what: str) -> TraceError:
        """A :class:`TraceError` at the user's line of the node being converted."""
        found = self.user_line()
        if found is None:
            return TraceError(f"while tracing: {what}")
        path, line = found
        code = linecache.getline(path, int(line)).strip()
        where = f"{os.path.basename(path)}:{line}" + (f": `{code}`" if code else "")
        return TraceError(f"{where}: {what}")
