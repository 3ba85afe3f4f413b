"""`clawmcp stdio CLAW`: one Claw over stdio, for Claude Desktop and other stdio clients.

When a host already runs on the manifest's data_dir, this process is a bridge: it speaks MCP on
stdio and forwards every request to `/claws/CLAW/mcp` of that host. Otherwise it runs the host
itself (HTTP included, so that the next `clawmcp stdio` bridges to it) and serves the Claw on
stdio. stdout carries the protocol only; logs go to stderr.
"""

from __future__ import annotations

import os
from typing import Any

import anyio
import httpx2
import mcp_types as types
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.stdio import stdio_server
from mcp.shared.exceptions import MCPError

from clawmcp.errors import HostBusy, UserError, unwrap
from clawmcp.expose import ClawServer, ServerBase
from clawmcp.host import Host, split_listen
from clawmcp.manifest import Manifest
from clawmcp.store.lock import read_lock_info
from clawmcp.web import serving

__all__ = ["BRIDGE_WAIT", "host_url", "run_stdio"]

BRIDGE_WAIT = 30.0
"""Seconds a bridge waits for a host that is starting to answer."""


async def run_stdio(manifest: Manifest, claw: str) -> None:
    """Serve the Claw on stdin/stdout until the client closes stdin."""
    manifest.check_claw(claw)
    if read_lock_info(manifest.data_dir) is None:
        try:
            await _embedded(manifest, claw)
            return
        except BaseException as e:  # another host won the race for the data_dir: bridge to it
            if not isinstance(unwrap(e), HostBusy):
                raise
    await _bridge(manifest, claw)


async def _serve_stdio(server: ServerBase) -> None:
    async with stdio_server() as (read, write):
        await server.server.run(read, write, server.server.create_initialization_options())


async def _embedded(manifest: Manifest, claw: str) -> None:
    host = Host(manifest)
    async with serving(host), anyio.create_task_group() as tg:
        server = ClawServer(host, claw)
        tg.start_soon(server.watch)
        await _serve_stdio(server)
        tg.cancel_scope.cancel()


class _Bridge(ServerBase):
    """A Claw's server whose every request is answered by the running host."""

    def __init__(self, claw: str, upstream: Client) -> None:
        self.upstream = upstream
        super().__init__(f"clawmcp-{claw}", f"The Claw '{claw}', through the running clawmcp host.")

    def _resource_handlers(self) -> dict[str, Any]:
        async def resources(ctx: Any, params: Any) -> types.ListResourcesResult:
            return await self.upstream.list_resources()

        async def templates(ctx: Any, params: Any) -> types.ListResourceTemplatesResult:
            return await self.upstream.list_resource_templates()

        async def read(ctx: Any, params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
            return await self.upstream.read_resource(str(params.uri))

        return {
            "on_list_resources": resources,
            "on_list_resource_templates": templates,
            "on_read_resource": read,
        }

    async def tools(self) -> list[types.Tool]:
        return (await self.upstream.list_tools()).tools

    async def call(self, ctx: Any, name: str, arguments: dict[str, Any]) -> types.CallToolResult:
        async def forward(progress: float, total: float | None, message: str | None) -> None:
            await ctx.session.report_progress(progress, total, message)

        try:
            return await self.upstream.call_tool(name, arguments, progress_callback=forward)
        except MCPError as e:
            text = f"the clawmcp host did not answer: {e.error.message}"
            return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True)


async def _bridge(manifest: Manifest, claw: str) -> None:
    headers = {"Authorization": f"Bearer {token}"} if (token := os.environ.get("CLAWMCP_TOKEN")) else {}
    bridge: _Bridge | None = None

    async def on_message(message: Any) -> None:
        if bridge is not None and isinstance(message, types.ToolListChangedNotification):
            await bridge.tools_changed()

    url = await _host_url(manifest)
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=None)) as http:
        transport = streamable_http_client(f"{url}/claws/{claw}/mcp", http_client=http)
        async with Client(transport, mode="legacy", message_handler=on_message) as upstream:
            bridge = _Bridge(claw, upstream)
            await _serve_stdio(bridge)


def host_url(listen: str) -> str:
    """The URL a local client uses for a host listening on `listen` (any address means loopback)."""
    address, port = split_listen(listen)
    address = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(address, address)
    return f"http://[{address}]:{port}" if ":" in address else f"http://{address}:{port}"


async def _host_url(manifest: Manifest) -> str:
    """The URL of the host that holds the data_dir, once it answers (it may still be starting)."""
    with anyio.move_on_after(BRIDGE_WAIT):
        async with httpx2.AsyncClient(timeout=2) as http:
            while True:
                info = read_lock_info(manifest.data_dir)
                if info is None:
                    raise UserError(f"the clawmcp host on {manifest.data_dir} stopped before it answered")
                if listen := info.get("listen"):
                    url = host_url(listen)
                    try:
                        if (await http.get(f"{url}/healthz")).status_code == 200:
                            return url
                    except httpx2.TransportError:
                        pass
                await anyio.sleep(0.1)  # another process is starting: nothing to wait on but its port
    raise UserError(f"the clawmcp host on {manifest.data_dir} did not answer within {BRIDGE_WAIT:g}s")
