"""`clawmcp stdio`, `desktop-config` and the CLI against a running host, as real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import anyio
import mcp_types as types
import pytest
from mcp import Client, StdioServerParameters
from mcp.shared.exceptions import MCPDeprecationWarning

from clawmcp.stdio import GONE
from clawmcp.store.lock import read_lock_info
from tests.e2e.test_serve import serving
from tests.fakes import TIME

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
    path.write_text("host: {listen: '127.0.0.1:0', data_dir: state}\n" + MANIFEST)
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
        async with Client(params, mode=mode) as client:
            tools = [t.name for t in (await client.list_tools()).tools]
            result = await client.call_tool("ask", {"message": "what time is it?"})
            status = await client.read_resource("claw://scout/status")
    return tools, result.content[0].text, status.contents[0].text  # type: ignore[union-attr]


@contextmanager
def host_stopped_after(data_dir: Path) -> Iterator[None]:
    """Stop the detached host a bridge started, once the block is over."""
    try:
        yield
    finally:
        if (info := read_lock_info(data_dir)) and info.get("pid"):
            with suppress(ProcessLookupError):
                os.kill(info["pid"], signal.SIGTERM)


def bridge(path: Path, claw: str = "scout", env: dict[str, str] | None = None) -> StdioServerParameters:
    """`clawmcp stdio` as Claude Desktop starts it."""
    return StdioServerParameters(
        command=sys.executable, args=["-m", "clawmcp", "stdio", claw, str(path)], env=env, cwd="/"
    )


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_stdio_starts_a_detached_host_when_none_is_running(tmp_path: Path, mode: str) -> None:
    with host_stopped_after(tmp_path / "state"):
        tools, reply, status = await ask_over_stdio(manifest(tmp_path), mode)
        assert tools == [
            "ask",
            "tell",
            "status",
            "schedule",
            "unschedule",
            "schedules",
            "approvals",
            "decide",
            "result",
            "cancel",
        ]
        assert json.loads(reply)["timezone"] == "UTC"
        assert json.loads(status)["last_runs"][0]["state"] == "done"
        info = read_lock_info(tmp_path / "state")  # the bridge is gone; the host it started is not
        assert info is not None and info["pid"] != os.getpid()
        assert "listening on" in (tmp_path / "state" / "host.log").read_text()


@pytest.mark.anyio
async def test_bridges_survive_a_sigkilled_host_with_one_clear_line(tmp_path: Path) -> None:
    path, data_dir = manifest(tmp_path), tmp_path / "state"
    with host_stopped_after(data_dir), anyio.fail_after(120):
        async with Client(bridge(path, "scout")) as scout, Client(bridge(path, "editor")) as editor:
            assert (await editor.call_tool("ask", {"message": "one"})).content[0].text == "echo: one"  # type: ignore[union-attr]
            info = read_lock_info(data_dir)
            assert info is not None
            os.kill(info["pid"], signal.SIGKILL)
            for client in (scout, editor):
                with anyio.fail_after(10):
                    first = await client.call_tool("ask", {"message": "two"})
                text = first.content[0].text  # type: ignore[union-attr]
                assert text in ("echo: two", GONE), text  # one line, never a hang or a traceback
            for client in (scout, editor):  # a host is back (one, started by a bridge)
                with anyio.fail_after(60):
                    while (again := await client.call_tool("ask", {"message": "three"})).is_error:
                        assert again.content[0].text == GONE  # type: ignore[union-attr]
                        await anyio.sleep(0.5)  # the bridge is starting a host: nothing to wait on
                assert again.content[0].text == "echo: three"  # type: ignore[union-attr]
            new = read_lock_info(data_dir)
            assert new is not None and new["pid"] != info["pid"]


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_completion_and_logging_level_work_over_the_bridge(tmp_path: Path, mode: str) -> None:
    path = manifest(tmp_path)
    with host_stopped_after(tmp_path / "state"), anyio.fail_after(60):
        async with Client(bridge(path), mode=mode) as client:
            await client.call_tool("ask", {"message": "hi", "thread": "work"})
            ref = types.ResourceTemplateReference(type="ref/resource", uri="claw://scout/history/{thread}")
            done = await client.complete(ref, {"name": "thread", "value": "wo"})
            assert done.completion.values == ["work"]
            with warnings.catch_warnings():  # deprecated in the 2026 era, and still answered
                warnings.simplefilter("ignore", MCPDeprecationWarning)
                await client.set_logging_level("info")


def test_a_bridge_to_a_host_with_tokens_says_it_needs_one(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    token = "{name: d, token: a-long-enough-token-0123}"
    path.write_text(
        f"host: {{listen: '127.0.0.1:0', data_dir: state, auth: {{tokens: [{token}]}}}}\n" + MANIFEST
    )
    with host_stopped_after(tmp_path / "state"):
        result = clawmcp("stdio", "scout", str(path))
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.strip().startswith("the clawmcp host needs a token: set CLAWMCP_TOKEN")


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
        assert table[0].split() == [
            "CLAW",
            "STATE",
            "HOST",
            "MODEL",
            "MAILBOX",
            "DEAD",
            "SCHEDULES",
            "LAST",
            "RUN",
        ]
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
    assert "env" not in entry  # the manifest needs nothing from the environment
    with host_stopped_after(tmp_path / "state"), anyio.fail_after(60):
        async with Client(StdioServerParameters(command=entry["command"], args=entry["args"])) as client:
            reply = await client.call_tool("ask", {"message": "hi"})
    assert reply.content[0].text == "echo: hi"  # type: ignore[union-attr]
    assert "no Claw 'ghost'" in clawmcp("desktop-config", "ghost", "-p", str(path)).stderr


def test_desktop_config_shows_what_the_environment_must_give_never_its_values(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(
        "host: {auth: {tokens: [{name: d, token: '${CLAWMCP_TOKEN}'}]}}\n"
        "models: {m: {provider: openai, model: x, api_key: '${SOME_API_KEY}', base_url: '${BASE:-http://x}'}}\n"
        "claws: {c: {model: m}}\n"
    )
    printed = subprocess.run(
        [sys.executable, "-m", "clawmcp", "desktop-config", "-p", str(path)],
        capture_output=True,
        text=True,
        env=os.environ | {"SOME_API_KEY": "sk-secret-value", "CLAWMCP_TOKEN": "tok-secret-value-0123"},
    )
    env = json.loads(printed.stdout)["mcpServers"]["c"]["env"]
    assert env == {"CLAWMCP_TOKEN": "<CLAWMCP_TOKEN>", "SOME_API_KEY": "<SOME_API_KEY>"}
    assert "secret" not in printed.stdout


def test_stdio_names_an_unknown_claw(tmp_path: Path) -> None:
    result = clawmcp("stdio", "ghost", str(manifest(tmp_path)))
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.strip() == "no Claw 'ghost' (Claws: editor, scout)"


@pytest.mark.anyio
async def test_tools_lists_patterns_and_wire_names_and_logs_reads_the_store_without_a_host(
    tmp_path: Path,
) -> None:
    path = manifest(tmp_path)
    async with serving(path, mcp_config=False):
        listed = clawmcp("tools", "-p", str(path))
        assert listed.returncode == 0, listed.stderr
        rows = [line.split() for line in listed.stdout.splitlines()]
        assert rows[0] == ["PATTERN", "WIRE", "NAME", "SERVER", "PIN", "CLAWS"]
        assert ["time.get_current_time", "time__get_current_time", "up", "pinned", "scout"] in rows
        as_json = json.loads(clawmcp("tools", "time", "--json", "-p", str(path)).stdout)
        assert {t["wire"] for t in as_json} == {"time__get_current_time", "time__convert_time"}
        assert "no tools of a server 'ghost'" in clawmcp("tools", "ghost", "-p", str(path)).stderr
        assert clawmcp("ask", "scout", "hello", "-p", str(path)).returncode == 0
    logged = clawmcp("logs", "scout", "-p", str(path))  # the host is gone; the log is not
    assert logged.returncode == 0
    assert any("run 1 done" in line for line in logged.stdout.splitlines())
    followed = clawmcp("logs", "-f", "-p", str(path))
    assert followed.returncode == 1 and "nothing more will come" in followed.stderr
