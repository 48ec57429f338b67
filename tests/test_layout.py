"""The package layout's rule, read from the sources' imports (function-level ones too): imports
flow one way down the layers below, and no module reaches itself through its imports."""
from __future__ import annotations

import ast
from pathlib import Path

import tenancy

ROOT = Path(tenancy.__file__).parent
# top to bottom; a module may import its own layer and the ones below it, never one above
LAYERS = [("cli", "__main__"), ("sweep", "report"), ("harness",), ("serving", "endpoint", "autoscale"), ("gpu",),
          ("analysis",), ("models",), ("core",)]
RANK = {pkg: len(LAYERS) - i for i, names in enumerate(LAYERS) for pkg in names}


def modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = ["tenancy", *path.relative_to(ROOT).with_suffix("").parts]
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(path: Path, known: set[str]) -> set[str]:
    """The tenancy modules `path` imports (`from a import b` counts a.b when b is a module)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("tenancy")}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("tenancy"):
            out |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module
                    for a in node.names}
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {m: imports(p, set(mods)) - {m} for m, p in mods.items()}


def layer(module: str) -> int | None:
    parts = module.split(".")
    return RANK.get(parts[1]) if len(parts) > 1 else None


def back_edges(edges: dict[str, set[str]]) -> list[str]:
    return sorted(f"{a} -> {b}" for a, deps in edges.items() for b in deps
                  if layer(a) is not None and layer(b) is not None and layer(b) > layer(a))


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges.get(v, ()):
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

    for v in edges:
        if v not in index:
            visit(v)
    return found


def test_every_module_at_the_root_is_the_package_or_its_entry_point():
    assert sorted(p.name for p in ROOT.glob("*.py")) == ["__init__.py", "__main__.py"]
    assert all(layer(m) is not None for m in modules() if m.count(".") >= 1 and m != "tenancy.__main__")


def test_imports_flow_one_way_down_the_layers():
    assert back_edges(graph()) == []


def test_no_module_reaches_itself_through_its_imports():
    assert circles(graph()) == []


def test_the_rule_catches_a_back_edge_and_a_circle():
    edges = {"tenancy.core.errors": {"tenancy.harness.runner"}, "tenancy.harness.runner": {"tenancy.core.errors"}}
    assert back_edges(edges) == ["tenancy.core.errors -> tenancy.harness.runner"]
    assert circles(edges) == [["tenancy.core.errors", "tenancy.harness.runner"]]
