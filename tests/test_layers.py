"""The shape of the package, read from its source: no import cycles, and a core of plain async
Python that imports none of the SDK and HTTP libraries of the edges."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
CORE = [
    "runtime",
    "context",
    "models.fallback",
    "router",
    "scheduler",
    "claw",
    "mailbox",
    "store",
    "store.sqlite",
    "store.postgres",
    "cluster",
    "supervisor",
    "builtins",
    "events",
    "approvals",
    "alerts",
]
EDGES = {"mcp", "starlette", "uvicorn", "httpx2", "sse_starlette"}


def _modules() -> dict[str, Path]:
    found = {}
    for path in (SRC / "clawmcp").rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = _modules()


@cache
def imports(module: str) -> frozenset[str]:
    """Every module `module` imports, anywhere in it (also under TYPE_CHECKING and in functions):
    ours by full name, others by their top-level package."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        for name in names:
            found.add(name if name in MODULES else name.split(".")[0])
    return frozenset(found - {module, "clawmcp"})


def test_no_module_imports_itself_through_others() -> None:
    def cycle_from(start: str) -> list[str] | None:
        path, seen = [start], set()

        def walk(module: str) -> list[str] | None:
            for imported in sorted(imports(module) & MODULES.keys()):
                if imported == start:
                    return [*path, start]
                if imported not in seen:
                    seen.add(imported)
                    path.append(imported)
                    if found := walk(imported):
                        return found
                    path.pop()
            return None

        return walk(start)

    cycles = [" → ".join(c) for m in sorted(MODULES) if (c := cycle_from(m))]
    assert cycles == []


@pytest.mark.parametrize("module", CORE)
def test_a_core_module_loads_no_sdk_or_http_library(module: str) -> None:
    loaded, todo = set(), [f"clawmcp.{module}"]
    while todo:
        current = todo.pop()
        if current not in loaded:
            loaded.add(current)
            todo.extend(imports(current) & MODULES.keys())
    used = {m: sorted(imports(m) & EDGES) for m in sorted(loaded) if imports(m) & EDGES}
    assert used == {}
