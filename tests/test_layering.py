"""Layers import one way and no subpackage imports one that imports it back.

Every module under ``fastdistill/`` is parsed with ``ast`` (nothing is imported), and every ``import`` in it, at module
level or inside a function, becomes an edge between units: the top-level subpackages and modules (``data``,
``models``, ``ops``, ``augment``, ``methods``, ``pipelines``, ``eval``, ``commands``, ``utils``, ``errors``, ...),
and inside ``methods`` and ``pipelines`` each subpackage or module of its own (``pipelines.delt`` vs
``pipelines.pdd``; the package's ``__init__`` is the unit ``methods`` / ``pipelines``). Cycles are refused between
these units and between the top-level ones alone (``methods`` <-> ``pipelines``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "fastdistill"
PACKAGE = "fastdistill"
SPLIT = ("methods", "pipelines")  # packages whose children are units of their own

# Lower layers never import higher ones; units of one layer may import each other as long as there is no cycle.
LAYERS = (
    ("__init__", "errors", "utils", "backends", "_extension", "_C"),
    ("data",),
    ("models",),
    ("ops",),
    ("augment",),
    ("methods",),
    ("pipelines",),
    ("eval",),
    ("report",),
    ("commands", "cli", "__main__"),
)
RANK = {name: i for i, names in enumerate(LAYERS) for name in names}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_package(dotted: str) -> bool:
    return (ROOT.parent / dotted.replace(".", "/")).is_dir()


def _exists(dotted: str) -> bool:
    """A package, a module or a compiled extension (``_C.<abi>.so``)."""
    path = ROOT.parent / dotted.replace(".", "/")
    return path.is_dir() or path.with_suffix(".py").exists() or any(path.parent.glob(f"{path.name}.*.so"))


def unit(module: str) -> str:
    """The unit a ``fastdistill`` module belongs to (see the module docstring)."""
    parts = module.split(".")[1:]
    if not parts:
        return "__init__"
    if parts[0] in SPLIT and len(parts) > 1:
        return f"{parts[0]}.{parts[1]}"
    return parts[0]


def _imports(path: Path, source: str | None = None) -> list[tuple[str, int]]:
    """Every ``fastdistill`` module ``path`` (or ``source`` read as that file) imports, at any depth, with its line."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text() if source is None else source, str(path))):
        if isinstance(node, ast.Import):
            out += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.append((sub if _exists(sub) else base, node.lineno))
    return sorted({(name, line) for name, line in out if name == PACKAGE or name.startswith(PACKAGE + ".")})


def import_graph() -> dict[tuple[str, str], list[str]]:
    """(importing unit, imported unit) -> the imports that make the edge, as ``file:line imports module``."""
    edges: dict[tuple[str, str], list[str]] = {}
    for path in sorted(ROOT.rglob("*.py")):
        src = unit(_module_name(path))
        for target, line in _imports(path):
            dst = unit(target)
            if dst != src:
                where = f"{path.relative_to(ROOT.parent)}:{line} imports {target}"
                edges.setdefault((src, dst), []).append(where)
    return edges


def _cycles(edges: dict[tuple[str, str], list[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one unit (Tarjan)."""
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return components


def test_every_unit_has_a_layer():
    units = {unit(_module_name(p)) for p in ROOT.rglob("*.py")}
    missing = sorted(u for u in units if u.split(".")[0] not in RANK)
    assert not missing, f"add these to LAYERS in {Path(__file__).name}: {missing}"


def _top_level(edges: dict[tuple[str, str], list[str]]) -> dict[tuple[str, str], list[str]]:
    """The graph between top-level units only (``pipelines.delt`` -> ``pipelines``)."""
    out: dict[tuple[str, str], list[str]] = {}
    for (a, b), where in edges.items():
        a, b = a.split(".")[0], b.split(".")[0]
        if a != b:
            out.setdefault((a, b), []).extend(where)
    return out


@pytest.mark.parametrize("level", ["units", "top-level"])
def test_no_import_cycle(level):
    edges = import_graph() if level == "units" else _top_level(import_graph())
    cycles = _cycles(edges)
    detail = []
    for component in cycles:
        inside = [w for (a, b), where in edges.items() if a in component and b in component for w in where]
        detail.append(f"{' <-> '.join(component)}:\n    " + "\n    ".join(inside))
    assert not cycles, "import cycles between fastdistill units:\n" + "\n".join(detail)


def test_lower_layers_never_import_higher_ones():
    bad = [where for (a, b), wheres in import_graph().items()
           if RANK.get(a.split(".")[0], -1) < RANK.get(b.split(".")[0], -1) for where in wheres]
    assert not bad, "imports against the layer order " + " -> ".join("/".join(n) for n in LAYERS) + ":\n" + \
        "\n".join(bad)


@pytest.mark.parametrize("module, expected", [
    ("fastdistill", "__init__"), ("fastdistill.errors", "errors"), ("fastdistill.augment.dsa", "augment"),
    ("fastdistill.methods", "methods"), ("fastdistill.methods.base", "methods.base"),
    ("fastdistill.methods.delt.recover", "methods.delt"), ("fastdistill.pipelines.pdd.engine", "pipelines.pdd"),
])
def test_units(module, expected):
    assert unit(module) == expected


def test_the_checker_sees_lazy_and_relative_imports():
    source = "def f():\n    from fastdistill.eval import harness\n    from ..augment import dsa\n"
    found = _imports(ROOT / "data" / "base.py", source)
    assert ("fastdistill.eval.harness", 2) in found and ("fastdistill.augment.dsa", 3) in found
