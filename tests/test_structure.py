"""The shape of msvit/, read from its source (AST), beyond import-linter's contracts:

- **No import loop, function-level imports counted.** import-linter's contracts see a deferred
  ``from msvit.export import export`` inside a function like any other import only within its
  layer rules; this scan builds the whole module graph from every ``import`` statement wherever it
  stands (module level, functions, methods; not under ``if TYPE_CHECKING:``, which never runs) and
  fails on any cycle, naming each edge with its file, line and function. ``importlib.import_module``
  with a computed name is not an import statement and is not seen.
- **No module imports its own package face** (the ``__init__`` of a package that contains it):
  ``from . import sibling`` is a submodule import, not the face; ``from msvit.export import export``
  inside ``msvit/export/`` is.
- **No module over 450 lines** (physical lines, as ``wc -l`` counts them).
- **A package ``__init__`` only re-exports**: its top-level statements are, in any order, only a
  docstring, ``from __future__`` imports, imports of msvit modules (relative, or absolute under
  ``msvit``), and one ``__all__`` assignment of a list/tuple of string literals, every name of which
  the file imports. No ``def``, ``class``, other assignment, expression, ``if``/``try``, or
  third-party import: what a face shows is defined in a module of its own.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 450


@dataclass(frozen=True)
class Edge:
    src: str
    dst: str
    file: str
    line: int
    where: str  # "module level" or "in f()"

    def __str__(self) -> str:
        return f"{self.src} -> {self.dst}  ({self.file}:{self.line}, {self.where})"


def modules(root: Path, package: str = "msvit") -> dict[str, Path]:
    """Module name -> file, for every .py under root/package (a package is its __init__)."""
    out = {}
    for f in sorted((root / package).rglob("*.py")):
        parts = list(f.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = f
    return out


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _imports(tree: ast.Module):
    """(node, enclosing function name or None) for every import statement that can run."""
    def walk(node, func):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for sub in child.orelse:
                    yield from walk(sub, func)
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, func
            name = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else func
            yield from walk(child, name)
    yield from walk(tree, None)


def import_graph(root: Path, package: str = "msvit") -> tuple[dict[str, list[Edge]], list[Edge]]:
    """The module graph (edges to modules of ``package`` only) and the imports of a module's own
    package face."""
    mods = modules(root, package)
    graph: dict[str, list[Edge]] = {m: [] for m in mods}
    own_face: list[Edge] = []
    for name, path in mods.items():
        is_pkg = path.name == "__init__.py"
        here = name.split(".") if is_pkg else name.split(".")[:-1]
        rel = str(path.relative_to(root))
        tree = ast.parse(path.read_text(), filename=str(path))
        for node, func in _imports(tree):
            where = f"in {func}()" if func else "module level"
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                if node.level:
                    base_parts = here[: len(here) - node.level + 1]
                    base = ".".join(base_parts + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in mods]
                targets = subs
                if len(subs) < len(node.names):  # some name is an attribute of the module `base`
                    targets = [base, *subs]
            for t in targets:
                while t and t not in mods and "." in t:  # `import msvit.x.y` of a non-module: its parent
                    t = t.rsplit(".", 1)[0]
                if t not in mods or t == name:
                    continue
                e = Edge(name, t, rel, node.lineno, where)
                graph[name].append(e)
                if mods[t].name == "__init__.py" and name.startswith(t + "."):
                    own_face.append(e)
    return graph, own_face


def cycles(graph: dict[str, list[Edge]]) -> list[list[Edge]]:
    """One shortest cycle per strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    comps: list[set[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for e in graph[v]:
            w = e.dst
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(comp)

    import sys
    sys.setrecursionlimit(max(10000, sys.getrecursionlimit()))
    for v in sorted(graph):
        if v not in index:
            strong(v)
    out = []
    for comp in comps:
        start = min(comp)
        # BFS from start back to start inside the component
        prev: dict[str, Edge] = {}
        queue, seen, found = [start], {start}, None
        while queue and found is None:
            nxt = []
            for v in queue:
                for e in graph[v]:
                    if e.dst not in comp:
                        continue
                    if e.dst == start:
                        found = e
                        break
                    if e.dst not in seen:
                        seen.add(e.dst)
                        prev[e.dst] = e
                        nxt.append(e.dst)
                if found:
                    break
            queue = nxt
        path = [found]
        while path[0].src != start:
            path.insert(0, prev[path[0].src])
        out.append(path)
    return out


def init_violations(path: Path) -> list[str]:
    """What a package __init__ does besides re-exporting (see the module docstring for the rule)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    bad, imported, exported = [], set(), None
    for i, node in enumerate(tree.body):
        if i == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(
                node.value.value, str):
            continue
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").split(".")[0] in (
                "msvit", "__future__")):
            imported.update(a.asname or a.name for a in node.names)
            continue
        if isinstance(node, ast.Import) and all(a.name.split(".")[0] == "msvit" for a in node.names):
            imported.update((a.asname or a.name).split(".")[0] for a in node.names)
            continue
        if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id == "__all__" and isinstance(node.value, (ast.List, ast.Tuple))
                and all(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.value.elts)):
            exported = [e.value for e in node.value.elts]
            continue
        what = type(node).__name__
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            what = f"{what} {node.name}"
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            what = "import of a non-msvit module " + ", ".join(
                a.name for a in node.names) if isinstance(node, ast.Import) else f"import from {node.module}"
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            what = f"assignment {ast.unparse(node).split('=')[0].strip()}"
        bad.append(f"line {node.lineno}: {what}")
    for name in exported or []:
        if name not in imported:
            bad.append(f"__all__ lists {name!r}, which the file does not import")
    return bad


# ----------------------------------------------------------------------------- the checks on msvit/
def test_no_import_loops_counting_function_level_imports():
    graph, _ = import_graph(ROOT)
    found = cycles(graph)
    assert not found, "import loops (function-level imports counted):\n" + "\n\n".join(
        "\n".join(f"  {e}" for e in c) for c in found)


def test_no_module_imports_its_own_package_face():
    _, own = import_graph(ROOT)
    assert not own, "modules importing their own package's __init__:\n" + "\n".join(f"  {e}" for e in own)


def test_no_module_over_450_lines():
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / "msvit").rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_package_inits_only_reexport():
    bad = {str(p.relative_to(ROOT)): v for p in sorted((ROOT / "msvit").rglob("__init__.py"))
           if (v := init_violations(p))}
    assert not bad, "package __init__ doing more than re-exporting:\n" + "\n".join(
        f"  {f}: " + "; ".join(v) for f, v in bad.items())


# ----------------------------------------------------------------------------- the scanner catches what it must
def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


def test_scan_catches_a_loop_through_a_function_level_import(tmp_path):
    # the shape of export/auto.py on main before issue 30: the face imports a module whose function
    # imports back from the face
    root = _write(tmp_path, {
        "msvit/__init__.py": "",
        "msvit/export/__init__.py": "from .core import export\n__all__ = ['export']\n",
        "msvit/export/core.py": "def export():\n    from .auto import run\n    return run()\n",
        "msvit/export/auto.py": "def run():\n    from msvit.export import export\n    return export\n",
        "msvit/runtime.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .export import core\n",
    })
    graph, own = import_graph(root)
    found = cycles(graph)
    assert len(found) == 1
    text = "\n".join(map(str, found[0]))
    assert "msvit.export.auto -> msvit.export  (msvit/export/auto.py:2, in run())" in text
    assert [str(e.src) for e in own] == ["msvit.export.auto"]
    assert not graph["msvit.runtime"]  # TYPE_CHECKING imports never run


def test_scan_does_not_count_a_submodule_import_as_the_face(tmp_path):
    root = _write(tmp_path, {
        "msvit/__init__.py": "from . import a\n__all__ = ['a']\n",
        "msvit/a.py": "from . import b\n",
        "msvit/b.py": "def f():\n    from .a import g\n",
    })
    graph, own = import_graph(root)
    assert [e.dst for e in graph["msvit.a"]] == ["msvit.b"] and not own
    assert len(cycles(graph)) == 1  # a <-> b, through b's function-level import


@pytest.mark.parametrize("text, ok", [
    ('"""doc"""\nfrom __future__ import annotations\nfrom .x import A\nfrom msvit.y import b\n__all__ = ["A", "b"]\n',
     True),
    ("from .x import A\ndef helper():\n    pass\n", False),
    ("import os\nfrom .x import A\n", False),
    ("from .x import A\nTABLE = {'a': A}\n", False),
    ("from .x import A\n__all__ = ['A', 'B']\n", False),
    ("try:\n    from .x import A\nexcept ImportError:\n    A = None\n", False),
])
def test_init_rule(tmp_path, text, ok):
    p = tmp_path / "__init__.py"
    p.write_text(text)
    assert (init_violations(p) == []) is ok, init_violations(p)
