"""Durable run handles with real processes: an SDK client asks over streamable HTTP (2026 era: a
disconnect is a cancel) and goes away mid-run; the run goes on, and a second client gets the
reply with `result`. `clawmcp cancel` drops a queued message and stops a running one, as the
store records; `clawmcp result` tells what became of each."""

from __future__ import annotations

import functools
import os
import sqlite3
from pathlib import Path

import anyio
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.e2e.test_approvals import events, tools_of
from tests.e2e.test_serve import base_of, serving
from tests.e2e.test_stdio_and_cli import clawmcp
from tests.fakes import PEERS

pytestmark = pytest.mark.anyio


def manifest(tmp_path: Path) -> Path:
    fifo = tmp_path / "gate"
    os.mkfifo(fifo)
    path = tmp_path / "m.yaml"
    path.write_text(
        "host: {listen: '127.0.0.1:0', data_dir: state}\n"
        "models:\n  m: {provider: scripted, rules: [{when: hold, steps: [{tool: gate__hold, arguments: {}}],"
        " reply: 'held: {{ results[0] }}'}, {reply: hello}]}\n"
        f"servers:\n  gate: {{command: python, args: ['{PEERS / 'gate.py'}', '{fifo}']}}\n"
        "claws:\n  c: {model: m, tools: ['gate.*']}\n"
    )
    return path


async def release(tmp_path: Path, said: str) -> None:
    """Let the tool call that holds go on (once one holds: opening the pipe waits for it)."""
    await anyio.to_thread.run_sync((tmp_path / "gate").write_text, said)


def stored(tmp_path: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(tmp_path / "state" / "state.db") as db:
        return db.execute(sql).fetchall()


async def test_an_ask_outlives_its_client_and_its_reply_is_fetched_with_result(tmp_path: Path) -> None:
    async with serving(manifest(tmp_path), mcp_config=False) as (_, lines):
        url = f"{base_of(lines)}/claws/c/mcp"
        heard: list[str] = []
        holding = anyio.Event()

        async def progress(progress: float, total: float | None, message: str | None) -> None:
            heard.append(message or "")
            if message == "calling gate__hold":
                holding.set()

        async def ask() -> None:
            async with Client(streamable_http_client(url)) as client:
                await client.call_tool("ask", {"message": "hold"}, progress_callback=progress)

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(ask)
                await holding.wait()
                tg.cancel_scope.cancel()  # the client goes away mid-run
            message_id = int(heard[0].removeprefix("message "))
            await release(tmp_path, "released")
            async with Client(streamable_http_client(url)) as client:
                result = await client.call_tool("result", {"message_id": message_id, "wait": 30})
    assert not result.is_error, result.content
    found = result.structured_content or {}
    assert (found["state"], found["reply"]) == ("done", "held: released")
    assert stored(tmp_path, f"SELECT state, reply FROM runs WHERE message_id = {message_id}") == [
        ("done", "held: released")
    ]


async def test_cancel_drops_a_queued_message_and_stops_a_running_run(tmp_path: Path) -> None:
    path = manifest(tmp_path)
    async with serving(path, mcp_config=False) as (_, lines):
        base = base_of(lines)
        async with events(base, "run", "running") as started:
            running = (await tools_of(base + "/claws/c", "tell", {"message": "hold"}))["message_id"]
            queued = (await tools_of(base + "/claws/c", "tell", {"message": "hold again"}))["message_id"]
            with anyio.fail_after(60):
                await started.wait()
        cli = functools.partial(anyio.to_thread.run_sync, clawmcp)
        dropped = await cli("cancel", str(queued), "-p", str(path))
        stopped = await cli("cancel", str(running), "-p", str(path))
        ended = await cli("result", str(running), "--wait", "30", "-p", str(path))
    assert dropped.returncode == 0 and f"message {queued} (c): cancelled" in dropped.stderr
    assert stopped.returncode == 0
    assert ended.returncode == 1
    assert ended.stderr.strip() == f"message {running} (c): cancelled: cancelled by a person"
    assert stored(tmp_path, "SELECT id, state FROM messages ORDER BY id") == [
        (running, "cancelled"),
        (queued, "cancelled"),
    ]
    assert stored(tmp_path, "SELECT message_id, state, error FROM runs") == [
        (running, "cancelled", "cancelled by a person")
    ]
