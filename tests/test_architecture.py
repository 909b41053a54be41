"""The import graph is one-way: errors <- ir <- passes <- backends; frontends build on ir; runtime,
api, cli, viz, bench and examples on top.  Every import counts, also one inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# What each layer may import from lazyfuse (besides itself).  Layers not listed here (runtime, api,
# cli, viz, bench, examples, the package root) sit on top and may import anything.
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "ir": {"errors"},
    "passes": {"errors", "ir"},
    "backends": {"errors", "ir", "passes"},
    "frontends": {"errors", "ir"},
    "runtime": {"errors", "ir", "passes", "backends", "frontends"},
}


def _layer(module: str) -> str:
    """``lazyfuse.ir.ops`` -> ``ir``; ``lazyfuse.api`` -> ``api``; ``lazyfuse`` -> ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = ["lazyfuse", *rel.parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _package_files() -> list[Path]:
    skip = {"tests", ".venv", "build", ".cache", "docs", "out"}
    return sorted(p for p in ROOT.rglob("*.py")
                  if not (set(p.relative_to(ROOT).parts[:-1]) & skip) and not p.name.startswith("."))


def lazyfuse_imports(path: Path) -> list[tuple[int, str]]:
    """``(line, imported lazyfuse module)`` for every import in ``path``, relative ones resolved."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "lazyfuse"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "lazyfuse":
                continue
            if node.module is None or node.level and not node.module:
                # ``from . import x``: x is a submodule (or a name) of the package
                found += [(node.lineno, f"{target}.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, target))
    return found


def test_the_package_files_are_found() -> None:
    names = {_module_name(p) for p in _package_files()}
    assert {"lazyfuse.ir.ops", "lazyfuse.passes.manager", "lazyfuse.frontends.nn.module",
            "lazyfuse.runtime.compiled", "lazyfuse.api"} <= names


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_imports_point_one_way(layer: str) -> None:
    wrong = []
    for path in _package_files():
        module = _module_name(path)
        if _layer(module) != layer:
            continue
        for line, target in lazyfuse_imports(path):
            to = _layer(target)
            if to != layer and to not in ALLOWED[layer]:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {target} ({layer} -> {to})")
    assert not wrong, "imports against the layering:\n" + "\n".join(wrong)


def test_the_import_parser_resolves_relative_imports() -> None:
    # The checker itself must see relative imports, or the test above could not fail.
    path = ROOT / "ir" / "ops.py"
    targets = {t for _, t in lazyfuse_imports(path)}
    assert "lazyfuse.ir.types" in targets and "lazyfuse.errors" in targets
