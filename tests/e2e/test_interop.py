"""Other people's MCP clients against a Claw: the MCP Inspector CLI over stdio, streamable HTTP and
SSE, and the official conformance suite (server mode) for both spec versions it knows."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from clawmcp.host import Host
from clawmcp.manifest import load
from clawmcp.web import serving
from tests.conftest import ROOT
from tests.e2e.test_stdio_and_cli import manifest

BIN = ROOT / "node_modules" / ".bin"
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}  # node 22 from npm comes first


@asynccontextmanager
async def host_on_http(tmp_path: Path) -> AsyncIterator[tuple[Path, str]]:
    path = manifest(tmp_path)
    host = Host(load([path]))
    with anyio.fail_after(120):
        async with serving(host):
            await host.hub.wait_up("time")
            yield path, f"http://{host.listen}"  # the port it got for port 0


async def node(*args: str, cwd: Path) -> tuple[int, str, str]:
    result = await anyio.run_process([str(BIN / args[0]), *args[1:]], check=False, env=ENV, cwd=cwd)
    return result.returncode, result.stdout.decode(), result.stderr.decode()


@pytest.mark.anyio
async def test_the_inspector_lists_and_asks_over_every_transport(tmp_path: Path) -> None:
    async with host_on_http(tmp_path) as (path, base):
        targets = {
            "http": [f"{base}/claws/scout/mcp", "--transport", "http"],
            "sse": [f"{base}/claws/scout/sse", "--transport", "sse"],
            "stdio": [sys.executable, "-m", "clawmcp", "stdio", "scout", str(path)],
        }
        for transport, target in targets.items():
            code, out, err = await node(
                "mcp-inspector", "--cli", *target, "--method", "tools/list", cwd=tmp_path
            )
            assert code == 0, f"{transport}: {out}{err}"
            assert [t["name"] for t in json.loads(out)["tools"]][:3] == ["ask", "tell", "status"]
            ask = ["--method", "tools/call", "--tool-name", "ask", "--tool-arg", "message=what time is it"]
            code, out, err = await node("mcp-inspector", "--cli", *target, *ask, cwd=tmp_path)
            assert code == 0, f"{transport}: {out}{err}"
            reply = json.loads(out)
            assert reply["isError"] is False and json.loads(reply["content"][0]["text"])["timezone"] == "UTC"


@pytest.mark.anyio
@pytest.mark.parametrize("version", ["2025-06-18", "2025-11-25"])
async def test_the_conformance_suite_passes_all_but_the_fixture_scenarios(
    tmp_path: Path, version: str
) -> None:
    expected = Path(__file__).parent / "conformance-expected.yaml"
    async with host_on_http(tmp_path) as (_, base):
        code, out, err = await node(
            "conformance",
            "server",
            "--url",
            f"{base}/claws/scout/mcp",
            "--spec-version",
            version,
            "--expected-failures",
            str(expected),
            cwd=tmp_path,
        )
    assert code == 0, out + err
    assert "all failures are expected" in out + err
