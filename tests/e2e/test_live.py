"""Live state over streamable HTTP, in both protocol eras: a client subscribed to a Claw's
resources hears `updated` as a run goes on and ends; the run's resource tells its state, reply
and steps; a run that fails and a dead letter reach the subscribed client and the alert Claw;
prompts and the generated instructions say what a Claw is for."""

from __future__ import annotations

import json
import os
import sys
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp.types import ResourceUpdatedNotification

from tests.e2e.test_handles import release
from tests.e2e.test_web import host_and_url
from tests.fakes import PEERS

pytestmark = pytest.mark.anyio

ERAS = ["legacy", "auto"]  # the handshake era; the 2026 era (the SDK client's choice)


def gated(tmp_path: Path) -> str:
    os.mkfifo(fifo := tmp_path / "gate")
    return (
        "models:\n  m: {provider: scripted, rules: [{when: hold, steps: [{tool: gate__hold, arguments: {}}],"
        " reply: 'held: {{ results[0] }}'}, {reply: hello}]}\n"
        f"servers:\n  gate: {{command: python, args: ['{PEERS / 'gate.py'}', '{fifo}']}}\n"
        "claws:\n"
        "  c:\n    description: Holds until told\n    model: m\n    tools: ['gate.*']\n"
        "    talks_to: [d]\n    schedules: [{name: nightly, cron: '0 3 * * *', prompt: 'hold the line'}]\n"
        "  d: {model: m}\n"
    )


class Heard:
    """A client whose `updated` notifications, in either era, come out of `uris`."""

    def __init__(self, target: Any, mode: str) -> None:
        self.mode = mode
        self.send, self.uris = anyio.create_memory_object_stream[str](100)

        async def on_message(message: Any) -> None:
            if isinstance(message, ResourceUpdatedNotification):
                await self.send.send(str(message.params.uri))

        self.client = Client(target, mode=mode, message_handler=on_message)

    async def __aenter__(self) -> Client:
        return await self.client.__aenter__()

    async def __aexit__(self, *exc: Any) -> None:
        await self.client.__aexit__(*exc)
        self.send.close()
        self.uris.close()

    @asynccontextmanager
    async def following(self, uris: list[str]) -> AsyncIterator[None]:
        """Subscribed to `uris`: `resources/subscribe` in the handshake era, a listen stream in 2026."""
        if self.mode == "legacy":
            with warnings.catch_warnings():  # deprecated for the 2026 era, the way of the handshake era
                warnings.simplefilter("ignore", MCPDeprecationWarning)
                for uri in uris:
                    await self.client.subscribe_resource(uri)
            yield
            return
        async with self.client.listen(resource_subscriptions=uris) as events, anyio.create_task_group() as tg:
            tg.start_soon(lambda: anext(events))  # the stream's events also reach on_message
            yield
            tg.cancel_scope.cancel()

    async def heard(self, wanted: set[str]) -> None:
        """Until each of `wanted` was heard updated."""
        with anyio.fail_after(30):
            async for uri in self.uris:
                wanted.discard(uri)
                if not wanted:
                    return


@pytest.mark.parametrize("mode", ERAS)
@pytest.mark.parametrize("transport", ["http", "stdio"])
async def test_a_subscriber_hears_a_run_go_on_and_end_and_reads_it(
    tmp_path: Path, mode: str, transport: str
) -> None:
    async with host_and_url(tmp_path, manifest=gated(tmp_path)) as (_, base):
        stdio = StdioServerParameters(
            command=sys.executable, args=["-m", "clawmcp", "stdio", "c", str(tmp_path / "m.yaml")]
        )
        heard = Heard(stdio if transport == "stdio" else f"{base}/claws/c/mcp", mode)  # stdio: the bridge
        async with heard as client:
            assert [p.name for p in (await client.list_prompts()).prompts] == ["brief-me", "nightly"]
            told = await client.call_tool("tell", {"message": "hold"})
            message_id = (told.structured_content or {})["message_id"]
            run_uri = f"claw://c/runs/{message_id}"
            uris = [run_uri, "claw://c/status", "claw://c/history/default"]
            async with heard.following(uris):
                await release(tmp_path, "released")
                await heard.heard(set(uris))
            read = await client.read_resource(run_uri)
            with pytest.raises(MCPError) as missing:
                await client.read_resource("claw://c/runs/999999")
    found = json.loads(read.contents[0].text)  # type: ignore[union-attr]
    assert (found["state"], found["reply"], found["message_id"]) == ("done", "held: released", message_id)
    assert [s["kind"] for s in found["steps"]] == ["model", "tool_call", "tool_result", "model"]
    assert missing.value.code == (-32002 if mode == "legacy" else -32602)  # each era's code


@pytest.mark.parametrize("mode", ERAS)
async def test_prompts_and_instructions_say_what_a_claw_is_for(tmp_path: Path, mode: str) -> None:
    async with (
        host_and_url(tmp_path, manifest=gated(tmp_path)) as (_, base),
        Client(f"{base}/claws/c/mcp", mode=mode) as client,
    ):
        prompts = (await client.list_prompts()).prompts
        brief = await client.get_prompt("brief-me")
        nightly = await client.get_prompt("nightly")
        instructions = client.instructions
        with pytest.raises(MCPError, match="Claw 'c' has no prompt 'nope'"):
            await client.get_prompt("nope")
    assert [(p.name, bool(p.description)) for p in prompts] == [("brief-me", True), ("nightly", True)]
    assert '"claw": "c"' in brief.messages[0].content.text  # type: ignore[union-attr]  # its status now
    assert nightly.messages[0].content.text.endswith("with this message: hold the line")  # type: ignore[union-attr]
    assert instructions is not None and instructions.startswith("Holds until told\nSchedule 'nightly'")


TASKS = "io.modelcontextprotocol/tasks"


class Raw:
    """JSON-RPC of the 2026 era over streamable HTTP, as a client of the Tasks extension sends it
    (the SDK's client has no Tasks support yet)."""

    def __init__(self, http: httpx2.AsyncClient, url: str, tasks: bool = True) -> None:
        self.http, self.url, self.tasks, self.ids = http, url, tasks, 0

    async def __call__(self, method: str, params: dict[str, Any], name: str = "") -> dict[str, Any]:
        self.ids += 1
        meta = {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": {"extensions": {TASKS: {}}} if self.tasks else {},
        }
        headers = {
            "accept": "application/json, text/event-stream",
            "mcp-protocol-version": "2026-07-28",
            "mcp-method": method,
            "mcp-name": name,
        }
        body = {"jsonrpc": "2.0", "id": self.ids, "method": method, "params": params | {"_meta": meta}}
        answer = await self.http.post(self.url, json=body, headers=headers)
        text = answer.text
        if answer.headers.get("content-type", "").startswith("text/event-stream"):
            text = [line[5:] for line in text.splitlines() if line.startswith("data:")][-1]
        found: dict[str, Any] = json.loads(text)
        return found


async def test_an_ask_is_a_task_for_a_client_of_the_tasks_extension(tmp_path: Path) -> None:
    async with (
        host_and_url(tmp_path, manifest=gated(tmp_path)) as (_, base),
        httpx2.AsyncClient(timeout=60) as http,
    ):
        rpc = Raw(http, f"{base}/claws/c/mcp")
        discovered = await rpc("server/discover", {})
        created = (await rpc("tools/call", {"name": "ask", "arguments": {"message": "hold"}}, "ask"))[
            "result"
        ]
        task = created["taskId"]
        working = (await rpc("tasks/get", {"taskId": task}, task))["result"]
        await release(tmp_path, "released")
        await rpc(
            "tools/call", {"name": "result", "arguments": {"message_id": int(task), "wait": 30}}, "result"
        )
        completed = (await rpc("tasks/get", {"taskId": task}, task))["result"]

        again = (await rpc("tools/call", {"name": "ask", "arguments": {"message": "hold"}}, "ask"))["result"]
        cancelled = await rpc("tasks/cancel", {"taskId": again["taskId"]}, again["taskId"])
        after = (await rpc("tasks/get", {"taskId": again["taskId"]}, again["taskId"]))["result"]
        unknown = await rpc("tasks/get", {"taskId": "999999"}, "999999")
        elsewhere = await Raw(http, f"{base}/claws/d/mcp")("tasks/get", {"taskId": task}, task)
        undeclared = await Raw(http, f"{base}/claws/c/mcp", tasks=False)("tasks/get", {"taskId": task}, task)
        update = await rpc("tasks/update", {"taskId": task, "inputResponses": {}}, task)
    assert discovered["result"]["capabilities"]["extensions"] == {TASKS: {}}
    assert (created["resultType"], created["status"], "result" in created) == ("task", "working", False)
    assert working["status"] == "working" and working["ttlMs"] is None
    assert completed["status"] == "completed"
    said = completed["result"]
    assert (said["content"], said["isError"]) == ([{"type": "text", "text": "held: released"}], False)
    assert "error" not in cancelled and after["status"] == "cancelled"
    assert unknown["error"]["code"] == -32602 and elsewhere["error"]["code"] == -32602
    assert undeclared["error"]["code"] == -32021
    assert update["error"] == {"code": -32602, "message": f"task {task} asks for no input"}
