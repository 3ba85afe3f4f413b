"""The core is plain async Python: it imports none of the SDK and HTTP libraries of the edges."""

from __future__ import annotations

import subprocess
import sys

import pytest

CORE = ["runtime", "router", "scheduler", "claw", "store", "store.sqlite", "supervisor", "builtins", "events"]
EDGES = ("mcp", "starlette", "uvicorn", "httpx2", "sse_starlette")


@pytest.mark.parametrize("module", CORE)
def test_a_core_module_loads_no_sdk_or_http_library(module: str) -> None:
    script = (
        f"import sys, clawmcp.{module}\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(EDGES)!r}))"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert run.stdout.strip() == "[]", run.stderr
