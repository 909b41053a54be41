"""``import_onnx(path)``: an ONNX model as a ``lazyfuse.nn`` module that traces, infers, fuses and
compiles like any model.

:class:`OnnxModule` holds the initializers as its parameters and buffers, under their names (a
dotted name ``fc1.weight`` is parameter ``weight`` of submodule ``fc1``; characters that cannot be
in a Python name become ``_``), and its ``forward`` runs the ONNX nodes in order with the
``lazyfuse.nn`` layers and functions, so tracing records the ops of the op table.  Where an op needs
a layer -- ``BatchNormalization`` is ``BatchNorm1d`` / ``BatchNorm2d``, and a ``Gemm`` whose
``B`` / ``C`` are named ``<p>.weight`` / ``<p>.bias`` (what PyTorch's exporter writes) is ``Linear`` --
the layer sits at that path ``<p>``, so the state_dict names stay the initializers' names and the
``Gemm -> BatchNormalization -> Relu`` chain fuses like a lazyfuse model's.  The module starts in
eval mode: ONNX graphs have inference semantics.  ``input_specs`` are the graph inputs' shapes
(``dim_param`` names become symbols).
"""

from __future__ import annotations

import ast
import keyword
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from lazyfuse.errors import CompileError
from lazyfuse.frontends import nn
from lazyfuse.frontends.nn import functional as F
from lazyfuse.frontends.spec import TensorSpec

from . import require_onnx

SUPPORTED_OPS = ("Gemm", "MatMul", "Add", "BatchNormalization", "Relu", "Flatten", "Reshape", "Identity",
                 "Constant", "Transpose")
MIN_OPSET = 9  # BatchNormalization without ``spatial`` semantics questions, Flatten on any axis


def load_onnx(path: str | Path) -> Any:
    """The ``onnx.ModelProto`` in ``path``; a :class:`CompileError` for a missing, truncated or
    non-ONNX file (never a protobuf traceback)."""
    onnx = require_onnx()
    path = Path(path)
    if not path.is_file():
        raise CompileError(f"import_onnx: no such file: {path}")
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # DecodeError and friends: the bytes are not a ModelProto
        detail = str(exc).splitlines()[0] if str(exc) else ""
        raise CompileError(f"import_onnx: {path} is not a readable ONNX model "
                           f"({type(exc).__name__}: {detail})") from None
    if model.ir_version <= 0 or not model.graph.output:
        raise CompileError(f"import_onnx: {path} is not an ONNX model (no IR version or no graph outputs; "
                           "a truncated or foreign file)")
    return model


def _opset(model: Any, path: Any) -> int:
    onnx = require_onnx()
    version = None
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            version = imp.version
        else:
            raise CompileError(f"import_onnx: {path}: opset domain {imp.domain!r} is not supported (only "
                               "the default ONNX domain)")
    newest = onnx.defs.onnx_opset_version()
    if version is None or not MIN_OPSET <= version <= newest:
        raise CompileError(f"import_onnx: {path}: opset {version} is not supported (from {MIN_OPSET} to "
                           f"{newest})")
    return version


def _ident(part: str) -> str:
    """A module or array name for one part of an ONNX name (digits stay: ``layers.0``)."""
    part = re.sub(r"\W", "_", part) or "_"
    return part if part.isdigit() or not part[0].isdigit() else f"_{part}"


def _attrs(node: Any) -> dict[str, Any]:
    onnx = require_onnx()
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


class _Step:
    """One ONNX node: ``run(module, env)`` computes its outputs from ``env`` (value name -> value)."""

    def __init__(self, node: Any, fn: Callable[[Any, dict], Any]) -> None:
        self.name, self.op, self.outputs = node.name, node.op_type, list(node.output)
        self.fn = fn

    def run(self, module: Any, env: dict) -> None:
        env[self.outputs[0]] = self.fn(module, env)


class OnnxModule(nn.Module):
    """See the module docstring; built by :func:`import_onnx`."""

    def __init__(self, model: Any, source: str = "<onnx>") -> None:
        super().__init__()
        onnx = require_onnx()
        self._where = source
        _opset(model, source)
        graph = model.graph
        self._inits = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
        self._consts: dict[str, np.ndarray] = {}
        self._arrays: dict[str, tuple[str, str]] = {}  # ONNX name -> (module path, array name)
        self._taken: set[str] = set()
        try:
            inferred = onnx.shape_inference.infer_shapes(model)
            ranks = {v.name: len(v.type.tensor_type.shape.dim)
                     for v in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output)
                     if v.type.tensor_type.HasField("shape")}
        except Exception:  # no ranks known: BatchNormalization then assumes (N, C) / (N, C, L)
            ranks = {}
        self._ranks = ranks
        self.input_names = [i.name for i in graph.input if i.name not in self._inits]
        self.output_names = [o.name for o in graph.output]
        self.input_specs = tuple(self._spec(i) for i in graph.input if i.name not in self._inits)
        self._steps = [self._step(n) for n in graph.node]
        self.eval()

    # -- building ----------------------------------------------------------------------------------
    def _error(self, node: Any, what: str) -> CompileError:
        name = node.name or "(unnamed)"
        return CompileError(f"import_onnx: {self._where}: node {name!r} ({node.op_type}): {what}")

    def _spec(self, value: Any) -> TensorSpec:
        onnx = require_onnx()
        if not value.type.HasField("tensor_type"):
            kind = value.type.WhichOneof("value") or "untyped"
            raise CompileError(f"import_onnx: {self._where}: input {value.name!r} is a {kind} value; "
                               "lazyfuse models take tensors")
        t = value.type.tensor_type
        dtype = onnx.helper.tensor_dtype_to_np_dtype(t.elem_type)
        if dtype not in (np.float32, np.float64):
            raise CompileError(f"import_onnx: {self._where}: input {value.name!r} is {dtype}; lazyfuse "
                               "models take float32 or float64 inputs")
        dims = []
        for i, d in enumerate(t.shape.dim):
            if d.HasField("dim_value") and d.dim_value > 0:
                dims.append(int(d.dim_value))
            else:
                name = re.sub(r"\W", "_", d.dim_param) if d.dim_param else f"{_ident(value.name)}_{i}"
                dims.append(name if not name[0].isdigit() else f"d{name}")
        return TensorSpec(tuple(dims), dtype=np.dtype(dtype).name)

    def _place(self, name: str, array: np.ndarray, kind: str = "parameter") -> tuple[str, str]:
        """Register ``array`` under the module path its ONNX ``name`` gives; returns (path, name)."""
        if name in self._arrays:
            return self._arrays[name]
        parts = [_ident(p) for p in name.split(".")]
        path, leaf = ".".join(parts[:-1]), parts[-1]
        while f"{path}.{leaf}" in self._taken:
            leaf += "_"
        owner = self._owner(path)
        value = np.array(array, copy=True)
        if kind == "parameter" and value.dtype.kind == "f":
            owner.register_parameter(leaf, nn.Parameter(value))
        else:
            owner.register_buffer(leaf, value)
        self._taken.add(f"{path}.{leaf}")
        self._arrays[name] = (path, leaf)
        return path, leaf

    def _owner(self, path: str) -> nn.Module:
        owner: nn.Module = self
        for part in path.split(".") if path else ():
            if part not in owner._modules:
                owner.register_module(part, nn.Module())
            owner = owner._modules[part]
        return owner

    def _init(self, node: Any, name: str, what: str) -> np.ndarray:
        if name in self._inits:
            return self._inits[name]
        if name in self._consts:
            return self._consts[name]
        raise self._error(node, f"{what} {name!r} must be an initializer or a Constant (computed values are "
                                "not supported there)")

    def _getter(self, name: str) -> Callable[[Any, dict], Any]:
        """A value at run time: a graph value, or one of this module's arrays."""
        if name in self._inits:
            path, leaf = self._place(name, self._inits[name])
            return lambda m, env: getattr(m.get_submodule(path), leaf)
        return lambda m, env: env[name]

    def _step(self, node: Any) -> _Step:
        op = node.op_type
        if node.domain not in ("", "ai.onnx"):
            raise self._error(node, f"domain {node.domain!r} is not supported")
        build = getattr(self, f"_op_{op}", None)
        if build is None:
            raise self._error(node, f"op {op} is not supported by lazyfuse's ONNX importer "
                                    f"(supported: {', '.join(SUPPORTED_OPS)})")
        if len(node.output) != 1 and op != "BatchNormalization":
            raise self._error(node, f"{len(node.output)} outputs; only one is supported")
        return _Step(node, build(node, _attrs(node)))

    # -- ops ---------------------------------------------------------------------------------------
    def _op_Constant(self, node: Any, a: dict) -> Callable:
        onnx = require_onnx()
        if "value" not in a:
            raise self._error(node, f"only the 'value' attribute is supported, got {sorted(a)}")
        value = onnx.numpy_helper.to_array(a["value"])
        self._consts[node.output[0]] = value
        return lambda m, env: value

    def _op_Identity(self, node: Any, a: dict) -> Callable:
        get = self._getter(node.input[0])
        return lambda m, env: get(m, env)

    def _op_Transpose(self, node: Any, a: dict) -> Callable:
        perm = list(a.get("perm", [1, 0]))
        if perm != [1, 0]:
            raise self._error(node, f"perm={perm} is not supported (2-D transposes only: the IR's transpose)")
        get = self._getter(node.input[0])
        return lambda m, env: get(m, env).t()

    def _op_Relu(self, node: Any, a: dict) -> Callable:
        get = self._getter(node.input[0])
        return lambda m, env: F.relu(get(m, env))

    def _op_Add(self, node: Any, a: dict) -> Callable:
        left, right = self._getter(node.input[0]), self._getter(node.input[1])
        return lambda m, env: left(m, env) + right(m, env)

    def _op_Flatten(self, node: Any, a: dict) -> Callable:
        axis = int(a.get("axis", 1))
        get = self._getter(node.input[0])

        def flatten(m: Any, env: dict) -> Any:
            x = get(m, env)
            k = axis % len(x.shape) if axis else 0
            if k == 1:
                return F.flatten(x, 1)
            lead = 1
            for d in x.shape[:k]:
                lead = lead * d
            return x.reshape(lead, -1)

        return flatten

    def _op_Reshape(self, node: Any, a: dict) -> Callable:
        if a.get("allowzero", 0):
            raise self._error(node, "allowzero=1 is not supported")
        shape = [int(d) for d in self._init(node, node.input[1], "the shape").reshape(-1)]
        get = self._getter(node.input[0])

        def reshape(m: Any, env: dict) -> Any:
            x = get(m, env)
            return x.reshape(*(x.shape[i] if d == 0 else d for i, d in enumerate(shape)))

        return reshape

    def _linear_module(self, node: Any, weight: np.ndarray, bias: np.ndarray | None,
                       names: tuple[str, str | None]) -> Callable:
        """``Linear`` at ``<p>`` when the names are ``<p>.weight`` / ``<p>.bias``, else F.linear on arrays
        registered under their own names."""
        w_name, b_name = names
        p = w_name[: -len(".weight")] if w_name.endswith(".weight") else None
        if p and (b_name is None or b_name == f"{p}.bias") and p not in self._arrays:
            parts = [_ident(x) for x in p.split(".")]
            parent, leaf = self._owner(".".join(parts[:-1])), parts[-1]
            if leaf not in parent._modules and f"{'.'.join(parts)}" not in self._taken:
                layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, dtype=weight.dtype)
                layer.weight = nn.Parameter(np.array(weight, copy=True))
                if bias is not None:
                    layer.bias = nn.Parameter(np.array(bias, copy=True))
                parent.register_module(leaf, layer)
                path = ".".join(parts)
                self._arrays[w_name] = (path, "weight")
                if b_name is not None:
                    self._arrays[b_name] = (path, "bias")
                return lambda m, x: m.get_submodule(path)(x)
        wp = self._place(w_name, weight)
        bp = self._place(b_name, bias) if bias is not None else None

        def linear(m: Any, x: Any) -> Any:
            w = getattr(m.get_submodule(wp[0]), wp[1])
            b = getattr(m.get_submodule(bp[0]), bp[1]) if bp else None
            return F.linear(x, w, b)

        return linear

    def _op_Gemm(self, node: Any, a: dict) -> Callable:
        trans_a = bool(a.get("transA", 0))
        b_name = node.input[1]
        weight = self._init(node, b_name, "B")
        if weight.ndim != 2:
            raise self._error(node, f"B must be 2-D, got shape {weight.shape}")
        if not a.get("transB", 0):
            weight = weight.T  # stored (N, K), as linear's weight: the parameter is B transposed
        alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
        bias = None
        c_name = node.input[2] if len(node.input) > 2 and node.input[2] else None
        if c_name is not None:
            bias = np.asarray(self._init(node, c_name, "C"))
            flat = bias.ndim < 2 or (bias.ndim == 2 and bias.shape[0] == 1)
            if bias.size not in (1, weight.shape[0]) or not flat:
                raise self._error(node, f"C of shape {bias.shape} is not a bias over the {weight.shape[0]} "
                                        "outputs")
            bias = np.broadcast_to(bias.reshape(-1), (weight.shape[0],)) * beta
        if alpha != 1.0:
            weight = weight * alpha
        run = self._linear_module(node, np.ascontiguousarray(weight), None if bias is None else
                                  np.ascontiguousarray(bias).astype(weight.dtype), (b_name, c_name))
        get = self._getter(node.input[0])
        if trans_a:  # A is (K, M): its transpose (the IR's transpose op) is linear's input
            return lambda m, env: run(m, get(m, env).t())
        return lambda m, env: run(m, get(m, env))

    def _op_MatMul(self, node: Any, a: dict) -> Callable:
        weight = self._init(node, node.input[1], "B")
        if weight.ndim != 2:
            raise self._error(node, f"B must be 2-D, got shape {weight.shape}")
        run = self._linear_module(node, np.ascontiguousarray(weight.T), None, (node.input[1], None))
        get = self._getter(node.input[0])
        return lambda m, env: run(m, get(m, env))

    def _op_BatchNormalization(self, node: Any, a: dict) -> Callable:
        if a.get("training_mode", 0) or len(node.output) > 1:
            raise self._error(node, "training_mode=1 (batch statistics and running-stat outputs) is not "
                                    "supported; export the model in eval mode")
        names = list(node.input[1:5])
        scale, shift, mean, var = (self._init(node, n, what) for n, what in
                                   zip(names, ("scale", "B", "input_mean", "input_var")))
        c = mean.shape[0]
        rank = self._ranks.get(node.input[0], 2)
        cls = nn.BatchNorm2d if rank == 4 else nn.BatchNorm1d
        # ONNX's momentum is 1 - PyTorch's; attributes are float32: 0.9 is 0.899999976, so round
        momentum = float(f"{1.0 - float(a.get('momentum', 0.9)):.6g}")
        eps = float(f"{float(a.get('epsilon', 1e-5)):.6g}")
        prefix = names[2][: -len(".running_mean")] if names[2].endswith(".running_mean") else None
        std = prefix and names == [f"{prefix}.weight", f"{prefix}.bias", f"{prefix}.running_mean",
                                   f"{prefix}.running_var"]
        path = (".".join(_ident(x) for x in prefix.split(".")) if std
                else f"bn_{_ident(node.name or node.output[0])}")
        parts = path.split(".")
        parent, leaf = self._owner(".".join(parts[:-1])), parts[-1]
        if leaf in parent._modules:
            raise self._error(node, f"module path {path!r} is taken")
        layer = cls(c, eps=eps, momentum=momentum, dtype=mean.dtype)
        layer.weight = nn.Parameter(np.array(scale, copy=True))
        layer.bias = nn.Parameter(np.array(shift, copy=True))
        layer.running_mean = np.array(mean, copy=True)
        layer.running_var = np.array(var, copy=True)
        parent.register_module(leaf, layer)
        for n, attr in zip(names, ("weight", "bias", "running_mean", "running_var")):
            self._arrays.setdefault(n, (path, attr))
        get = self._getter(node.input[0])
        return lambda m, env: m.get_submodule(path)(get(m, env))

    # -- running -----------------------------------------------------------------------------------
    def forward(self, *inputs: Any) -> Any:
        return self._run(*inputs)

    def _run(self, *inputs: Any) -> Any:
        env = self._env(*inputs)
        for step in self._steps:
            step.run(self, env)
        return self._result(env)

    def _env(self, *inputs: Any) -> dict:
        if len(inputs) != len(self.input_names):
            raise CompileError(f"{type(self).__name__}: the ONNX graph takes {len(self.input_names)} "
                               f"input(s) ({', '.join(self.input_names)}), got {len(inputs)}")
        return dict(zip(self.input_names, inputs))

    def _result(self, env: dict) -> Any:
        outs = [env[n] for n in self.output_names]
        return outs[0] if len(outs) == 1 else tuple(outs)


def _forward_code(names: list[str], count: int, filename: str) -> Any:
    """``forward(self, <inputs>)`` running node ``k`` of the ONNX graph on line ``k`` (1-based) of
    ``filename``: the traced IR's locations then read ``model.onnx:<node number>``."""
    args = ", ".join(names)
    steps = "".join(f"    self._steps[{k}].run(self, env)\n" for k in range(count))
    tree = ast.parse(f"def forward(self, {args}):\n    env = self._env({args})\n{steps}"
                     f"    return self._result(env)\n")
    body = tree.body[0].body
    for k, stmt in enumerate(body[1:-1]):
        for sub in ast.walk(stmt):
            if hasattr(sub, "lineno"):
                sub.lineno = sub.end_lineno = k + 1
    return compile(tree, filename, "exec")


def import_onnx(path: Any) -> OnnxModule:
    """The ONNX model in ``path`` (or an ``onnx.ModelProto``) as a :class:`OnnxModule` (see the module
    docstring).

    The module's class is made for the file: named after the ONNX graph, with a ``forward`` whose
    parameters are the graph inputs' names (so traced graphs and compiled modules use them).
    Its steps are closures, so it deep-copies but does not pickle: import the file again instead."""
    onnx = require_onnx()
    if isinstance(path, onnx.ModelProto):
        model, path = path, f"{path.graph.name or 'model'}.onnx"
    else:
        model = load_onnx(path)
    inits = {t.name for t in model.graph.initializer}
    names = [_ident(i.name) for i in model.graph.input if i.name not in inits]
    if len(set(names)) != len(names) or any(n.isdigit() or keyword.iskeyword(n) for n in names):
        names = [f"input{i}" for i in range(len(names))]
    namespace: dict[str, Any] = {}
    exec(_forward_code(names, len(model.graph.node), Path(path).name), namespace)  # noqa: S102
    cls_name = _ident(model.graph.name) if model.graph.name else "OnnxModule"
    cls = type(cls_name, (OnnxModule,), {"forward": namespace["forward"], "__module__": __name__,
                                         "__doc__": OnnxModule.__doc__})
    return cls(model, str(path))
