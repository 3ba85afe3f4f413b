"""`clawmcp stdio`, `desktop-config` and the CLI against a running host, as real processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters

from tests.e2e.test_serve import serving
from tests.test_toolhub import TIME, free_port

MANIFEST = f"""
models:
  canned:
    provider: scripted
    rules:
      - when: "(?i)time"
        steps:
          - tool: time__get_current_time
            arguments: {{timezone: UTC}}
        reply: "{{{{ results[0] }}}}"
      - reply: "echo: {{{{ input }}}}"
servers:
  time: {TIME}
claws:
  scout: {{model: canned, tools: ["time.*"]}}
  editor: {{model: canned}}
"""


def manifest(tmp_path: Path) -> Path:
    path = tmp_path / "m.yaml"
    path.write_text(f"host: {{listen: '127.0.0.1:{free_port()}', data_dir: state}}\n" + MANIFEST)
    return path


def clawmcp(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clawmcp", *args], capture_output=True, text=True, timeout=60
    )


async def ask_over_stdio(path: Path, mode: str) -> tuple[list[str], str, str]:
    """Tools, the reply to a time question, and the status resource, from `clawmcp stdio scout`."""
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "clawmcp", "stdio", "scout", str(path)]
    )
    with anyio.fail_after(60):
        async with Client(params, mode=mode) as client:  # type: ignore[arg-type]
            tools = [t.name for t in (await client.list_tools()).tools]
            result = await client.call_tool("ask", {"message": "what time is it?"})
            status = await client.read_resource("claw://scout/status")
    return tools, result.content[0].text, status.contents[0].text  # type: ignore[union-attr]


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_stdio_runs_the_host_in_process_when_none_is_running(tmp_path: Path, mode: str) -> None:
    tools, reply, status = await ask_over_stdio(manifest(tmp_path), mode)
    assert tools == ["ask", "tell", "status", "schedule", "unschedule", "schedules"]
    assert json.loads(reply)["timezone"] == "UTC"
    assert json.loads(status)["last_runs"][0]["state"] == "done"


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_stdio_bridges_to_a_running_host_and_the_cli_talks_to_it(tmp_path: Path, mode: str) -> None:
    path = manifest(tmp_path)
    assert "no clawmcp host is running" in clawmcp("claws", "-p", str(path)).stderr
    async with serving(path, mcp_config=False):
        tools, reply, _ = await ask_over_stdio(path, mode)
        assert "ask" in tools and json.loads(reply)["timezone"] == "UTC"

        listed = clawmcp("claws", "--json", "-p", str(path))
        assert listed.returncode == 0
        scout = next(c for c in json.loads(listed.stdout) if c["claw"] == "scout")
        assert scout["last_runs"][0]["state"] == "done"  # the bridged ask ran in the serving host

        table = clawmcp("claws", "-p", str(path)).stdout.splitlines()
        assert table[0].split() == ["CLAW", "STATE", "MODEL", "MAILBOX", "DEAD", "SCHEDULES", "LAST", "RUN"]
        assert [line.split()[0] for line in table[1:]] == ["editor", "scout"]

        asked = clawmcp("ask", "editor", "hello", "-p", str(path))
        assert (asked.returncode, asked.stdout) == (0, "echo: hello\n")
        told = clawmcp("tell", "editor", "later", "-p", str(path))
        assert told.returncode == 0 and int(told.stdout) > 0
        unknown = clawmcp("ask", "ghost", "hello", "-p", str(path))
        assert unknown.returncode == 1
        assert unknown.stderr == "no Claw 'ghost' (Claws: editor, scout) (HTTP 404)\n"


@pytest.mark.anyio
async def test_desktop_config_prints_a_working_mcp_servers_entry(tmp_path: Path) -> None:
    path = manifest(tmp_path)
    printed = clawmcp("desktop-config", "scout", "-p", str(path))
    assert printed.returncode == 0
    entry = json.loads(printed.stdout)["mcpServers"]["scout"]
    assert Path(entry["command"]).is_absolute() and str(path.resolve()) in entry["args"]
    params = StdioServerParameters(command=entry["command"], args=entry["args"], cwd="/")
    with anyio.fail_after(60):
        async with Client(params) as client:
            reply = await client.call_tool("ask", {"message": "hi"})
    assert reply.content[0].text == "echo: hi"  # type: ignore[union-attr]
    assert "no Claw 'ghost'" in clawmcp("desktop-config", "ghost", "-p", str(path)).stderr


def test_stdio_names_an_unknown_claw(tmp_path: Path) -> None:
    result = clawmcp("stdio", "ghost", str(manifest(tmp_path)))
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.strip() == "no Claw 'ghost' (Claws: editor, scout)"
