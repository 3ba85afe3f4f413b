"""The tool hub against real tool servers: mcp-server-time over stdio, and servers that misbehave."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import Process

from clawmcp.errors import ToolRefused, ToolServerError
from clawmcp.manifest import load
from clawmcp.stdio_transport import LINE_CAP
from clawmcp.store.memory import MemoryStore
from clawmcp.toolhub import ToolHub, wire_names
from tests.conftest import ROOT
from tests.fakes import PEERS, TIME, listening

MODELS = "models:\n  m: {provider: scripted, rules: [{reply: hi}]}\n"


def test_wire_names_are_sanitised_short_and_never_shared() -> None:
    long = "x" * 80
    names = wire_names([("time", "get.time"), ("time", "get_time"), ("fs", "read/file"), ("fs", long)])
    assert names[("time", "get.time")] == "time__get_time"
    assert re.fullmatch(r"time__get_time_[0-9a-f]{8}", names[("time", "get_time")])
    assert names[("fs", "read/file")] == "fs__read_file"
    assert len(names[("fs", long)]) == 64
    assert len(set(names.values())) == 4
    assert wire_names([("fs", long)]) == {("fs", long): names[("fs", long)]}  # stable


def children(pattern: str) -> list[int]:
    """Our child processes whose command line contains `pattern`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == os.getpid() and pattern in cmdline:
            found.append(int(stat.parent.name))
    return found


@asynccontextmanager
async def running(tmp_path: Path, body: str, **options: Any) -> AsyncIterator[ToolHub]:
    (tmp_path / "m.yaml").write_text(MODELS + body)
    hub = ToolHub(load([tmp_path / "m.yaml"]), MemoryStore(), backoff=(0.05, 0.2), **options)
    async with hub.store, anyio.create_task_group() as tg:  # type: ignore[union-attr]
        with anyio.fail_after(30):
            await tg.start(hub.run)
        yield hub
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_a_claw_calls_mcp_server_time_and_sees_only_what_it_may(tmp_path: Path) -> None:
    body = f"servers:\n  time: {TIME}\nclaws:\n  a: {{model: m, tools: ['time.get_*']}}\n  b: {{model: m}}\n"
    async with running(tmp_path, body) as hub:
        assert [t.wire for t in hub.tools_for("a")] == ["time__get_current_time"]
        assert hub.tools_for("b") == []
        assert hub.unmatched_patterns() == []
        result = await hub.call("a", "time__get_current_time", {"timezone": "UTC"})
        assert (
            not result.is_error
            and result.structured_content
            and result.structured_content["timezone"] == "UTC"
        )
        for claw, wire in [("a", "time__convert_time"), ("b", "time__get_current_time"), ("a", "nope")]:
            with pytest.raises(ToolRefused):
                await hub.call(claw, wire, {})
    async with hub.store:  # type: ignore[union-attr]  # the memory store keeps its rows when reopened
        audit = await hub.store.tool_calls()  # type: ignore[union-attr]
        assert [(c.claw, c.tool, c.outcome) for c in reversed(audit)] == [
            ("a", "time.get_current_time", "ok"),
            ("a", "time.convert_time", "refused"),
            ("b", "time.get_current_time", "refused"),
            ("a", "nope", "refused"),
        ]


@pytest.mark.anyio
async def test_a_killed_stdio_server_fails_fast_then_comes_back_and_others_keep_working(
    tmp_path: Path,
) -> None:
    body = (
        f"servers:\n  time: {TIME}\n"
        "  clock: {command: python, args: [-m, mcp_server_time, --local-timezone, Europe/Lisbon]}\n"
        "claws:\n  a: {model: m, tools: ['*']}\n"
    )
    async with running(tmp_path, body) as hub:
        (pid,) = children("--local-timezone UTC")
        os.kill(pid, signal.SIGKILL)
        with anyio.fail_after(10):
            with pytest.raises(ToolServerError, match="tool server 'time'"):
                await hub.call("a", "time__get_current_time", {"timezone": "UTC"})
            assert not (await hub.call("a", "clock__get_current_time", {"timezone": "UTC"})).is_error
            await hub.wait_up("time")
        result = await hub.call("a", "time__get_current_time", {"timezone": "UTC"})
        assert not result.is_error
        assert hub.status()["time"].reconnects >= 1


@pytest.mark.anyio
async def test_servers_that_hang_or_print_garbage_are_reported_and_the_hub_stays_up(tmp_path: Path) -> None:
    py = sys.executable
    body = (
        f"servers:\n  time: {TIME}\n"
        f"  hangs: {{command: {py}, args: [-c, 'import time; time.sleep(60)']}}\n"
        f"  garbage: {{command: {py}, args: [-c, 'print(\"hello\"); import sys; sys.stdin.read()']}}\n"
        "  missing: {command: /nonexistent/server}\n"
        "claws:\n  a: {model: m, tools: ['*']}\n"
    )
    async with running(tmp_path, body, connect_timeout=1.5) as hub:
        status = hub.status()
        assert status["hangs"].error == "no answer to the handshake within 1.5s"
        assert status["garbage"].error is not None
        assert status["missing"].error is not None
        with pytest.raises(ToolServerError, match="tool server 'hangs' is down; reconnecting, attempt"):
            await hub.call("a", "hangs__anything", {})
        with anyio.fail_after(60):  # a good server comes up, also if a loaded machine made it miss 1.5 s
            await hub.wait_up("time")
        assert not (await hub.call("a", "time__get_current_time", {"timezone": "UTC"})).is_error


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("transport", "entry"),
    [
        ("streamable-http", "url: 'http://127.0.0.1:{port}/mcp'"),
        ("sse", "{{url: 'http://127.0.0.1:{port}/sse', transport: sse}}"),
    ],
)
async def test_an_sdk_server_over_http_and_sse(tmp_path: Path, transport: str, entry: str) -> None:
    with listening() as sock:
        port = sock.getsockname()[1]
        command = [sys.executable, str(PEERS / "adder.py"), transport, str(sock.fileno())]
        peer = await anyio.open_process(command, stderr=subprocess.DEVNULL, pass_fds=[sock.fileno()])
    async with peer:
        spec = entry.format(port=port)
        spec = spec if spec.startswith("{") else "{" + spec + "}"
        body = f"servers:\n  adder: {spec}\nclaws:\n  a: {{model: m, tools: ['adder.add']}}\n"
        async with running(tmp_path, body) as hub:
            with anyio.fail_after(20):
                await hub.wait_up("adder")  # the hub retries until the peer listens
            result = await hub.call("a", "adder__add", {"a": 2, "b": 3})
            assert result.structured_content == {"result": 5}
        peer.kill()


EVERYTHING = ROOT / "node_modules/@modelcontextprotocol/server-everything/dist/index.js"


@pytest.mark.anyio
async def test_the_npm_reference_server_keeps_every_kind_of_content(tmp_path: Path) -> None:
    body = (
        f"servers:\n  everything: {{command: node, args: ['{EVERYTHING}', stdio]}}\n"
        "claws:\n  a: {model: m, tools: ['everything.*']}\n"
    )
    async with running(tmp_path, body) as hub:
        assert {"everything__echo", "everything__get-tiny-image"} <= set(hub.catalog)
        echo = await hub.call("a", "everything__echo", {"message": "hi"})
        assert [c.type for c in echo.content] == ["text"] and "hi" in echo.content[0].text  # type: ignore[union-attr]
        image = await hub.call("a", "everything__get-tiny-image", {})
        assert "image" in [c.type for c in image.content]
        resource = await hub.call(
            "a", "everything__get-resource-reference", {"resourceType": "Text", "resourceId": 1}
        )
        assert "resource" in [c.type for c in resource.content]
        structured = await hub.call("a", "everything__get-structured-content", {"location": "New York"})
        assert structured.structured_content is not None


@pytest.mark.anyio
async def test_a_call_that_takes_too_long_times_out_and_the_server_stays_usable(tmp_path: Path) -> None:
    body = (
        f"servers:\n  adder: {{command: python, args: ['{PEERS / 'adder.py'}', stdio]}}\n"
        "claws:\n  a: {model: m, tools: ['adder.*']}\n"
    )
    async with running(tmp_path, body, call_timeout=0.5) as hub:
        with anyio.fail_after(10):
            with pytest.raises(ToolServerError, match=r"did not answer wait within 0\.5s"):
                await hub.call("a", "adder__wait", {"seconds": 30})
            assert (await hub.call("a", "adder__add", {"a": 1, "b": 1})).structured_content == {"result": 2}
        assert hub.status()["adder"].state == "up"


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_the_catalog_follows_list_changed_in_both_eras(tmp_path: Path, mode: str) -> None:
    body = (  # not pinned: a tool that appears later would be held (tests/test_pins.py)
        f"servers:\n  adder: {{command: python, args: ['{PEERS / 'adder.py'}', stdio], pin: false}}\n"
        "claws:\n  a: {model: m, tools: ['adder.*']}\n"
    )
    async with running(tmp_path, body, health_interval=600, mode=mode) as hub:
        assert "adder__fresh" not in hub.catalog
        await hub.call("a", "adder__grow", {})
        with anyio.fail_after(10):
            while "adder__fresh" not in hub.catalog:
                await hub.catalog_changed.wait()
        assert (await hub.call("a", "adder__fresh", {})).content[0].text == "fresh"  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_a_pattern_that_matches_no_tool_is_a_warning(tmp_path: Path) -> None:
    body = f"servers:\n  time: {TIME}\nclaws:\n  a: {{model: m, tools: ['time.get_*', 'time.nope']}}\n"
    async with running(tmp_path, body) as hub:
        assert hub.unmatched_patterns() == [
            "claws.a.tools[1]: 'time.nope' matches no tool of the running servers"
        ]


@pytest.mark.anyio
async def test_a_remote_server_that_goes_away_is_reconnected_when_it_is_back(tmp_path: Path) -> None:
    with listening() as sock:  # open throughout: the peer started again serves on the same port
        await reconnects(tmp_path, sock)


async def reconnects(tmp_path: Path, sock: socket.socket) -> None:
    command = [sys.executable, str(PEERS / "adder.py"), "streamable-http", str(sock.fileno())]

    async def peer() -> Process:
        return await anyio.open_process(command, stderr=subprocess.DEVNULL, pass_fds=[sock.fileno()])

    body = (
        f"servers:\n  adder: {{url: 'http://127.0.0.1:{sock.getsockname()[1]}/mcp'}}\n"
        "claws:\n  a: {model: m, tools: ['adder.*']}\n"
    )
    first = await peer()  # before the hub: a socket that listens with no one behind it would hold its start
    async with first, running(tmp_path, body, call_timeout=5) as hub:
        with anyio.fail_after(20):
            await hub.wait_up("adder")
        first.kill()
        with anyio.fail_after(10), pytest.raises(ToolServerError, match="tool server 'adder'"):
            await hub.call("a", "adder__add", {"a": 1, "b": 2})
        async with await peer() as second:
            with anyio.fail_after(20):
                await hub.wait_up("adder")
            assert (await hub.call("a", "adder__add", {"a": 1, "b": 2})).structured_content == {"result": 3}
            second.kill()


@pytest.mark.anyio
async def test_a_server_that_keeps_dropping_its_connection_is_marked_failed_and_the_others_stay_up(
    tmp_path: Path,
) -> None:
    body = (
        "host: {supervision: {intensity: 2}}\n"
        f"servers:\n  flaky: {{command: python, args: ['{PEERS / 'flaky.py'}']}}\n  time: {TIME}\n"
        "claws:\n  a: {model: m, tools: ['*']}\n"
    )
    async with running(tmp_path, body, health_interval=0.2) as hub:  # health checks notice the drops
        flaky = hub.supervisor.children["flaky"]
        with anyio.fail_after(30):
            while flaky.state != "failed":
                await hub.supervisor.changed.wait()
        status = hub.status()
        assert (status["flaky"].state, status["flaky"].reconnects, flaky.restarts) == ("failed", 2, 2)
        assert status["time"].state == "up"
        result = await hub.call("a", "time__get_current_time", {"timezone": "UTC"})
        assert not result.is_error


@pytest.mark.anyio
async def test_a_result_over_the_cap_is_an_error_for_its_call_and_the_server_stays_up(tmp_path: Path) -> None:
    body = (
        f"servers:\n  big: {{command: python, args: ['{PEERS / 'big.py'}']}}\n"
        "claws:\n  a: {model: m, tools: ['big.*']}\n"
    )
    async with running(tmp_path, body) as hub:
        with anyio.fail_after(60):
            over = await hub.call("a", "big__big", {"megabytes": LINE_CAP / 1_048_576 + 1})
            assert over.is_error and over.content[0].text == (  # type: ignore[union-attr]
                "the result is over 16 MiB, more than a tool result may be"
            )
            fits = await hub.call("a", "big__big", {"megabytes": 8})
        assert len(fits.content[0].text) == 8 * 1_048_576  # type: ignore[union-attr]
        assert hub.status()["big"].state == "up"


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_servers_question_during_a_call_is_relayed_for_the_calls_run(
    tmp_path: Path, mode: str
) -> None:
    asked: list[tuple[str, int, str, str]] = []

    async def questions(
        claw: str, run_id: int, tool: str, message: str, schema: dict[str, Any], asker: Any
    ) -> tuple[Any, dict[str, Any] | None]:
        asked.append((claw, run_id, tool, message))
        assert schema["required"] == ["name"]
        return "accept", {"name": "Ada"}

    body = (
        f"servers:\n  up: {{command: python, args: ['{PEERS / 'greeter.py'}']}}\n"
        "claws:\n  a: {model: m, tools: ['up.*']}\n"
    )
    async with running(tmp_path, body, mode=mode, questions=questions) as hub:
        answered = await hub.call("a", "up__greet", {}, run_id=7)
        unasked = await hub.call("a", "up__greet", {})  # no run: nobody to ask
    assert answered.content[0].text == "hello Ada"  # type: ignore[union-attr]
    assert asked == [("a", 7, "up.greet", "What is your name?")]
    assert unasked.is_error
