"""A Claw as an MCP server over real HTTP: the SDK Client in both protocol eras against
`/claws/NAME/mcp`, `/claws/NAME/sse` and the host's `/mcp`, and the guard in front of them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp.types import Icon, ToolAnnotations, ToolListChangedNotification

from clawmcp.errors import unwrap
from clawmcp.host import Host
from clawmcp.manifest import load
from clawmcp.web import serving
from tests.fakes import PEERS, TIME

TOKEN_A = "token-for-scout-only-0123"
TOKEN_ALL = "token-for-every-claw-0123"
TOKEN_GLOBS = "token-for-cout-claws-0123"

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
      - when: "^remember (?P<what>.+)"
        steps:
          - tool: claw__remember
            arguments: {{text: "{{{{ match.what }}}}"}}
        reply: noted
      - reply: "echo: {{{{ input }}}}"
servers:
  time: {TIME}
claws:
  scout:
    description: Watches the clock
    model: canned
    tools: ["time.get_current_time"]
    expose: {{tools: true}}
  editor:
    model: canned
"""


@asynccontextmanager
async def host_on_http(tmp_path: Path, extra: str = "") -> AsyncIterator[str]:
    """The manifest above served over HTTP in this process; yields the base URL."""
    async with host_and_url(tmp_path, extra) as (_, base):
        yield base


@asynccontextmanager
async def host_and_url(
    tmp_path: Path, extra: str = "", manifest: str = MANIFEST
) -> AsyncIterator[tuple[Host, str]]:
    # Port 0: the host binds a free port and says which (no race for a port picked beforehand).
    (tmp_path / "m.yaml").write_text(f"host: {{listen: '127.0.0.1:0', data_dir: data{extra}}}\n" + manifest)
    host = Host(load([tmp_path / "m.yaml"]))
    with anyio.fail_after(60):
        async with serving(host):
            for server in host.manifest.servers:
                await host.hub.wait_up(server)
            yield host, f"http://{host.listen}"


def transport(base: str, claw: str, kind: str) -> Any:
    return sse_client(f"{base}/claws/{claw}/sse") if kind == "sse" else f"{base}/claws/{claw}/mcp"


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "auto"])
@pytest.mark.parametrize("kind", ["mcp", "sse"])
async def test_a_client_lists_asks_and_reads_a_claw(tmp_path: Path, mode: str, kind: str) -> None:
    heard: list[tuple[float, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        heard.append((progress, message))

    async with host_on_http(tmp_path) as base, Client(transport(base, "scout", kind), mode=mode) as client:
        names = [t.name for t in (await client.list_tools()).tools]
        assert names == [
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
            "time__get_current_time",
        ]

        result = await client.call_tool("ask", {"message": "what time is it?"}, progress_callback=on_progress)
        assert not result.is_error
        assert json.loads(result.content[0].text)["timezone"] == "UTC"  # type: ignore[union-attr]
        assert heard[0] == (0, "message 1")  # what to fetch with result, if the line drops
        assert [m for _, m in heard[1:]] == [
            "model turn",
            "calling time__get_current_time",
            "result of time__get_current_time",
            "model turn",
        ]

        direct = await client.call_tool("time__get_current_time", {"timezone": "UTC"})
        assert not direct.is_error and direct.structured_content["timezone"] == "UTC"

        await client.call_tool("ask", {"message": "remember the milk", "thread": "shopping"})
        uris = [str(r.uri) for r in (await client.list_resources()).resources]
        assert uris == [f"claw://scout/{part}" for part in ("status", "memory", "schedules", "approvals")]
        templates = (await client.list_resource_templates()).resource_templates
        assert [t.uri_template for t in templates] == [
            "claw://scout/history/{thread}",
            "claw://scout/runs/{message_id}",
        ]
        memory = await client.read_resource("claw://scout/memory")
        assert [n["text"] for n in json.loads(memory.contents[0].text)] == ["the milk"]  # type: ignore[union-attr]
        history = await client.read_resource("claw://scout/history/shopping")
        assert [e["content"] for e in json.loads(history.contents[0].text)] == ["remember the milk", "noted"]  # type: ignore[union-attr]
        status = json.loads((await client.read_resource("claw://scout/status")).contents[0].text)  # type: ignore[union-attr]
        assert status["state"] == "idle" and status["last_runs"][0]["state"] == "done"
        with pytest.raises(MCPError, match="no resource"):
            await client.read_resource("claw://editor/memory")


@pytest.mark.anyio
async def test_tell_queues_and_the_claw_handles_it_in_the_background(tmp_path: Path) -> None:
    async with host_and_url(tmp_path) as (host, base), Client(f"{base}/claws/editor/mcp") as client:
        finished = host.runtime.run_finished
        told = await client.call_tool("tell", {"message": "hello there"})
        assert told.structured_content is not None
        message_id = told.structured_content["message_id"]
        with anyio.fail_after(10):
            await finished.wait()
        history = await client.read_resource("claw://editor/history/default")
        entries = json.loads(history.contents[0].text)  # type: ignore[union-attr]
        assert [e["content"] for e in entries] == ["hello there", "echo: hello there"]
        status = json.loads((await client.call_tool("status", {})).content[0].text)  # type: ignore[union-attr]
        assert status["last_runs"][0]["trigger"] == "message" and message_id > 0


@pytest.mark.anyio
async def test_bad_arguments_and_unknown_tools_are_clear_errors(tmp_path: Path) -> None:
    async with host_on_http(tmp_path) as base, Client(f"{base}/claws/scout/mcp") as client:
        result = await client.call_tool("ask", {"thread": "x"})
        text = result.content[0].text  # type: ignore[union-attr]
        assert result.is_error and "ask: invalid arguments: 'message' is a required property" in text
        result = await client.call_tool("nope", {})
        assert result.is_error and result.content[0].text == "Claw 'scout' has no tool 'nope'"  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_schedule_tools_keep_schedules_in_the_store(tmp_path: Path) -> None:
    async with host_on_http(tmp_path) as base, Client(f"{base}/claws/scout/mcp") as client:
        made = await client.call_tool("schedule", {"name": "tick", "every": "1h", "prompt": "time?"})
        assert not made.is_error
        listed = json.loads((await client.call_tool("schedules", {})).content[0].text)  # type: ignore[union-attr]
        assert [(s["name"], s["spec"], s["action"]) for s in listed] == [
            ("tick", {"every": 3600.0}, {"prompt": "time?"})
        ]
        bad = await client.call_tool("schedule", {"name": "x", "every": "soon", "prompt": "p"})
        assert bad.is_error and "every" in bad.content[0].text  # type: ignore[union-attr]
        twice = await client.call_tool(
            "schedule", {"name": "x", "every": "1h", "cron": "0 9 * * *", "prompt": "p"}
        )
        assert twice.content[0].text == (  # type: ignore[union-attr]
            "bad schedule: give exactly one of 'every', 'cron', 'at' (found every, cron)"
        )
        for far, said in [
            ({"every": "99999999999999999999d"}, "bad schedule: every: from 1s to 36500d"),
            ({"at": "0001-01-01T00:00:00+14:00"}, "is out of range (years 1970 to 9999)"),
        ]:
            refused = await client.call_tool("schedule", {"name": "x", "prompt": "p", **far})
            assert refused.is_error and said in refused.content[0].text  # type: ignore[union-attr]
        async with httpx2.AsyncClient() as http:
            assert (await http.get(f"{base}/api/claws")).status_code == 200  # still answers for everyone
        gone = await client.call_tool("unschedule", {"id": listed[0]["id"]})
        assert not gone.is_error
        assert json.loads((await client.call_tool("schedules", {})).content[0].text) == []  # type: ignore[union-attr]


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_the_host_endpoint_lists_claws_and_asks_any(tmp_path: Path, mode: str) -> None:
    async with host_on_http(tmp_path) as base, Client(f"{base}/mcp", mode=mode) as client:
        assert [t.name for t in (await client.list_tools()).tools] == [
            "claws",
            "ask",
            "tell",
            "approvals",
            "decide",
            "result",
            "cancel",
        ]
        claws = json.loads((await client.call_tool("claws", {})).content[0].text)  # type: ignore[union-attr]
        assert [c["claw"] for c in claws] == ["editor", "scout"]
        reply = await client.call_tool("ask", {"claw": "editor", "message": "hi"})
        assert reply.content[0].text == "echo: hi"  # type: ignore[union-attr]
        unknown = await client.call_tool("ask", {"claw": "ghost", "message": "hi"})
        assert unknown.is_error and unknown.content[0].text.startswith("no Claw 'ghost'")  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_the_guard_checks_host_origin_and_tokens(tmp_path: Path) -> None:
    a, every = f"{{name: a, token: {TOKEN_A}, claws: [scout]}}", f"{{name: all, token: {TOKEN_ALL}}}"
    globs = f"{{name: globs, token: {TOKEN_GLOBS}, claws: ['*cout']}}"
    tokens = f", auth: {{tokens: [{a}, {every}, {globs}]}}"
    async with host_on_http(tmp_path, tokens) as base, httpx2.AsyncClient(base_url=base) as http:
        ask = {"message": "hi"}

        async def post(path: str, token: str | None = None, **headers: str) -> httpx2.Response:
            if token:
                headers["authorization"] = f"Bearer {token}"
            return await http.post(path, json=ask, headers=headers)

        assert (await post("/api/claws/scout/ask")).status_code == 401
        assert (await post("/api/claws/scout/ask", "wrong-token-0000000000")).status_code == 401
        refused = await post("/api/claws/editor/ask", TOKEN_A)
        assert (refused.status_code, refused.json()["error"]) == (
            403,
            "this token does not reach Claw 'editor'",
        )
        assert (await post("/claws/editor/mcp", TOKEN_A)).status_code == 403
        ok = await post("/api/claws/scout/ask", TOKEN_A)
        assert (ok.status_code, ok.json()["reply"]) == (200, "echo: hi")
        assert (await post("/api/claws/editor/ask", TOKEN_ALL)).status_code == 200
        foreign = await post("/api/claws/scout/ask", TOKEN_A, host="evil.example:80")
        assert foreign.status_code == 421 and "evil.example" in foreign.json()["error"]
        origin = await post("/api/claws/scout/ask", TOKEN_A, origin="http://evil.example")
        assert origin.status_code == 403 and "evil.example" in origin.json()["error"]
        same = await post("/api/claws/scout/ask", TOKEN_A, origin=base)
        assert same.status_code == 200
        other_port = f"http://127.0.0.1:{int(base.rsplit(':', 1)[1]) + 1}"  # another local web app
        assert (await post("/api/claws/scout/ask", TOKEN_A, origin=other_port)).status_code == 403
        unknown = await post("/api/claws/ghost/ask", TOKEN_ALL)
        assert (unknown.status_code, unknown.json()["error"]) == (
            404,
            "no Claw 'ghost' (Claws: editor, scout)",
        )
        assert (await post("/claws/ghost/mcp", TOKEN_ALL)).status_code == 404
        unknown = await post("/api/claws/xcout/ask", TOKEN_GLOBS)  # '*cout' reaches it, and scout only
        assert (unknown.status_code, unknown.json()["error"]) == (404, "no Claw 'xcout' (Claws: scout)")
        big = await http.post(
            "/api/claws/scout/ask",
            content=b'{"message": "' + b"x" * 2_000_000 + b'"}',
            headers={"authorization": f"Bearer {TOKEN_A}", "content-type": "application/json"},
        )
        assert big.status_code == 413
        assert (await http.get("/healthz")).status_code == 200  # open without a token
        listed = await http.get("/api/claws", headers={"authorization": f"Bearer {TOKEN_A}"})
        assert [c["claw"] for c in listed.json()] == ["scout"]
        bearer = httpx2.AsyncClient(headers={"authorization": f"Bearer {TOKEN_A}"})
        async with (
            bearer,
            Client(streamable_http_client(f"{base}/claws/scout/mcp", http_client=bearer)) as client,
        ):
            assert (await client.call_tool("ask", ask)).content[0].text == "echo: hi"  # type: ignore[union-attr]


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_clients_hear_when_a_claws_exposed_tools_change(tmp_path: Path, mode: str) -> None:
    manifest = f"""
models: {{m: {{provider: scripted, rules: [{{reply: hi}}]}}}}
servers:
  adder: {{command: python, args: ['{PEERS / "adder.py"}', stdio], pin: false}}  # else 'fresh' is held
claws:
  grower: {{model: m, tools: ["adder.*"], expose: {{tools: true}}}}
"""
    heard = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, ToolListChangedNotification):
            heard.set()

    async with host_and_url(tmp_path, manifest=manifest) as (_, base):
        client = Client(f"{base}/claws/grower/mcp", mode=mode, message_handler=on_message)
        async with client:
            assert "adder__fresh" not in [t.name for t in (await client.list_tools()).tools]
            with anyio.fail_after(15):
                if mode == "legacy":
                    await client.call_tool("adder__grow", {})
                    await heard.wait()
                else:
                    async with client.listen(tools_list_changed=True) as changes:
                        await client.call_tool("adder__grow", {})
                        async for _ in changes:
                            break
            assert "adder__fresh" in [t.name for t in (await client.list_tools()).tools]


@pytest.mark.anyio
async def test_answers_are_not_held_back_waiting_for_the_clients_ack(tmp_path: Path) -> None:
    # Without TCP_NODELAY every answer waits ~40 ms (Nagle's algorithm against the client's delayed
    # ACK), whatever the load; with it, a loopback answer takes about a millisecond.
    manifest = "models: {m: {provider: scripted, rules: [{reply: hi}]}}\nclaws: {c: {model: m}}\n"
    async with host_and_url(tmp_path, manifest=manifest) as (_, base), httpx2.AsyncClient() as http:
        times = []
        for _ in range(21):
            started = anyio.current_time()
            assert (await http.get(f"{base}/healthz")).status_code == 200
            times.append(anyio.current_time() - started)
    assert sorted(times)[10] < 0.02


@pytest.mark.anyio
async def test_half_sent_requests_are_dropped_and_cannot_lock_others_out(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text(
        "host: {listen: '127.0.0.1:0', data_dir: data}\n"
        "models: {m: {provider: scripted, rules: [{reply: hi}]}}\nclaws: {c: {model: m}}\n"
    )
    host = Host(load([tmp_path / "m.yaml"]))
    async with serving(host, head=0.5, body=0.5, cap=20), AsyncExitStack() as streams:
        port = int(host.listen.rsplit(":", 1)[1])  # the port it got for port 0
        slow = []
        for _ in range(30):  # half a request line each: more than the cap allows
            stream = await streams.enter_async_context(await anyio.connect_tcp("127.0.0.1", port))
            await stream.send(b"GET /api/claws HTT")
            slow.append(stream)
        body = await streams.enter_async_context(await anyio.connect_tcp("127.0.0.1", port))
        # a whole head, half of its body
        await body.send(b"POST /api/claws/c/tell HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 50\r\n\r\n{")
        with anyio.fail_after(10):
            for stream in [*slow, body]:
                with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                    await stream.receive()  # the host closed it
            async with httpx2.AsyncClient() as http:  # and everyone else is served
                assert (await http.get(f"http://127.0.0.1:{port}/api/claws")).status_code == 200
        assert await host.store.depth("c") == 0  # the half-sent tell was not taken


@pytest.mark.anyio
async def test_bad_input_to_the_api_is_a_clear_4xx_and_runs_nothing(tmp_path: Path) -> None:
    manifest = "models: {m: {provider: scripted, rules: [{reply: hi}]}}\nclaws: {c: {model: m}}\n"
    async with host_and_url(tmp_path, manifest=manifest) as (host, base), httpx2.AsyncClient() as http:
        deep = "[" * 100_000 + "]" * 100_000
        cases: list[tuple[str, str, dict[str, Any], int, str]] = [
            ("POST", "/api/claws/c/tell", {"content": deep}, 400, "nested too deeply"),
            ("POST", "/api/claws/c/anything", {"json": {"message": "hi"}}, 404, "a Claw has ask and tell"),
            ("GET", f"/api/events?after={2**64}", {}, 400, "'after'"),
            ("GET", "/api/events", {"headers": {"Last-Event-ID": str(2**70)}}, 400, "'after'"),
            ("GET", "/api/events?limit=-1", {}, 400, "'limit' from 1 to 10000"),
            ("GET", "/api/events?limit=x", {}, 400, "'limit' from 1 to 10000"),
        ]
        for method, path, extra, status, said in cases:
            response = await http.request(method, f"{base}{path}", **extra)
            assert (response.status_code, said in response.json()["error"]) == (status, True), path
        assert await host.store.runs() == []


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_exposed_tools_check_their_arguments_and_pass_on_upstream_progress(
    tmp_path: Path, mode: str
) -> None:
    manifest = (
        f"servers:\n  adder: {{command: python, args: ['{PEERS / 'adder.py'}', stdio]}}\n"
        "models: {m: {provider: scripted, rules: [{reply: hi}]}}\n"
        "claws: {c: {model: m, tools: ['adder.*'], expose: {tools: true}}}\n"
    )
    heard: list[str | None] = []

    async def progress(progress: float, total: float | None, message: str | None) -> None:
        heard.append(message)

    async with (
        host_and_url(tmp_path, manifest=manifest) as (_, base),
        Client(f"{base}/claws/c/mcp", mode=mode) as client,
    ):
        [add] = [t for t in (await client.list_tools()).tools if t.name == "adder__add"]
        assert (add.title, add.annotations, add.icons) == (
            "Adder",
            ToolAnnotations(read_only_hint=True),
            [Icon(src="data:,+")],
        )
        assert add.output_schema is not None
        assert add.output_schema["properties"]["result"]["type"] == "integer"
        added = await client.call_tool("adder__add", {"a": 1, "b": 2})
        assert added.structured_content == {"result": 3}
        bad = await client.call_tool("adder__add", {"a": "one", "b": 2})
        assert bad.is_error and "invalid arguments: a: 'one' is not of type 'integer'" in bad.content[0].text  # type: ignore[union-attr]
        counted = await client.call_tool("adder__count", {"to": 3}, progress_callback=progress)
        assert counted.content[0].text == "counted to 3"  # type: ignore[union-attr]
    assert heard == ["at 1", "at 2", "at 3"]


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_an_mcp_client_at_an_unknown_claw_is_told_which_claws_there_are(
    tmp_path: Path, mode: str
) -> None:
    async with host_on_http(tmp_path) as base:
        with pytest.raises(BaseException) as raised:
            async with Client(f"{base}/claws/ghost/mcp", mode=mode) as client:
                await client.list_tools()
    error = unwrap(raised.value)
    assert isinstance(error, MCPError) and str(error) == "no Claw 'ghost' (Claws: editor, scout)"
