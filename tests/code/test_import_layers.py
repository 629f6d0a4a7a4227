"""The packages of fxstack form layers: no import cycle, at module level or hidden in a function.

Every `import` statement counts, wherever it stands, since an import inside a function still
ties the two modules together (it only hides the cycle from the interpreter until run time).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

SRC = Path(__file__).resolve().parents[2] / "src"


def module_imports(src: Path, package: str) -> dict[str, set[str]]:
    """{module: modules of `package` it imports}, dotted names, relative imports resolved."""
    graph: dict[str, set[str]] = {}
    for path in sorted((src / package).rglob("*.py")):
        rel = path.relative_to(src).with_suffix("")
        parts = list(rel.parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts = parts[:-1]
        name = ".".join(parts)
        here = parts if is_pkg else parts[:-1]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = here[: len(here) - node.level + 1] if node.level else []
                mod = ".".join(base + (node.module.split(".") if node.module else []))
                deps.add(mod)
                deps.update(f"{mod}.{a.name}" for a in node.names)
        graph[name] = {d for d in deps if d.split(".")[0] == package}
    known = set(graph)
    # `from .x import y` names either a module x.y or an attribute y of x: keep what exists.
    return {m: {d for d in ds if d in known and d != m} for m, ds in graph.items()}


def unit_of(module: str) -> str:
    """fxstack.image.builder -> fxstack.image; fxstack.cli -> fxstack.cli."""
    parts = module.split(".")
    return ".".join(parts[:2])


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    colour: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if colour.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if colour.get(nxt) is None and (found := visit(nxt)):
                return found
        stack.pop()
        colour[node] = 2
        return None

    for node in sorted(graph):
        if colour.get(node) is None and (found := visit(node)):
            return found
    return None


def package_graph(modules: dict[str, set[str]]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for mod, deps in modules.items():
        u = unit_of(mod)
        graph.setdefault(u, set()).update(unit_of(d) for d in deps if unit_of(d) != u)
    return graph


@pytest.mark.parametrize("package", ["fxstack", "fxservices"])
def test_no_cycle_between_packages(package):
    cycle = find_cycle(package_graph(module_imports(SRC, package)))
    assert cycle is None, "import cycle between packages: " + " -> ".join(cycle)


@pytest.mark.parametrize("package", ["fxstack", "fxservices"])
def test_no_cycle_between_modules(package):
    cycle = find_cycle(module_imports(SRC, package))
    assert cycle is None, "import cycle between modules: " + " -> ".join(cycle)


def test_the_walk_sees_a_cycle_hidden_in_a_function(tmp_path):
    """The check itself can fail: two packages that import each other, one inside a function."""
    pkg = tmp_path / "demo"
    for sub in ("a", "b"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "a" / "mod.py").write_text("from ..b.mod import g\n")
    (pkg / "b" / "mod.py").write_text("def g():\n    from ..a import mod\n    return mod\n")
    modules = module_imports(tmp_path, "demo")
    assert find_cycle(package_graph(modules)) == ["demo.a", "demo.b", "demo.a"]
    assert find_cycle(modules) is not None


def test_layers_are_in_the_documented_order():
    """Lower layers never import upper ones: image and load know nothing of workflow or stack."""
    graph = package_graph(module_imports(SRC, "fxstack"))
    for low, high in [("fxstack.image", "fxstack.load"), ("fxstack.image", "fxstack.workflow"),
                      ("fxstack.load", "fxstack.workflow"), ("fxstack.workflow", "fxstack.stack"),
                      ("fxstack.lock", "fxstack.image"), ("fxstack.image", "fxstack.stack"),
                      ("fxstack.load", "fxstack.stack")]:
        assert high not in graph.get(low, set()), f"{low} imports {high}"
