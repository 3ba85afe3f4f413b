"""`clawmcp stdio CLAW`: one Claw over stdio, for Claude Desktop and other stdio clients (DESIGN §10).

This process never holds the host: Desktop starts, stops and restarts its entries as it likes, and
one entry's process going away must not take the Claws of the others with it. It is a bridge
that speaks MCP on stdio and forwards every request to `/claws/CLAW/mcp` of the data_dir's host.
When no host runs, it starts one, detached (`clawmcp serve` in a session of its own, logging to
`data_dir/host.log`), and waits for it; two bridges starting at once end with one host, since
the data_dir's lock lets only one start. While connected it checks the host every second; when
the host is gone, calls in flight and calls until a host answers again fail with one line, and
the bridge finds or starts a new host and reconnects. stdout carries the protocol only.

The bridge reads the manifests only for the data_dir (`clawmcp.manifest.outline`): the model
secrets are the host's business.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import subprocess
import sys
import warnings
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import anyio
import httpx2
import mcp_types as types
from anyio.abc import TaskStatus
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.stdio import stdio_server
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp_types import CONNECTION_CLOSED

from clawmcp.address import host_url
from clawmcp.errors import UserError, unwrap
from clawmcp.expose import RESOURCE_NOT_FOUND, ServerBase, no_resource, progress_to
from clawmcp.manifest import Outline, no_claw
from clawmcp.store.lock import read_lock_info

__all__ = ["BRIDGE_WAIT", "GONE", "run_stdio"]

BRIDGE_WAIT = 30.0
"""Seconds a bridge waits for a host that is starting to answer."""
GONE = "the clawmcp host did not answer; restarting it"
"""What a call gets while the host is away."""
_CHECK = 1.0  # seconds between checks that the host is still there
T = TypeVar("T")

log = logging.getLogger("clawmcp")


async def run_stdio(outline: Outline, claw: str) -> None:
    """Serve the Claw on stdin/stdout until the client closes stdin."""
    if outline.claws and claw not in outline.claws:
        raise no_claw(claw, outline.claws)
    upstream = _Upstream(outline, claw)
    async with anyio.create_task_group() as tg:
        await tg.start(upstream.run)
        bridge = _Bridge(claw, upstream)
        upstream.changed, upstream.updated = bridge.tools_changed, bridge.updated
        async with stdio_server() as (read, write):
            await bridge.server.run(read, write, bridge.server.create_initialization_options())
        tg.cancel_scope.cancel()


class _Upstream:
    """The connection to the host, made again whenever the host goes away."""

    def __init__(self, outline: Outline, claw: str) -> None:
        self.outline, self.claw = outline, claw
        self.client: Client | None = None
        self.changed: Callable[[], Awaitable[None]] | None = None
        """Told when the host says the tools changed, and after each reconnection."""
        self.updated: Callable[[str], Awaitable[None]] | None = None
        """Told when the host says a followed resource changed."""
        self.followed: set[str] = set()
        """The resources the client follows (followed again on each new host)."""
        self._calls: set[anyio.CancelScope] = set()
        token = os.environ.get("CLAWMCP_TOKEN")
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Connect (the first time, or fail with one line), then keep connected."""
        first = True
        while True:
            try:
                url, pid = await self._host()
            except UserError as e:
                if first:
                    raise
                log.warning("%s; trying again", e)
                continue
            try:
                async with (
                    httpx2.AsyncClient(headers=self.headers, timeout=httpx2.Timeout(30, read=None)) as http,
                    Client(
                        streamable_http_client(f"{url}/claws/{self.claw}/mcp", http_client=http),
                        mode="legacy",
                        message_handler=self._on_message,
                    ) as client,
                ):
                    self.client = client
                    if first:
                        task_status.started()
                        first = False
                    elif self.changed is not None:
                        await self.changed()  # a new host: its tools may differ
                    await self.follow(self.followed)
                    await self._watch(http, url, pid)
            except Exception as e:  # the connection broke under the session: the host went away
                if first:
                    raise UserError(f"cannot connect to the clawmcp host at {url}: {unwrap(e)}") from None
            finally:
                self.client = None
                for scope in self._calls:  # calls in flight went with the host
                    scope.cancel()
            log.info("the clawmcp host at %s went away; finding or starting another", url)

    async def call(self, forward: Callable[[Client], Awaitable[T]]) -> T:
        """`forward` with the host's client; `UserError(GONE)` at once when the host is away."""
        client = self.client
        if client is not None:
            with anyio.CancelScope() as scope:
                self._calls.add(scope)
                try:
                    return await forward(client)
                except MCPError as e:
                    if e.code != CONNECTION_CLOSED:
                        raise
                except (httpx2.TransportError, anyio.BrokenResourceError, anyio.ClosedResourceError):
                    pass
                finally:
                    self._calls.discard(scope)
        raise UserError(GONE)

    async def _on_message(self, message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification) and self.changed is not None:
            await self.changed()
        elif isinstance(message, types.ResourceUpdatedNotification) and self.updated is not None:
            await self.updated(str(message.params.uri))

    async def follow(self, uris: Iterable[str]) -> None:
        """Follow these resources on the host (now, if it is there, and on every new host)."""
        self.followed |= set(uris)
        with warnings.catch_warnings():  # the bridge speaks the handshake era to the host
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            for uri in set(uris):
                with contextlib.suppress(UserError):  # no host now: followed on the next one
                    await self.call(functools.partial(Client.subscribe_resource, uri=uri))

    async def _watch(self, http: httpx2.AsyncClient, url: str, pid: int) -> None:
        """Return once the host is gone: it no longer answers (twice in a row), or another host
        holds the data_dir."""
        misses = 0
        while misses < 2:
            await anyio.sleep(_CHECK)
            info = read_lock_info(self.outline.data_dir)
            if info is None or info.get("pid") != pid:
                return
            try:
                with anyio.fail_after(_CHECK * 2):
                    ok = (await http.get(f"{url}/healthz")).status_code == 200
            except (httpx2.TransportError, TimeoutError):
                ok = False
            misses = 0 if ok else misses + 1

    async def _host(self) -> tuple[str, int]:
        """The URL and pid of the data_dir's host once it answers; one is started when none runs."""
        data_dir = self.outline.data_dir
        started: subprocess.Popen[bytes] | None = None
        with anyio.move_on_after(BRIDGE_WAIT):
            async with httpx2.AsyncClient(headers=self.headers, timeout=2) as http:
                while True:
                    info = read_lock_info(data_dir)
                    if info is None and started is None:
                        started = _start_host(self.outline)
                    elif info is None and started is not None and started.poll() is not None:
                        raise UserError(f"the clawmcp host did not start: {_last_line(data_dir)}")
                    elif info and (listen := info.get("listen")):
                        url = host_url(listen)
                        try:
                            status = (await http.get(f"{url}/api/claws")).status_code
                        except httpx2.TransportError:
                            status = 0
                        if status == 401:
                            raise UserError(
                                "the clawmcp host needs a token: set CLAWMCP_TOKEN in this entry's env "
                                "(clawmcp desktop-config shows where)"
                            )
                        if 200 <= status < 500:
                            return url, info["pid"]
                    await anyio.sleep(0.1)  # a host is starting: nothing to wait on but its port
        raise UserError(f"the clawmcp host on {data_dir} did not answer within {BRIDGE_WAIT:g}s")


def _start_host(outline: Outline) -> subprocess.Popen[bytes]:
    """`clawmcp serve` for the same manifests, detached: a session of its own, so that it outlives
    this process (and Desktop's handling of it), logging to `data_dir/host.log`."""
    outline.data_dir.mkdir(parents=True, exist_ok=True)
    with open(outline.data_dir / "host.log", "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "clawmcp", "serve", *outline.files],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )


def _last_line(data_dir: Path) -> str:
    try:
        lines = (data_dir / "host.log").read_text(errors="replace").splitlines()
    except OSError:
        return "(no host.log)"
    return lines[-1].removeprefix("clawmcp: ") if lines else "(host.log is empty)"


class _Bridge(ServerBase):
    """A Claw's server whose every request is answered by the host."""

    def __init__(self, claw: str, upstream: _Upstream) -> None:
        self.upstream = upstream
        super().__init__(f"clawmcp-{claw}", f"The Claw '{claw}', through the clawmcp host.")

    def _resource_handlers(self) -> dict[str, Any]:
        call = self.upstream.call

        async def resources(ctx: Any, params: Any) -> types.ListResourcesResult:
            return await call(lambda c: c.list_resources())

        async def templates(ctx: Any, params: Any) -> types.ListResourceTemplatesResult:
            return await call(lambda c: c.list_resource_templates())

        async def read(ctx: Any, params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
            try:
                return await call(lambda c: c.read_resource(str(params.uri)))
            except MCPError as e:  # the host answers in the bridge's era; the client hears its own
                raise no_resource(ctx, e.message) if e.code == RESOURCE_NOT_FOUND else e from None

        async def complete(ctx: Any, params: types.CompleteRequestParams) -> types.CompleteResult:
            argument = {"name": params.argument.name, "value": params.argument.value}
            context = params.context.arguments if params.context else None
            return await call(lambda c: c.complete(params.ref, argument, context))

        async def set_level(ctx: Any, params: types.SetLevelRequestParams) -> types.EmptyResult:
            with warnings.catch_warnings():  # deprecated in the 2026 era; the client asked all the same
                warnings.simplefilter("ignore", MCPDeprecationWarning)
                return await call(lambda c: c.set_logging_level(params.level))

        async def prompts(ctx: Any, params: Any) -> types.ListPromptsResult:
            return await call(lambda c: c.list_prompts())

        async def prompt(ctx: Any, params: types.GetPromptRequestParams) -> types.GetPromptResult:
            return await call(lambda c: c.get_prompt(params.name, params.arguments))

        return {
            "on_list_resources": resources,
            "on_list_resource_templates": templates,
            "on_read_resource": read,
            "on_completion": complete,
            "on_set_logging_level": set_level,
            "on_list_prompts": prompts,
            "on_get_prompt": prompt,
        }

    async def follow(self, uris: list[str]) -> None:
        await self.upstream.follow(uris)

    async def tools(self) -> list[types.Tool]:
        return (await self.upstream.call(lambda c: c.list_tools(cache_mode="refresh"))).tools

    async def call(self, ctx: Any, name: str, arguments: dict[str, Any]) -> types.CallToolResult:
        forward = progress_to(ctx)
        return await self.upstream.call(lambda c: c.call_tool(name, arguments, progress_callback=forward))
