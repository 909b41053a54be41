"""The op table: one :class:`OpDef` per op -- attribute schema, operand names, the operands it
updates in place (effects), shape rule, NumPy reference implementation and, for fused ops, the ops
it is composed of.  Passes, the verifier and backends read these fields instead of naming ops.

``impl(attrs, *arrays, training)``; ``reshape``'s impl also takes ``bindings=`` (symbol -> size) to
evaluate symbolic target shapes such as ``(N, -1)``.

A shape rule ``rule(attrs, in_types) -> ShapeResult`` works on symbolic dims and ``?``: it returns
the output type, the attrs with lazy entries resolved (``in_features=?`` -> ``784``) and refined
operand types (a lazy weight ``f32[10,?]`` -> ``f32[10,256]``).  It raises :class:`InferenceError`
(:class:`DTypeError` for mismatched dtypes) with expected vs got; the pass adds the module path and
source line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np

from lazyfuse.errors import DTypeError, InferenceError, IRError, ShapeError

from . import numpy_math as nm
from .types import UNKNOWN, Dim, Sym, TensorType, dim_prod, exact_div, i64, is_dim

REQUIRED = object()

# The attr of a fused node naming the module whose ``training`` flag it follows (see mode_module).
MODE_ATTR = "bn_module"


@dataclass(frozen=True)
class AttrSpec:
    """One attribute: its kind (see :func:`check_attrs`) and default (``REQUIRED`` if none).

    Kind ``"dim"`` is a size that may be lazy (``?``) until shape inference, which must make it a
    concrete int (``in_features``, ``num_features``).
    """

    kind: str
    default: Any = REQUIRED

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


@dataclass
class ShapeResult:
    """What a shape rule returns: output type, resolved attrs, refined operand types by index."""

    out: TensorType
    attrs: dict[str, Any]
    inputs: dict[int, TensorType] = field(default_factory=dict)


@dataclass(frozen=True)
class Variadic:
    """Any number (at least ``min``) of operands, each called ``name`` (the ``output`` op)."""

    name: str
    min: int = 0


ShapeRule = Callable[[dict[str, Any], list[TensorType]], ShapeResult]
CallCheck = Callable[[dict[str, Any], tuple[int, ...], bool], None]
Impl = Callable[..., np.ndarray]
# Operand names: a tuple, a function of the attrs (optional operands), a Variadic, or an int n as
# shorthand for n operands named arg0..arg{n-1}.
Operands = Union[tuple[str, ...], Callable[[dict[str, Any]], tuple[str, ...]], Variadic, int]

_MAX_OPERANDS = 1 << 30


@dataclass
class OpDef:
    """An op.

    ``attrs`` schema; ``operands`` (see :data:`Operands`); ``shape_rule``; ``impl(attrs, *arrays,
    training) -> ndarray``; ``kind`` ("source", "output", "compute", "fused"); ``effects``: the
    operand names it updates in place when it runs in training mode; ``uses_training``: its impl
    follows a module's ``training`` flag (see :func:`mode_module`); ``parts``: the ops a fused op is
    composed of (empty otherwise); ``call_check(attrs, out_shape, training)``: a check of the call's
    concrete output shape that every backend needs before anything runs (raises :class:`ShapeError`;
    BatchNorm's "more than 1 value per channel when training"); the compiled module runs it.
    """

    name: str
    attrs: dict[str, AttrSpec]
    operands: Operands
    shape_rule: ShapeRule | None
    impl: Impl | None
    kind: str = "compute"
    effects: tuple[str, ...] = ()
    uses_training: bool = False
    parts: tuple[str, ...] = ()
    call_check: CallCheck | None = None

    def operand_names(self, attrs: dict[str, Any], n: int | None = None) -> tuple[str, ...]:
        """The operand names for these attrs (``n`` operands of a variadic op)."""
        ops = self.operands
        if isinstance(ops, Variadic):
            return (ops.name,) * (ops.min if n is None else n)
        if isinstance(ops, int):
            return tuple(f"arg{i}" for i in range(ops))
        if callable(ops):
            names = ops(self.with_defaults(attrs))
            if not isinstance(names, tuple) or not all(isinstance(s, str) for s in names):
                raise IRError(f"op {self.name!r}: its operands function must return a tuple of names, "
                              f"got {names!r} (an arity is written as the number of operands)")
            return names
        return ops

    def __post_init__(self) -> None:
        ops = self.operands
        ok = (isinstance(ops, (Variadic, int)) and not isinstance(ops, bool) or callable(ops)
              or isinstance(ops, tuple) and all(isinstance(s, str) for s in ops))
        if not ok:
            raise IRError(f"op {self.name!r}: operands must be a tuple of names, a function of the attrs "
                          f"returning one, a Variadic or an int, got {ops!r}")

    def arity_range(self, attrs: dict[str, Any]) -> tuple[int, int]:
        """``(min, max)`` number of operands for these attrs."""
        if isinstance(self.operands, Variadic):
            return (self.operands.min, _MAX_OPERANDS)
        k = len(self.operand_names(attrs))
        return (k, k)

    def with_defaults(self, attrs: dict[str, Any]) -> dict[str, Any]:
        out = {k: s.default for k, s in self.attrs.items() if not s.required}
        out.update(attrs)
        return out


OPS: dict[str, OpDef] = {}


def register_op(opdef: OpDef, replace: bool = False) -> OpDef:
    """Add ``opdef`` to :data:`OPS` (``replace=True`` to overwrite an existing op).

    Raises :class:`IRError` for a name already taken or a malformed definition.
    """
    if opdef.name in OPS and not replace:
        raise IRError(f"op {opdef.name!r} is already registered")
    bad = [f"attr {k!r} has unknown kind {s.kind!r}" for k, s in opdef.attrs.items()
           if s.kind not in _KIND_CHECKS]
    if isinstance(opdef.operands, tuple):  # (OpDef itself checked that they are names)
        bad += [f"effect {e!r} is not an operand" for e in opdef.effects if e not in opdef.operands]
    if bad:
        raise IRError(f"op {opdef.name!r}: " + "; ".join(bad))
    OPS[opdef.name] = opdef
    return opdef


# ------------------------------------------------------------------------------------ attr checks
def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


_KIND_CHECKS: dict[str, Callable[[Any], bool]] = {
    "int": _is_int,
    "dim": is_dim,
    "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "float?": lambda v: v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)),
    "bool": lambda v: isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
    "str?": lambda v: v is None or isinstance(v, str),
    "shape": lambda v: isinstance(v, tuple) and all(is_dim(d) and d is not UNKNOWN for d in v),
    "strs": lambda v: isinstance(v, tuple) and all(isinstance(s, str) for s in v),
    "ints": lambda v: isinstance(v, tuple) and all(_is_int(d) and d >= 0 for d in v),
    "any": lambda v: True,
}


def check_attrs(opdef: OpDef, attrs: dict[str, Any]) -> list[str]:
    """Problems with ``attrs`` against the op's schema (empty list when fine)."""
    problems = []
    for k, spec in opdef.attrs.items():
        if k not in attrs:
            if spec.required:
                problems.append(f"missing attr {k!r}")
            continue
        if not _KIND_CHECKS[spec.kind](attrs[k]):
            problems.append(f"attr {k}={attrs[k]!r} is not a valid {spec.kind}")
    for k in attrs:
        if k not in opdef.attrs:
            problems.append(f"unexpected attr {k!r}")
    return problems


# ------------------------------------------------------------------------------------ dim helpers
def _syms_of(d: Dim) -> str:
    return ", ".join(dict.fromkeys(d.names)) if isinstance(d, Sym) else ""


def resolve_lazy(what: str, candidates: list[tuple[str, Dim]], lazy_hint: str) -> Dim:
    """Reconcile the sources of one size (attr, operand dims, input dim).

    ``?`` entries give way to known ones; known entries must agree exactly.  A size that is only
    known as a symbolic dim cannot size a parameter: the error names the symbol.
    """
    known = [(src, d) for src, d in candidates if d is not UNKNOWN]
    if not known:
        return UNKNOWN
    src0, d0 = known[0]
    for src, d in known[1:]:
        if d != d0:
            raise InferenceError(f"{what} mismatch: expected {d0} ({src0}), got {d} ({src})")
    if isinstance(d0, Sym):
        raise InferenceError(
            f"{what} would have to equal the symbolic dim {d0} ({src0}), but {lazy_hint} needs a "
            f"concrete size; give symbol {_syms_of(d0)} a concrete size in the input spec"
        )
    return d0


def _same_dtype(op: str, types: list[TensorType]) -> None:
    dts = {t.dtype for t in types}
    if len(dts) > 1:
        raise DTypeError(f"{op}: dtype mismatch: operands have dtypes "
                             + ", ".join(str(t) for t in types))


def _refine(t: TensorType, shape: tuple[Dim, ...], inputs: dict[int, TensorType], i: int) -> None:
    if t.shape != shape:
        inputs[i] = t.with_shape(shape)


def _check_operand(op: str, what: str, t: TensorType, expected: tuple[Dim, ...]) -> None:
    ok = t.rank == len(expected) and all(
        a is UNKNOWN or b is UNKNOWN or a == b for a, b in zip(t.shape, expected))
    if not ok:
        exp = f"{t.dtype.short}[{','.join(map(str, expected))}]"
        raise InferenceError(f"{op}: {what} has type {t}, expected {exp}")


# ---------------------------------------------------------------------------------- shape rules
def _linear_rule(attrs: dict[str, Any], ts: list[TensorType]) -> ShapeResult:
    x, w = ts[0], ts[1]
    _same_dtype("linear", ts)
    if x.rank < 1:
        raise InferenceError(f"linear: expected an input of shape (*, in_features), got {x}")
    if w.rank != 2:
        raise InferenceError(f"linear: expected a weight of shape (out_features, in_features), got {w}")
    out_f = resolve_lazy("linear out_features", [("out_features", attrs["out_features"]),
                                                 ("weight dim 0", w.shape[0])], "the weight")
    in_f = resolve_lazy("linear in_features", [("in_features", attrs["in_features"]),
                                               ("weight dim 1", w.shape[1]),
                                               ("input last dim", x.shape[-1])],
                        "LazyLinear's in_features")
    refined: dict[int, TensorType] = {}
    _refine(w, (out_f, in_f), refined, 1)
    has_bias = attrs["bias"]
    if has_bias:
        if len(ts) != 3:
            raise InferenceError("linear: bias=true needs a bias operand")
        _check_operand("linear", "bias", ts[2], (out_f,))
        _refine(ts[2], (out_f,), refined, 2)
    new_attrs = dict(attrs, in_features=in_f, out_features=out_f)
    return ShapeResult(x.with_shape(x.shape[:-1] + (out_f,)), new_attrs, refined)


def _bn_rule(attrs: dict[str, Any], ts: list[TensorType]) -> ShapeResult:
    x = ts[0]
    if x.rank not in (2, 3, 4):
        raise InferenceError(f"batch_norm: expected an input of shape (N,C), (N,C,L) or (N,C,H,W), got {x}")
    c = resolve_lazy("batch_norm num_features",
                     [("num_features", attrs["num_features"]), ("input dim 1", x.shape[1])]
                     + [(f"operand {i} dim 0", t.shape[0]) for i, t in enumerate(ts[1:5], 1) if t.rank == 1],
                     "a lazy BatchNorm's num_features")
    refined: dict[int, TensorType] = {}
    names = _bn_operands(attrs)
    for i, (name, t) in enumerate(zip(names[1:], ts[1:]), 1):
        if name == "num_batches_tracked":
            if t.rank != 0 or t.dtype != i64:
                cls = InferenceError if t.rank != 0 else DTypeError
                raise cls(f"batch_norm: num_batches_tracked has type {t}, expected i64[]")
            continue
        if t.dtype != x.dtype:
            raise DTypeError(f"batch_norm: dtype mismatch: {name} is {t}, input is {x}")
        _check_operand("batch_norm", name, t, (c,))
        _refine(t, (c,), refined, i)
    shape = list(x.shape)
    shape[1] = c
    return ShapeResult(x.with_shape(shape), dict(attrs, num_features=c), refined)


_BN_STATS = ("running_mean", "running_var", "num_batches_tracked")


def _bn_operands(attrs: dict[str, Any]) -> tuple[str, ...]:
    names = ("input",)
    if attrs.get("affine", True):
        names += ("weight", "bias")
    if attrs.get("track_running_stats", True):
        names += _BN_STATS
    return names


def _linear_operands(attrs: dict[str, Any]) -> tuple[str, ...]:
    return ("input", "weight", "bias") if attrs.get("bias", True) else ("input", "weight")


def _relu_rule(attrs: dict[str, Any], ts: list[TensorType]) -> ShapeResult:
    return ShapeResult(ts[0], dict(attrs))


def _transpose_rule(attrs: dict[str, Any], ts: list[TensorType]) -> ShapeResult:
    x = ts[0]
    if x.rank != 2:
        raise InferenceError(f"transpose: expected a 2-D input (torch's t()), got {x}")
    return ShapeResult(x.with_shape((x.shape[1], x.shape[0])), dict(attrs))


def _norm_axis(op: str, d: int, rank: int) -> int:
    if not -rank <= d < rank:
        raise InferenceError(f"{op}: dim {d} is out of range for rank {rank} (expected {-rank}..{rank - 1})")
    return d % rank


def _flatten_rule(attrs: dict[str, Any], ts: list[TensorType]) -> ShapeResult:
    x = ts[0]
    if x.rank == 0:
        return ShapeResult(x.with_shape((1,)), dict(attrs))
    s = _norm_axis("flatten", attrs["start_dim"], x.rank)
    e = _norm_axis("flatten", attrs["end_dim"], x.rank)
    if s > e:
        raise InferenceError(f"flatten: start_dim ({attrs['start_dim']}) comes after end_dim "
                             f"({attrs['end_dim']}) for input {x}")
    shape = x.shape[:s] + (dim_prod(x.shape[s:e + 1]),) + x.shape[e + 1:]
    return ShapeResult(x.with_shape(shape), dict(attrs))


def _reshape_rule(attrs: dict[str, Any], ts: list[TensorType]) -> ShapeResult:
    x = ts[0]
    target = tuple(attrs["shape"])
    if sum(1 for d in target if d == -1) > 1:
        raise InferenceError(f"reshape: only one dim can be -1, got shape {target}")
    for d in target:
        if isinstance(d, int) and d != -1 and d <= 0:
            raise InferenceError(f"reshape: bad size {d} in shape {target}")
    numel = x.numel()
    known = dim_prod(d for d in target if d != -1)
    if -1 in target:
        if numel is UNKNOWN:
            fill: Dim = UNKNOWN
        else:
            try:
                fill = exact_div(numel, known)
            except InferenceError:
                raise InferenceError(
                    f"reshape: cannot infer -1 in shape {target}: input {x} has {numel} elements, "
                    f"which is not divisible by {known}") from None
        shape = tuple(fill if d == -1 else d for d in target)
    else:
        if numel is not UNKNOWN and numel != known:
            raise InferenceError(f"reshape: shape {target} has {known} elements, input {x} has {numel}")
        shape = target
    return ShapeResult(x.with_shape(shape), dict(attrs))


def _broadcast_dim(a: Dim, b: Dim, ta: TensorType, tb: TensorType) -> Dim:
    if a == b:
        return a
    if a == 1:
        return b
    if b == 1:
        return a
    if a is UNKNOWN:
        return b
    if b is UNKNOWN:
        return a
    raise InferenceError(f"add: shapes do not broadcast: {ta} and {tb} (dims {a} and {b})")


def _add_rule(attrs: dict[str, Any], ts: list[TensorType]) -> ShapeResult:
    a, b = ts
    _same_dtype("add", ts)
    rank = max(a.rank, b.rank)
    pa = (1,) * (rank - a.rank) + a.shape
    pb = (1,) * (rank - b.rank) + b.shape
    return ShapeResult(a.with_shape(tuple(_broadcast_dim(x, y, a, b) for x, y in zip(pa, pb))), dict(attrs))


# ------------------------------------------------------------------------------------- impls
def _linear_impl(attrs: dict[str, Any], x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None,
                 training: bool = False) -> np.ndarray:
    return nm.linear(x, w, b).astype(x.dtype, copy=False)


def _bn_impl(attrs: dict[str, Any], x: np.ndarray, *state: np.ndarray, training: bool = False) -> np.ndarray:
    """PyTorch's BatchNorm1d forward; running stats and ``num_batches_tracked`` update in place,
    only once every check passed (a failed call changes nothing)."""
    named = dict(zip(_bn_operands(attrs)[1:], state))
    track = attrs.get("track_running_stats", True)
    use_batch_stats = training or not track
    momentum = attrs.get("momentum", 0.1)
    count = training and track
    if count:
        nm.check_batch_size(x, "batch_norm")
        nbt = named["num_batches_tracked"]
        nm.check_writable("batch_norm", {"num_batches_tracked": nbt})
        momentum = 1.0 / float(nbt + 1) if momentum is None else momentum
    y = nm.checked_batch_norm(x, named.get("running_mean"), named.get("running_var"), named.get("weight"),
                              named.get("bias"), training=use_batch_stats,
                              momentum=0.0 if momentum is None else momentum, eps=attrs.get("eps", 1e-5))
    if count:
        nbt += 1  # in place: a 0-d int64 array
    return y


def _bn_call_check(attrs: dict[str, Any], shape: tuple[int, ...], training: bool) -> None:
    """Batch statistics need more than one value per channel; none at all (an empty batch) is fine."""
    if (training or not attrs.get("track_running_stats", True)) and nm.values_per_channel(shape) == 1:
        raise ShapeError(f"batch_norm: expected more than 1 value per channel when training, got input "
                         f"of shape {shape}")


def _reshape_call_check(attrs: dict[str, Any], shape: tuple[int, ...], training: bool) -> None:
    """A ``-1`` is ambiguous for an input of 0 elements: refused, as torch and NumPy refuse it."""
    if -1 in attrs["shape"] and 0 in shape:
        raise ShapeError(f"reshape/view: cannot reshape an input of 0 "
                         f"elements into shape {list(attrs['shape'])}: the -1 could be any size")


def _flatten_impl(attrs: dict[str, Any], x: np.ndarray, training: bool = False) -> np.ndarray:
    if x.ndim == 0:  # the shape rule gives f32[1] for a 0-d input whatever the dims
        return x.reshape(1)
    return nm.flatten(x, attrs["start_dim"], attrs["end_dim"], "flatten")


def _reshape_impl(attrs: dict[str, Any], x: np.ndarray, training: bool = False,
                  bindings: dict[str, int] | None = None) -> np.ndarray:
    """Symbolic entries are evaluated with ``bindings`` (symbol -> size) when given; without them
    a single symbolic entry is inferred from the input's size like ``-1``."""
    shape = list(attrs["shape"])
    if bindings is not None:
        try:
            shape = [d.evaluate(bindings) if isinstance(d, Sym) else d for d in shape]
        except KeyError as e:
            raise ShapeError(f"reshape: symbol {e.args[0]} of shape {tuple(shape)} is not bound") from None
    free = [i for i, d in enumerate(shape) if isinstance(d, Sym) or d == -1]
    if len(free) > 1:
        raise ShapeError(f"reshape: shape {tuple(attrs['shape'])} has several symbolic/-1 entries; "
                         f"pass bindings= to evaluate it for an input of shape {x.shape}")
    return x.reshape(tuple(-1 if i in free else d for i, d in enumerate(shape)))


def _relu_impl(attrs: dict[str, Any], x: np.ndarray, training: bool = False) -> np.ndarray:
    return nm.relu(x)


def _add_impl(attrs: dict[str, Any], a: np.ndarray, b: np.ndarray, training: bool = False) -> np.ndarray:
    return np.add(a, b)


def _transpose_impl(attrs: dict[str, Any], x: np.ndarray, training: bool = False) -> np.ndarray:
    return np.ascontiguousarray(x.T)


# ------------------------------------------------------------------------------------- table
register_op(OpDef("input", {"index": AttrSpec("int")}, (), None, None, kind="source"))
register_op(OpDef("param", {"target": AttrSpec("str")}, (), None, None, kind="source"))
register_op(OpDef("buffer", {"target": AttrSpec("str")}, (), None, None, kind="source"))
register_op(OpDef("output", {}, Variadic("value", 1), None, None, kind="output"))
register_op(OpDef(
    "linear",
    {"in_features": AttrSpec("dim"), "out_features": AttrSpec("int"), "bias": AttrSpec("bool", True)},
    _linear_operands, _linear_rule, _linear_impl))
register_op(OpDef(
    "batch_norm",
    {"num_features": AttrSpec("dim"), "eps": AttrSpec("float", 1e-5), "momentum": AttrSpec("float?", 0.1),
     "affine": AttrSpec("bool", True), "track_running_stats": AttrSpec("bool", True)},
    _bn_operands, _bn_rule, _bn_impl, effects=_BN_STATS, uses_training=True, call_check=_bn_call_check))
register_op(OpDef("relu", {}, ("input",), _relu_rule, _relu_impl))
register_op(OpDef("flatten", {"start_dim": AttrSpec("int", 1), "end_dim": AttrSpec("int", -1)}, ("input",),
                  _flatten_rule, _flatten_impl))
register_op(OpDef("reshape", {"shape": AttrSpec("shape")}, ("input",), _reshape_rule, _reshape_impl,
                  call_check=_reshape_call_check))
register_op(OpDef("add", {}, ("input", "other"), _add_rule, _add_impl))
register_op(OpDef("transpose", {}, ("input",), _transpose_rule, _transpose_impl))


# ------------------------------------------------------------------------------- node queries
def named_updates(node: Any) -> tuple[tuple[str, Any], ...]:
    """``(operand name, operand)`` for each operand ``node`` updates in place when it runs in
    training mode: those present whose name is in its op's ``effects`` (a fused op's names are
    qualified by part: ``batch_norm.running_mean``).  ``()`` for an op without effects or not in
    the table."""
    opdef = OPS.get(node.op)
    if opdef is None or not opdef.effects:
        return ()
    names = opdef.operand_names(node.attrs, len(node.inputs))
    return tuple((name, src) for name, src in zip(names, node.inputs) if name in opdef.effects)


def updated_operands(node: Any) -> tuple[Any, ...]:
    """The operands ``node`` updates in place when it runs in training mode (see :func:`named_updates`)."""
    return tuple(src for _, src in named_updates(node))


def has_effects(node: Any) -> bool:
    """True when ``node`` updates some operand in place (it must run even if its value is unused)."""
    return bool(updated_operands(node))


def mode_module(node: Any) -> str | None:
    """The module path whose ``training`` flag ``node`` follows: its own module for an op that
    ``uses_training``, ``attrs["bn_module"]`` for a fused one; ``None`` for every other node."""
    opdef = OPS.get(node.op)
    if opdef is None or not opdef.uses_training:
        return None
    return node.attrs.get(MODE_ATTR) if opdef.kind == "fused" else node.module


bn_module = mode_module  # the older name


def infer_node(op: str, attrs: dict[str, Any], in_types: list[TensorType]) -> ShapeResult:
    """Run ``op``'s shape rule after checking arity (raises :class:`InferenceError`)."""
    opdef = OPS.get(op)
    if opdef is None or opdef.shape_rule is None:
        raise InferenceError(f"op {op!r} has no shape rule")
    attrs = opdef.with_defaults(attrs)
    lo, hi = opdef.arity_range(attrs)
    if not lo <= len(in_types) <= hi:
        want = str(lo) if lo == hi else f"{lo}..{hi}"
        raise InferenceError(f"{op}: expected {want} operands, got {len(in_types)}")
    return opdef.shape_rule(attrs, list(in_types))
