"""Stand-ins for what is outside our control: model APIs and tool servers.

`FakeAPI` records every request and answers through a function the test gives it, in the wire
format of the provider (`OPENAI` or `ANTHROPIC` build the documented bodies); a host reaches it
through its ASGI transport (no port) or, for tests of whole processes, on a real local port.
`tool_server` is a real MCP server in this process, and `time_server` one that answers as
mcp-server-time does. `hosting` runs a whole host in this process, on a `MemoryStore` unless
given another store.
"""

from __future__ import annotations

import json
import logging
import socket
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import anyio
import anyio.lowlevel
import httpx2
import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from clawmcp.host import Host
from clawmcp.manifest import load
from clawmcp.scheduler import Clock, SystemClock
from clawmcp.store import Store
from clawmcp.store.memory import MemoryStore
from clawmcp.store.sqlite import SqliteStore

Answer = tuple[int, dict[str, str], Any]

TIME = "{command: python, args: [-m, mcp_server_time, --local-timezone, UTC]}"
"""A manifest's entry for the real mcp-server-time, a subprocess."""
PEERS = Path(__file__).parent / "peers"
"""Small MCP servers the tests run as subprocesses."""


def listening() -> socket.socket:
    """A socket listening on a free loopback port, to hand over to a server process (`pass_fds`):
    the port is known before the server starts, with no race for it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: Any
    at: float


class FakeAPI:
    """A model API: `answer(n, body)` gives the status, headers and JSON body of request n."""

    def __init__(self, answer: Callable[[int, Any], Answer | Awaitable[Answer]]) -> None:
        self.answer = answer
        self.requests: list[Recorded] = []
        self.app = Starlette(routes=[Route("/{path:path}", self._handle, methods=["POST"])])

    async def _handle(self, request: Request) -> JSONResponse:
        body = await request.json()
        self.requests.append(Recorded(request.url.path, dict(request.headers), body, time.monotonic()))
        answer = self.answer(len(self.requests) - 1, body)
        status, headers, payload = await answer if isinstance(answer, Awaitable) else answer
        return JSONResponse(payload, status, headers)

    def transport(self) -> httpx2.AsyncBaseTransport:
        """For `Host(models=...)`: requests to any URL reach this API, without a port."""
        return httpx2.ASGITransport(app=self.app)

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[str]:
        """Serve on a free loopback port; yields the base URL. The socket listens before the
        server task starts, so a client may connect at once."""
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", lifespan="off"))
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            yield f"http://127.0.0.1:{sock.getsockname()[1]}"
            server.should_exit = True


def openai_tool_call(call_id: str, name: str, arguments: dict[str, Any]) -> Answer:
    message = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": call_id,
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(arguments)},
            }
        ],
    }
    return 200, {}, _openai(message, "tool_calls")


def openai_text(text: str) -> Answer:
    return 200, {}, _openai({"role": "assistant", "content": text}, "stop")


def _openai(message: dict[str, Any], finish: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1_790_000_000,
        "model": "gpt-test",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14},
    }


def openai_error(status: int, message: str, headers: dict[str, str] | None = None) -> Answer:
    return (
        status,
        headers or {},
        {"error": {"message": message, "type": "invalid_request_error", "code": None}},
    )


def anthropic_tool_call(call_id: str, name: str, arguments: dict[str, Any]) -> Answer:
    blocks: list[dict[str, Any]] = [
        {"type": "text", "text": "Let me look."},
        {"type": "tool_use", "id": call_id, "name": name, "input": arguments},
    ]
    return 200, {}, _anthropic(blocks, "tool_use")


def anthropic_text(text: str) -> Answer:
    return 200, {}, _anthropic([{"type": "text", "text": text}], "end_turn")


def _anthropic(blocks: list[dict[str, Any]], stop: str) -> dict[str, Any]:
    return {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": "claude-test",
        "content": blocks,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {"input_tokens": 11, "output_tokens": 3},
    }


def anthropic_error(status: int, message: str, headers: dict[str, str] | None = None) -> Answer:
    kind = {401: "authentication_error", 429: "rate_limit_error"}.get(status, "api_error")
    return status, headers or {}, {"type": "error", "error": {"type": kind, "message": message}}


class FakeClock:
    """Wall-clock time that moves only when a test says so; sleepers wake when it passes their
    deadline."""

    def __init__(self, now: float) -> None:
        self._now = now
        self._moved = anyio.Event()
        self.deadlines: list[float] = []
        """Every deadline slept until, in order."""
        self._slept = anyio.Event()

    def now(self) -> float:
        return self._now

    async def deadline(self, count: int) -> float:
        """The deadline of sleep number `count` (from 0), once it has begun."""
        with anyio.fail_after(10):
            while len(self.deadlines) <= count:
                await self._slept.wait()
        return self.deadlines[count]

    async def sleep_until(self, deadline: float) -> None:
        self.deadlines.append(deadline)
        slept, self._slept = self._slept, anyio.Event()
        slept.set()
        await anyio.lowlevel.checkpoint()  # a sleep always yields, as a real one does: a loop
        while self._now < deadline:  # that sleeps until a past deadline cannot starve the others
            await self._moved.wait()

    def set(self, now: float) -> None:
        self._now = now
        moved, self._moved = self._moved, anyio.Event()
        moved.set()


API = "http://model.test"
"""The base URL of a model in a manifest whose host reaches a `FakeAPI` through its transport."""

LOCAL = "{command: in-process}"
"""A manifest's entry for a tool server that `hosting(servers=...)` runs in this process."""


def tool_server(name: str, *tools: Callable[..., Any]) -> MCPServer:
    """A real MCP server in this process that offers the given functions as its tools."""
    server = MCPServer(name)
    for tool in tools:
        server.add_tool(tool)
    return server


def time_server() -> MCPServer:
    """mcp-server-time's two tools, answering in its format, in this process."""

    def zone(name: str) -> ZoneInfo:
        try:
            return ZoneInfo(name)
        except (ValueError, ZoneInfoNotFoundError) as e:
            raise ToolError(f"Invalid timezone: {e}") from None

    def get_current_time(timezone: str) -> dict[str, Any]:
        now = datetime.now(zone(timezone))
        return {
            "timezone": timezone,
            "datetime": now.isoformat(timespec="seconds"),
            "is_dst": bool(now.dst()),
        }

    def convert_time(source_timezone: str, time: str, target_timezone: str) -> dict[str, Any]:
        hour, minute = map(int, time.split(":"))
        source = datetime.now(zone(source_timezone)).replace(hour=hour, minute=minute)
        target = source.astimezone(zone(target_timezone))
        return {"source": source.isoformat(), "target": target.isoformat()}

    return tool_server("time", get_current_time, convert_time)


async def until(host: Host, check: Callable[[], Awaitable[bool]]) -> None:
    """Wait until `check` holds, looking again each time the host's Claws settle a message."""
    with anyio.fail_after(20):
        while True:
            settled = host.claws.settled
            if await check():
                return
            await settled.wait()


@asynccontextmanager
async def hosting(
    tmp_path: Path,
    body: str,
    *,
    clock: Clock | None = None,
    store: Store | None = None,
    api: FakeAPI | None = None,
    servers: dict[str, MCPServer] | None = None,
) -> AsyncIterator[Host]:
    """A whole host in this process on `tmp_path/data`, from a manifest `body` (which may have its
    own `host:` with `data_dir: data`): on `store` (a new `MemoryStore` on the host's clock unless
    given), its models reaching `api`, its tool `servers` (declared `LOCAL`) in this process."""
    path = tmp_path / "m.yaml"
    path.write_text(body if body.lstrip().startswith("host:") else "host: {data_dir: data}\n" + body)
    clock = clock or SystemClock()
    host = Host(
        load([path]),
        clock=clock,
        store=store or MemoryStore(clock.now),
        models=api.transport() if api else None,
        servers=servers,
    )
    async with anyio.create_task_group() as tg:
        with anyio.fail_after(30):
            await tg.start(host.run)
        yield host
        tg.cancel_scope.cancel()


async def disk_full(host: Host, full: bool) -> None:
    """Let the database grow no more (SQLite then fails writes with SQLITE_FULL), or again."""

    def limit(conn: sqlite3.Connection) -> None:
        [(pages,)] = conn.execute("PRAGMA page_count").fetchall()
        conn.execute(f"PRAGMA max_page_count = {pages if full else 2**30}")

    assert isinstance(host.store, SqliteStore)
    await host.store._write(limit)  # the SQLite store's own writer


@contextmanager
def logged(text: str) -> Iterator[anyio.Event]:
    """An event set when the host logs a line holding `text` (logging runs on the event loop)."""
    seen = anyio.Event()

    class Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if text in record.getMessage():
                seen.set()

    handler = Handler()
    logging.getLogger("clawmcp").addHandler(handler)
    try:
        yield seen
    finally:
        logging.getLogger("clawmcp").removeHandler(handler)
