"""`clawmcp serve` as a user runs it: a real process, real HTTP, real signals."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx2
import pytest
from anyio.abc import Process
from anyio.streams.text import TextReceiveStream
from mcp import Client

from clawmcp.store.sqlite import SqliteStore

CONFIG = {"mcpServers": {"time": {"command": "python", "args": ["-m", "mcp_server_time"]}}}


def manifest(tmp_path: Path, listen: str) -> Path:
    path = tmp_path / "m.yaml"
    path.write_text(
        f"host: {{listen: '{listen}', data_dir: state}}\n"
        "models: {m: {provider: scripted, rules: [{reply: hi}]}}\n"
        "claws: {a: {model: m, tools: ['time.*', 'time.nope']}}\n"
    )
    (tmp_path / "claude.json").write_text(json.dumps(CONFIG))
    return path


def serve_command(path: Path, mcp_config: bool = True) -> list[str]:
    command = [sys.executable, "-m", "clawmcp", "serve", str(path)]
    return [*command, "--mcp-config", str(path.parent / "claude.json")] if mcp_config else command


@asynccontextmanager
async def serving(
    path: Path, mcp_config: bool = True, command: list[str] | None = None
) -> AsyncIterator[tuple[Process, list[str]]]:
    """Start `clawmcp serve` (or `command`) and wait until it says it is listening; yields it and
    its stderr lines."""
    async with await anyio.open_process(
        command or serve_command(path, mcp_config), stdout=subprocess.DEVNULL
    ) as process:
        assert process.stderr is not None
        lines: list[str] = []
        with anyio.fail_after(30):
            async for chunk in TextReceiveStream(process.stderr):
                lines += chunk.splitlines()
                if any("listening on" in line for line in lines):
                    break
        try:
            yield process, lines
        finally:
            if process.returncode is None:
                process.kill()


def base_of(lines: list[str]) -> str:
    """The address a host said it listens at (it was given port 0: no race for a port)."""
    [said] = [line for line in lines if "listening on " in line]
    return said.split("listening on ", 1)[1].split()[0]


@pytest.mark.anyio
async def test_serve_starts_is_ready_refuses_a_second_host_and_stops_on_sigterm(tmp_path: Path) -> None:
    path = manifest(tmp_path, "127.0.0.1:0")
    async with serving(path) as (process, lines):
        assert "clawmcp: claws.a.tools[1]: 'time.nope' matches no tool of the running servers" in lines
        async with httpx2.AsyncClient() as http:
            ready = await http.get(f"{base_of(lines)}/readyz")
        assert ready.status_code == 200
        assert ready.json() == {"ready": True, "servers": {"up": 1, "down": 0}, "claws": 1}  # no names

        second = await anyio.run_process(serve_command(path), check=False)
        assert second.returncode == 1
        assert second.stderr.decode().splitlines() == [
            f"another clawmcp host (pid {process.pid}) is using {tmp_path / 'state'}; "
            "stop it or use another data_dir"
        ]

        process.send_signal(signal.SIGTERM)
        with anyio.fail_after(10):
            assert await process.wait() == 0


@pytest.mark.anyio
async def test_serve_refuses_a_public_address_without_tokens(tmp_path: Path) -> None:
    path = manifest(tmp_path, "0.0.0.0:0")
    run = await anyio.run_process(serve_command(path), check=False)
    assert run.returncode == 1
    assert run.stderr.decode().startswith("refusing to listen on 0.0.0.0:")


@pytest.mark.anyio
async def test_sigterm_during_a_run_stops_within_10s_and_records_the_run_as_interrupted(
    tmp_path: Path,
) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(
        "host: {listen: '127.0.0.1:0', data_dir: state}\n"
        "models: {m: {provider: scripted, rules: [{steps: [{tool: tools__slow}], reply: done}]}}\n"
        "tools: {slow: {command: [sleep, '60'], timeout: 120s}}\n"
        "claws: {a: {model: m, tools: ['tools.slow']}}\n"
    )
    calling = anyio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        if message == "calling tools__slow":
            calling.set()

    async def ask(base: str) -> None:
        with contextlib.suppress(Exception):  # the host goes away under the call
            async with Client(f"{base}/claws/a/mcp") as client:
                await client.call_tool("ask", {"message": "go"}, progress_callback=on_progress)

    async with serving(path, mcp_config=False) as (process, lines), anyio.create_task_group() as tg:
        tg.start_soon(ask, base_of(lines))
        with anyio.fail_after(20):
            await calling.wait()
        process.send_signal(signal.SIGTERM)
        with anyio.fail_after(10):
            assert await process.wait() == 0
        tg.cancel_scope.cancel()
        assert process.stderr is not None
        rest = b"".join([chunk async for chunk in process.stderr]).decode().splitlines()  # to EOF
    assert rest == [  # no traceback, nothing forced; the ask's message waits for the next start
        "clawmcp: SIGTERM: stopping",
        "clawmcp: stopping: 1 message(s) being handled are queued again for the next start",
        "clawmcp: stopped",
    ]
    async with SqliteStore(tmp_path / "state" / "state.db") as store:
        [run] = await store.runs("a")
        message = await store.get_message(1)
    assert (run.state, run.error, run.message_id) == ("interrupted", "the run was stopped", 1)
    assert message is not None and (message.kind, message.state) == ("ask", "queued")


@pytest.mark.anyio
async def test_after_a_clean_stop_the_next_start_recovers_nothing_and_runs_the_message_again(
    tmp_path: Path,
) -> None:
    path = tmp_path / "m.yaml"
    gate = tmp_path / "gate"
    os.mkfifo(gate)  # the tool waits until something is written to it
    path.write_text(
        "host: {listen: '127.0.0.1:0', data_dir: state}\n"
        "models: {m: {provider: scripted, rules: [{steps: [{tool: tools__wait}], reply: done}]}}\n"
        f"tools: {{wait: {{command: [cat, '{gate}'], timeout: 120s}}}}\n"
        "claws: {a: {model: m, tools: ['tools.wait']}}\n"
    )
    async with serving(path, mcp_config=False) as (process, lines), httpx2.AsyncClient() as http:
        base = base_of(lines)
        told = (await http.post(f"{base}/api/claws/a/tell", json={"message": "go"})).json()["message_id"]
        with anyio.fail_after(20):
            async with http.stream("GET", f"{base}/api/events?follow=1") as events:
                async for line in events.aiter_lines():
                    if "tools__wait" in line:  # the run is waiting in its tool
                        break
        process.send_signal(signal.SIGTERM)
        with anyio.fail_after(10):
            assert await process.wait() == 0
        assert process.stderr is not None
        stopped = b"".join([chunk async for chunk in process.stderr]).decode().splitlines()
    assert stopped == [
        "clawmcp: SIGTERM: stopping",
        "clawmcp: stopping: 1 message(s) being handled are queued again for the next start",
        "clawmcp: stopped",
    ]
    async with serving(path, mcp_config=False) as (process, started), httpx2.AsyncClient() as http:
        assert not any("recovered" in line for line in started)
        await anyio.to_thread.run_sync(gate.write_text, "open")  # once the run is back at the gate
        with anyio.fail_after(20):
            async with http.stream("GET", f"{base_of(started)}/api/events?follow=1") as events:
                async for line in events.aiter_lines():
                    if '"delivery"' in line and '"done"' in line:
                        break
    async with SqliteStore(tmp_path / "state" / "state.db") as store:
        message = await store.get_message(told)
        runs = await store.runs("a")
    assert message is not None and (message.state, message.attempts) == ("done", 2)
    assert [r.state for r in runs] == ["done", "interrupted"]


@pytest.mark.anyio
async def test_a_value_from_a_variable_is_never_printed_or_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.fakes import FakeAPI

    secret = "sekrit-0123456789"
    monkeypatch.setenv("KEY", secret)
    api = FakeAPI(lambda n, body: (200, {}, {"choices": "not a list"}))
    async with api.serving() as url:
        path = tmp_path / "m.yaml"
        path.write_text(
            "host: {listen: '127.0.0.1:0', data_dir: state}\n"
            f"models: {{m: {{provider: openai, base_url: '{url}/v1/${{KEY}}', model: x}}}}\n"
            "servers: {legacy: {url: 'http://127.0.0.1:9/sse?api_key=${KEY}', transport: sse}}\n"
            "claws: {c: {model: m, tools: ['legacy.*']}}\n"
        )
        async with serving(path, mcp_config=False) as (process, lines), httpx2.AsyncClient() as http:
            base = base_of(lines)
            asked = (await http.post(f"{base}/api/claws/c/ask", json={"message": "hi"})).json()
            assert asked["state"] == "failed" and f"{url}/v1/${{KEY}}/chat/completions" in asked["error"]
            shown = [
                (await http.get(f"{base}{p}")).text for p in ("/api/events", "/api/dashboard", "/api/claws")
            ]
            process.send_signal(signal.SIGTERM)
            assert await process.wait() == 0
            assert process.stderr is not None
            lines += b"".join([chunk async for chunk in process.stderr]).decode().splitlines()
    assert not any(secret in text for text in [*lines, *shown])
    assert secret.encode() not in (tmp_path / "state" / "state.db").read_bytes()


@pytest.mark.anyio
async def test_sigterm_with_streams_open_ends_them_and_stops_without_a_traceback(tmp_path: Path) -> None:
    from mcp.client.sse import sse_client

    async with serving(manifest(tmp_path, "127.0.0.1:0")) as (process, lines):
        base = base_of(lines)
        async with (
            httpx2.AsyncClient(timeout=30) as http,
            http.stream("GET", f"{base}/api/events?follow=1") as events,
            Client(sse_client(f"{base}/claws/a/sse")) as over_sse,
            Client(f"{base}/claws/a/mcp", mode="legacy") as over_http,
        ):
            await over_sse.list_tools()
            await over_http.list_tools()
            process.send_signal(signal.SIGTERM)
            with anyio.fail_after(10):
                assert await process.wait() == 0
                async for _ in events.aiter_lines():  # to its end, which the host sent: no broken stream
                    pass
            assert process.stderr is not None
            rest = b"".join([chunk async for chunk in process.stderr]).decode().splitlines()
    assert rest == ["clawmcp: SIGTERM: stopping", "clawmcp: stopped"]


@pytest.mark.anyio
async def test_a_host_on_port_0_says_which_port_it_got_and_the_cli_finds_it(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(
        "host: {listen: '127.0.0.1:0', data_dir: state}\n"
        "models: {m: {provider: scripted, rules: [{reply: hi}]}}\nclaws: {a: {model: m}}\n"
    )
    async with serving(path, mcp_config=False) as (process, lines):
        [listening] = [line for line in lines if "listening on" in line]
        assert listening.startswith("clawmcp: listening on http://127.0.0.1:") and ":0 " not in listening
        claws = await anyio.run_process([sys.executable, "-m", "clawmcp", "claws", "-p", str(path)])
        assert claws.stdout.decode().splitlines()[1].split()[:2] == ["a", "idle"]
        process.send_signal(signal.SIGTERM)
        with anyio.fail_after(10):
            assert await process.wait() == 0


@pytest.mark.anyio
async def test_a_stdio_servers_stderr_lines_carry_its_name(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    speak = "import sys; print('hello from noisy', file=sys.stderr)"  # and exit: down at once
    path.write_text(
        "host: {listen: '127.0.0.1:0', data_dir: state}\n"
        f'servers: {{noisy: {{command: python, args: ["-c", "{speak}"]}}}}\n'
        "models: {m: {provider: scripted, rules: [{reply: hi}]}}\nclaws: {c: {model: m}}\n"
    )
    async with serving(path, mcp_config=False) as (process, lines):
        assert process.stderr is not None
        with anyio.fail_after(20):
            async for chunk in TextReceiveStream(process.stderr):
                lines += chunk.splitlines()
                if any("hello from noisy" in line for line in lines):
                    break
    assert "clawmcp: server 'noisy': hello from noisy" in lines
