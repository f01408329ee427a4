"""The shape of the code base: small modules, no import circles in the core, plugins and docs
that use only fmbench's public names."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import fmbench

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "fmbench"
MAX_LINES = 350


def _modules() -> dict[str, Path]:
    out = {}
    for p in CORE.rglob("*.py"):
        parts = list(p.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _imports(mod: str, path: Path, mods: dict[str, Path]) -> set[str]:
    """The core modules ``mod`` imports anywhere in its body (function-level imports too), but
    not under ``if TYPE_CHECKING:`` (names for annotations, never imported at run time)."""
    package = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
    deps = set()
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            node.body = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            name = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:
                sub = f"{name}.{alias.name}"
                deps.add(sub if sub in mods else name)
        elif isinstance(node, ast.Import):
            deps.update(a.name for a in node.names)
    # the package root re-exports; a package importing its own submodules is no circle
    return {d for d in deps if d in mods and d not in (mod, "fmbench")
            and not (path.name == "__init__.py" and d.startswith(mod + "."))}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_core_module_is_over_350_lines():
    long = {str(p.relative_to(ROOT)): n for p in CORE.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_no_import_circle_inside_the_core():
    mods = _modules()
    graph = {m: _imports(m, p, mods) for m, p in mods.items()}
    assert _cycles(graph) == []
    # the detector works: a made-up circle is found
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]


def _python_sources(path: Path) -> list[str]:
    """A .py file's text, or the ```python blocks of a Markdown file."""
    text = path.read_text()
    return [text] if path.suffix == ".py" else re.findall(r"```python\n(.*?)```", text, re.S)


def test_plugins_and_docs_use_only_public_names():
    paths = [*(ROOT / "plugins").rglob("*.py"), *(ROOT / "docs").glob("*.md"), ROOT / "CONTRIBUTING.md",
             *(ROOT / "examples").rglob("*.py")]
    offenders = []
    for path in paths:
        for source in _python_sources(path):
            for node in ast.walk(ast.parse(source)):
                if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fmbench."):
                    offenders.append(f"{path.relative_to(ROOT)}: from {node.module} import ...")
                elif isinstance(node, ast.Import):
                    offenders += [f"{path.relative_to(ROOT)}: import {a.name}" for a in node.names
                                  if a.name.startswith("fmbench.")]
                elif isinstance(node, ast.ImportFrom) and node.module == "fmbench":
                    offenders += [f"{path.relative_to(ROOT)}: fmbench.{a.name} is not exported" for a in node.names
                                  if a.name not in fmbench.__all__]
    assert offenders == []
    # the check sees a private import
    tree = ast.parse("from fmbench.attack import Attack")
    assert isinstance(tree.body[0], ast.ImportFrom) and tree.body[0].module == "fmbench.attack"
