"""The project's import graph: no cycles between modules, and no private name used across modules.

Read from the sources with ``ast`` (nothing is imported), over every module of ``gpus``, ``moe``,
``sim``, ``kernels_numba`` and ``reports``. The rules:

* **Every import counts**, wherever it stands: at module level, inside a function, or under
  ``if TYPE_CHECKING:``. A cycle that a function-level or type-only import keeps from failing at
  import time is still a cycle in the design. A call ``importlib.import_module("x")`` with a
  literal name counts as ``import x``, and each entry of a module-level ``LAZY_IMPORTS`` table
  (:mod:`sim.lazy`: ``{"name": "x"}`` or ``dict(name="x:attribute")``) as ``from x import name``.
* **An import is an edge to the module it names and to the packages above that module which the
  importer is not inside.** ``import a.b.c``, ``from a.b.c import f`` and ``from a.b import c``
  (``c`` a submodule) name ``a.b.c``; ``from a.b import f`` (``f`` not a submodule) names the
  package ``a.b``, its ``__init__``. Importing ``a.b.c`` from outside ``a`` runs ``a/__init__.py``
  and ``a/b/__init__.py`` first, so those are edges too; a module inside ``a`` importing ``a.b.c``
  does not run ``a``'s ``__init__`` (already running or run), so for it they are not. Hence a
  package ``__init__`` that re-exports its submodules forms no cycle with them, as long as neither
  they nor what they import (from outside the package) import the package itself.
* **A private name** (one leading underscore, not a dunder) belongs to its module: it is not
  imported by another module (``from x import _y``) nor read as an attribute of an imported module
  (``x._y``, ``a.b._y`` after ``import a.b``). What modules share is public and has a docstring.
  Attributes of objects (``obj._cache``) are not module names and are not checked.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("gpus", "moe", "sim", "kernels_numba", "reports")


def modules_of(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    """Dotted module name -> source file, for every module of ``packages`` under ``root``."""
    out: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


class ModuleImports:
    """One module's edges (the modules its imports run) and its uses of other modules' privates."""

    def __init__(self, module: str, modules: dict[str, Path]) -> None:
        self.module = module
        self.modules = modules
        self.edges: set[str] = set()
        self.private: list[str] = []
        self.bound: dict[str, str] = {}  # local name -> the dotted module it stands for
        path = modules[module]
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                self._import(node)
            elif isinstance(node, ast.ImportFrom):
                self._import_from(node)
            elif isinstance(node, ast.Call) and _literal_import_module(node) is not None:
                self._names(str(_literal_import_module(node)), node.lineno)
        for statement in tree.body:
            for name, target in _lazy_imports(statement):
                module, _, attribute = target.partition(":")
                self._names(f"{module}.{attribute or name}", statement.lineno)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                self._attribute(node)

    def _longest_module(self, dotted: str) -> tuple[str, list[str]] | None:
        """The longest prefix of ``dotted`` that is a module of the tree, and the names after it."""
        parts = dotted.split(".")
        for i in range(len(parts), 0, -1):
            prefix = ".".join(parts[:i])
            if prefix in self.modules:
                return prefix, parts[i:]
        return None

    def _names(self, dotted: str, lineno: int) -> None:
        """Record that this module's import names ``dotted`` (a module, or a name in a module)."""
        found = self._longest_module(dotted)
        if found is None:
            return
        target, rest = found
        if target == self.module:
            return
        self.edges.add(target)
        parts = target.split(".")
        for i in range(1, len(parts)):  # the packages above the target that the import runs
            package = ".".join(parts[:i])
            if self.module != package and not self.module.startswith(package + "."):
                self.edges.add(package)
        if rest and _is_private(rest[0]):
            self.private.append(f"{self.module}:{lineno} imports {target}.{rest[0]}")

    def _import(self, node: ast.Import) -> None:
        for alias in node.names:
            if self._longest_module(alias.name) is None:
                continue
            self._names(alias.name, node.lineno)
            if alias.asname:
                self.bound[alias.asname] = alias.name
            else:
                top = alias.name.split(".")[0]
                self.bound[top] = top

    def _import_from(self, node: ast.ImportFrom) -> None:
        source = node.module or ""
        if node.level:  # relative: from the module's package, one level up per extra dot
            base = self.module.split(".")
            if self.modules[self.module].name != "__init__.py":
                base = base[:-1]
            base = base[: len(base) - (node.level - 1)]
            source = ".".join(base + ([node.module] if node.module else []))
        if self._longest_module(source) is None:
            return
        for alias in node.names:
            full = source if alias.name == "*" else f"{source}.{alias.name}"
            self._names(full, node.lineno)
            if full in self.modules:
                self.bound[alias.asname or alias.name] = full

    def _attribute(self, node: ast.Attribute) -> None:
        chain: list[str] = []
        current: ast.expr = node
        while isinstance(current, ast.Attribute):
            chain.append(current.attr)
            current = current.value
        if not isinstance(current, ast.Name) or current.id not in self.bound:
            return
        found = self._longest_module(".".join([self.bound[current.id], *reversed(chain)]))
        if found is None:
            return
        target, rest = found
        # a chain reports at its node whose last name follows the module, so each use counts once
        if len(rest) == 1 and _is_private(rest[0]) and target != self.module:
            self.private.append(f"{self.module}:{node.lineno} uses {target}.{rest[0]}")


def _literal_import_module(node: ast.Call) -> str | None:
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    if name != "import_module" or not node.args:
        return None
    arg = node.args[0]
    return arg.value if isinstance(arg, ast.Constant) and isinstance(arg.value, str) else None


def _lazy_imports(statement: ast.stmt) -> list[tuple[str, str]]:
    """(exported name, "module[:attribute]") of each entry of a ``LAZY_IMPORTS = {...}`` or
    ``LAZY_IMPORTS = dict(...)`` statement with literal strings; [] for any other statement."""
    if not (
        isinstance(statement, ast.Assign)
        and [t.id for t in statement.targets if isinstance(t, ast.Name)] == ["LAZY_IMPORTS"]
    ):
        return []
    value = statement.value
    pairs: list[tuple[ast.expr | None, ast.expr]] = []
    if isinstance(value, ast.Dict):
        pairs = list(zip(value.keys, value.values, strict=True))
    elif isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "dict":
        pairs = [(ast.Constant(k.arg), k.value) for k in value.keywords]
    out = []
    for key, target in pairs:
        if not (isinstance(key, ast.Constant) and isinstance(target, ast.Constant)):
            raise AssertionError(f"LAZY_IMPORTS at line {statement.lineno}: entries must be literal strings")
        out.append((str(key.value), str(target.value)))
    return out


def graph(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> dict[str, ModuleImports]:
    """Every module of ``packages`` with its imports."""
    modules = modules_of(root, packages)
    return {name: ModuleImports(name, modules) for name in modules}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def enter(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)

    for start in sorted(edges):
        if start in index:
            continue
        enter(start)
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(edges[start])))]
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    enter(child)
                    work.append((child, iter(sorted(edges.get(child, set())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        out.append(sorted(component))
    return sorted(out)


def shortest_cycle(edges: dict[str, set[str]], component: list[str]) -> list[str]:
    """One shortest cycle through the component's first module (breadth first), for the message."""
    members = set(component)
    start = component[0]
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(edges.get(node, set()) & members):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if child not in previous:
                    previous[child] = node
                    following.append(child)
        frontier = following
    return component


def test_no_import_cycles() -> None:
    modules = graph()
    assert {"gpus", "moe", "sim", "sim.timing", "kernels_numba", "reports"} <= set(modules)
    edges = {name: imports.edges for name, imports in modules.items()}
    found = cycles(edges)
    described = [" -> ".join(shortest_cycle(edges, c)) + f" (a cycle among {len(c)} modules)" for c in found]
    assert not found, "import cycles:\n" + "\n".join(described)


def test_no_private_names_across_modules() -> None:
    uses = sorted(use for imports in graph().values() for use in imports.private)
    assert not uses, "private names of other modules:\n" + "\n".join(uses)


def test_the_rules_on_a_made_up_package(tmp_path: Path) -> None:
    """A re-exporting ``__init__`` is no cycle; type-only, function-level and implicit-``__init__``
    cycles are; private imports and attribute reads across modules are caught, a module's own not."""
    files = {
        "pkg/__init__.py": "from pkg.a import public\nfrom . import b\n",
        "pkg/a.py": "def public(): ...\ndef _own(): ...\n_own()\n",
        "pkg/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.c import C\n",
        "pkg/c.py": "class C:\n    def f(self):\n        from pkg import b\n        return b\n",
        "pkg/d.py": "from pkg.a import _own\nimport pkg.a\nfrom pkg import a as alias\n"
        "pkg.a._own()\nalias._own()\n",
        "up/__init__.py": "import importlib\nimportlib.import_module('low.x')\n",
        "low/__init__.py": "",
        "low/x.py": "from up import something\n",
        "lazy/__init__.py": "LAZY_IMPORTS = {'f': 'lazy.m:g'}\n",
        "lazy/m.py": "import lazy\n",
        "lazy2/__init__.py": "LAZY_IMPORTS = dict(h='lazy2.n')\n",
        "lazy2/n.py": "",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    modules = graph(tmp_path, ("pkg", "up", "low", "lazy", "lazy2"))
    edges = {name: imports.edges for name, imports in modules.items()}
    assert edges["pkg"] == {"pkg.a", "pkg.b"}  # the package's own submodules, not itself
    assert edges["pkg.c"] == {"pkg.b"}  # inside pkg: no edge to pkg's __init__
    assert edges["low.x"] == {"up"}
    assert edges["lazy"] == {"lazy.m"} and edges["lazy2"] == {"lazy2.n"}  # a table's entries are imports
    assert cycles(edges) == [["lazy", "lazy.m"], ["low.x", "up"], ["pkg.b", "pkg.c"]]
    assert shortest_cycle(edges, ["pkg.b", "pkg.c"]) == ["pkg.b", "pkg.c", "pkg.b"]
    assert sorted(modules["pkg.d"].private) == [
        "pkg.d:1 imports pkg.a._own",
        "pkg.d:4 uses pkg.a._own",
        "pkg.d:5 uses pkg.a._own",
    ]
    assert modules["pkg.a"].private == []
    assert cycles({"a": {"b"}, "b": set()}) == []
