"""JSON form of a graph: ``graph_to_json`` / ``graph_from_json`` round-trip exactly.

Layout: ``{"format": "lazyfuse-ir", "version": 1, "name", "symbols", "nodes": [...]}``; each node has
``name, op, inputs (names), attrs, type ("f32[N,784]" or null), loc ({"file", "line"} or null),
module, module_type``.  Attr values are JSON scalars except tuples (``{"tuple": [...]}``), dims
(``{"dim": "3*L"}``, ``{"dim": "?"}``) and non-finite floats (``{"float": "inf"}``).
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from lazyfuse.errors import IRError, IRParseError, IRTypeError

from .graph import Graph, Loc, Node
from .types import Sym, TensorType, _Unknown, parse_dim

FORMAT = "lazyfuse-ir"
VERSION = 1


def encode_value(v: Any) -> Any:
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return f if math.isfinite(f) else {"float": repr(f)}
    if isinstance(v, (Sym, _Unknown)):
        return {"dim": str(v)}
    if isinstance(v, (tuple, list)):
        return {"tuple": [encode_value(x) for x in v]}
    raise IRTypeError(f"attribute value {v!r} of type {type(v).__name__} cannot be serialized")


def decode_value(v: Any) -> Any:
    if isinstance(v, dict):
        if set(v) == {"tuple"}:
            return tuple(decode_value(x) for x in v["tuple"])
        if set(v) == {"dim"}:
            return parse_dim(v["dim"])
        if set(v) == {"float"}:
            return float(v["float"])
        raise IRError(f"unknown encoded attribute value {v!r}")
    if isinstance(v, list):
        raise IRError(f"lists are encoded as {{'tuple': [...]}}, got {v!r}")
    return v


def graph_to_dict(graph: Graph) -> dict[str, Any]:
    nodes = []
    for n in graph.nodes:
        nodes.append({
            "name": n.name,
            "op": n.op,
            "inputs": [i.name for i in n.inputs],
            "attrs": {k: encode_value(n.attrs[k]) for k in sorted(n.attrs)},
            "type": None if n.type is None else str(n.type),
            "loc": None if n.loc is None else {"file": n.loc.file, "line": n.loc.line},
            "module": n.module,
            "module_type": n.module_type,
        })
    return {"format": FORMAT, "version": VERSION, "name": graph.name, "symbols": list(graph.symbols),
            "nodes": nodes}


def graph_to_json(graph: Graph, indent: int | None = None) -> str:
    return json.dumps(graph_to_dict(graph), indent=indent)


def graph_from_dict(data: dict[str, Any]) -> Graph:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise IRError(f"not a lazyfuse IR JSON document (expected \"format\": \"{FORMAT}\")")
    if data.get("version") != VERSION:
        raise IRError(f"unsupported lazyfuse IR JSON version {data.get('version')!r} (expected {VERSION})")
    try:
        graph = Graph(data["name"], data.get("symbols", ()))
        entries = list(data["nodes"])
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, IRError):
            raise
        raise IRError(f"bad IR JSON document: {e!r}") from None
    for i, d in enumerate(entries):
        try:
            name = d["name"]
            if name in graph._names:
                raise IRError(f"duplicate node name {name!r}")
            inputs = []
            for ref in d.get("inputs", ()):
                if ref not in graph._names:
                    raise IRError(f"node {name!r} uses {ref!r}, which is not defined before it")
                inputs.append(graph._names[ref])
            loc = d.get("loc")
            node = Node(graph, name, d["op"], inputs,
                        {k: decode_value(v) for k, v in d.get("attrs", {}).items()},
                        None if d.get("type") is None else TensorType.parse(d["type"]),
                        None if loc is None else Loc(loc["file"], loc["line"]),
                        d.get("module"), d.get("module_type"))
        except (KeyError, TypeError, ValueError) as e:
            if isinstance(e, IRError) and not isinstance(e, (IRParseError, IRTypeError)):
                raise  # already names the node
            raise IRError(f"bad node #{i} in IR JSON: {e!r}") from None
        graph.nodes.append(node)
        graph._names[name] = node
    return graph


def graph_from_json(text: str) -> Graph:
    """Rebuild a graph from :func:`graph_to_json` output."""
    if not isinstance(text, (str, bytes, bytearray)):
        raise IRError(f"invalid IR JSON: expected str, bytes or bytearray, got {type(text).__name__}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise IRError(f"invalid IR JSON: {e}") from None
    return graph_from_dict(data)


__all__ = ["graph_to_json", "graph_from_json", "graph_to_dict", "graph_from_dict"]
