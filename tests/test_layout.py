"""The package's layout: the top level is glue and entry points, a folder per job, and every
import runs one way (no circle, not even through an import inside a function)."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set

from support.repo import ROOT

PACKAGE = ROOT / "exporter" / "minerwatch"
FOLDERS = {"antivirus", "collectors", "data", "detection", "host", "investigation", "network", "serving", "windows"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> Dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts}


def _type_checking(node: ast.If) -> bool:
    return "TYPE_CHECKING" in ast.unparse(node.test)


def imports_of(name: str, path: Path, known: Set[str]) -> Set[str]:
    """The package's modules `name` imports anywhere in it (functions too), TYPE_CHECKING aside.
    `from minerwatch.x import y` counts as importing minerwatch.x.y when that is a module."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: Set[str] = set()

    def resolve(target: str) -> None:
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking(child):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name.startswith("minerwatch"):
                        resolve(alias.name)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - child.level + 1] + ([base] if base else []))
                if base.startswith("minerwatch"):
                    for alias in child.names:
                        resolve(f"{base}.{alias.name}")
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    found: List[List[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def test_no_import_circle():
    known = modules()
    graph = {name: imports_of(name, path, set(known)) for name, path in known.items()}
    assert sum(len(targets) for targets in graph.values()) > 200  # the walk sees the imports
    assert cycles(graph) == []


def test_the_checker_sees_imports_in_functions_and_leaves_type_checking_out(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from minerwatch import b\n\n"
                    "def f():\n    from minerwatch.a import thing\n")
    assert imports_of("minerwatch.m", path, {"minerwatch.a", "minerwatch.b", "minerwatch.m"}) == {"minerwatch.a"}
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_top_level_is_glue_and_entry_points():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 12, top
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders == FOLDERS
    for folder in folders - {"data"}:
        doc = ast.get_docstring(ast.parse((PACKAGE / folder / "__init__.py").read_text()))
        assert doc, f"{folder}/__init__.py says what lives there"
    for folder in ("detection", "host", "serving", "investigation"):  # a line per module
        doc = ast.get_docstring(ast.parse((PACKAGE / folder / "__init__.py").read_text()), clean=False)
        for module in (PACKAGE / folder).glob("*.py"):
            if module.name != "__init__.py":
                assert f"    {module.name} " in doc, f"{folder}/__init__.py does not list {module.name}"
