"""The tool hub: one MCP connection per tool server, shared by every Claw, checked per call.

Each server has one owning task, supervised (`clawmcp.supervisor`), that connects, lists its
tools and watches the connection. A server that does not answer is retried with capped
exponential backoff; a lost connection is a crash that the supervisor restarts, and a server that
keeps dropping its connections past the restart intensity is marked failed. While a server is
down, calls to its tools fail at once with a clear message; other servers are not affected.
Tools are named on the wire as `SERVER__TOOL` (DESIGN §3); `tools__NAME` are the manifest's own
tools.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import re
import sys
import threading
import time
import warnings
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextlib import AsyncExitStack
from contextvars import ContextVar
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Literal

import anyio
import httpx2
from anyio.abc import TaskStatus
from mcp import Client, StdioServerParameters
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp.shared.subscriptions import ToolsListChanged
from mcp.types import (
    INVALID_REQUEST,
    AudioContent,
    CallToolResult,
    ElicitRequestFormParams,
    ElicitRequestParams,
    ElicitResult,
    EmbeddedResource,
    ErrorData,
    ImageContent,
    ResourceLink,
    ResourceUpdatedNotification,
    TextContent,
    TextResourceContents,
    Tool,
    ToolListChangedNotification,
)

from clawmcp import tools as manifest_tools
from clawmcp.approvals import ASKER, Asker, Reply
from clawmcp.errors import NeedsLogin, StoreError, ToolRefused, ToolServerError, UserError, unwrap
from clawmcp.events import Events
from clawmcp.manifest import Manifest, Server
from clawmcp.oauth import Vault, host_auth
from clawmcp.stdio_transport import stdio_transport
from clawmcp.store import Store
from clawmcp.supervisor import Supervisor
from clawmcp.triggers import watched

__all__ = [
    "AUDIT_WINDOW",
    "Held",
    "HubTool",
    "ServerState",
    "ToolHub",
    "changes",
    "definition",
    "digest",
    "held_text",
    "result_text",
    "wire_names",
]

log = logging.getLogger("clawmcp")

AUDIT_WINDOW = 0.05
"""Seconds audit records wait to share a commit; a crash loses at most this much of the audit."""

_WIRE_BAD = re.compile(r"[^A-Za-z0-9_-]")
_CLOSED = -32000  # the SDK's "Connection closed"


def wire_names(qualified: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """Wire names for (server, tool) pairs: `SERVER__TOOL`, other characters as `_`, at most 64.

    A name that is too long or already taken is cut and given a stable hash suffix of its
    qualified name, so two tools never share a wire name.
    """
    names: dict[tuple[str, str], str] = {}
    taken: set[str] = set()
    for server, tool in sorted(qualified):
        name = _WIRE_BAD.sub("_", f"{server}__{tool}")
        salt = 0
        while len(name) > 64 or name in taken:
            digest = hashlib.sha256(f"{server}.{tool}#{salt}".encode()).hexdigest()[:8]
            name = _WIRE_BAD.sub("_", f"{server}__{tool}")[:55] + "_" + digest
            salt += 1
        taken.add(name)
        names[(server, tool)] = name
    return names


def held_text(server: str, tool: str, held: Held) -> str:
    what = "changed since it was pinned" if held == "changed" else "is new since the tools were pinned"
    return (
        f"tool '{server}.{tool}' {what}: it is held (not offered, calls refused) until a person accepts it "
        f"with: clawmcp tools accept {server} {tool}"
    )


def _relay(server: str, fd: int) -> None:
    """In a thread: each line a stdio server writes to stderr, logged as its own (until EOF)."""
    with os.fdopen(fd, "rb") as lines:
        for line in lines:
            text = line.decode(errors="replace").rstrip()
            log.info("server '%s': %s", server, text, extra={"server": server})


def result_text(result: CallToolResult) -> str:
    """A tool result as text for a model: text as it is, other content named by what it is."""
    parts = []
    for block in result.content:
        if isinstance(block, TextContent):
            parts.append(block.text)
        elif isinstance(block, ImageContent | AudioContent):
            parts.append(f"[{block.type}: {block.mime_type}, {len(block.data)} base64 characters]")
        elif isinstance(block, EmbeddedResource):
            resource = block.resource
            text = resource.text if isinstance(resource, TextResourceContents) else None
            parts.append(text if text is not None else f"[resource {resource.uri}, {resource.mime_type}]")
        elif isinstance(block, ResourceLink):
            parts.append(f"[resource link {block.uri}]")
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content))
    return "\n".join(parts)


@dataclass(frozen=True)
class HubTool:
    """A tool as the hub offers it."""

    wire: str
    server: str
    name: str
    description: str
    input_schema: dict[str, Any]
    annotations: dict[str, Any] = field(default_factory=dict)
    """The upstream tool's annotations (`destructiveHint`, `readOnlyHint`, ...), as sent."""
    held: Held | None = None
    """Why the tool is held (not offered, its calls refused) until a person accepts it."""
    title: str | None = None
    output_schema: dict[str, Any] | None = None
    icons: tuple[dict[str, Any], ...] = ()
    """Upstream metadata, passed on to the clients of `expose.tools`."""

    @property
    def qualified(self) -> str:
        return f"{self.server}.{self.name}"

    @property
    def destructive(self) -> bool:
        """Annotated destructive and not read-only (what `@destructive` in `approve:` means)."""
        a = self.annotations
        return a.get("destructiveHint") is True and a.get("readOnlyHint") is not True


Held = Literal["changed", "new"]
_PINNED = ("name", "title", "description", "input_schema", "output_schema", "annotations")


def definition(tool: Tool) -> dict[str, Any]:
    """What pinning keeps of a tool: the fields a model or a person decides by."""
    return tool.model_dump(by_alias=True, exclude_none=True, include=set(_PINNED))


def digest(definition: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(definition, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def changes(pinned: dict[str, Any], now: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The fields of a tool's definition that changed since it was pinned: then and now."""
    return {
        k: {"pinned": pinned.get(k), "now": now.get(k)}
        for k in sorted({*pinned, *now})
        if pinned.get(k) != now.get(k)
    }


Questions = Callable[[str, int, str, str, dict[str, Any], Asker | None], Awaitable[Reply]]
"""Relays a tool server's question of a run (`Approvals.question`)."""


@dataclass(eq=False)
class _Call:
    """A call in flight to a tool server: whose, and its deadline."""

    claw: str
    run_id: int | None
    tool: str
    asker: Asker | None
    timer: anyio.CancelScope = field(default_factory=anyio.CancelScope)


_CALL: ContextVar[_Call | None] = ContextVar("clawmcp_call", default=None)


@dataclass
class ServerState:
    """What a tool server is doing, for `status` and the dashboard."""

    state: Literal["connecting", "up", "down", "needs login", "failed"] = "connecting"
    attempt: int = 0
    error: str | None = None
    reconnects: int = 0
    login: bool = False
    """An oauth server whose tokens are missing or were refused: `clawmcp login` it."""
    tools: list[Tool] = field(default_factory=list)
    """As the server listed them."""
    held: dict[str, Held] = field(default_factory=dict)
    """The listed tools held since their pins, by name."""
    pins: dict[str, dict[str, Any]] = field(default_factory=dict)
    """The pinned definitions of the tools held as changed."""


class _Upstream:
    def __init__(self, hub: ToolHub, name: str, server: Server) -> None:
        self.hub, self.name, self.server = hub, name, server
        self.status = ServerState()
        self.client: Client | None = None
        self.calls: set[_Call] = set()
        self.up = anyio.Event()
        self.tried = anyio.Event()
        """Set once the first connection attempt has succeeded or failed."""
        self._wake = anyio.Event()
        self._lost = False
        self.retry = anyio.Event()
        """Set to try connecting again now, not after the backoff."""

    async def _target(self, stack: AsyncExitStack) -> Any:
        if (local := self.hub.local.get(self.name)) is not None:
            return local
        s = self.server
        if s.kind == "stdio":
            assert s.command is not None
            # "python" means the interpreter clawmcp runs on, so bundled servers work from a virtualenv.
            command = sys.executable if s.command in ("python", "python3") else s.command
            params = StdioServerParameters(command=command, args=s.args, env=s.env or None, cwd=s.cwd)
            read, write = os.pipe()  # the server's stderr, relayed line by line with its name
            errlog = os.fdopen(write, "w")
            stack.callback(errlog.close)
            threading.Thread(target=_relay, args=(self.name, read), daemon=True).start()
            return stdio_transport(params, errlog)
        assert s.url is not None
        auth = None
        if s.auth == "oauth":
            assert self.hub.store is not None, "an oauth server's tokens are in the store"
            vault = Vault(self.hub.manifest.data_dir)
            auth = await host_auth(self.name, s, self.hub.store, vault, self._refused)
        if s.kind == "sse":
            return sse_client(s.url, headers=s.headers or None, auth=auth)
        http = httpx2.AsyncClient(headers=s.headers, timeout=httpx2.Timeout(30, read=300), auth=auth)
        stack.push_async_callback(http.aclose)  # a client we hand to the SDK is ours to close
        return streamable_http_client(s.url, http_client=http)

    def _refused(self) -> None:
        """The server's OAuth tokens were refused: a person must log in again."""
        self.status.login = True

    async def _on_message(self, message: Any) -> None:
        if isinstance(message, ToolListChangedNotification):
            self._wake.set()
        elif isinstance(message, ResourceUpdatedNotification) and self.hub.updated is not None:
            uri = str(message.params.uri)
            try:  # in both eras: a listen stream's events reach here too
                await self.hub.updated(self.name, uri)
            except Exception as e:  # a store fault: the next update is tried again
                log.warning("tool server '%s': the update of %s was not queued: %s", self.name, uri, e)

    def lost(self) -> None:
        """A call found the connection closed: down from now on, and the owner reconnects."""
        self._lost = True
        self._wake.set()
        self._mark_down()

    def _mark_down(self) -> None:
        self.client = None
        if self.up.is_set():  # a fresh event only once the old one fired: waiters never miss one
            self.up = anyio.Event()
        self.status.state = "needs login" if self.status.login else "down"

    async def connection(self) -> None:
        """One supervised connection: connect, retrying with backoff while the server does not
        answer; serve until the connection is lost; then raise, so the supervisor restarts it (and
        marks a server that keeps dropping its connections failed)."""
        if self.tried.is_set():
            self.status.reconnects += 1
        while True:
            self.status.attempt += 1
            first = not self.tried.is_set()
            was_up = await self._session()
            self.tried.set()
            self._mark_down()
            if was_up or first:
                self.hub.emit_server(self.name, "down", self.status.error)
            if was_up:
                raise ToolServerError(f"lost the connection: {self.status.error}")
            base, cap = self.hub.backoff
            with anyio.move_on_after(min(cap, base * 2 ** (self.status.attempt - 1))):
                await self.retry.wait()  # or at once, when told (a login)
            self.retry = anyio.Event()
            self.status.reconnects += 1

    async def _session(self) -> bool:
        """Connect and serve until the connection ends; whether it was up at all."""
        self._lost, was_up, self.status.login = False, False, False
        self.status.state = "connecting"
        with anyio.CancelScope() as scope:
            scope.deadline = anyio.current_time() + self.hub.connect_timeout
            try:
                async with AsyncExitStack() as stack:
                    client = Client(
                        await self._target(stack),
                        mode=self.hub.mode,
                        message_handler=self._on_message,
                        elicitation_callback=lambda _, params: self.hub._elicited(self, params),
                    )
                    await stack.enter_async_context(client)
                    await self._list(client)
                    tg = await stack.enter_async_context(anyio.create_task_group())
                    await tg.start(self._listen, client)
                    scope.deadline = math.inf
                    self.client, self.status.state, self.status.error = client, "up", None
                    self.status.attempt = 0
                    self.up.set()
                    self.tried.set()
                    was_up = True
                    self.hub.emit_server(self.name, "up", None)
                    await self._watch(client)
                    self.status.error = "the connection was lost"
                    tg.cancel_scope.cancel()
            except Exception as e:
                self.status.error = _describe(e)
                self.status.login = isinstance(unwrap(e), NeedsLogin)
        if scope.cancelled_caught:
            self.status.error = f"no answer to the handshake within {self.hub.connect_timeout:g}s"
        return was_up

    async def _list(self, client: Client) -> None:
        listed = await client.list_tools()
        await self.hub.check_pins(self, list(listed.tools))
        self.status.tools = list(listed.tools)
        self.hub._rebuild()

    async def _listen(self, client: Client, *, task_status: TaskStatus[None]) -> None:
        """Hear of tool list changes and of the updates of the resources that triggers watch:
        through `subscriptions/listen` in the 2026 era, else as notifications (the resources
        subscribed to with `resources/subscribe`). The updates reach `_on_message` either way."""
        uris = watched(self.hub.manifest, self.name)
        listening = False
        try:
            async with client.listen(tools_list_changed=True, resource_subscriptions=uris) as changes:
                task_status.started()
                listening = True
                async for event in changes:
                    if isinstance(event, ToolsListChanged):
                        self._wake.set()
        except Exception:  # handshake era, no support, or lost: notifications and health checks remain
            if not listening:
                await self._subscribe(client, uris)
                task_status.started()

    async def _subscribe(self, client: Client, uris: list[str]) -> None:
        with warnings.catch_warnings():  # deprecated in the 2026 era, which does not come here
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            for uri in uris:
                try:
                    await client.subscribe_resource(uri)
                except MCPError as e:
                    log.warning("tool server '%s': cannot watch %s: %s", self.name, uri, e.error.message)

    async def _watch(self, client: Client) -> None:
        """Until the connection is lost: relist on list_changed, and check health now and then."""
        while True:
            with anyio.move_on_after(self.hub.health_interval):
                await self._wake.wait()
            self._wake = anyio.Event()
            if self._lost:
                return
            with anyio.fail_after(self.hub.call_timeout):
                await self._list(client)


def _describe(e: BaseException) -> str:
    e = unwrap(e)
    if isinstance(e, OSError) and e.filename:
        return f"cannot start '{e.filename}': {e.strerror}"
    if isinstance(e, MCPError):
        return "the server closed the connection" if e.code == _CLOSED else e.error.message
    return str(e) or type(e).__name__


class ToolHub:
    """Every tool server and manifest tool of a manifest. Run it in a task group with `tg.start`."""

    def __init__(
        self,
        manifest: Manifest,
        store: Store | None = None,
        events: Events | None = None,
        *,
        connect_timeout: float = 30.0,
        call_timeout: float = 120.0,
        health_interval: float = 30.0,
        backoff: tuple[float, float] | None = None,
        mode: Literal["auto", "legacy"] = "auto",
        local: Mapping[str, Any] | None = None,
        questions: Questions | None = None,
    ) -> None:
        """`local`: in-process MCP servers (SDK server objects) by name, connected to instead of
        what the manifest says for that server (fast tests: no process, no port)."""
        self.manifest, self.store, self.events = manifest, store, events
        self.local = local or {}
        self.questions = questions
        self.connect_timeout, self.call_timeout = connect_timeout, call_timeout
        s = manifest.host.supervision
        self.backoff = backoff or (s.backoff, s.max_backoff)
        self.health_interval, self.mode = health_interval, mode
        self.catalog_changed = anyio.Event()
        self.upstreams: dict[str, _Upstream] = {}
        self.supervisor = Supervisor(
            "tool server",
            strategy=s.strategy,
            intensity=s.intensity,
            period=s.period,
            backoff=self.backoff[0],
            max_backoff=self.backoff[1],
        )
        for name in manifest.servers:
            self._connect(name)
        self.catalog: dict[str, HubTool] = {}
        self.updated: Callable[[str, str], Awaitable[None]] | None = None
        """Hears (server, URI) of each update of a resource a trigger watches."""
        self._http = httpx2.AsyncClient()
        self._audit_send, self._audit_receive = anyio.create_memory_object_stream[dict[str, Any]](math.inf)
        self._rebuild()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Connect every server; ready once each has connected or failed its first try."""
        async with self._http, self._audit_send, self._audit_receive, anyio.create_task_group() as tg:
            if self.store is not None:
                tg.start_soon(self._audit, self.store)
            await tg.start(self.supervisor.run)
            for upstream in self.upstreams.values():
                await upstream.tried.wait()
            task_status.started()

    async def remove(self, servers: Iterable[str]) -> None:
        """A reload removed these servers (or changed them: `add` them again): each one's
        connection is closed (a call in flight to it fails) and its tools leave the catalog."""
        for name in servers:
            self.upstreams.pop(name, None)
            if name in self.supervisor.children:
                await self.supervisor.remove(name)
        self._rebuild()

    async def add(self, servers: Iterable[str]) -> None:
        """Connect servers of the (reloaded) manifest; returns once each has connected or failed its
        first try, as at start. The catalog is built again (the manifest's tools may have changed)."""
        added = [self._connect(name) for name in servers]
        self._rebuild()
        for upstream in added:
            await upstream.tried.wait()

    def _connect(self, name: str) -> _Upstream:
        upstream = self.upstreams[name] = _Upstream(self, name, self.manifest.servers[name])
        self.supervisor.add(name, upstream.connection)
        return upstream

    async def wait_up(self, server: str) -> None:
        """Wait until the server is connected (tests and start-up use this; wrap it in a timeout)."""
        while not self.upstreams[server].up.is_set():
            await self.upstreams[server].up.wait()

    def emit_server(self, server: str, state: str, error: str | None) -> None:
        if self.events is not None:
            self.events.emit("server", None, server=server, state=state, error=error)

    def status(self) -> dict[str, ServerState]:
        for name, child in self.supervisor.children.items():
            if child.state == "failed":
                self.upstreams[name].status.state = "failed"
        return {name: u.status for name, u in self.upstreams.items()}

    def unmatched_patterns(self) -> list[str]:
        """Warnings for `tools:` patterns that match no tool although every server they name is up."""
        warnings = []
        for name, claw in self.manifest.claws.items():
            for i, pattern in enumerate(claw.tools):
                servers = [s for s, u in self.upstreams.items() if fnmatchcase(s, pattern.partition(".")[0])]
                if all(self.upstreams[s].status.state == "up" for s in servers) and not any(
                    fnmatchcase(t.qualified, pattern) for t in self.catalog.values()
                ):
                    warnings.append(
                        f"claws.{name}.tools[{i}]: '{pattern}' matches no tool of the running servers"
                    )
        return warnings

    def tools_for(self, claw: str) -> list[HubTool]:
        """The tools a Claw's `tools:` patterns admit, but none that is held."""
        return [t for t in self.catalog.values() if t.held is None and self.allowed(claw, t)]

    async def check_pins(self, upstream: _Upstream, tools: list[Tool]) -> None:
        """Compare a listing with the server's pins: the first listing pins every tool; later, a
        tool whose definition changed, or that is new, is held (and said so once)."""
        status, server = upstream.status, upstream.name
        if self.store is None or not upstream.server.pin:
            return
        found = {t.name: definition(t) for t in tools}
        pins = await self.store.pins(server)
        if not pins:
            await self.store.pin(server, {name: (d, digest(d)) for name, d in found.items()})
            return
        held: dict[str, Held] = {}
        status.pins = {}
        for name, d in found.items():
            if (pin := pins.get(name)) is None:
                held[name] = "new"
            elif pin.hash != digest(d):
                held[name] = "changed"
                status.pins[name] = pin.definition
        for name in sorted(held.keys() - status.held.keys()):
            why = held_text(server, name, held[name])
            log.warning("%s", why, extra={"server": server})
            self.emit_server(server, "held", why)
        status.held = held

    def reconnect(self, server: str) -> None:
        """Try the server again now (after a login); a server that is up stays as it is."""
        if server not in self.upstreams:
            raise UserError(f"no tool server '{server}'")
        self.upstreams[server].retry.set()

    async def accept(self, server: str, tools: list[str]) -> list[str]:
        """A person trusts the server's tools as they are listed now (all, or those named): they
        are pinned again, and offered. Returns the names accepted."""
        upstream = self.upstreams.get(server)
        if upstream is None:
            raise UserError(f"no tool server '{server}' (servers: {', '.join(sorted(self.upstreams))})")
        listed = {t.name: definition(t) for t in upstream.status.tools}
        if unknown := sorted(set(tools) - listed.keys()):
            raise UserError(f"tool server '{server}' lists no tool {', '.join(unknown)}")
        names = tools or sorted(listed)
        if self.store is not None:
            await self.store.pin(server, {n: (listed[n], digest(listed[n])) for n in names})
        for name in names:
            upstream.status.held.pop(name, None)
            upstream.status.pins.pop(name, None)
        self._rebuild()
        return names

    def allowed(self, claw: str, tool: HubTool) -> bool:
        if claw not in self.manifest.claws:
            raise ToolRefused(f"no Claw '{claw}'")
        return any(fnmatchcase(tool.qualified, p) for p in self.manifest.claws[claw].tools)

    async def call(
        self,
        claw: str,
        wire: str,
        arguments: dict[str, Any],
        *,
        run_id: int | None = None,
        progress: ProgressFnT | None = None,
    ) -> CallToolResult:
        """Call a tool for a Claw; raise `ToolRefused` or `ToolServerError`. Every call is audited.
        `progress` hears the upstream server's progress notifications."""
        started = time.perf_counter()
        outcome: Literal["ok", "error", "refused"] = "error"
        error: str | None = None
        tool = self.catalog.get(wire)
        try:
            if tool is None and (upstream := self._never_up(wire)):
                raise self._down(upstream)
            if tool is None or not self.allowed(claw, tool):
                outcome = "refused"
                raise ToolRefused(f"Claw '{claw}' may not use tool '{wire}'" if tool else f"no tool '{wire}'")
            if tool.held is not None:
                outcome = "refused"
                raise ToolRefused(held_text(tool.server, tool.name, tool.held))
            result = await self._call(
                tool, arguments, progress, _Call(claw, run_id, tool.qualified, ASKER.get())
            )
            outcome = "error" if result.is_error else "ok"
            return result
        except (ToolRefused, ToolServerError) as e:
            error = str(e)
            raise
        finally:
            tool_name = tool.qualified if tool else wire
            self.audit(claw, tool_name, arguments, time.perf_counter() - started, outcome, error, run_id)

    def audit(
        self,
        claw: str,
        tool: str,
        arguments: Any,
        duration: float,
        outcome: Literal["ok", "error", "refused"],
        error: str | None,
        run_id: int | None,
    ) -> None:
        """Record a tool call (built-in tools are recorded here too), off the call path."""
        if self.events is not None:
            self.events.emit(
                "tool", claw, tool=tool, run=run_id, duration=duration, outcome=outcome, error=error
            )
        if self.store is not None:
            record = {
                "claw": claw,
                "tool": tool,
                "args_bytes": len(json.dumps(arguments, default=str)),
                "duration": duration,
                "outcome": outcome,
                "error": error,
                "run_id": run_id,
            }
            self._audit_send.send_nowait(record)

    async def call_text(
        self, claw: str, wire: str, arguments: dict[str, Any], *, run_id: int | None = None
    ) -> tuple[str, bool]:
        """`call` for a model: the result as text and whether it is an error. A server's failure
        is an error result too, so a run goes on and the model can react; `ToolRefused` is raised
        (the caller tells the model, and knows it was refused)."""
        try:
            result = await self.call(claw, wire, arguments, run_id=run_id)
        except ToolServerError as e:
            return str(e), True
        return result_text(result), result.is_error

    async def _audit(self, store: Store) -> None:
        """Write audit records off the call path: nobody waits on them, so several share a commit."""

        def waiting() -> list[dict[str, Any]]:
            records = []
            with contextlib.suppress(anyio.WouldBlock):
                while True:
                    records.append(self._audit_receive.receive_nowait())
            return records

        async def write(records: list[dict[str, Any]]) -> None:
            lost: list[StoreError] = []

            async def one(record: dict[str, Any]) -> None:
                try:
                    await store.record_tool_call(**record)
                except StoreError as e:  # the audit is not worth stopping the host for
                    lost.append(e)

            async with anyio.create_task_group() as tg:
                for record in records:
                    tg.start_soon(one, record)
            if lost:
                log.warning("%d tool calls were not audited: %s", len(lost), lost[0])

        pending: list[dict[str, Any]] = []
        try:
            async for first in self._audit_receive:
                pending.append(first)
                await anyio.sleep(AUDIT_WINDOW)  # let the records of a busy moment share one commit
                pending += waiting()
                with anyio.CancelScope(shield=True):
                    await write(pending)
                pending = []
        finally:
            with anyio.CancelScope(shield=True):  # stopping: what was called is still recorded
                await write([*pending, *waiting()])

    async def _call(
        self, tool: HubTool, arguments: dict[str, Any], progress: ProgressFnT | None, call: _Call
    ) -> CallToolResult:
        if tool.server == "tools":
            return await manifest_tools.run_tool(
                tool.name, self.manifest.tools[tool.name], arguments, http=self._http
            )
        upstream = self.upstreams[tool.server]
        client = upstream.client
        if client is None:
            raise self._down(upstream)
        token = _CALL.set(call)
        upstream.calls.add(call)
        try:
            with call.timer:  # call_timeout, not counting a question's wait for a person
                call.timer.deadline = anyio.current_time() + self.call_timeout
                return await client.call_tool(tool.name, arguments, progress_callback=progress)
            raise ToolServerError(
                f"tool server '{tool.server}' did not answer {tool.name} within {self.call_timeout:g}s"
            )
        except MCPError as e:
            if e.code == _CLOSED and upstream.status.login:  # its tokens were refused in this call
                upstream.lost()
                raise NeedsLogin(tool.server) from None
            if e.code == _CLOSED:
                upstream.lost()
                raise ToolServerError(
                    f"tool server '{tool.server}' lost the connection; reconnecting"
                ) from None
            return CallToolResult(is_error=True, content=[TextContent(type="text", text=e.error.message)])
        except ToolServerError:
            raise
        except Exception as e:  # a transport failure the SDK did not wrap: start over with a new session
            upstream.lost()
            raise ToolServerError(f"tool server '{tool.server}' failed: {_describe(e)}; reconnecting") from e
        finally:
            upstream.calls.discard(call)
            _CALL.reset(token)

    async def _elicited(self, upstream: _Upstream, params: ElicitRequestParams) -> ElicitResult | ErrorData:
        """An upstream server asks for input during a call: the call's run relays the question
        (`questions`: to the client of its ask, or into the inbox). Over a handshake-era session
        the question names no call: it is the one call in flight, if only one is."""
        call = _CALL.get() or (next(iter(upstream.calls)) if len(upstream.calls) == 1 else None)
        if not isinstance(params, ElicitRequestFormParams) or call is None:
            why = "only form questions" if call else "no single call in flight that the question is for"
            return ErrorData(code=INVALID_REQUEST, message=f"clawmcp relays {why}")
        schema = dict(params.requested_schema)
        remaining = call.timer.deadline - anyio.current_time()
        call.timer.deadline = math.inf
        try:
            if call.run_id is not None and self.questions is not None:
                action, content = await self.questions(
                    call.claw, call.run_id, call.tool, params.message, schema, call.asker
                )
            elif call.asker is not None:  # a client's own call of an exposed tool
                action, content = await call.asker.elicit(params.message, schema)
            else:
                return ErrorData(code=INVALID_REQUEST, message="nobody to ask: the call has no run")
        finally:
            call.timer.deadline = anyio.current_time() + remaining
        return ElicitResult(action=action, content=content)

    def _never_up(self, wire: str) -> _Upstream | None:
        """The server a wire name points to when that server has never listed its tools."""
        for name, upstream in self.upstreams.items():
            if wire.startswith(name + "__") and not upstream.status.tools:  # names are wire-safe already
                return upstream
        return None

    @staticmethod
    def _down(upstream: _Upstream) -> ToolServerError:
        status = upstream.status
        if status.login:
            return NeedsLogin(upstream.name)
        attempt = status.attempt if status.state == "connecting" else status.attempt + 1
        last = f"; last error: {status.error}" if status.error else ""
        return ToolServerError(
            f"tool server '{upstream.name}' is down; reconnecting, attempt {attempt}{last}"
        )

    def _rebuild(self) -> None:
        fired, self.catalog_changed = self.catalog_changed, anyio.Event()
        found: dict[tuple[str, str], dict[str, Any]] = {
            ("tools", n): {"description": t.description, "input_schema": manifest_tools.input_schema(t)}
            for n, t in self.manifest.tools.items()
        }
        for name, upstream in self.upstreams.items():
            for t in upstream.status.tools:
                found[(name, t.name)] = {
                    "description": t.description or "",
                    "input_schema": dict(t.input_schema),
                    "annotations": t.annotations.model_dump(by_alias=True, exclude_none=True)
                    if t.annotations
                    else {},
                    "held": upstream.status.held.get(t.name),
                    "title": t.title,
                    "output_schema": t.output_schema,
                    "icons": tuple(i.model_dump(by_alias=True, exclude_none=True) for i in t.icons or ()),
                }
        names = wire_names(found)
        self.catalog = {names[key]: HubTool(names[key], *key, **fields) for key, fields in found.items()}
        fired.set()
