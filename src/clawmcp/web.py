"""The host's HTTP surface (DESIGN §6): the MCP endpoints of every Claw and of the host, the JSON
API the CLI uses, the dashboard, `/metrics`, health checks, and the guard in front of all of it
(`clawmcp.guard`).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import functools
import hashlib
import importlib.resources
import json
import logging
import re
import secrets
import signal
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import uvicorn
from anyio.abc import TaskGroup, TaskStatus
from mcp.server.sse import SseServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from sse_starlette import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from clawmcp.address import split_listen
from clawmcp.approvals import describe
from clawmcp.errors import BudgetSpent, ClawError, ManifestError, Stopping, StoreUnavailable, UserError
from clawmcp.events import excerpt, line
from clawmcp.expose import ClawServer, HostServer
from clawmcp.guard import Guard, error, no_claw_response, reaches
from clawmcp.hooks import hook
from clawmcp.host import Host
from clawmcp.listener import (
    BODY_TIMEOUT,
    HEAD_TIMEOUT,
    Deadlines,
    QuietServer,
    listen_socket,
    max_connections,
)
from clawmcp.manifest import Manifest
from clawmcp.service import Service
from clawmcp.store import Event, Message, Step
from clawmcp.toolhub import changes, definition

__all__ = ["API_BODY_LIMIT", "Endpoints", "create_app", "serve"]

log = logging.getLogger("clawmcp")

API_BODY_LIMIT = 1_048_576
"""Bytes of a JSON body the API accepts; MCP requests have the SDK's own limit (4 MiB)."""
# Our guard checks Host and Origin for every path; the SDK's own check would only repeat it.
_NO_SDK_CHECK = TransportSecuritySettings(enable_dns_rebinding_protection=False)


@dataclass
class _Mounted:
    server: ClawServer | HostServer
    http: StreamableHTTPSessionManager
    sse: SseServerTransport
    scope: anyio.CancelScope


class Endpoints:
    """The MCP servers of the host and its Claws, each made on its first request. Run it with
    `tg.start(endpoints.run)`: the servers' sessions live in its task group."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self._mounted: dict[str | None, _Mounted] = {}
        self._opening: dict[str | None, anyio.Event] = {}
        self._tg: TaskGroup | None = None
        self._closed = False
        self._open: set[anyio.CancelScope] = set()
        service.on_reload(self.reloaded)

    def reloaded(self, changed: list[str], gone: list[str]) -> None:
        """A reload changed Claws (their servers give new sessions the new instructions; the
        exposed tools follow the catalog) or removed them (their servers close)."""
        for claw in changed:
            mounted = self._mounted.get(claw)
            if mounted is not None and isinstance(mounted.server, ClawServer):
                mounted.server.refresh()
        for claw in gone:
            if (mounted := self._mounted.pop(claw, None)) is not None:
                mounted.scope.cancel()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            task_status.started()
            await anyio.sleep_forever()

    @contextlib.contextmanager
    def until_closing(self) -> Iterator[None]:
        """Run the block (a session held by a request, such as an SSE session) until `close`."""
        with anyio.CancelScope() as scope:
            if self._closed:
                scope.cancel()
            self._open.add(scope)
            try:
                yield
            finally:
                self._open.discard(scope)

    def close(self) -> None:
        """The host stops: end what `until_closing` runs (at once, not holding up the stop)."""
        self._closed = True
        for scope in self._open:
            scope.cancel()

    async def get(self, claw: str | None) -> _Mounted:
        """The endpoints of a Claw, or of the host for None. Opening one waits for no other Claw's."""
        while (mounted := self._mounted.get(claw)) is None:
            if (opening := self._opening.get(claw)) is not None:
                await opening.wait()  # another request is opening it: use what it opens
                continue
            assert self._tg is not None, "Endpoints.run is not running"
            self._opening[claw] = opening = anyio.Event()
            try:
                await self._tg.start(self._serve, claw)
            finally:
                del self._opening[claw]
                opening.set()
        return mounted

    async def _serve(self, claw: str | None, *, task_status: TaskStatus[None]) -> None:
        server = HostServer(self.service, reaches) if claw is None else ClawServer(self.service, claw)
        http = StreamableHTTPSessionManager(app=server.server, security_settings=_NO_SDK_CHECK)
        prefix = "" if claw is None else f"/claws/{claw}"
        sse = SseServerTransport(f"{prefix}/messages/", security_settings=_NO_SDK_CHECK)
        with anyio.CancelScope() as scope:  # cancelled when a reload removes the Claw
            async with http.run(), anyio.create_task_group() as tg:
                if isinstance(server, ClawServer):
                    tg.start_soon(server.watch)
                self._mounted[claw] = _Mounted(server, http, sse, scope)
                task_status.started()
                await anyio.sleep_forever()


_MCP_PATHS = ("mcp", "sse", "messages/")


class _McpEndpoint:
    """ASGI app for `/claws/{name}/mcp|sse|messages/` and `/mcp|sse|messages/`."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        service: Service = scope["app"].state.service
        endpoints: Endpoints = scope["app"].state.endpoints
        claw = scope.get("path_params", {}).get("name")
        if claw is not None and (missing := no_claw_response(scope, service.manifest, claw, jsonrpc=True)):
            return await missing(scope, receive, send)
        mounted = await endpoints.get(claw)
        if self.kind == "mcp":
            await mounted.http.handle_request(scope, receive, send)
        elif self.kind == "messages/":
            await mounted.sse.handle_post_message(scope, receive, send)
        elif scope["method"] != "GET":
            await Response(status_code=405, headers={"Allow": "GET"})(scope, receive, send)
        else:
            server = mounted.server.server
            with contextlib.suppress(ValueError):  # raised after the transport answered a bad request
                async with mounted.sse.connect_sse(scope, receive, send) as (read, write):
                    with endpoints.until_closing():  # then the session ends, and its stream
                        await server.run(read, write, server.create_initialization_options())


async def _body(request: Request) -> dict[str, Any]:
    data = await _json(request)
    message = data.get("message") if isinstance(data, dict) else None
    if not isinstance(message, str) or not message:
        raise _Refused(400, "the body needs 'message', a non-empty string")
    thread = data.get("thread") or "default"
    key = data.get("key")
    if not isinstance(thread, str) or not isinstance(key, str | None):
        raise _Refused(400, "'thread' and 'key' must be strings")
    return {"message": message, "thread": thread, "key": key}


async def _json(request: Request) -> Any:
    """The request's JSON body, at most `API_BODY_LIMIT` bytes (`{}` when empty)."""
    size = int(request.headers.get("content-length") or 0)
    if size > API_BODY_LIMIT:
        raise _Refused(413, f"the body is over {API_BODY_LIMIT} bytes")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > API_BODY_LIMIT:
            raise _Refused(413, f"the body is over {API_BODY_LIMIT} bytes")
    try:
        return json.loads(body or b"{}")
    except ValueError:
        raise _Refused(400, "the body is not JSON") from None
    except RecursionError:
        raise _Refused(400, "the body is nested too deeply") from None


_DASHBOARD = importlib.resources.files("clawmcp").joinpath("dashboard.html").read_text("utf-8")


def _hashes(tag: str) -> str:
    found = re.findall(rf"<{tag}>(.*?)</{tag}>", _DASHBOARD, re.S)
    return " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'" for s in found
    )


_PAGE_HEADERS = {  # the page runs only its own script and style, and talks only to the host
    "Content-Security-Policy": f"default-src 'self'; script-src {_hashes('script')}; "
    f"style-src {_hashes('style')}; img-src data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_RUNS_SHOWN = 15
_MESSAGES_SHOWN = 30


def _shown(request: Request, event: Event) -> bool:
    return event.claw is None or reaches(request, event.claw)


def _event(event: Event) -> dict[str, Any]:
    return dataclasses.asdict(event) | {"line": line(event)}


def _dead(message: Message) -> dict[str, Any]:
    fields = ("id", "mailbox", "state", "content", "thread", "sender", "attempts", "last_error", "created_at")
    return {("claw" if k == "mailbox" else k): getattr(message, k) for k in fields}


def _step(step: Step) -> dict[str, Any]:
    """A step for the dashboard, long texts cut short."""
    data = step.data
    if isinstance(data, dict) and isinstance(data.get("text"), str):
        data = data | {"text": excerpt(data["text"], 500)}
    return {"index": step.index, "kind": step.kind, "at": step.at, "data": data}


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


async def readyz(request: Request) -> JSONResponse:
    state = _service(request).readiness()
    return JSONResponse(state, status_code=200 if state["ready"] else 503)


async def dashboard(request: Request) -> HTMLResponse:
    page = _DASHBOARD.replace("PAGE_TOKEN", request.app.state.page)
    return HTMLResponse(page, headers=_PAGE_HEADERS)


async def metrics(request: Request) -> Response:
    text = await _service(request).metrics(shown=lambda claw: reaches(request, claw))
    return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")


async def api_claws(request: Request) -> JSONResponse:
    service = _service(request)
    names = [c for c in sorted(service.manifest.claws) if reaches(request, c)]
    return JSONResponse(await service.statuses(names))


async def api_hosts(request: Request) -> JSONResponse:
    """The hosts of the store (one, with SQLite): name, listen address, times, alive, the Claws
    (of those the token reaches) each runs."""
    hosts = await _service(request).hosts()
    return JSONResponse([{**h, "claws": [c for c in h["claws"] if reaches(request, c)]} for h in hosts])


async def api_send(request: Request) -> JSONResponse:
    """`POST /api/claws/NAME/ask` or `/tell`."""
    service, claw, verb = _service(request), request.path_params["name"], request.path_params["verb"]
    if verb not in ("ask", "tell"):
        return error(404, f"no such path '{request.url.path}' (a Claw has ask and tell)")
    if missing := no_claw_response(request.scope, service.manifest, claw):
        return missing
    try:
        args = await _body(request)
    except _Refused as e:
        return error(e.status, str(e))
    if verb == "tell":
        message = await service.tell(claw, args["message"], thread=args["thread"], key=args["key"])
        return JSONResponse({"message_id": message.id})
    run = await service.ask(claw, args["message"], thread=args["thread"])
    return JSONResponse({"run": run.id, "state": run.state, "reply": run.reply, "error": run.error})


async def api_tools(request: Request) -> JSONResponse:
    """The tool servers' tools: the pattern a manifest writes, the wire name a model sees, and the
    Claws (of those the token reaches) that may use each."""
    service = _service(request)
    every = all(reaches(request, c) for c in service.manifest.claws)
    states = service.servers()
    tools = []
    for t, allowed in service.catalog():
        claws = [c for c in allowed if reaches(request, c)]
        if claws or every:
            state = states.get(t.server)
            pinning = state is not None and service.manifest.servers[t.server].pin
            pinned = state.pins.get(t.name) if state else None  # held as changed: then and now
            listed = next((x for x in state.tools if x.name == t.name), None) if state and pinned else None
            tools.append(
                {
                    "server": t.server,
                    "tool": t.name,
                    "pattern": t.qualified,
                    "wire": t.wire,
                    "description": t.description,
                    "server_state": state.state if state else "up",
                    "pin": (t.held or "pinned") if pinning else "off",
                    "changes": changes(pinned, definition(listed)) if pinned and listed else None,
                    "claws": claws,
                }
            )
    return JSONResponse(tools)


async def api_reconnect(request: Request) -> JSONResponse:
    """`POST /api/tools/SERVER/reconnect`: try the server again now (`clawmcp login` does)."""
    service, server = _service(request), request.path_params["server"]
    if not all(reaches(request, c) for c in service.manifest.claws):
        return error(403, "reconnecting a tool server needs a token that reaches every Claw")
    try:
        service.reconnect(server)
    except UserError as e:
        return error(404, str(e))
    return JSONResponse({"server": server})


async def api_accept(request: Request) -> JSONResponse:
    """`POST /api/tools/SERVER/accept` with `{"tools": [...]}` (none: all): pin them as listed now."""
    service, server = _service(request), request.path_params["server"]
    if not all(reaches(request, c) for c in service.manifest.claws):
        return error(403, "accepting tools needs a token that reaches every Claw")
    try:
        body = await _json(request)
        tools = body.get("tools") if isinstance(body, dict) else None
        if not isinstance(tools, list | None) or not all(isinstance(t, str) for t in tools or []):
            raise _Refused(400, "'tools' must be a list of tool names")
    except _Refused as e:
        return error(e.status, str(e))
    return JSONResponse({"server": server, "accepted": await service.accept_tools(server, tools or [])})


async def api_reload(request: Request) -> JSONResponse:
    """`POST /api/reload`: read the manifests again and apply them (`clawmcp.reload`); what
    changed. 422 with every problem (as `clawmcp validate` shows them) when they have any: then
    nothing changed."""
    service = _service(request)
    if not all(reaches(request, c) for c in service.manifest.claws):
        return error(403, "reloading the manifests needs a token that reaches every Claw")
    try:
        changes = await service.reload()
    except ManifestError as e:
        problems = [str(p) for p in e.problems]
        body = {"error": "the manifests have problems; nothing changed", "problems": problems}
        return JSONResponse(body, status_code=422)
    return JSONResponse(changes.as_dict() | {"summary": changes.summary()})


async def api_dead(request: Request) -> JSONResponse:
    """Dead letters (`?claw=NAME`), oldest first."""
    service, claw = _service(request), request.query_params.get("claw") or None
    if claw is not None and (missing := no_claw_response(request.scope, service.manifest, claw)):
        return missing
    dead = [m for m in await service.dead_letters(claw) if reaches(request, m.mailbox)]
    return JSONResponse([_dead(m) for m in dead])


async def api_settle_dead(request: Request) -> JSONResponse:
    """`POST /api/dead/ID/retry` or `/discard`."""
    service, action = _service(request), request.path_params["action"]
    try:
        message_id = int(request.path_params["id"])
    except ValueError:
        return error(404, f"no such path '{request.url.path}'")
    message = await service.message(message_id)
    if action not in ("retry", "discard") or message is None or not reaches(request, message.mailbox):
        return error(404, f"no dead letter {message_id} to {action}")
    return JSONResponse(_dead(await service.settle_dead(message_id, action)))


async def api_message(request: Request) -> JSONResponse:
    """`GET /api/messages/ID` (`?wait=S`: up to S seconds for it to end): what became of a
    message; `POST /api/messages/ID/cancel` cancels it (409 once it has ended)."""
    service, wait = _service(request), request.query_params.get("wait") or "0"
    try:
        message_id = int(request.path_params["id"])
    except ValueError:
        return error(404, f"no such path '{request.url.path}'")
    try:
        seconds = float(wait)
    except ValueError:
        return error(400, f"wait must be a number of seconds, not '{wait}'")
    shown = functools.partial(reaches, request)
    try:
        if request.method == "POST":
            return JSONResponse(await service.cancel(message_id, reaches=shown))
        return JSONResponse(await service.result(message_id, wait=min(max(seconds, 0), 3600), reaches=shown))
    except UserError as e:
        return error(404 if str(e).startswith("no message") else 409, str(e))


async def api_approvals(request: Request) -> JSONResponse:
    """The inbox, oldest first: pending approvals (`?all=1`: the latest of any state; `?claw=NAME`)."""
    service, claw = _service(request), request.query_params.get("claw") or None
    if claw is not None and (missing := no_claw_response(request.scope, service.manifest, claw)):
        return missing
    pending = request.query_params.get("all") not in ("1", "true")
    found = await service.approvals(claw, pending=pending)
    return JSONResponse([describe(a) for a in found if reaches(request, a.claw)])


async def api_decide(request: Request) -> JSONResponse:
    """`POST /api/approvals/ID` with `{"approve": true|false, "note": "..."}`, and for a question
    `"content": {...}`, its answer."""
    service = _service(request)
    try:
        approval_id = int(request.path_params["id"])
    except ValueError:
        return error(404, f"no such path '{request.url.path}'")
    approval = await service.approval(approval_id)
    if approval is None or not reaches(request, approval.claw):
        return error(404, f"no approval {approval_id}")
    try:
        body = await _json(request)
        if not isinstance(body, dict) or not isinstance(body.get("approve"), bool):
            raise _Refused(400, "the body needs 'approve': true or false")
        if not isinstance(note := body.get("note"), str | None):
            raise _Refused(400, "'note' must be a string")
        content = body.get("content")
        decided = await service.decide(approval_id, body["approve"], note=note or None, content=content)
    except _Refused as e:
        return error(e.status, str(e))
    except UserError as e:
        return error(409, str(e))
    return JSONResponse(describe(decided))


def _servers(service: Service) -> dict[str, Any]:
    redact = service.manifest.redact
    return {
        name: {
            "state": s.state,
            "error": s.error and redact(s.error),
            "reconnects": s.reconnects,
            "tools": len(s.tools),
            "held": sorted(s.held),
        }
        for name, s in service.servers().items()
    }


async def api_servers(request: Request) -> JSONResponse:
    """The tool servers: state (up, connecting, down, needs login, failed), last error, tools."""
    return JSONResponse(_servers(_service(request)))


async def api_dashboard(request: Request) -> JSONResponse:
    """What the dashboard shows: Claws, tool servers, recent runs with their steps, messages."""
    service = _service(request)
    names = [c for c in sorted(service.manifest.claws) if reaches(request, c)]
    runs = [r for r in await service.runs(limit=100) if reaches(request, r.claw)][:_RUNS_SHOWN]
    recent = await service.events(limit=1000)
    talk = [_event(e) for e in recent if e.kind in ("message", "delivery") and _shown(request, e)]
    return JSONResponse(
        {
            "claws": await service.statuses(names),
            "servers": _servers(service),
            "runs": [
                dataclasses.asdict(r) | {"steps": [_step(s) for s in await service.steps(r.id)]} for r in runs
            ],
            "messages": talk[-_MESSAGES_SHOWN:],
            "approvals": [describe(a) for a in await service.approvals() if reaches(request, a.claw)],
        }
    )


async def api_events(request: Request) -> Response:
    """The activity log, oldest first: `?claw=NAME&after=ID&limit=N`; with `follow=1` a stream of
    server-sent events that goes on with each new event."""
    service, claw = _service(request), request.query_params.get("claw") or None
    if claw is not None:
        if missing := no_claw_response(request.scope, service.manifest, claw):
            return missing
        if not reaches(request, claw):
            return error(403, f"this token does not reach Claw '{claw}'")
    try:  # a browser that reconnects sends the id of the last event it got
        after = int(request.headers.get("last-event-id") or request.query_params.get("after") or 0)
        limit = int(request.query_params.get("limit", 100))
    except ValueError:
        after = limit = -1
    if not (0 <= after < 2**63 and 1 <= limit <= 10_000):
        return error(400, "'after' (Last-Event-ID) must be a whole number from 0, 'limit' from 1 to 10000")

    def wanted(e: Event) -> bool:
        return e.id > after and (claw is None or e.claw == claw) and _shown(request, e)

    if request.query_params.get("follow") not in ("1", "true"):
        return JSONResponse(
            [_event(e) for e in await service.events(claw, after=after, limit=limit) if wanted(e)]
        )

    async def stream() -> AsyncIterator[dict[str, Any]]:
        nonlocal after
        with service.follow() as live:  # before reading the log: nothing falls between
            for e in await service.events(claw, after=after, limit=limit):
                if wanted(e):
                    yield {"id": str(e.id), "data": json.dumps(_event(e))}
                    after = e.id
            async for e in live:
                if wanted(e):
                    yield {"id": str(e.id), "data": json.dumps(_event(e))}

    return EventSourceResponse(stream(), ping=15)


ROUTES = [
    Route("/", dashboard),
    Route("/healthz", healthz),
    Route("/readyz", readyz),
    Route("/metrics", metrics),
    Route("/api/dashboard", api_dashboard),
    Route("/api/events", api_events),
    Route("/api/claws", api_claws),
    Route("/api/hosts", api_hosts),
    Route("/api/tools", api_tools),
    Route("/api/servers", api_servers),
    Route("/api/tools/{server}/accept", api_accept, methods=["POST"]),
    Route("/api/tools/{server}/reconnect", api_reconnect, methods=["POST"]),
    Route("/api/dead", api_dead),
    Route("/api/dead/{id}/{action}", api_settle_dead, methods=["POST"]),
    Route("/api/messages/{id}", api_message),
    Route("/api/messages/{id}/cancel", api_message, methods=["POST"]),
    Route("/api/approvals", api_approvals),
    Route("/api/approvals/{id}", api_decide, methods=["POST"]),
    Route("/api/claws/{name}/{verb:str}", api_send, methods=["POST"]),
    Route("/api/reload", api_reload, methods=["POST"]),
    Route("/hooks/{claw}/{name}", hook, methods=["POST"]),
    *(
        Route(f"{prefix}/{kind}", _McpEndpoint(kind))
        for prefix in ("/claws/{name}", "")
        for kind in _MCP_PATHS
    ),
]


async def _not_found(request: Request, exc: Exception) -> JSONResponse:
    return error(404, f"no such path '{request.url.path}'")


async def _fault(request: Request, exc: Exception) -> JSONResponse:
    text = _service(request).manifest.redact(str(exc))
    if isinstance(exc, StoreUnavailable | Stopping):  # nothing was accepted; try again soon
        return error(503, f"cannot accept this now: {text}", headers={"Retry-After": "5"})
    if isinstance(exc, BudgetSpent):
        return error(429, text, headers={"Retry-After": str(max(1, round(exc.until - time.time())))})
    if isinstance(exc, ClawError):
        return error(400 if isinstance(exc, UserError) else 500, text)
    log.exception("%s %s failed", request.method, request.url.path)
    return error(500, "internal error; see the host's log")


def create_app(service: Service, endpoints: Endpoints, listen: str) -> ASGIApp:
    """The host's HTTP app for `service`, its MCP `endpoints`, listening at `listen`."""
    app = Starlette(routes=ROUTES, exception_handlers={404: _not_found, Exception: _fault})
    app.state.service, app.state.endpoints = service, endpoints
    app.state.page = secrets.token_urlsafe(24)  # the dashboard's, for its POSTs (see Guard)
    return Guard(app, service.manifest, listen, app.state.page)


@contextlib.asynccontextmanager
async def serving(
    host: Host, *, head: float = HEAD_TIMEOUT, body: float = BODY_TIMEOUT, cap: int | None = None
) -> AsyncIterator[Endpoints]:
    """Run the host and its HTTP surface for the block; then stop cleanly: no new requests, the
    runs in flight recorded as interrupted, tool servers closed. `head`, `body` and `cap` are the
    deadlines and the connection cap of `clawmcp.listener`."""
    endpoints = Endpoints(host.service)
    sessions = anyio.CancelScope()

    async def run_sessions(*, task_status: TaskStatus[None]) -> None:
        with sessions:
            await endpoints.run(task_status=task_status)

    async with anyio.create_task_group() as tg:
        await tg.start(host.run)
        with listen_socket(*split_listen(host.listen)) as sock:  # after the lock: a second host stops there
            address, port = sock.getsockname()[:2]
            host.listening(f"[{address}]:{port}" if ":" in address else f"{address}:{port}")
            protocol = functools.partial(Deadlines, head=head, body=body, cap=cap or max_connections())
            config = uvicorn.Config(
                create_app(host.service, endpoints, host.listen),
                http=protocol,  # type: ignore[arg-type]
                log_level="warning",
                lifespan="off",
                access_log=False,
                timeout_graceful_shutdown=3,
            )
            server = QuietServer(config)
            # What uses the host stops before the host does: a run cut short is still recorded.
            async with anyio.create_task_group() as web:
                await web.start(run_sessions)
                web.start_soon(server.serve, [sock])  # the socket listens already: no wait for startup
                try:
                    yield endpoints
                finally:
                    # Every open stream ends now (MCP sessions, the activity log's followers), so
                    # that the server has no connection left to wait for.
                    host.runtime.stop()
                    endpoints.close()
                    sessions.cancel()
                    host.events.end_streams()
                    server.should_exit = True
        tg.cancel_scope.cancel()


async def serve(manifest: Manifest) -> None:
    """Run the host until SIGINT or SIGTERM, then stop cleanly; SIGHUP reloads the manifests."""
    host = Host(manifest)
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
        async with serving(host), anyio.create_task_group() as reloads:
            claws = ", ".join(sorted(manifest.claws)) or "none"
            log.info("listening on http://%s (Claws: %s)", host.listen, claws, extra={"listen": host.listen})
            async for signum in signals:
                if signum == signal.SIGHUP:
                    log.info("SIGHUP: reloading the manifests")
                    reloads.start_soon(_reload, host)
                    continue
                log.info("%s: stopping", signal.Signals(signum).name)
                reloads.cancel_scope.cancel()
                break
    log.info("stopped")


async def _reload(host: Host) -> None:
    try:
        await host.reload()
    except UserError:  # the reload logged why nothing changed
        pass
    except ClawError as e:  # the store could not take it: the reload did not finish
        log.error("reload failed: %s", e)
