"""ONNX in and out: :mod:`.export` writes an inferred graph and its model's arrays as an ONNX model
(``lf.export_onnx``).  onnx stays optional (the ``onnx`` extra); nothing here imports it until an
export runs."""

from __future__ import annotations

from typing import Any

from lazyfuse.errors import CompileError


def require_onnx() -> Any:
    """The ``onnx`` module, or a :class:`CompileError` saying how to install it."""
    try:
        import onnx
    except ImportError as exc:
        raise CompileError(f"ONNX export needs onnx: pip install 'lazyfuse[onnx]' ({exc})") from None
    return onnx
