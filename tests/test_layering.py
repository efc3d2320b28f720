"""Imports point down: a module may import its own unit and units of lower layers, nothing else.

A unit is a top-level module (``visionflow/settings.py``) or a subpackage (``visionflow/graph/``);
``__init__`` is the package's own ``__init__.py`` (``__version__``). The order below is the one
docs/architecture.md section 3 describes; a new module must be placed here before it can pass.

Every import counts: at module level, inside functions (a lazy import still ties the two units
together, and hides it) and under ``TYPE_CHECKING`` (a higher layer's type in a lower layer's
signature means the lower layer knows about the higher one; none is needed today).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "visionflow"

# Lowest first. Units in one layer are peers: they may not import each other either.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("__init__", "errors"),  # the version string and the exception tree
    ("jsonsafe", "fileio", "threads", "memory", "logs", "metrics", "settings", "supervisor"),
    ("live_settings", "exitguard"),  # settings + the overrides file; the exit deadline
    # the wire codec (a client may use it alone); MCP servers; a notes vault (knows no graph)
    ("protocol", "mcp", "notes"),
    ("graph", "mcpsim"),  # the store (agents.py takes mcp.claudeflow.Agent); the simulator
    ("physics",),  # lays the store out
    ("state",),  # saved graph and layout (state/layout.py: the file and the LayoutSaver)
    ("changes",),  # graph changes from every source: store, state, engine wake, viewers
    ("web",),  # wires the subsystems together
    ("cluster",),  # NATS: the service's publisher (a hub tap) and `visionflow relay` (web parts)
    ("service",),
    ("cli",),
    ("__main__",),
)
LAYER = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}


def unit_of(module: str) -> str:
    """``visionflow.graph.store`` -> ``graph``; ``visionflow`` (or one of its attributes) ->
    ``__init__``."""
    parts = module.split(".")
    assert parts[0] == "visionflow", module
    if len(parts) == 1:
        return "__init__"
    name = parts[1]
    if (PACKAGE / name).is_dir() or (PACKAGE / f"{name}.py").is_file():
        return name
    return "__init__"  # ``from visionflow import __version__``


def imports(tree: ast.AST, package: list[str]) -> Iterator[tuple[int, str]]:
    """(line, absolute module) of every ``visionflow`` import anywhere in ``tree``: module
    level, functions, classes, ``if TYPE_CHECKING:`` blocks and ``try`` alike. ``package`` is
    the importing module's package, to resolve relative imports."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from visionflow import settings`` imports the module visionflow.settings
            targets = [f"{base}.{a.name}" for a in node.names] if base == "visionflow" else [base]
        else:
            continue
        for target in targets:
            if target == "visionflow" or target.startswith("visionflow."):
                yield node.lineno, target


def violations() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("").parts  # ('visionflow', 'graph', ...)
        package = list(rel[:-1])  # a package's __init__.py is in that package
        unit = "__init__" if rel == ("visionflow", "__init__") else rel[1]
        where = path.relative_to(PACKAGE.parent)
        if unit not in LAYER:
            found.append(f"{where}: unit {unit!r} has no layer in tests/test_layering.py")
            continue
        for line, target in imports(ast.parse(path.read_text(), str(path)), package):
            other = unit_of(target)
            if other == unit:
                continue
            if other not in LAYER:
                found.append(f"{where}:{line}: imports {target}, whose unit has no layer")
            elif LAYER[other] >= LAYER[unit]:
                how = "a peer" if LAYER[other] == LAYER[unit] else "a higher layer"
                found.append(f"{where}:{line}: {unit} imports {target} ({how})")
    return found


def test_imports_point_down() -> None:
    assert violations() == []


def test_walk_sees_lazy_typing_and_relative_imports() -> None:
    source = """
from typing import TYPE_CHECKING
from .store import GraphStore
from .. import settings
if TYPE_CHECKING:
    from visionflow.web.hub import Hub
def f():
    import visionflow.physics.cpu
"""
    found = [m for _, m in imports(ast.parse(source), ["visionflow", "graph"])]
    assert found == [
        "visionflow.graph.store",
        "visionflow.settings",
        "visionflow.web.hub",
        "visionflow.physics.cpu",
    ]
    assert [unit_of(m) for m in found] == ["graph", "settings", "web", "physics"]
    assert unit_of("visionflow.__version__") == "__init__"
