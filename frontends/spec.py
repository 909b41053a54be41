"""Input specs: the public ``TensorSpec`` (what a user says an input looks like) and ``unify`` (does a
concrete array shape fit a spec's type, and which sizes does it bind to the symbols).

These belong to the frontend/API layer: the IR only knows :class:`TensorType`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

import numpy as np

from lazyfuse.errors import ConfigError, DTypeError, ShapeError, TraceError
from lazyfuse.ir.types import UNKNOWN, DType, Sym, TensorType, dtype_from, f32

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

_MAX_DIM = int(np.iinfo(np.intp).max)  # NumPy's limit on one dimension


def _spec_dim(i: int, d: Any) -> int | str:
    """Validate dim ``i`` of a TensorSpec: a positive int or a symbol name."""
    if isinstance(d, Sym) and d.coeff == 1 and len(d.names) == 1:
        d = d.names[0]
    if isinstance(d, str):
        if not _IDENT.match(d):
            raise ConfigError(
                f"TensorSpec dim {i} is {d!r}: a symbol name must be a non-empty identifier like 'N'"
            )
        return d
    if isinstance(d, (int, np.integer)) and not isinstance(d, (bool, np.bool_)):
        if d <= 0:
            raise ConfigError(f"TensorSpec dim {i} is {d}: sizes must be positive ints")
        if d > _MAX_DIM:
            raise ConfigError(f"TensorSpec dim {i} is {d}: larger than any array dimension (max {_MAX_DIM})")
        return int(d)
    raise TraceError(
        f"TensorSpec dim {i} is {d!r} ({type(d).__name__}): expected a positive int or a symbol "
        "name (str) such as 'N'"
    )


def _spec_dtype(dtype: Any) -> DType:
    """The float DType of a TensorSpec; ``None`` means the default float32 (as in PyTorch)."""
    if dtype is None:
        return f32
    try:
        dt = dtype_from(dtype)
    except DTypeError:
        dt = None
    if dt is None or not dt.is_float:
        got = dt.name if dt is not None else repr(dtype)
        raise DTypeError(f"TensorSpec dtype must be float32 or float64, got {got}")
    return dt


class TensorSpec:
    """A user's input description: ``TensorSpec(("N", 784), dtype="float32")``.

    Dims are positive ints or symbol names (identifiers such as ``"N"``); a symbol used twice must
    have the same size in every call.  ``dtype`` is float32 (the default, also for ``None``) or
    float64.
    """

    __slots__ = ("shape", "dtype")

    def __init__(self, shape: Iterable[Any], dtype: Any = "float32") -> None:
        if isinstance(shape, (str, bytes)) or not isinstance(shape, Iterable):
            raise TraceError(
                f"TensorSpec shape must be a tuple of ints and symbol names like ('N', 784), got {shape!r}"
            )
        self.shape: tuple[int | str, ...] = tuple(_spec_dim(i, d) for i, d in enumerate(shape))
        self.dtype: DType = _spec_dtype(dtype)

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(d for d in self.shape if isinstance(d, str)))

    def to_type(self) -> TensorType:
        """The IR type of this spec: symbol names become :class:`Sym` dims."""
        return TensorType(self.dtype, [Sym(d) if isinstance(d, str) else d for d in self.shape])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TensorSpec) and (self.shape, self.dtype) == (other.shape, other.dtype)

    def __hash__(self) -> int:
        return hash((self.shape, self.dtype))

    def __repr__(self) -> str:
        return f"TensorSpec({self.shape!r}, dtype={self.dtype.name!r})"


def unify(ttype: TensorType, shape: Iterable[int], bindings: dict[str, int] | None = None,
          what: str = "input") -> dict[str, int]:
    """Check a concrete array shape against ``ttype``, binding its symbols consistently.

    ``bindings`` is updated in place (and returned); raises :class:`ShapeError` naming the expected
    type, the actual shape and the offending dim.
    """
    bindings = {} if bindings is None else bindings
    shape = tuple(int(s) for s in shape)

    def fail(detail: str) -> ShapeError:
        bound = ", ".join(f"{k}={v}" for k, v in bindings.items())
        extra = f" (with {bound})" if bound else ""
        return ShapeError(f"{what}: expected shape {ttype}{extra}, got {shape}: {detail}")

    if len(shape) != ttype.rank:
        raise fail(f"expected rank {ttype.rank}, got rank {len(shape)}")
    pending: list[tuple[int, Sym]] = []
    for i, (d, s) in enumerate(zip(ttype.shape, shape)):
        if d is UNKNOWN:
            continue
        if isinstance(d, int):
            if d != s:
                raise fail(f"dim {i} is {s}, expected {d}")
        elif d.coeff == 1 and len(d.names) == 1:
            name = d.names[0]
            if name in bindings and bindings[name] != s:
                raise fail(f"dim {i} is {s}, but symbol {name} is already bound to {bindings[name]}")
            bindings[name] = s
        else:
            pending.append((i, d))
    # Compound dims (3*L, N*L): solve for at most one unbound symbol, then check.
    for i, d in pending:
        s = shape[i]
        free = [n for n in dict.fromkeys(d.names) if n not in bindings]
        if len(free) == 1 and Counter(d.names)[free[0]] == 1:
            rest = d.coeff
            for n in d.names:
                if n != free[0]:
                    rest *= bindings[n]
            if rest == 0 or s % rest:
                raise fail(f"dim {i} is {s}, which is not a multiple of {rest} as {d} requires")
            bindings[free[0]] = s // rest
        elif free:
            raise fail(f"dim {i} ({d}) has several unbound symbols {free}")
        if d.evaluate(bindings) != s:
            raise fail(f"dim {i} is {s}, expected {d} = {d.evaluate(bindings)}")
    return bindings


def as_spec(spec: Any) -> TensorSpec:
    """``spec`` as a :class:`TensorSpec` (a shape tuple or list is accepted too)."""
    if isinstance(spec, TensorSpec):
        return spec
    if isinstance(spec, (tuple, list)):
        return TensorSpec(tuple(spec))
    raise TraceError("trace: expected a lazyfuse.TensorSpec or a shape tuple per input, "
                     f"got {type(spec).__name__}")


__all__ = ["TensorSpec", "unify", "as_spec"]
