"""Approvals with real processes: a `tell` parks its run on a call that needs a person; the
approval is listed by the CLI, the API and MCP; the host is killed with SIGKILL and started
again; `clawmcp approve` lets the run go on, and the tool runs once, with the stored arguments.
A denial reaches the model with its note."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.e2e.test_serve import base_of, serving
from tests.e2e.test_stdio_and_cli import clawmcp
from tests.fakes import PEERS

pytestmark = pytest.mark.anyio


def manifest(tmp_path: Path) -> Path:
    recorder = f"{{command: python, args: ['{PEERS / 'recorder.py'}', '{tmp_path / 'recorded.db'}']}}"
    path = tmp_path / "m.yaml"
    path.write_text(
        "host: {listen: '127.0.0.1:0', data_dir: state}\n"
        "models:\n  m: {provider: scripted, rules: [{when: 'record (?P<n>.+)', steps: [{tool: rec__record,"
        " arguments: {n: '{{ match.n }}'}}], reply: 'said: {{ results[0] }}'}]}\n"
        f"servers:\n  rec: {recorder}\n"
        "claws:\n  c: {model: m, tools: ['rec.*'], approve: ['rec.record']}\n"
    )
    return path


@asynccontextmanager
async def events(base: str, kind: str, state: str) -> AsyncIterator[anyio.Event]:
    """An event set once the host's activity log has an event of `kind` in `state`."""
    seen = anyio.Event()

    async def follow() -> None:
        async with (
            httpx2.AsyncClient(timeout=None) as http,
            http.stream("GET", f"{base}/api/events?follow=1") as response,
        ):
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    event = json.loads(line[5:])
                    if event["kind"] == kind and event["data"].get("state") == state:
                        seen.set()
                        return

    async with anyio.create_task_group() as tg:
        tg.start_soon(follow)
        yield seen
        tg.cancel_scope.cancel()


def recorded(tmp_path: Path) -> list[str]:
    with sqlite3.connect(tmp_path / "recorded.db") as db:
        return [n for (n,) in db.execute("SELECT n FROM deliveries")]


def runs(tmp_path: Path) -> list[tuple[str, str | None]]:
    with sqlite3.connect(tmp_path / "state" / "state.db") as db:
        return db.execute("SELECT state, reply FROM runs ORDER BY id").fetchall()


async def tools_of(base: str, name: str, arguments: dict[str, Any]) -> Any:
    async with Client(streamable_http_client(f"{base}/mcp")) as client:
        result = await client.call_tool(name, arguments)
    assert not result.is_error, result.content
    return result.structured_content


async def test_an_approval_survives_a_sigkill_and_the_call_runs_once_after_approve(tmp_path: Path) -> None:
    path = manifest(tmp_path)
    async with serving(path, mcp_config=False) as (process, lines):
        base = base_of(lines)
        async with events(base, "approval", "pending") as parked, httpx2.AsyncClient() as http:
            told = await http.post(f"{base}/api/claws/c/tell", json={"message": "record minutes"})
            assert told.status_code == 200
            with anyio.fail_after(30):
                await parked.wait()
            [listed] = (await http.get(f"{base}/api/approvals")).json()
        assert (listed["claw"], listed["tool"], listed["arguments"], listed["state"]) == (
            "c",
            "rec.record",
            {"n": "minutes"},
            "pending",
        )
        cli = json.loads(clawmcp("approvals", "--json", "-p", str(path)).stdout)
        over_mcp = await tools_of(base, "approvals", {})
        assert cli == [listed] and over_mcp == {"approvals": [listed]}
        assert "rec.record" in clawmcp("approvals", "-p", str(path)).stdout
        process.kill()
        await process.wait()
    assert recorded(tmp_path) == []
    async with serving(path, mcp_config=False) as (process, lines):
        async with events(base_of(lines), "run", "done") as done:
            approved = clawmcp("approve", str(listed["id"]), "--note", "ok", "-p", str(path))
            assert approved.stdout == f"approval {listed['id']} (c, rec.record): approved\n", approved.stderr
            with anyio.fail_after(30):
                await done.wait()
        again = clawmcp("approve", str(listed["id"]), "-p", str(path))
    assert f"approval {listed['id']} is approved already (HTTP 409)" in again.stderr
    assert recorded(tmp_path) == ["minutes"]
    assert runs(tmp_path) == [("done", "said: recorded")]


async def test_a_denial_reaches_the_model_with_its_note(tmp_path: Path) -> None:
    path = manifest(tmp_path)
    async with serving(path, mcp_config=False) as (_, lines):
        base = base_of(lines)
        async with events(base, "approval", "pending") as parked, httpx2.AsyncClient() as http:
            await http.post(f"{base}/api/claws/c/tell", json={"message": "record minutes"})
            with anyio.fail_after(30):
                await parked.wait()
            [listed] = (await http.get(f"{base}/api/approvals")).json()
        async with events(base, "run", "done") as done:
            decided = await tools_of(base, "decide", {"id": listed["id"], "approve": False, "note": "no"})
            assert decided["state"] == "denied"
            with anyio.fail_after(30):
                await done.wait()
    assert recorded(tmp_path) == []
    denial = f"a person denied this call of rec.record (approval {listed['id']}): no"
    assert runs(tmp_path) == [("done", f"said: {denial}")]


async def test_a_tool_servers_question_is_answered_with_clawmcp_answer(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(
        "host: {listen: '127.0.0.1:0', data_dir: state}\n"
        "models:\n  m: {provider: scripted, rules: [{steps: [{tool: up__greet}],"
        " reply: 'said: {{ results[0] }}'}]}\n"
        f"servers:\n  up: {{command: python, args: ['{PEERS / 'greeter.py'}']}}\n"
        "claws:\n  c: {model: m, tools: ['up.*']}\n"
    )
    async with serving(path, mcp_config=False) as (_, lines):
        base = base_of(lines)
        async with events(base, "approval", "pending") as asked, httpx2.AsyncClient() as http:
            await http.post(f"{base}/api/claws/c/tell", json={"message": "hi"})
            with anyio.fail_after(30):
                await asked.wait()
        [question] = json.loads(clawmcp("approvals", "--json", "-p", str(path)).stdout)
        assert (question["kind"], question["arguments"]["message"]) == ("question", "What is your name?")
        wrong = clawmcp("answer", str(question["id"]), "{}", "-p", str(path))
        assert "'name' is a required property" in wrong.stderr
        async with events(base, "run", "done") as done:
            answered = clawmcp("answer", str(question["id"]), '{"name": "Ada"}', "-p", str(path))
            assert answered.returncode == 0, answered.stderr
            with anyio.fail_after(30):
                await done.wait()
    assert runs(tmp_path) == [("done", "said: hello Ada")]
