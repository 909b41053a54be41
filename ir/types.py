"""IR value types: dtypes, symbolic dims and ``TensorType`` (the user-facing ``TensorSpec`` is
:mod:`lazyfuse.frontends.spec`'s).

A dim is an ``int``, a :class:`Sym` (a monomial over named symbols, e.g. ``N``, ``3*L``) or
:data:`UNKNOWN` (a lazy size not resolved yet, printed ``?``).

Note on ``Sym`` printing: equality and hashing use the *sorted* multiset of symbol names, while
printing keeps the order in which factors were multiplied, so flattening ``(N, L)`` prints ``N*L``.
Two equal Syms built in different orders print differently; everything in lazyfuse builds them
deterministically, so printed IR is stable.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Union

import numpy as np

from lazyfuse.errors import ConfigError, DTypeError, InferenceError, IRParseError, IRTypeError

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


# ----------------------------------------------------------------------------------------- dtypes
@dataclass(frozen=True)
class DType:
    """An element type: ``name`` ("float32"), ``short`` ("f32") and the NumPy dtype ``numpy``."""

    name: str
    short: str

    @property
    def numpy(self) -> np.dtype:
        return np.dtype(self.name)

    @property
    def is_float(self) -> bool:
        return self.numpy.kind == "f"

    def __str__(self) -> str:
        return self.short

    def __repr__(self) -> str:
        return self.short


f32 = DType("float32", "f32")
f64 = DType("float64", "f64")
i64 = DType("int64", "i64")

DTYPES: dict[str, DType] = {}
for _d in (f32, f64, i64):
    DTYPES[_d.name] = DTYPES[_d.short] = _d


def dtype_from(x: Any) -> DType:
    """Look up a :class:`DType` from a DType, "float32"/"f32", a NumPy dtype or scalar type."""
    if isinstance(x, DType):
        return x
    if isinstance(x, str) and x in DTYPES:
        return DTYPES[x]
    try:
        name = np.dtype(x).name
    except (TypeError, ValueError):
        name = None
    if name in DTYPES:
        return DTYPES[name]
    raise DTypeError(f"unsupported dtype {x!r}; expected one of float32, float64, int64")


# ------------------------------------------------------------------------------------------- dims
class _Unknown:
    """The lazy, not-yet-resolved dim ``?`` (a singleton)."""

    _instance: _Unknown | None = None

    def __new__(cls) -> _Unknown:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "?"

    __str__ = __repr__

    def __reduce__(self) -> str:
        return "UNKNOWN"

    def __copy__(self) -> _Unknown:
        return self

    def __deepcopy__(self, memo: Any) -> _Unknown:
        return self


UNKNOWN = _Unknown()


class Sym:
    """A symbolic dim: ``coeff`` times a product of symbol names (a monomial).

    ``Sym("N")``; ``3 * Sym("L")`` prints ``3*L``; ``Sym("N") * Sym("L")`` prints ``N*L``.
    A product with no symbols normalizes to a plain ``int``; ``//`` is exact division.
    """

    __slots__ = ("coeff", "names")

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not _IDENT.match(name):
            raise ConfigError(f"invalid symbol name {name!r}: expected an identifier like 'N'")
        self.coeff = 1
        self.names: tuple[str, ...] = (name,)

    @classmethod
    def make(cls, coeff: int, names: Iterable[str]) -> int | Sym:
        """Build ``coeff * prod(names)``; an empty product gives the int ``coeff``."""
        names = tuple(names)
        if not names:
            return int(coeff)
        s = object.__new__(cls)
        s.coeff = int(coeff)
        s.names = names
        return s

    @property
    def key(self) -> tuple[int, tuple[str, ...]]:
        return (self.coeff, tuple(sorted(self.names)))

    @property
    def symbols(self) -> frozenset[str]:
        return frozenset(self.names)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sym) and self.key == other.key

    def __hash__(self) -> int:
        return hash(("Sym", self.key))

    def __mul__(self, other: Any) -> int | Sym:
        if isinstance(other, bool):
            return NotImplemented
        if isinstance(other, (int, np.integer)):
            return Sym.make(self.coeff * int(other), self.names)
        if isinstance(other, Sym):
            return Sym.make(self.coeff * other.coeff, self.names + other.names)
        return NotImplemented

    def __rmul__(self, other: Any) -> int | Sym:
        if isinstance(other, bool) or not isinstance(other, (int, np.integer)):
            return NotImplemented
        return Sym.make(self.coeff * int(other), self.names)

    def __floordiv__(self, other: Any) -> int | Sym:
        return exact_div(self, other)

    def __rfloordiv__(self, other: Any) -> int | Sym:
        return exact_div(other, self)

    def evaluate(self, bindings: Mapping[str, int]) -> int:
        """The concrete size under ``bindings`` (KeyError if a symbol is unbound)."""
        value = self.coeff
        for n in self.names:
            value *= int(bindings[n])
        return value

    def __str__(self) -> str:
        parts = list(self.names)
        if self.coeff != 1:
            parts.insert(0, str(self.coeff))
        return "*".join(parts)

    def __repr__(self) -> str:
        return str(self)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Sym.make, (self.coeff, self.names))


Dim = Union[int, Sym, _Unknown]


def is_dim(d: Any) -> bool:
    return d is UNKNOWN or isinstance(d, Sym) or (isinstance(d, int) and not isinstance(d, bool))


def _monomial(d: int | Sym) -> tuple[int, tuple[str, ...]]:
    return (d.coeff, d.names) if isinstance(d, Sym) else (int(d), ())


def exact_div(a: Any, b: Any) -> int | Sym:
    """``a // b`` for ints/Syms, raising :class:`InferenceError` unless the division is exact."""
    if a is UNKNOWN or b is UNKNOWN:
        raise InferenceError("cannot divide an unknown dim '?'")
    ca, na = _monomial(a)
    cb, nb = _monomial(b)
    if cb == 0 or ca % cb != 0:
        raise InferenceError(f"{a} is not divisible by {b}")
    left = list(na)
    for n in nb:
        if n not in left:
            raise InferenceError(f"{a} is not divisible by {b}")
        left.remove(n)
    return Sym.make(ca // cb, left)


def dim_mul(a: Dim, b: Dim) -> Dim:
    """Product of two dims; anything times ``?`` is ``?``."""
    if a is UNKNOWN or b is UNKNOWN:
        return UNKNOWN
    return a * b  # type: ignore[operator]


def dim_prod(dims: Iterable[Dim]) -> Dim:
    out: Dim = 1
    for d in dims:
        out = dim_mul(out, d)
    return out


def parse_dim(text: str) -> Dim:
    """Parse ``?``, ``784``, ``N``, ``3*L`` or ``N*L`` into a dim."""
    text = text.strip()
    if text == "?":
        return UNKNOWN
    out: Dim = 1
    for part in text.split("*"):
        part = part.strip()
        if re.fullmatch(r"-?\d+", part):
            out = dim_mul(out, int(part))
        elif _IDENT.match(part):
            out = dim_mul(out, Sym(part))
        else:
            raise IRParseError(f"bad dim {text!r}")
    return out


def dim_str(d: Dim) -> str:
    return str(d)


# ------------------------------------------------------------------------------------ TensorType
@dataclass(frozen=True)
class TensorType:
    """The type of an IR value: a dtype and a shape of dims; prints like ``f32[N,784]``."""

    dtype: DType
    shape: tuple[Dim, ...]

    def __init__(self, dtype: Any, shape: Iterable[Any]) -> None:
        dims = tuple(int(d) if isinstance(d, np.integer) else d for d in shape)
        for d in dims:
            if not is_dim(d):
                raise IRTypeError(f"bad dim {d!r} in shape {dims}: expected int, Sym or UNKNOWN")
        object.__setattr__(self, "dtype", dtype_from(dtype))
        object.__setattr__(self, "shape", dims)

    @property
    def rank(self) -> int:
        return len(self.shape)

    def numel(self) -> Dim:
        """Number of elements: an int, a Sym, or ``UNKNOWN`` if any dim is ``?``."""
        return dim_prod(self.shape)

    @property
    def is_concrete(self) -> bool:
        """True when every dim is a plain int."""
        return all(isinstance(d, int) for d in self.shape)

    @property
    def is_resolved(self) -> bool:
        """True when no dim is ``?`` (symbols are allowed)."""
        return all(d is not UNKNOWN for d in self.shape)

    @property
    def symbols(self) -> tuple[str, ...]:
        """Symbol names in order of first appearance."""
        seen: dict[str, None] = {}
        for d in self.shape:
            if isinstance(d, Sym):
                for n in d.names:
                    seen.setdefault(n, None)
        return tuple(seen)

    def with_shape(self, shape: Iterable[Any]) -> TensorType:
        return TensorType(self.dtype, shape)

    def evaluate(self, bindings: Mapping[str, int]) -> tuple[int, ...]:
        """The concrete shape under ``bindings``; raises if a dim is ``?`` or a symbol unbound."""
        out = []
        for d in self.shape:
            if d is UNKNOWN:
                raise InferenceError(f"type {self} has an unresolved dim '?'")
            out.append(d.evaluate(bindings) if isinstance(d, Sym) else d)
        return tuple(out)

    def __str__(self) -> str:
        return f"{self.dtype.short}[{','.join(str(d) for d in self.shape)}]"

    def __repr__(self) -> str:
        return f"TensorType({self})"

    @staticmethod
    def parse(text: str) -> TensorType:
        """Parse ``f32[N,784]``."""
        m = re.fullmatch(r"\s*([a-z0-9]+)\[(.*)\]\s*", text)
        if not m:
            raise IRParseError(f"bad tensor type {text!r}")
        if m.group(1) not in DTYPES:
            raise IRParseError(f"bad tensor type {text!r}: unknown dtype {m.group(1)!r} "
                               "(expected f32, f64 or i64)")
        body = m.group(2).strip()
        dims = [parse_dim(p) for p in body.split(",")] if body else []
        return TensorType(DTYPES[m.group(1)], dims)


__all__ = [
    "DType", "f32", "f64", "i64", "DTYPES", "dtype_from", "Sym", "UNKNOWN", "Dim", "is_dim",
    "exact_div", "dim_mul", "dim_prod", "parse_dim", "TensorType",
]
